#!/usr/bin/env bash
# Everything a GPU must show before a user's first GPU job, in one command (issue 12):
#
#   bash bench/device_check.sh            # one H100/H200: at most 8 minutes, results in $OUT
#   bash bench/device_check.sh --dry-run  # the same steps, tiny sizes, on CPU (tests run this)
#
# Steps (each under its own time limit, so the whole run ends in time even if one hangs):
#   env        versions, device, memory, clocks (bench/device_tools.py env)
#   pytest     the suite's GPU tests: pytest -m gpu (no host sync per batch, real out-of-memory,
#              pinned inputs, CUDA budget, --device-map, flex attention compiled for the GPU)
#   doctor-1b  rmscore doctor on random Llama-3.2-1B-sized weights in bf16: every forward path
#   bench      bench/run.py --preset gpu-8b: baselines and rmscore's paths, tokens/s and MFU
#   doctor-8b  rmscore doctor at Llama-3-8B size
#   serve      bench/serve.py's GPU preset, when bench/serve.py exists
# Writes $OUT/device-check.md and .json (status, seconds and log tail of every step) and each
# step's full log under $OUT/logs. Exit status: the number of steps that failed.
set -u
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$PWD/device-check-out}
PY=${PYTHON:-python}
DEADLINE=${DEVICE_CHECK_SECONDS:-470}  # the 8-minute window, less time to write the report
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT/logs"
: > "$OUT/steps.tsv"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
START=$(date +%s)

if [ "$DRY" = 1 ]; then
  DEVICE=cpu DTYPE=float32 SMALL=tiny LARGE="" PRESET=tiny BENCH_EXTRA="--scorers per-example,rmscore-auto"
  SERVE_ARGS="--help"  # a CPU serve benchmark would take minutes: check it starts, no more
else
  DEVICE=cuda DTYPE=bfloat16 SMALL=1b LARGE=8b PRESET=gpu-8b BENCH_EXTRA=""
  SERVE_ARGS="--preset gpu --out $OUT/serve"
fi

# step NAME SECONDS COMMAND...: run COMMAND under min(SECONDS, time left), log it, record the outcome.
step() {
  local name=$1 budget=$2
  shift 2
  local left=$((DEADLINE - ($(date +%s) - START)))
  [ "$budget" -gt "$left" ] && budget=$left
  if [ "$budget" -le 5 ]; then
    printf '%s\tskipped\t0\tno time left in the window\n' "$name" >> "$OUT/steps.tsv"
    return
  fi
  echo "[device-check] $name (limit ${budget}s): $*" >&2
  local t0=$(date +%s) status
  timeout --kill-after=10 "$budget" "$@" > "$OUT/logs/$name.log" 2>&1
  case $? in
    0) status=ok ;;
    124|137) status="timed out" ;;
    *) status=failed ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" $(($(date +%s) - t0)) "$*" >> "$OUT/steps.tsv"
}

doctor() {  # doctor SIZE: random weights of that size saved like a checkpoint, then rmscore doctor on them
  step "checkpoint-$1" "$2" "$PY" bench/device_tools.py checkpoint --size "$1" --out "$WORK/llama-$1" \
    --device "$DEVICE" --dtype "$DTYPE"
  step "doctor-$1" "$3" "$PY" -m rmscore doctor -m "$WORK/llama-$1" --model-type seq-cls --dtype "$DTYPE" \
    --device "$DEVICE"
  rm -rf "$WORK/llama-$1"
}

# Most telling first: a step the window has no time left for is reported as skipped.
step env 30 "$PY" bench/device_tools.py env --out "$OUT/env.json"
step pytest 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests
doctor "$SMALL" 45 60
# shellcheck disable=SC2086  # BENCH_EXTRA is a list of arguments
step bench 240 "$PY" bench/run.py --preset "$PRESET" --out "$OUT/bench" $BENCH_EXTRA
[ -n "$LARGE" ] && doctor "$LARGE" 90 90
if [ -f bench/serve.py ]; then
  # shellcheck disable=SC2086  # SERVE_ARGS is a list of arguments
  step serve 150 "$PY" bench/serve.py $SERVE_ARGS
else
  printf 'serve\tskipped\t0\tbench/serve.py not in this checkout\n' >> "$OUT/steps.tsv"
fi

"$PY" - "$OUT" "$DRY" "$(($(date +%s) - START))" <<'EOF'
import json, sys, time
from pathlib import Path

out, dry, total = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
steps = []
for line in (out / "steps.tsv").read_text().splitlines():
    name, status, seconds, command = line.split("\t", 3)
    log = out / "logs" / f"{name}.log"
    tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
    steps.append({"step": name, "status": status, "seconds": int(seconds), "command": command, "log_tail": tail})
env = json.loads((out / "env.json").read_text()) if (out / "env.json").exists() else {}
bench = out / "bench"
tables = sorted(bench.glob("bench-*.md")) if bench.exists() else []
report = {"date": time.strftime("%Y-%m-%d %H:%M"), "dry_run": dry, "total_seconds": total, "environment": env,
          "steps": steps, "bench": [json.loads(p.with_suffix(".json").read_text()) for p in tables]}
(out / "device-check.json").write_text(json.dumps(report, indent=2))
lines = [f"# Device check, {report['date']}" + (" (dry run, CPU)" if dry else ""), "",
         f"Device: {env.get('device', 'cpu')}; torch {env.get('packages', {}).get('torch')}, "
         f"transformers {env.get('packages', {}).get('transformers')}; total {total} s.", "",
         "| step | status | seconds |", "|---|---|---|"]
lines += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in steps]
for s in steps:
    if s["status"] != "ok" or s["step"].startswith("doctor"):
        lines += ["", f"## {s['step']}: {s['status']}", "", "```", *s["log_tail"], "```"]
for table in tables:
    lines += ["", f"## {table.stem}", "", table.read_text()]
(out / "device-check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
failed = sum(s["status"] not in ("ok", "skipped") for s in steps)
sys.exit(min(failed, 100))
EOF

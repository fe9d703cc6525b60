#!/usr/bin/env bash
# The short GPU rerun of what changed after the first device check (2026-12-04), in one command:
#
#   OUT=/path bash bench/device_verify.sh            # one H100/H200: at most 150 s, results in $OUT
#   OUT=/path bash bench/device_verify.sh --dry-run  # the same steps at tiny sizes on CPU (tests run it)
#
# Steps, each under its own time limit (the whole run ends in time even if one hangs):
#   env      versions, device, memory (bench/device_tools.py env)
#   pytest   pytest -m gpu on tests/test_gpu.py and tests/test_distributed.py: no host sync per
#            batch (padded, prompt reuse), the out-of-memory back-off on real memory, flex attention
#            on all three paths (head dim 16) and its refusal under 16, --device-map vs the CPU
#   doctor   rmscore doctor on random Llama-3.2-1B-sized weights in bf16 (tolerance: floor plus
#            the measured kernel noise); a 4-layer model when less than 50 s are left
#   bench    the packed path (flex, length buckets) against the per-example loop on the small
#            gpu-tiny preset, compile in the warm-up; only if the window has time left
# Writes $OUT/device-verify.md and .json and each step's full log under $OUT/logs. Exit status:
# the number of steps that failed or timed out.
set -u
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$PWD/device-verify-out}
PY=${PYTHON:-python3}
DEADLINE=${DEVICE_VERIFY_SECONDS:-150}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device-verify.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT/logs"
: > "$OUT/steps.tsv"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
START=$(date +%s)
if [ "$DRY" = 1 ]; then
  DEVICE=cpu DTYPE=float32 SIZE=tiny PRESET=tiny
else
  DEVICE=cuda DTYPE=bfloat16 SIZE=1b PRESET=gpu-tiny
fi
. bench/steps.sh  # step NAME SECONDS COMMAND...

step env 20 "$PY" bench/device_tools.py env --out "$OUT/env.json"
step pytest 100 "$PY" -m pytest -v -m gpu -p no:cacheprovider --timeout=40 --durations=8 tests/test_gpu.py tests/test_distributed.py
# A 1B checkpoint and its doctor take ~40 s on an H200 (2026-12-04); a small model ~15 s.
[ "$SIZE" = 1b ] && [ $((DEADLINE - ($(date +%s) - START))) -lt 50 ] && SIZE=small
step checkpoint 30 "$PY" bench/device_tools.py checkpoint --size "$SIZE" --out "$WORK/llama" --device "$DEVICE" \
  --dtype "$DTYPE"
step doctor 30 "$PY" -m rmscore doctor -m "$WORK/llama" --model-type seq-cls --dtype "$DTYPE" --device "$DEVICE"
rm -rf "$WORK/llama"
step bench "$DEADLINE" "$PY" bench/run.py --preset "$PRESET" --scorers per-example,rmscore-packed --out "$OUT/bench"

# shellcheck disable=SC2046  # the flag is one word or none
"$PY" bench/device_tools.py report --out "$OUT" --name device-verify --title "Device verify" \
  --seconds $(($(date +%s) - START)) $([ "$DRY" = 1 ] && echo --dry-run)

# Sourced by bench/device_check.sh and bench/device_verify.sh. Needs OUT, START (date +%s) and
# DEADLINE (seconds from START) set, and $OUT/logs to exist.
#
# step NAME SECONDS COMMAND...: run COMMAND under min(SECONDS, time left), log it to
# $OUT/logs/NAME.log, and record "name, status, seconds, command" in $OUT/steps.tsv.
step() {
  local name=$1 budget=$2
  shift 2
  local left=$((DEADLINE - ($(date +%s) - START)))
  [ "$budget" -gt "$left" ] && budget=$left
  if [ "$budget" -le 5 ]; then
    printf '%s\tskipped\t0\tno time left in the window\n' "$name" >> "$OUT/steps.tsv"
    return
  fi
  echo "[device] $name (limit ${budget}s): $*" >&2
  local t0=$(date +%s) status
  timeout --kill-after=10 "$budget" "$@" > "$OUT/logs/$name.log" 2>&1
  case $? in
    0) status=ok ;;
    124|137) status="timed out" ;;
    *) status=failed ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" $(($(date +%s) - t0)) "$*" >> "$OUT/steps.tsv"
}

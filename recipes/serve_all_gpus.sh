#!/bin/bash
# One `rmscore serve` replica per visible GPU, each on its own port; prints the URL list once all
# of them answer /health. A replica holds the whole model on its GPU (8B bf16: ~16 GB + batches),
# so N GPUs serve about N times the requests of one. Callers spread the load themselves: the line
# printed on stdout is the comma-separated URL list (ROUTE=/get_reward appends OpenRLHF's route to
# each, ready for --reward.remote_url); for verl, put the URLs behind its router or a load balancer.
#
# Run:    MODEL=Skywork/Skywork-Reward-V2-Llama-3.1-8B PORT=8000 bash recipes/serve_all_gpus.sh [rmscore serve options]
#   e.g.  RMSCORE_API_KEY=secret HOST=0.0.0.0 bash recipes/serve_all_gpus.sh --max-wait-ms 10
# GPUs:   all that nvidia-smi lists, or those in CUDA_VISIBLE_DEVICES (cuda:N counts within them).
# Stop:   Ctrl-C or SIGTERM: every replica drains (finishes what it received) and exits.
#
# A model too big for one GPU: run ONE replica over all of them instead (it fits, it is not faster):
#   rmscore serve -m "$BIG_MODEL" --device-map auto --port 8000
set -euo pipefail
MODEL=${MODEL:-Skywork/Skywork-Reward-V2-Llama-3.1-8B}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
ROUTE=${ROUTE:-}
LOGS=${LOGS:-rmscore-serve-logs}
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  NGPUS=${NGPUS:-$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)}
else
  NGPUS=${NGPUS:-$(nvidia-smi --list-gpus | wc -l)}
fi
mkdir -p "$LOGS"

pids=()
urls=()
for ((i = 0; i < NGPUS; i++)); do
  rmscore serve -m "$MODEL" --device "cuda:$i" --host "$HOST" --port $((PORT + i)) "$@" > "$LOGS/gpu$i.log" 2>&1 &
  pids+=($!)
  urls+=("http://$HOST:$((PORT + i))")
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true; wait' INT TERM

for i in "${!urls[@]}"; do
  until curl -sf "${urls[$i]}/health" > /dev/null; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "replica $i failed to start; see $LOGS/gpu$i.log:" >&2
      tail -n 5 "$LOGS/gpu$i.log" >&2
      kill -TERM "${pids[@]}" 2>/dev/null || true
      exit 1
    fi
    sleep 2
  done
done
echo "$NGPUS replicas of $MODEL ready (logs in $LOGS/):" >&2
printf '%s\n' "${urls[@]}" >&2
routed=("${urls[@]/%/$ROUTE}")
(IFS=,; echo "${routed[*]}")
wait

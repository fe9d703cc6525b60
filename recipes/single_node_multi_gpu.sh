#!/bin/bash
# One node, several GPUs: one model replica per GPU (data parallel). Each torchrun worker scores
# its own shard of the prompts on cuda:LOCAL_RANK and writes its own part files; rank 0 prints
# progress and, at the end, the totals of all workers.
#
# Resources: N GPUs that each hold the reward model (8B bf16: 24 GB+ each; 27B bf16: 80 GB each),
# ~4 CPU cores and ~16 GB of RAM per GPU. Throughput grows about linearly with N (the workers
# never talk to each other until the end).
# Works on a workstation, or inside a one-node allocation (salloc/sbatch --gres=gpu:8 --ntasks=1).
#
# Run:    INPUT=generations.jsonl OUT=scored MODEL=Skywork/Skywork-Reward-V2-Llama-3.1-8B \
#             bash recipes/single_node_multi_gpu.sh
# Rerun the same command after an interruption: every worker skips its finished rows. Keep the
# same number of GPUs (the shard count is part of the settings; rmscore refuses a different one).
#
# Models too big for one GPU (70B in bf16 is ~140 GB of weights): run ONE process and let
# accelerate split the layers over all visible GPUs. This fits the model, it does not add speed
# (the GPUs take turns, so throughput is about one GPU's worth):
#   rmscore score "$INPUT" -m "$BIG_MODEL" -o "$OUT" --device-map auto
# 70B bf16 needs 2 x 80 GB GPUs for the weights alone, so give it 4 (or 2 x H200) for activations;
# a 27B model fits one 80 GB GPU, so prefer data parallel (this script) for it.
# If the GPUs cannot hold the model, accelerate spills layers to CPU memory: it works, very slowly.
set -euo pipefail
INPUT=${INPUT:-generations.jsonl}
OUT=${OUT:-scored}
MODEL=${MODEL:-Skywork/Skywork-Reward-V2-Llama-3.1-8B}
NGPUS=${NGPUS:-$(nvidia-smi --list-gpus | wc -l)}

torchrun --standalone --nproc-per-node "$NGPUS" -m rmscore score "$INPUT" -m "$MODEL" -o "$OUT" --max-length 4096
# The same with accelerate:
#   accelerate launch --multi-gpu --num-processes "$NGPUS" -m rmscore score "$INPUT" -m "$MODEL" -o "$OUT"

rmscore merge "$OUT" -o "${OUT%/}.parquet"

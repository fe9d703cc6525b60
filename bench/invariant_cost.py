"""What --batch-invariant costs: the default padded path and the batch-invariant one, timed in turn
in one process on the same model and rows, so load on a shared machine hits both alike (issue 31).

    python bench/invariant_cost.py --preset cpu --repeat 6
    python bench/invariant_cost.py --preset cpu-long --repeat 2

Prints, for each, the median wall and CPU seconds over the rounds and the padded tokens computed.
One torch thread on CPU, as every CPU figure in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scorers import FUNCTIONS  # noqa: E402
from workload import PRESETS, build_model, build_tokenizer, corpus_words, make_rows  # noqa: E402

SCORERS = ("rmscore-padded", "rmscore-invariant")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--repeat", type=int, default=6, help="rounds; each runs both, in alternating order")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    if preset.device == "cpu":
        torch.set_num_threads(1)
    words = corpus_words()
    tokenizer = build_tokenizer(words)
    rows = make_rows(preset, tokenizer, words)
    model, _ = build_model(preset, len(tokenizer), tokenizer.pad_token_id)
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in SCORERS}
    with torch.inference_mode():
        for name in SCORERS:
            FUNCTIONS[name](model, tokenizer, rows[:8], preset)  # warm-up
        for round_ in range(args.repeat):
            for name in SCORERS if round_ % 2 == 0 else SCORERS[::-1]:
                wall, cpu = time.perf_counter(), time.process_time()
                padded = FUNCTIONS[name](model, tokenizer, rows, preset)[1]
                runs[name].append((time.perf_counter() - wall, time.process_time() - cpu, padded))
    report = {name: {"wall_s": round(statistics.median(r[0] for r in rs), 2),
                     "cpu_s": round(statistics.median(r[1] for r in rs), 2), "padded_tokens": rs[0][2]}
              for name, rs in runs.items()}
    print(json.dumps({"preset": args.preset, "rows": len(rows), "repeat": args.repeat, **report}, indent=1))


if __name__ == "__main__":
    main()

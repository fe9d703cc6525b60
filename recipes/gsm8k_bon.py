"""GSM8K best-of-4 set -> prompt + completions rows that `rmscore score` and `best-of-n` read.

data/gsm8k_model_solutions_bon4.jsonl.gz (openai/grade-school-math, MIT) holds 1,319 test questions
with 4 real model solutions each and an `is_correct` flag per solution. This writes one row per
question: `prompt`, `completions` (the 4 solutions), and lists aligned with them: `is_correct` and
`answer` (the final answer after "A:", normalised so that "90,000" and "90000.0" match; null when a
solution never states one). Then:

  python recipes/gsm8k_bon.py -o gsm8k_bon4.jsonl
  rmscore score gsm8k_bon4.jsonl -m MODEL -o gsm8k-scored --id-col id --keep-columns is_correct,answer
  rmscore best-of-n gsm8k-scored --label-column is_correct --answer-column answer --n 1,2,4 -o gsm8k-bon

A perfect selector reaches 67.2% at N=4 and a random pick 37.9%: `best-of-n` reproduces both.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "data" / "gsm8k_model_solutions_bon4.jsonl.gz"
FINAL = re.compile(r"\nA:\s*(.+?)\s*$")


def final_answer(solution: str) -> str | None:
    """The number after the last "A:", as a canonical string; None if the solution has none."""
    match = FINAL.search(solution)
    if not match:
        return None
    text = match.group(1).replace(",", "").replace("$", "").rstrip(".").strip()
    try:
        value = float(text)
    except ValueError:
        return text or None
    return str(int(value)) if value.is_integer() else repr(value)


def convert_row(row: dict) -> dict:
    candidates = row["candidates"]
    return {
        "id": str(row["id"]),
        "prompt": row["question"],
        "completions": [c["solution"] for c in candidates],
        "is_correct": [bool(c["is_correct"]) for c in candidates],
        "answer": [final_answer(c["solution"]) for c in candidates],
        "source_model": [c["model"] for c in candidates],
    }


def convert(source: Path, dest: Path) -> int:
    count = 0
    opener = gzip.open if dest.name.endswith(".gz") else open
    with gzip.open(source, "rt", encoding="utf-8") as src, opener(dest, "wt", encoding="utf-8") as out:
        for line in src:
            out.write(json.dumps(convert_row(json.loads(line)), ensure_ascii=False) + "\n")
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, help="JSONL (.jsonl or .jsonl.gz) to write")
    parser.add_argument("--source", default=str(SOURCE), help="the GSM8K best-of-4 file")
    args = parser.parse_args()
    print(f"wrote {convert(Path(args.source), Path(args.output)):,} questions to {args.output}")


if __name__ == "__main__":
    main()

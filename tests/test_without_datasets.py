"""rmscore imports and scores JSONL and Parquet without `datasets` installed (the GPU image has
none): the package is imported only for Hub names and save_to_disk folders, which say so."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent

# Python as if `datasets` were not installed: the path finder never finds it.
SCRIPT = """
import importlib.machinery, sys

class NoDatasets(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "datasets" or name.startswith("datasets."):
            return None
        return super().find_spec(name, path, target)

sys.meta_path = [NoDatasets if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
from rmscore.cli import app

for args in sys.argv[1:]:
    print("exit", app(args.split("|"), standalone_mode=False) or 0, flush=True)  # errors print on stderr
print("datasets imported:", "datasets" in sys.modules)
"""


def test_scores_jsonl_and_parquet_without_datasets(tiny_models, tmp_path):
    rows = [{"prompt": "What is 2 + 3?", "completion": answer} for answer in ("5", "It is five.", "6")]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    model = str(tiny_models["llama"])
    runs = [f"score|{tmp_path / 'in.jsonl'}|-m|{model}|-o|{tmp_path / 'a'}|--no-progress",
            f"score|{tmp_path / 'in.parquet'}|-m|{model}|-o|{tmp_path / 'b'}|--no-progress",
            f"score|some-org/some-dataset|-m|{model}|-o|{tmp_path / 'c'}|--no-progress"]
    result = subprocess.run([sys.executable, "-c", SCRIPT, *runs], capture_output=True, text=True, cwd=REPO,
                            timeout=240, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    lines = [line for line in result.stdout.splitlines() if line.startswith(("exit", "datasets"))]
    assert lines == ["exit 0", "exit 0", "exit 2", "datasets imported: False"], result.stdout + result.stderr
    assert len(pq.read_table(next((tmp_path / "a").rglob("*.parquet")))) == 3
    assert len(pq.read_table(next((tmp_path / "b").rglob("*.parquet")))) == 3
    # A Hub name needs `datasets`: a one-line error that says how to get it, before any model loads.
    assert "Error: reading Hub datasets and save_to_disk folders needs the `datasets` package" in result.stderr
    assert "Fix: pip install datasets" in result.stderr

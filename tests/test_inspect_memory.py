"""`rmscore inspect`, build-pairs and build-sft on a generated 1M-row scored folder: peak memory stays
bounded (slow).

Run: .venv/bin/python -m pytest -q -m slow tests/test_inspect_memory.py -s
It prints the command's peak RSS; the folder is ~20 part files of 50,000 rows, as `rmscore score`
writes them (completions of 20 to 2,000 characters, 8 per prompt, ArmoRM-shaped objective columns).
"""

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scored import REPO, peak_rss_mib

sys.path.insert(0, str(REPO / "bench"))
from footprint_data import write_scored  # noqa: E402

ROWS = 1_000_000


def make_scored(folder: Path, rows: int = ROWS) -> None:
    write_scored(folder, rows)  # the folder bench/footprint.py measures (seed 0)


@pytest.mark.slow
def test_a_million_rows_in_bounded_memory(tmp_path):
    make_scored(tmp_path / "scored")
    command = [sys.executable, "-m", "rmscore", "inspect", str(tmp_path / "scored"), "-o", str(tmp_path / "out")]
    peak_mib = peak_rss_mib(command, tmp_path)
    report = json.loads((tmp_path / "out" / "inspect.json").read_text())
    print(f"\npeak RSS of `rmscore inspect` on {ROWS:,} rows: {peak_mib:,.0f} MiB")
    assert report["rows"] == ROWS and report["sample"]["is_sample"]
    assert report["length_bias"]["characters"]["within_prompts"]["mean"] > 0.3  # score = log(length) + noise
    assert peak_mib < 1024


@pytest.mark.slow
def test_build_pairs_memory_does_not_grow_with_the_bucket_count(tmp_path):
    # More buckets for the same rows is what a bigger input does (one bucket per ~64 MiB of columns).
    # Every bucket's pairs used to be in memory at once in the final merge, and each spill writer
    # kept up to 1Mi rows buffered, so the peak grew with the bucket count (and with the input).
    make_scored(tmp_path / "scored")
    peaks = {}
    for buckets in (14, 56):
        out = tmp_path / f"pairs-{buckets}.parquet"
        command = [sys.executable, "-m", "rmscore", "build-pairs", str(tmp_path / "scored"), "-o", str(out),
                   "--buckets", str(buckets)]
        peaks[buckets] = peak_rss_mib(command, tmp_path)
    print(f"\npeak RSS of `rmscore build-pairs` on {ROWS:,} rows by bucket count: {peaks}")
    assert pq.read_table(tmp_path / "pairs-14.parquet").equals(pq.read_table(tmp_path / "pairs-56.parquet"))
    assert peaks[56] < peaks[14] + 150


@pytest.mark.slow
def test_build_sft_memory_does_not_grow_with_the_bucket_count(tmp_path):
    # --select overall also streams the score column a few times to find its cut (pairs/cutoff.py).
    make_scored(tmp_path / "scored")
    peaks = {}
    for buckets in (14, 56):
        out = tmp_path / f"sft-{buckets}.parquet"
        command = [sys.executable, "-m", "rmscore", "build-sft", str(tmp_path / "scored"), "-o", str(out),
                   "--select", "overall", "--top-fraction", "0.1", "--baseline-out", str(out) + ".random.parquet",
                   "--buckets", str(buckets)]
        peaks[buckets] = peak_rss_mib(command, tmp_path)
    print(f"\npeak RSS of `rmscore build-sft --select overall` on {ROWS:,} rows by bucket count: {peaks}")
    assert pq.read_table(tmp_path / "sft-14.parquet").equals(pq.read_table(tmp_path / "sft-56.parquet"))
    assert 0.09 * ROWS < pq.read_metadata(tmp_path / "sft-14.parquet").num_rows <= 0.1 * ROWS  # 1% too_long
    assert peaks[56] < peaks[14] + 150


def peak_of(command: list[str], rows: int, tmp_path: Path) -> float:
    """Peak RSS (MiB) of `rmscore COMMAND FOLDER ...` on a generated folder of `rows` rows."""
    folder = tmp_path / f"scored-{rows}"
    if not folder.exists():
        make_scored(folder, rows)
    argv = [sys.executable, "-m", "rmscore", command[0], str(folder), *[a.format(out=tmp_path / f"out-{rows}")
                                                                      for a in command[1:]]]
    return peak_rss_mib(argv, tmp_path)


def flat(small: float, large: float) -> bool:
    """The peak at 10x the rows is within 5% or 30 MiB (whichever is larger) of the peak at 1x."""
    return large <= small + max(30.0, 0.05 * small)


@pytest.mark.slow
def test_inspect_peak_does_not_grow_with_the_rows(tmp_path):
    # Every row keeps a few numbers (~21 bytes: score, usable, length, tokens, prompt code: ~18 MiB
    # more at 1M). The statistics over all rows used to hold ~10 arrays of 8 bytes a row at once, and
    # the read pass's and the page's freed batches stayed in the process: 100k/1M rows peaked at
    # 342/482 MiB (bfd4c43); now ~275/~300.
    command = ["inspect", "-o", "{out}"]
    peaks = {rows: peak_of(command, rows, tmp_path) for rows in (100_000, ROWS)}
    print(f"\npeak RSS of `rmscore inspect` by rows: {peaks}")
    assert flat(peaks[100_000], peaks[ROWS]), peaks

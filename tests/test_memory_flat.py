"""Peak memory does not grow with the number of rows (issue 28): `rmscore build-pairs` and
`rmscore merge` on 1M generated scored rows peak within max(30 MiB, 5%) of their peak on 100k rows
(slow: about two minutes).

Run: .venv/bin/python -m pytest -q -m slow tests/test_memory_flat.py -s
On the code before issue 28 this test fails: build-pairs peaked at 561 MiB on 100k rows and 819 on
1M (a dataset scanner that read ahead of its consumer without bound, write_dataset's queues, Python
dicts in the final merge), merge at 542 and 808 (big batches; Arrow's allocator kept what they
churned). Now 233 / 231 and 238 / 246 (2026-12-04). `rmscore score`'s figure is bench/footprint.py's
score-tiny-100k / score-tiny-1m (1M rows take ~25 minutes here): docs/benchmarks.md.
"""

import sys

import pytest

from scored import REPO, peak_rss_mib

sys.path.insert(0, str(REPO / "bench"))
from footprint_data import write_merge_input  # noqa: E402

SIZES = (100_000, 1_000_000)


def allowed(small_mib: float) -> float:
    return small_mib + max(30.0, 0.05 * small_mib)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A finished scored folder of each size, as bench/footprint.py's merge-100k and merge-1m."""
    root = tmp_path_factory.mktemp("flat")
    return {rows: write_merge_input(root / f"scored-{rows}", rows) for rows in SIZES}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["build-pairs", "merge"])
def test_peak_memory_is_flat_in_the_rows(folders, tmp_path, command):
    peaks = {}
    for rows, folder in folders.items():
        out = tmp_path / f"{command}-{rows}.parquet"
        argv = [sys.executable, "-m", "rmscore", command, str(folder), "-o", str(out), "--overwrite"]
        peaks[rows] = peak_rss_mib(argv, tmp_path)
        assert out.stat().st_size > 0
    print(f"\npeak RSS of `rmscore {command}`: " + ", ".join(f"{r:,} rows {p:,.0f} MiB" for r, p in peaks.items()))
    assert peaks[SIZES[1]] <= allowed(peaks[SIZES[0]]), peaks

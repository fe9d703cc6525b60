"""bench/readme.py renders the figure blocks of the pages (docs/benchmarks.md) from JSON results, and --check
catches drift; bench/footprint.py measures a command's peak memory. Hand-written JSON, temp pages: fast."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import footprint  # noqa: E402
import readme  # noqa: E402

META = {"date": "2026-11-29", "time_utc": "2026-11-29T17:00:00Z", "command": "python bench/run.py --preset cpu-long "
        "--repeat 3 --out bench/results", "commit": "abc1234", "torch": "2.13.0+cpu", "transformers": "5.24.0",
        "cpu_model": "Test CPU 9000", "cpu_count": 2, "load_average": [2.5, 3.25], "preset": "cpu-long", "repeat": 3,
        "device": "x86_64", "torch_threads": 1, "rows": 320, "tokens": 196700, "total_s": 780}


def bench_row(scorer, seconds, tok_s, pad, pct, diff, budget="-"):
    return {"scorer": scorer, "budget": budget, "seconds": seconds, "spread_s": 0.5, "cpu_s": seconds,
            "useful_tok_s": tok_s, "rows_s": 1.0, "padding_eff": pad, "tokens_computed_pct": pct, "peak_gib": 0.5,
            "max_abs_diff": diff}


BENCH = {"header": "preset cpu-long, 320 rows, 196,700 tokens, device x86_64", "meta": META, "rows": [
    bench_row("per-example", 20.0, 10806, 1.0, 100.0, 0.0),
    bench_row("fixed-16", 70.0, 2911, 0.453, 100.0, 4.47e-07),
    bench_row("rmscore-auto", 10.0, 14211, 0.999, 68.0, 3.87e-07, budget=512),
]}

FIGURE = {"name": "score-20k", "what": "rmscore score, 20k rows", "command": "rmscore score $TMP/jsonl-20k.jsonl "
          "-o $TMP/out-score-20k --overwrite", "input": "20,000 generated rows", "repeat": 3,
          "rss_mib": {"values": [707, 700, 712], "median": 707, "min": 700, "max": 712},
          "wall_s": {"values": [95.1, 90.0, 99.0], "median": 95.1, "min": 90.0, "max": 99.0},
          "load_average": [2.0, 2.1, 2.2], "date": "2026-11-29T18:00:00Z",
          "meta": META | {"command": "python bench/footprint.py --repeat 3"}}

PROSE = "# Title\n\nProse that stays.\n\n"
OTHER = "<!-- figures:other -->\nhand-written, not ours\n<!-- /figures:other -->\n"


def setup(tmp_path, blocks=("cpu-long", "footprint"), body="old table\n"):
    results = tmp_path / "results"
    results.mkdir()
    (results / "bench-cpu-long.json").write_text(json.dumps(BENCH))
    (results / "footprint.json").write_text(json.dumps({"figures": [FIGURE]}))
    path = tmp_path / "README.md"
    path.write_text(PROSE + "".join(f"<!-- figures:{b} -->\n{body}<!-- /figures:{b} -->\n\nmore prose\n"
                                    for b in blocks) + OTHER)
    return path, ["--page", str(path), "--results", str(results)]


def block(text, name):
    return text.split(f"<!-- figures:{name} -->\n")[1].split(f"<!-- /figures:{name} -->")[0]


def test_benchmark_table_rendered_as_the_readme_shows_it(tmp_path):
    path, args = setup(tmp_path)
    assert readme.main(args) == 0
    table = block(path.read_text(), "cpu-long").splitlines()
    assert table[0].startswith("Measured 2026-11-29 at commit abc1234 with "
                               "`python bench/run.py --preset cpu-long --repeat 3 --out bench/results`")
    assert "2 cores of Test CPU 9000 (load average 2.5 at the start, 3.25 at the end)" in table[0]
    assert "torch 2.13.0+cpu, transformers 5.24.0" in table[0]
    assert table[1] == ("320 rows, 196,700 tokens; 1 torch thread per process; seconds: median of 3 rounds over all "
                        "scorers (each scorer's max - min: 0.50-0.50 s).")
    assert table[3] == ("| scorer | seconds | useful tok/s | padding efficiency | tokens computed "
                        "| max diff vs per-example |")
    assert table[5:8] == [
        "| per-example (SimPO, RLHFlow scripts) | 20.00 | 10,806 | 1.00 | 100% | 0 |",
        "| fixed batches of 16 (OpenRLHF, RewardBench) | 70.00 | 2,911 | 0.45 | 100% | 4.5e-07 |",
        "| **rmscore, defaults** (`auto`, budget 512) | **10.00** | **14,211** | 1.00 | 68.0% | 3.9e-07 |",
    ]
    assert table[-1] == ("rmscore at its defaults, in wall time: 2.00x the per-example loop, "
                         "7.00x fixed batches of 16.")


def test_footprint_table_gives_command_median_range_and_input(tmp_path):
    path, args = setup(tmp_path)
    readme.main(args)
    lines = block(path.read_text(), "footprint").splitlines()
    assert lines[0].startswith("Measured 2026-11-29 at commit abc1234 with `python bench/footprint.py --repeat 3` "
                               "on 2 cores of Test CPU 9000")
    assert ("| score-20k | rmscore score, 20k rows | `rmscore score $TMP/jsonl-20k.jsonl -o $TMP/out-score-20k "
            "--overwrite` | 3 | 707 (700-712) | 95.1 (90.0-99.0) |") in lines
    assert "- `$TMP/jsonl-20k.jsonl`: 20,000 generated rows" in lines


def test_check_says_which_block_is_stale_and_leaves_the_rest(tmp_path, capsys):
    path, args = setup(tmp_path)
    assert readme.main(args + ["--check"]) == 1  # the placeholders are stale
    assert readme.main(args) == 0
    fresh = path.read_text()
    assert fresh.startswith(PROSE) and fresh.count("more prose") == 2 and fresh.endswith(OTHER)
    assert readme.main(args + ["--check"]) == 0 and readme.main(args) == 0 and path.read_text() == fresh
    path.write_text(fresh.replace("| **10.00** |", "| **9.00** |"))
    capsys.readouterr()
    assert readme.main(args + ["--check"]) == 1
    err = capsys.readouterr().err
    assert "stale: figures:cpu-long" in err and "figures:footprint" not in err.replace("figures:other", "")
    assert "figures:other: no such table" in err
    assert "| **9.00** |" in path.read_text()  # --check changes nothing


def test_block_without_its_json_is_left_alone(tmp_path, capsys):
    path, args = setup(tmp_path, blocks=("cpu",))
    before = path.read_text()
    assert readme.main(args) == 0 and readme.main(args + ["--check"]) == 0
    assert path.read_text() == before
    assert "bench-cpu.json not found" in capsys.readouterr().err


def test_marker_without_its_pair_is_an_error(tmp_path, capsys):
    path, args = setup(tmp_path)
    path.write_text(path.read_text() + "<!-- figures:cpu -->\nno end\n")
    assert readme.main(args + ["--check"]) == 2
    assert "figures:cpu: opening marker without its pair" in capsys.readouterr().err


def test_blocks_are_rendered_in_every_page_given_and_pages_without_blocks_are_left_alone(tmp_path, capsys):
    path, args = setup(tmp_path, blocks=("cpu-long",))
    other, plain = tmp_path / "other.md", tmp_path / "plain.md"
    other.write_text("# Other\n\n<!-- figures:footprint -->\nold\n<!-- /figures:footprint -->\n")
    plain.write_text("# No figures\n")
    args += ["--page", str(other), "--page", str(plain)]
    assert readme.main(args + ["--check"]) == 1
    err = capsys.readouterr().err
    assert f"figures:cpu-long in {path}" in err and f"figures:footprint in {other}" in err
    assert readme.main(args) == 0 and readme.main(args + ["--check"]) == 0
    assert "| score-20k |" in block(other.read_text(), "footprint") and plain.read_text() == "# No figures\n"


def test_footprint_reads_the_peak_memory_of_the_measured_process(tmp_path):
    big = [sys.executable, "-c", "x = b'1' * (300 << 20); print(len(x))"]
    small = [sys.executable, "-c", "print(1)"]
    peak_big, wall = footprint.measure(big, tmp_path / "a.log")
    peak_small, _ = footprint.measure(small, tmp_path / "b.log")
    assert peak_big > 300 > peak_small and wall > 0
    with pytest.raises(RuntimeError, match="exited with 3"):
        footprint.measure([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "c.log")


def test_footprint_json_keeps_the_figures_not_rerun(tmp_path):
    path = tmp_path / "footprint.json"
    other = FIGURE | {"name": "demo-score"}
    path.write_text(json.dumps({"figures": [FIGURE, other]}))
    new = FIGURE | {"rss_mib": {"values": [1], "median": 1, "min": 1, "max": 1}}
    merged = footprint.merge(path, {"date": "2026-12-01"}, [dict(new)])["figures"]
    assert [f["name"] for f in merged] == ["score-20k", "demo-score"]
    assert merged[0]["rss_mib"]["median"] == 1 and merged[0]["meta"] == {"date": "2026-12-01"}
    assert merged[1] == other


def test_repository_pages_match_the_committed_results():
    page = (REPO / "docs" / "benchmarks.md").read_text()
    assert all(f"<!-- figures:{name} -->" in page for name in readme.RENDERERS), "the figure tables live here"
    assert readme.main(["--check"]) == 0, "run python bench/readme.py"

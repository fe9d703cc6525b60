"""`rmscore inspect` on scores and pairs that are not all finite numbers: statistics over the finite
values, the rest counted (in the text and inspect.json), strict JSON, numbers printed readably, one
denominator for the length ratio, and no blank figures. Each fails on main."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import scored_data as sd
from rmscore.cli import app
from test_cli import one_line_error
from test_inspect import inspect, pairs_file

INF = math.inf


def strict_json(path):
    """inspect.json as a strict parser reads it: NaN, Infinity and -Infinity are refused."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_ok_rows_without_a_finite_score_are_counted(tmp_path):
    """Main: `400 rows, 396 scored (99.0%)` above `status: ok 400 (100.0%)`, and not a word why."""
    scores = [float(i) for i in range(10)] + [math.nan, INF, -INF, None]
    sd.write(tmp_path / "s" / "part-0.parquet", sd.rows("p", scores))
    report, lines = inspect(tmp_path / "s", output=str(tmp_path / "out"))
    assert report["rows"] == 14 and report["scored_rows"] == 10 and report["status"]["ok"]["rows"] == 14
    assert report["non_finite"] == {"NaN": 1, "+inf": 1, "-inf": 1, "null": 1}
    text = "\n".join(lines)
    assert "not finite: 4 rows with status ok/truncated have no finite score (null 1, NaN 1, +inf 1, -inf 1)" in text
    # Our own computation: pandas over the finite scores.
    finite = pd.Series([s for s in scores if s is not None and math.isfinite(s)])
    assert report["score"]["mean"] == pytest.approx(finite.mean())
    assert report["score"]["std"] == pytest.approx(finite.std(ddof=0))
    assert strict_json(tmp_path / "out" / "inspect.json")["non_finite"] == report["non_finite"]


def test_pairs_with_nan_inf_and_huge_scores(tmp_path):
    """Main: every margin statistic printed `nan`, inspect.json held bare NaN tokens, and scores of
    +-1e300 gave `Infinity` and 300-digit numbers."""
    pairs = [("a" * 20, "b" * 10, 2.0, 1.0), ("a" * 10, "b" * 10, 1.5, 1.0), ("a" * 10, "b" * 20, math.nan, 1.0),
             ("a" * 30, "b" * 10, INF, 0.0), ("a" * 30, "b" * 10, 1e300, -1e300)]
    report, lines = inspect(pairs_file(tmp_path / "pairs.parquet", pairs), output=str(tmp_path / "out"))
    on_disk = strict_json(tmp_path / "out" / "inspect.json")  # parses: no NaN or Infinity tokens
    margins = pd.Series([c - r for _, _, c, r in pairs])
    finite = margins[np.isfinite(margins)]  # 1, 0.5 and 2e300 (finite, though its std overflows naively)
    margin = on_disk["margin"]
    assert margin["count"] == 3 and margin["non_finite"] == 2
    assert margin["mean"] == pytest.approx(finite.mean()) and margin["max"] == 2e300
    assert margin["std"] == pytest.approx((finite / 2e300).std(ddof=0) * 2e300)  # pandas' own std is inf here
    assert sum(on_disk["margin"]["histogram"]["counts"]) == 3
    text = "\n".join(lines[1:])  # lines[0] names the file
    assert "nan" not in text.lower() and "inf" not in text
    assert "2e+300" in text and "(2 not finite, left out)" in text
    assert max(len(word) for word in text.split()) < 40  # no 300-digit number


def test_length_ratio_has_one_denominator(tmp_path):
    """Main: median and p95 left out pairs with an empty answer, while "over 1.5x" counted them."""
    pairs = [("a" * 20, "b" * 10, 2.0, 1.0), ("a" * 10, "b" * 10, 2.0, 1.0), ("a" * 30, "", 2.0, 1.0),
             ("a" * 30, "", 2.0, 1.0), ("", "b" * 10, 2.0, 1.0)]
    report, lines = inspect(pairs_file(tmp_path / "pairs.parquet", pairs), output=str(tmp_path / "out"))
    ratio = report["length"]["ratio"]
    frame = pd.DataFrame(pairs, columns=["chosen", "rejected", "sc", "sr"])
    both = frame[(frame.chosen.str.len() > 0) & (frame.rejected.str.len() > 0)]
    ratios = both.chosen.str.len() / both.rejected.str.len()  # 2 and 1
    assert ratio["count"] == len(both) == 2 and ratio["p50"] == ratios.median()
    assert ratio["over_1.5"] == (ratios > 1.5).mean() == 0.5  # main: 3 of 5 (the two empty rejected counted)
    assert ratio["left_out"] == {"empty_chosen": 1, "empty_rejected": 2, "both_empty": 0}
    assert "(chars, 2 pairs; 3 with an empty answer left out): median 1.500" in "\n".join(lines)
    assert "over 1.5x 50.0%" in "\n".join(lines)


def test_a_parquet_file_that_is_not_rmscore_output_names_inspect(tmp_path):
    """Main said `Fix: build-pairs reads the Parquet files written by rmscore score` to inspect."""
    path = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)
    result = CliRunner().invoke(app, ["inspect", str(path), "-o", str(tmp_path / "out")], env={"RMSCORE_DEBUG": ""})
    one_line_error(result, "is not rmscore score output", "inspect reads")
    assert "build-pairs reads" not in result.output

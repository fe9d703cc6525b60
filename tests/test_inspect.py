"""`rmscore inspect` on hand-built scored tables and pairs files, against numbers worked out by hand."""

import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import scored_data as sd
from rmscore.cli import app
from rmscore.config import InspectConfig
from rmscore.inspect import run_inspect
from rmscore.inspect.read_pairs import answer_chars
from rmscore.store.output import BASE_SCHEMA, MESSAGE
from rmscore.pairs.formats import SCHEMAS
from test_cli import one_line_error

runner = CliRunner()
LONG_DETAIL = "longer than the max length ({} > 4096 tokens)"


def write(path: Path, rows: list[dict], meta: dict | None = None, extra=()) -> Path:
    meta = {"model": "tiny-rm", "model_type": "seq-cls"} | (meta or {})
    schema = pa.schema(list(BASE_SCHEMA) + list(extra), metadata={"rmscore": json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def length_table() -> list[dict]:
    """Three prompts, completions of 10, 20 and 30 characters, score = length / 10 + 5 * prompt:
    a pure function of length within each prompt. Plus two rows that were not scored."""
    out = []
    for g in range(3):
        texts = ["a" * 10, "b" * 20, "c" * 30]
        out += sd.rows(f"p{g}", [len(t) / 10 + 5 * g for t in texts], texts=texts, input_index=g,
                       num_tokens=[len(t) + 100 + g for t in texts])
    out += sd.rows("p9", [None, None], texts=["x", "y"], statuses=["too_long", "too_long"], input_index=9,
                   status_detail=[LONG_DETAIL.format(5000), LONG_DETAIL.format(6123)])
    out += sd.rows("p8", [None], texts=[None], statuses=["invalid_row"], input_index=8,
                   status_detail=["null completion"])
    return out


def inspect(*inputs, **kw) -> tuple[dict, list[str]]:
    result = run_inspect(InspectConfig([str(p) for p in inputs], **kw))
    on_disk = json.loads(result.files["report"].read_text())
    assert on_disk["score" if on_disk["kind"] == "scored" else "margin"] == result.report[
        "score" if on_disk["kind"] == "scored" else "margin"]
    return on_disk, result.lines


def test_scores_a_pure_function_of_length(tmp_path):
    folder = tmp_path / "scored"
    rows = length_table()
    write(folder / "part-00000-of-00002-00000.parquet", rows[:5])
    write(folder / "part-00001-of-00002-00000.parquet", rows[5:])  # a prompt split across shards
    report, lines = inspect(folder, output=str(tmp_path / "out"))
    assert (report["rows"], report["scored_rows"]) == (12, 9)
    assert report["status"] == {
        "ok": {"rows": 9, "reasons": {}},
        "too_long": {"rows": 2, "reasons": {"longer than the max length (N > N tokens)": 2}},
        "invalid_row": {"rows": 1, "reasons": {"null completion": 1}}}
    # Scores 1 2 3 6 7 8 11 12 13: mean 7, squared deviations sum to 156.
    score = report["score"]
    assert (score["count"], score["mean"], score["min"], score["p50"], score["max"]) == (9, 7, 1, 7, 13)
    assert score["std"] == pytest.approx(math.sqrt(156 / 9))
    assert sum(score["histogram"]["counts"]) == 9
    assert (report["length"]["characters"]["mean"], report["length"]["tokens"]["mean"]) == (20, 121)
    bias = report["length_bias"]
    assert bias["characters"]["within_prompts"] == {"mean": 1.0, "groups": 3, "skipped": 0, "positive": 1.0}
    assert bias["tokens"]["within_prompts"]["mean"] == pytest.approx(1.0)
    # Over all rows: length ranks 2, 5, 8 per prompt against score ranks 1..9: sum dx dy = 18,
    # sum dx^2 = 54, sum dy^2 = 60, so rho = 18 / sqrt(3240) = 1 / sqrt(10).
    assert bias["characters"]["all_rows"] == pytest.approx(1 / math.sqrt(10))
    assert [e["score"] for e in report["examples"]["highest"]] == [13, 12, 11]
    assert [e["score"] for e in report["examples"]["lowest"]] == [1, 2, 3]
    top = report["examples"]["highest"][0]
    assert (top["completion"], top["chars"], top["prompt"], top["prompt_id"]) == ("c" * 30, 30, "question p2", "p2")
    assert report["sample"]["is_sample"] is False and "objectives" not in report and "steps" not in report
    text = "\n".join(lines)
    assert "within prompts +1.000 (mean over 3 prompts" in text and "all rows +0.316" in text
    assert "too_long: 2 x longer than the max length (N > N tokens)" in text and "A: " + "c" * 30 in text
    assert set(report["figures"]) == {"scores", "length_bias"}
    for name in report["figures"].values():
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scores_independent_of_length(tmp_path):
    rng = random.Random(0)
    rows = []
    for g in range(1000):
        texts = ["w" * rng.randint(5, 500) for _ in range(6)]
        rows += sd.rows(f"p{g}", [rng.gauss(0, 1) for _ in texts], texts=texts, input_index=g)
    write(tmp_path / "s" / "part-0.parquet", rows)
    report, _ = inspect(tmp_path / "s", output=str(tmp_path / "out"))
    bias = report["length_bias"]["characters"]
    # Standard errors: 1 / sqrt(6000) = 0.013 over all rows; a six-row correlation has a standard
    # deviation of 1 / sqrt(5) = 0.45, so the mean of 1,000 of them 0.014. 0.06 is over 4 of them.
    assert abs(bias["all_rows"]) < 0.06 and abs(bias["within_prompts"]["mean"]) < 0.06
    assert bias["within_prompts"]["groups"] == 1000


def test_no_text_hides_every_text(tmp_path):
    write(tmp_path / "s" / "part-0.parquet", length_table())
    report, lines = inspect(tmp_path / "s", output=str(tmp_path / "out"), texts=False)
    raw = (tmp_path / "out" / "inspect.json").read_text()
    assert "aaaaaaaaaa" not in raw and "ccc" not in raw and "question" not in raw
    assert not any("ccc" in line or "question" in line for line in lines)
    assert report["examples"]["highest"][0] == {"score": 13, "chars": 30, "prompt_id": "p2"}
    assert sum("text hidden: --no-text" in line for line in lines) == 6


def test_armorm_objectives_and_a_sample(tmp_path):
    rows, names = [], ["verbosity", "brevity", "flat"]
    for g in range(20):
        texts = ["x" * (10 * (j + 1) + g) for j in range(5)]
        rewards = [[len(t), -len(t), 1.0] for t in texts]  # rho with length: +1, -1, none
        gating = [[0.5, 0.25, 0.25]] * len(texts)
        rows += sd.rows(f"p{g}", [float(j) for j in range(5)], texts=texts, input_index=g, rewards=rewards,
                        gating_output=gating)
    extra = [pa.field("rewards", pa.list_(pa.float64())), pa.field("gating_output", pa.list_(pa.float64()))]
    write(tmp_path / "s" / "part-0.parquet", rows, {"model_type": "armorm", "objectives": names}, extra)
    report, lines = inspect(tmp_path / "s", output=str(tmp_path / "out"), sample_rows=40)
    assert report["sample"] == {"rows": 40, "of": 100, "scored_in_sample": 40, "is_sample": True}
    got = {o["name"]: o for o in report["objectives"]}
    assert list(got) == names
    assert (got["verbosity"]["spearman_length"], got["brevity"]["spearman_length"]) == (1.0, -1.0)
    assert got["flat"]["spearman_length"] is None and got["flat"]["mean"] == 1.0 and got["flat"]["std"] == 0
    assert got["verbosity"]["gating_mean"] == 0.5 and got["verbosity"]["count"] == 40
    assert "objectives (sample of 40 of 100 rows)" in "\n".join(lines)
    # The statistics that do not need the wide columns still use every row.
    assert report["score"]["count"] == 100 and report["length_bias"]["characters"]["within_prompts"]["groups"] == 20
    assert (tmp_path / "out" / report["figures"]["objectives"]).exists()
    # One objective as the score, by its name or as rewards[i]: the length correlation is the objective's.
    for column, rho in (("brevity", -1.0), ("rewards[0]", 1.0)):
        picked, _ = inspect(tmp_path / "s", output=str(tmp_path / column), score_column=column)
        assert picked["score_column"] == column and picked["score"]["count"] == 100
        assert picked["length_bias"]["characters"]["within_prompts"]["mean"] == rho


def test_process_reward_model_steps(tmp_path):
    step_scores = [[0.9, 0.8, 0.2], [0.9, 0.95], [0.5], [0.7, 0.6, 0.4, 0.1]]
    aggregates = {"score_min": [min(s) for s in step_scores], "score_prod": [math.prod(s) for s in step_scores],
                  "score_mean": [sum(s) / len(s) for s in step_scores], "score_last": [s[-1] for s in step_scores]}
    rows = sd.rows("p", aggregates["score_min"], step_scores=step_scores, **aggregates)
    extra = [pa.field("step_scores", pa.list_(pa.float64()))] + [pa.field(k, pa.float64()) for k in aggregates]
    write(tmp_path / "s" / "part-0.parquet", rows, {"model_type": "step-tag", "aggregate": "min"}, extra)
    report, lines = inspect(tmp_path / "s", output=str(tmp_path / "out"))
    steps = report["steps"]
    assert steps["steps_per_completion"]["counts"] == {"1": 1, "2": 1, "3": 1, "4": 1}
    assert steps["steps_per_completion"]["mean"] == 2.5
    assert steps["step_scores"]["count"] == 10 and steps["step_scores"]["mean"] == pytest.approx(6.05 / 10)
    # min and last order the four completions 1 > 3 > 0 > ... : min 0.2 0.9 0.5 0.1, last 0.2 0.95 0.5 0.1.
    assert steps["aggregate_spearman"]["score_min~score_last"] == pytest.approx(1.0)
    assert steps["min_is_last"] == 0.75  # all but [0.9, 0.95]
    assert steps["aggregate"] == "min" and "weakest step is the last one in 75.0%" in "\n".join(lines)
    assert (tmp_path / "out" / report["figures"]["steps"]).exists()
    last, _ = inspect(tmp_path / "s", output=str(tmp_path / "last"), score_column="score_last")
    assert last["score_column"] == "score_last" and last["score"]["mean"] == pytest.approx((0.2 + 0.95 + 0.5 + 0.1) / 4)


def pairs_file(path: Path, pairs: list[tuple[str, str, float, float]], fmt: str = "standard") -> Path:
    """(chosen text, rejected text, score chosen, score rejected) per pair, one prompt each."""
    rows = []
    for i, (chosen, rejected, sc, sr) in enumerate(pairs):
        user = [{"role": "user", "content": f"q{i}"}]
        body = {"standard": (f"q{i}", chosen, rejected),
                "conversational": (user, [{"role": "assistant", "content": chosen}],
                                   [{"role": "assistant", "content": rejected}])}[fmt]
        rows.append(dict(zip(("prompt_id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected",
                              "margin"), (f"p{i}", *body, sc, sr, sc - sr))))
    meta = {"kind": "pairs", "model": "tiny-rm", "build_pairs": {"rule": "max-min"}}
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS[fmt].with_metadata({"rmscore": json.dumps(meta)})),
                   path)
    return path


def test_pairs_with_a_known_chosen_longer_rate(tmp_path):
    # 7 of 10 chosen are longer (ratios 2 x4, 3 x3), one the same length, two shorter (ratio 0.5).
    pairs = [("a" * 20, "b" * 10, 2.0, 1.0)] * 4 + [("a" * 30, "b" * 10, 1.5, 1.0)] * 3 + [
        ("a" * 10, "b" * 10, 3.0, 1.0)] + [("a" * 10, "b" * 20, 1.25, 1.0)] * 2
    for fmt in ("standard", "conversational"):
        report, lines = inspect(pairs_file(tmp_path / f"{fmt}.parquet", pairs, fmt), output=str(tmp_path / fmt))
        length = report["length"]
        assert (report["pairs"], report["prompts"]) == (10, 10)
        assert (length["chosen_longer"], length["same_length"], length["chosen_shorter"]) == (0.7, 0.1, 0.2)
        assert length["ratio"]["p50"] == 2.0 and length["ratio"]["over_1.5"] == 0.7 and length["ratio"]["over_2"] == 0.3
        # Margins 1 x4, 0.5 x3, 2, 0.25 x2: 4 + 1.5 + 2 + 0.5 = 8, mean 0.8.
        assert report["margin"]["mean"] == pytest.approx(0.8) and report["margin"]["max"] == 2.0
        # One pair per prompt: +1 where the chosen (higher score) is longer, -1 where shorter, none when equal.
        within = report["length_bias"]["characters"]["within_prompts"]
        assert within == {"mean": pytest.approx(5 / 9), "groups": 9, "skipped": 1, "positive": pytest.approx(7 / 9)}
        assert "chosen longer than rejected: 70.0% of pairs" in "\n".join(lines)
        assert set(report["figures"]) == {"margins", "length_ratio"}


def test_answer_length_in_every_pairs_format():
    strings = pa.array(["abc", None, "héllo"])
    assert answer_chars(strings).tolist() == [3, -1, 5]
    conversations = pa.array([[{"role": "user", "content": "q"}, {"role": "assistant", "content": "four"}],
                              [], None, [{"role": "assistant", "content": "ab"}]], pa.list_(MESSAGE))
    assert answer_chars(conversations).tolist() == [4, -1, -1, 2]  # simpo: the last message is the answer


def test_build_pairs_length_control_seen_by_inspect(tmp_path):
    """--max-length-ratio on a table with a known chosen-longer rate, before and after."""
    kinds = [  # (texts, scores, prompts): the first text is the rejected one under max-min
        (("a" * 10, "b" * 30), (1.0, 2.0), 20),  # chosen longer, ratio 3: dropped at R = 1.5
        (("a" * 10, "b" * 20), (1.0, 2.0), 10),  # chosen longer, ratio 2: dropped
        (("a" * 30, "b" * 10), (1.0, 2.0), 10),  # chosen shorter: kept
        (("a" * 10, "b" * 12), (1.0, 2.0), 10),  # chosen longer, ratio 1.2: kept
    ]
    rows, g = [], 0
    for texts, scores, prompts in kinds:
        for _ in range(prompts):
            rows += sd.rows(f"p{g}", list(scores), texts=list(texts), input_index=g)
            g += 1
    write(tmp_path / "s" / "part-0.parquet", rows)
    found = {}
    for name, extra in (("plain", []), ("capped", ["--max-length-ratio", "1.5"])):
        out = tmp_path / f"{name}.parquet"
        result = runner.invoke(app, ["build-pairs", str(tmp_path / "s"), "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        found[name] = inspect(out, output=str(tmp_path / f"{name}-inspect"))[0]
    assert (found["plain"]["pairs"], found["plain"]["length"]["chosen_longer"]) == (50, 0.8)  # 40 of 50
    assert (found["capped"]["pairs"], found["capped"]["length"]["chosen_longer"]) == (20, 0.5)  # 10 of 20
    assert found["capped"]["build_pairs"]["max_length_ratio"] == 1.5
    report = json.loads((tmp_path / "capped.report.json").read_text())
    assert report["prompts"]["dropped"]["length_ratio"] == 30 and report["prompts"]["paired"] == 20


def test_without_matplotlib_the_report_still_prints(tmp_path, monkeypatch):
    write(tmp_path / "s" / "part-0.parquet", length_table())
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = runner.invoke(app, ["inspect", str(tmp_path / "s"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "within prompts +1.000" in result.output
    assert "no PNGs: pip install 'rmscore[plot]'" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["inspect.json", "report.html"]
    assert "No figures: matplotlib is not installed" in (tmp_path / "out" / "report.html").read_text()


def test_cli_default_folder_errors_and_help(tmp_path):
    write(tmp_path / "scored" / "part-0.parquet", length_table())
    result = runner.invoke(app, ["inspect", str(tmp_path / "scored")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "scored-inspect" / "inspect.json").exists() and "scored-inspect" in result.output

    def err(*args, needles):
        one_line_error(runner.invoke(app, ["inspect", *map(str, args)], env={"RMSCORE_DEBUG": ""}), *needles)

    err(tmp_path / "nope", needles=["not found"])
    assert not (tmp_path / "nope-inspect").exists()
    err(tmp_path / "scored", "--score-column", "reward", needles=["'reward' does not exist"])
    pairs = pairs_file(tmp_path / "p.parquet", [("aa", "b", 1.0, 0.0)])
    err(pairs, "--score-column", "score_min", needles=["--score-column applies to scored output"])
    err(pairs, tmp_path / "scored", needles=["inspected alone"])
    help_text = runner.invoke(app, ["inspect", "--help"]).output
    assert "rmscore inspect demo-out/scored" in help_text and "--no-text" in help_text
    commands = runner.invoke(app, ["--help"]).output
    assert commands.index("build-pairs") < commands.index("inspect") < commands.index("eval")


def test_real_outputs_of_armorm_and_a_process_reward_model(tmp_path, write_jsonl):
    """The column names inspect reads are the ones `rmscore score` writes (tiny real architectures)."""
    from tiny_orm import mixed_rows, save_armorm, score_rows
    from tiny_prm import save_step_tag, score_cli, step_rows, write_rows

    _, rows = score_rows(write_jsonl(mixed_rows(seed=1)[:2]), save_armorm(tmp_path / "armorm"), tmp_path / "a", 800)
    report, lines = inspect(tmp_path / "a", output=str(tmp_path / "a-inspect"))
    assert [o["name"] for o in report["objectives"]][:2] == ["helpsteer-helpfulness", "helpsteer-correctness"]
    assert len(report["objectives"]) == 19 and all(o["count"] == len(rows) for o in report["objectives"])
    first = report["objectives"][0]
    assert first["mean"] == pytest.approx(np.mean([r["rewards"][0] for r in rows]))
    assert first["gating_mean"] == pytest.approx(np.mean([r["gating_output"][0] for r in rows]))
    rows = score_cli(write_rows(tmp_path / "steps.jsonl", step_rows(4)), save_step_tag(tmp_path / "prm"),
                     tmp_path / "p", "--model-type", "step-tag")
    report, lines = inspect(tmp_path / "p", output=str(tmp_path / "p-inspect"))
    steps = report["steps"]
    assert steps["steps_per_completion"]["mean"] == pytest.approx(np.mean([len(r["step_scores"]) for r in rows]))
    assert steps["step_scores"]["count"] == sum(len(r["step_scores"]) for r in rows)
    assert set(steps["aggregates"]) == {"score_min", "score_prod", "score_mean", "score_last"}
    assert steps["aggregate"] == "min" and (tmp_path / "p-inspect" / "steps.png").exists()


def test_nothing_scored_and_no_pairs_still_report(tmp_path):
    rows = sd.rows("a", [None, None], statuses=["too_long", "invalid_row"],
                   status_detail=[LONG_DETAIL.format(5000), "null completion"])
    write(tmp_path / "s" / "part-0.parquet", rows)
    report, lines = inspect(tmp_path / "s", output=str(tmp_path / "out"))
    assert report["scored_rows"] == 0 and report["score"]["count"] == 0 and report["examples"]["highest"] == []
    assert report["length_bias"]["characters"]["all_rows"] is None and "score: no values" in "\n".join(lines)
    # No blank PNGs with 0-1 axes (main drew them): a note instead, in inspect.json and on screen.
    assert report["figures"] == {} and not list((tmp_path / "out").glob("*.png"))
    assert report["figures_note"] in "\n".join(lines)
    out = tmp_path / "pairs.parquet"
    result = runner.invoke(app, ["build-pairs", str(tmp_path / "s"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    report, lines = inspect(out, output=str(tmp_path / "pairs-out"))
    assert report["pairs"] == 0 and report["margin"]["count"] == 0
    assert "0 pairs from 0 prompts" in lines[0] and report["figures"] == {}
    assert not list((tmp_path / "pairs-out").glob("*.png"))
    assert "no figures: no pair has a finite margin" in "\n".join(lines)

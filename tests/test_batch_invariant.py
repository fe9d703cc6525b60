"""--batch-invariant (issue 31): a row's numbers are the very same floats, compared with ==, however
it is batched: one row at a time through rmscore.Scorer, token budgets 256 and 4096, the input
shuffled, two shards merged, a run stopped half-way and resumed, and `rmscore serve` answering 16
clients at once. For a Llama, a Qwen2, an ArmoRM and a process reward model. Each also stays within
1e-5 of the default mode's batch-size-1 numbers.

Without the flag these comparisons fail: the same rows differ in their last bits between batchings.
"""

import json
import os
import random
import signal
import threading
from dataclasses import replace

import pyarrow.dataset as ds
import pytest

import rmscore
import rmscore.score.scorer
from rmscore.config import BatchConfig, InputConfig, ModelConfig, OutputConfig, ScoreConfig, ShardConfig
from rmscore.doctor.checks import numbers
from rmscore.errors import ConfigError, Interrupted, ResumeConflict
from rmscore.score.batching import INVARIANT_SCHEME, canonical_length, plan_buckets
from rmscore.score.run import run_score
from serving import running
from tiny import completions_rows
from tiny_orm import save_armorm
from tiny_prm import save_qwen_prm, step_rows

FAMILIES = ("llama", "qwen2", "armorm", "qwen-prm")


def rows_for(family: str) -> list[dict]:
    rows = step_rows(14, seed=5) if family == "qwen-prm" else completions_rows(10, 4, seed=11)
    return [{**row, "orig": i} for i, row in enumerate(rows)]


@pytest.fixture(scope="module", params=FAMILIES)
def case(request, tiny_models, tmp_path_factory):
    """The family's model, input and reference: every row scored alone through rmscore.Scorer."""
    family = request.param
    root = tmp_path_factory.mktemp(f"invariant-{family}")
    if family == "armorm":
        model = save_armorm(root / "armorm")
    elif family == "qwen-prm":
        model = save_qwen_prm(root / "qwen-prm")
    else:
        model = tiny_models[family]
    rows = rows_for(family)
    path = root / "input.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    alone = rmscore.Scorer(model, batch_invariant=True, max_batch_size=1)
    reference = {}
    for i, row in enumerate(rows):
        for result in alone.score([row]):
            reference[key(result, i)] = numbers(result)
    default_bs1 = rmscore.Scorer(model, max_batch_size=1).score(rows)
    return {"family": family, "model": model, "rows": rows, "input": path, "root": root,
            "reference": reference, "default": {key(r, r["input_index"]): numbers(r) for r in default_bs1}}


def key(row: dict, orig: int) -> tuple:
    return orig, row["completion_index"], row["side"]


def config(case, out, budget=None, shard=None, **batch) -> ScoreConfig:
    return ScoreConfig(input=InputConfig(str(case["input"]), keep_columns=["orig"]),
                       output=OutputConfig(str(out), rows_per_part=16), model=ModelConfig(str(case["model"])),
                       batch=BatchConfig(max_tokens_per_batch=budget, batch_invariant=True, **batch),
                       shard=shard or ShardConfig(), progress=False)


def scored(out) -> dict:
    return {key(r, r["orig"]): numbers(r) for r in ds.dataset(str(out)).to_table().to_pylist()}


def assert_identical(got: dict, case) -> None:
    """Every row present, every number the very same float as scored alone."""
    assert got.keys() == case["reference"].keys()
    differ = [k for k in got if got[k] != case["reference"][k]]
    assert not differ, f"{len(differ)} of {len(got)} rows differ from scoring them alone, e.g. {differ[0]}"


def test_close_to_the_default_batch_size_1_numbers(case):
    for k, want in case["default"].items():
        got = case["reference"][k]
        assert got.keys() == want.keys()
        for column in want:
            assert max(abs(a - b) for a, b in zip(got[column], want[column], strict=True)) < 1e-5, (k, column)


@pytest.mark.parametrize("budget", [256, 4096])
def test_any_token_budget(case, tmp_path, budget):
    run_score(config(case, tmp_path / "out", budget), log=lambda *_: None)
    assert_identical(scored(tmp_path / "out"), case)


def test_all_rows_in_one_call_of_the_python_api(case):
    results = rmscore.Scorer(case["model"], batch_invariant=True, max_tokens_per_batch=4096).score(case["rows"])
    assert_identical({key(r, r["input_index"]): numbers(r) for r in results}, case)


def test_shuffled_input(case, tmp_path):
    rows = list(case["rows"])
    random.Random(3).shuffle(rows)
    path = tmp_path / "shuffled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config(case, tmp_path / "out", 1024)
    run_score(replace(cfg, input=replace(cfg.input, path=str(path))), log=lambda *_: None)
    assert_identical(scored(tmp_path / "out"), case)


def test_two_shards_merged(case, tmp_path):
    out = tmp_path / "out"
    for index in (0, 1):
        run_score(config(case, out, 512, ShardConfig(index, 2)), log=lambda *_: None)
    assert_identical(scored(out), case)


def test_stopped_half_way_and_resumed(case, tmp_path, monkeypatch):
    out = tmp_path / "out"
    forward, seen = rmscore.score.scorer.Scorer._forward, {"batches": 0}

    def stopping(self, runner, batch, inputs, *rest):
        seen["batches"] += 1
        if seen["batches"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # the graceful stop a SLURM preemption sends
        return forward(self, runner, batch, inputs, *rest)

    monkeypatch.setattr(rmscore.score.scorer.Scorer, "_forward", stopping)
    with pytest.raises(Interrupted):
        run_score(config(case, out, 256, window=8), log=lambda *_: None)
    monkeypatch.undo()
    assert 0 < len(scored(out)) < len(case["reference"])
    again = run_score(config(case, out, 4096), log=lambda *_: None)  # another budget: the same bits
    assert again.skipped > 0
    assert_identical(scored(out), case)


def test_serve_under_16_concurrent_clients(case):
    """16 requests at once, each a random subset of the rows: they share device batches in every
    way the queue happens to mix them, and each row still gets the bits it gets alone."""
    rows, rng = case["rows"], random.Random(7)
    requests = [rng.sample(range(len(rows)), rng.randint(1, len(rows))) for _ in range(16)]
    answers: list[dict | str] = [{} for _ in requests]
    with running(case["model"], budget=512, batch={"batch_invariant": True}, max_wait_ms=20) as client:
        def ask(n: int) -> None:
            status, _, body = client.post("/v1/score", {"rows": [rows[i] for i in requests[n]]})
            answers[n] = {key(r, requests[n][r["input_index"]]): numbers(r) for r in body["results"]} \
                if status == 200 else f"{status}: {body}"

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(requests))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    for picks, got in zip(requests, answers):
        assert isinstance(got, dict), got
        assert_identical(got, {"reference": {k: v for k, v in case["reference"].items() if k[0] in picks}})


def test_resume_refuses_to_mix_modes(case, tmp_path):
    out = tmp_path / "out"
    cfg = config(case, out, 512)
    run_score(replace(cfg, input=replace(cfg.input, limit=3)), log=lambda *_: None)
    plain = replace(cfg, batch=replace(cfg.batch, batch_invariant=False))
    with pytest.raises(ResumeConflict, match="--batch-invariant"):
        run_score(plain, log=lambda *_: None)
    meta = json.loads(ds.dataset(str(out)).schema.metadata[b"rmscore"])
    assert meta["batch_invariant"] == INVARIANT_SCHEME


def test_packed_and_prompt_reuse_are_refused():
    for path in ("packed", "prompt-reuse"):
        with pytest.raises(ConfigError, match="--batch-invariant"):
            BatchConfig(forward=path, batch_invariant=True)
    assert BatchConfig(forward="padded", batch_invariant=True).batch_invariant


def test_canonical_lengths_and_buckets():
    assert [canonical_length(n) for n in (1, 16, 17, 100, 128, 129, 1000, 1025)] == [16, 16, 32, 112, 128, 144,
                                                                                     1024, 1152]
    assert canonical_length(3000, cap=2048) == 3000 and canonical_length(2000, cap=2048) == 2048
    for n in range(1, 5000):
        width = canonical_length(n)
        assert n <= width <= max(n + 15, n * 1.125)
    lengths = [5, 17, 100, 16, 31, 120, 2000, 7]
    batches = plan_buckets(lengths, 64, 3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        widths = {canonical_length(lengths[i]) for i in batch}
        assert len(widths) == 1 and len(batch) <= max(1, 64 // widths.pop()) and len(batch) <= 3


def test_the_commands_take_the_flag(tiny_models, write_jsonl, tmp_path):
    """score and eval take --batch-invariant (the run says which path ran; eval scores again when
    it changes); --forward packed with it is a usage error, never a silent other path."""
    from cli_runner import invoke, run

    path = write_jsonl(completions_rows(3, 2, seed=1))
    model = tiny_models["llama"]
    result = run("score", path, "-m", model, "-o", tmp_path / "out", "--batch-invariant", "--no-progress")
    assert "forward path bucketed (--batch-invariant" in result.output and "forward: bucketed (6 rows)" in result.output
    refused = invoke("score", path, "-m", model, "-o", tmp_path / "other", "--batch-invariant", "--forward", "packed")
    assert refused.exit_code != 0 and "--batch-invariant cannot run --forward packed" in refused.output
    pairs = write_jsonl([{"prompt": "2+2?", "chosen": "4", "rejected": "5"}] * 3, "pairs.jsonl")
    run("eval", pairs, "-m", model, "-o", tmp_path / "eval", "--no-progress")
    again = run("eval", pairs, "-m", model, "-o", tmp_path / "eval", "--batch-invariant", "--no-progress")
    assert "scoring again" in again.output
    cache = tmp_path / "eval" / "scores"
    assert json.loads(ds.dataset(str(cache)).schema.metadata[b"rmscore"])["batch_invariant"] == INVARIANT_SCHEME

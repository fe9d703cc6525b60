"""genrm: a judge writes a critique then a verdict. Against an OpenAI-compatible test server on
127.0.0.1 that answers with scripted critiques (tests/fake_judge.py), and in-process on a tiny
causal LM and on SmolLM2-135M-Instruct's real weights."""

import json
import time

import pyarrow.dataset as ds
import pytest

from cli_runner import invoke
from fake_judge import FakeJudge, pairwise_script, rating_script
from rmscore.config import ModelConfig
from rmscore.errors import ConfigError, ModelError, ResumeConflict
from test_cli import one_line_error
from test_scoring import score
from tiny_judge import save_causal_judge

POINTWISE = [
    {"prompt": "q0", "completions": ["score 7", "score 3", "no number here"]},
    {"prompt": "q1", "completions": ["score 10", "score 1"]},
    {"prompt": "q2", "completions": ["score 5"]},
]
PAIRS = [
    {"prompt": "p0", "chosen": "a long and careful answer", "rejected": "short"},
    {"prompt": "p1", "chosen": "tiny", "rejected": "a much longer rejected answer"},
    {"prompt": "p2", "chosen": "first-wins one", "rejected": "first-wins two, longer"},
]


def judged(path, judge, out, **kw):
    return score(path, kw.pop("model", None) or ModelConfig().path, out, None, model_type="genrm",
                 judge_url=judge.url, judge_model="judge-1", **kw)


def by_key(rows):
    return {(r["input_index"], r["completion_index"]): r for r in rows}


def test_pointwise_scores_are_the_scripted_verdicts_and_no_verdict_is_unparsed(write_jsonl, tmp_path):
    with FakeJudge(rating_script) as judge:
        summary, out = judged(write_jsonl(POINTWISE), judge, tmp_path / "o")
    rows = by_key(out)
    assert {k: r["score"] for k, r in rows.items()} == {(0, 0): 7, (0, 1): 3, (0, 2): None, (1, 0): 10, (1, 1): 1,
                                                         (2, 0): 5}
    bad = rows[(0, 2)]
    assert bad["status"] == "unparsed" and "no verdict" in bad["status_detail"]
    assert "cannot decide" in bad["status_detail"] and bad["judge_output"].startswith("The answer rambles")
    assert rows[(0, 0)]["judge_output"].endswith("Rating: [[7]]")
    assert summary.statuses == {"ok": 5, "unparsed": 1}
    assert summary.counts["judge_requests"] == 6 == len(judge.requests)
    assert summary.counts["judge_tokens_generated"] == sum(len(rating_script(q).split()) for q in judge.questions)
    body = judge.requests[0]
    assert body["model"] == "judge-1" and body["temperature"] == 0 and "seed" not in body
    assert body["messages"] == [{"role": "user", "content": body["messages"][0]["content"]}]
    assert "Rating: [[N]]" in body["messages"][0]["content"]  # the default rubric


def test_503_is_retried_after_retry_after_and_a_4xx_is_that_rows_judge_error(write_jsonl, tmp_path):
    def script(question):
        return 400 if "score 3" in question else rating_script(question)

    with FakeJudge(script, fail_first=3, retry_after="0.05") as judge:
        summary, out = judged(write_jsonl(POINTWISE), judge, tmp_path / "o", concurrency=2)
    rows = by_key(out)
    assert summary.counts["judge_retries"] == 3 and len(judge.requests) == 6 + 3
    assert rows[(0, 1)]["status"] == "judge_error" and "answered 400" in rows[(0, 1)]["status_detail"]
    assert rows[(0, 0)]["score"] == 7 and summary.statuses["ok"] == 4


def test_a_judge_that_stays_down_stops_the_run_and_the_rerun_goes_on(write_jsonl, tmp_path):
    path = write_jsonl(POINTWISE)
    with FakeJudge(rating_script, fail_first=10**6, retry_after="0") as judge:
        with pytest.raises(ModelError, match="failed 2 times; last: HTTP 503"):
            judged(path, judge, tmp_path / "o", judge_retries=2)
    with FakeJudge(rating_script) as judge:
        summary, out = judged(path, judge, tmp_path / "o", judge_retries=2)
    assert len(out) == 6 and summary.statuses["ok"] == 5


def test_a_resumed_run_sends_no_request_for_finished_rows(write_jsonl, tmp_path):
    path = write_jsonl(POINTWISE)
    args = ("score", path, "-o", tmp_path / "o", "--model-type", "genrm", "--judge-model", "judge-1")
    with FakeJudge(rating_script) as judge:
        first = invoke(*args, "--judge-url", judge.url, "--limit", "1")
        assert first.exit_code == 0, first.output
        assert len(judge.requests) == 3 and "judge requests: 3" in first.output
        second = invoke(*args, "--judge-url", judge.url)
        assert second.exit_code == 0, second.output
    assert len(judge.requests) == 6  # only the rows of input rows 1 and 2
    assert "resumed: 3 completions" in second.output and "judge requests: 3" in second.output, second.output
    assert sorted(by_key(ds.dataset(str(tmp_path / "o")).to_table().to_pylist())) == sorted(by_key(
        [{"input_index": i, "completion_index": j} for i, r in enumerate(POINTWISE)
         for j, _ in enumerate(r["completions"])]))


@pytest.mark.parametrize("change", [("--judge-model", "judge-2"), ("--judge-temperature", "0.7"),
                                    ("--verdict-pattern", "Score: (\\d+)"), ("--judge-template", "{{ completion }}?")])
def test_who_judges_and_how_is_part_of_the_resume_identity(write_jsonl, tmp_path, change):
    path = write_jsonl(POINTWISE)
    with FakeJudge(rating_script) as judge:
        base = ("score", path, "-o", tmp_path / "o", "--judge-url", judge.url)
        assert invoke(*base, "--judge-model", "judge-1", "--limit", "1").exit_code == 0
        model = change[1] if change[0] == "--judge-model" else "judge-1"
        extra = change if change[0] != "--judge-model" else ()
        result = invoke(*base, "--judge-model", model, *extra)
    one_line_error(result, "other settings", change[0] if change[0] != "--judge-template" else "judge")


def test_pairwise_asks_both_orders_and_scores_the_share_won(write_jsonl, tmp_path):
    with FakeJudge(pairwise_script) as judge:
        summary, out = judged(write_jsonl(PAIRS), judge, tmp_path / "o", judge_mode="pairwise")
    rows = by_key(out)
    # The judge prefers the longer answer: chosen wins p0, rejected wins p1, in both orders.
    assert [rows[(i, 0)]["score"] for i in range(2)] == [1.0, 0.0]
    assert [rows[(i, 1)]["score"] for i in range(2)] == [0.0, 1.0]
    assert all(rows[(i, j)]["judge_consistent"] for i in range(2) for j in range(2))
    # p2: it always picks A, whatever the order: each side wins one of the two verdicts.
    assert rows[(2, 0)]["score"] == rows[(2, 1)]["score"] == 0.5 and rows[(2, 0)]["judge_consistent"] is False
    assert summary.counts["judge_inconsistent_rows"] == 2
    # Each pair was asked exactly twice, once in each order.
    assert len(judge.requests) == 6 and len(set(judge.questions)) == 6
    for pair in PAIRS:
        a_first = [q for q in judge.questions if f"A's Answer]\n{pair['chosen']}\n" in q]
        b_first = [q for q in judge.questions if f"B's Answer]\n{pair['chosen']}\n" in q]
        assert len(a_first) == len(b_first) == 1
    assert rows[(0, 0)]["judge_output_swapped"] and rows[(0, 0)]["judge_output"] != rows[(0, 0)]["judge_output_swapped"]


def test_pairwise_needs_two_completions(write_jsonl, tmp_path):
    with FakeJudge(pairwise_script) as judge:
        rows = POINTWISE + [{"prompt": "q3", "completions": ["score 1", None]}]
        _, out = judged(write_jsonl(rows), judge, tmp_path / "o", judge_mode="pairwise")
    rows = by_key(out)
    assert rows[(1, 0)]["status"] == "ok" and rows[(1, 0)]["score"] + rows[(1, 1)]["score"] == 1
    assert {rows[k]["status"] for k in [(0, 0), (2, 0), (3, 0), (3, 1)]} == {"invalid_row"}
    assert "two completions" in rows[(0, 0)]["status_detail"] and len(judge.requests) == 2
    assert "other completion of this pair is invalid" in rows[(3, 0)]["status_detail"]


def test_the_api_key_comes_from_the_named_variable_only(write_jsonl, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "s3cret")
    with FakeJudge(rating_script) as judge:
        judged(write_jsonl(POINTWISE[2:]), judge, tmp_path / "o", judge_api_key_env="JUDGE_KEY")
        result = invoke("score", write_jsonl(POINTWISE[2:]), "-o", tmp_path / "o2", "--judge-url", judge.url,
                        "--judge-model", "j", "--judge-api-key-env", "NOT_SET_ANYWHERE")
    assert judge.headers[0]["Authorization"] == "Bearer s3cret"
    meta = ds.dataset(str(tmp_path / "o")).schema.metadata[b"rmscore"].decode()
    assert "s3cret" not in meta and json.loads(meta)["judge_model"] == "judge-1"
    one_line_error(result, "NOT_SET_ANYWHERE is not set")


def test_options_that_contradict_are_refused():
    with pytest.raises(ConfigError, match="needs --judge-model"):
        ModelConfig(judge_url="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="applies to --model-type genrm"):
        ModelConfig(judge_mode="pairwise")
    with pytest.raises(ConfigError, match="in-process judge"):
        ModelConfig(model_type="genrm", judge_temperature=0.5)
    with pytest.raises(ConfigError, match="must be a number"):
        ModelConfig(model_type="genrm", judge_timeout="5")
    with pytest.raises(ConfigError, match="which judge"):
        ModelConfig("some/model", judge_url="http://127.0.0.1:1/v1", judge_model="m")
    assert ModelConfig(judge_url="http://h/v1", judge_model="m").model_type == "genrm"


def test_reward_function_and_scorer_take_a_served_judge():
    import rmscore

    with FakeJudge(rating_script) as judge:
        reward = rmscore.RewardFunction(model_type="genrm", judge_url=judge.url, judge_model="j")
        assert reward(prompts=["q", "q"], completions=["score 9", "no idea"]) == [9.0, None]
        results = reward.scorer.score([{"prompt": "q", "completion": "score 2"}])
    assert results[0]["score"] == 2 and results[0]["judge_output"].endswith("[[2]]")


# -- in-process generation ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    return save_causal_judge(tmp_path_factory.mktemp("genrm") / "llama", "llama", "llama3")


def test_in_process_generation_batched_equals_one_at_a_time(tiny_judge, write_jsonl, tmp_path):
    """A random tiny LM writes no verdict: every row is unparsed with its reply kept, never a crash;
    left-padded batches generate what batch size 1 generates."""
    path = write_jsonl(POINTWISE)
    kw = dict(model_type="genrm", judge_max_tokens=12, judge_template="Q: {{ prompt }} A: {{ completion }}")
    summary, batched = score(path, tiny_judge, tmp_path / "b", None, **kw)
    _, single = score(path, tiny_judge, tmp_path / "s", None, max_batch_size=1, **kw)
    assert summary.statuses == {"unparsed": 6} and summary.counts["judge_requests"] == 6
    assert summary.counts["judge_tokens_generated"] <= 6 * 12
    assert all(r["judge_output"] for r in batched)
    assert {k: r["judge_output"] for k, r in by_key(batched).items()} == \
        {k: r["judge_output"] for k, r in by_key(single).items()}


def test_smollm2_as_an_in_process_pointwise_judge(smollm2, write_jsonl, tmp_path):
    """Real weights: every row is scored or unparsed, never a crash. Quality is not the point."""
    rows = [{"prompt": "What is 2 + 2?", "completions": ["4", "5"]},
            {"prompt": "Name the capital of France.", "completion": "Paris."}]
    summary, out = score(write_jsonl(rows[:1]), smollm2[0], tmp_path / "o", None, model_type="genrm",
                         judge_max_tokens=48)
    assert len(out) == 2 and set(summary.statuses) <= {"ok", "unparsed"}
    for row in out:
        assert row["judge_output"]
        assert (row["status"] == "ok") == (row["score"] is not None)


def test_serve_scores_with_a_served_judge():
    from serving import running

    with FakeJudge(rating_script) as judge:
        model = {"model_type": "genrm", "judge_url": judge.url, "judge_model": "j"}
        with running(ModelConfig().path, model=model, max_wait_ms=2, query_format="split") as client:
            status, _, body = client.post("/v1/score", {"rows": [{"prompt": "q", "completions": ["score 4", "?"]}]})
            # OpenRLHF's /get_reward: each query cut after its prompt, the response judged.
            code, _, reward = client.post("/get_reward", {"query": ["Q: hi\nA: score 6<|im_end|>"],
                                                          "prompts": ["Q: hi\nA: "]})
    assert code == 200 and reward["rewards"] == [6], reward
    assert status == 200, body
    results = body["results"] if isinstance(body, dict) else body
    assert [r["score"] for r in results] == [4, None]
    assert [r["status"] for r in results] == ["ok", "unparsed"] and "no verdict" in results[1]["status_detail"]


def test_eval_takes_a_pairwise_judges_scores(write_jsonl, tmp_path):
    """Chosen wins both orders in p0, loses in p1, ties (position bias) in p2: accuracy 1.5 / 3."""
    with FakeJudge(pairwise_script) as judge:
        result = invoke("eval", write_jsonl(PAIRS), "-o", tmp_path / "e", "--judge-url", judge.url,
                        "--judge-model", "j", "--judge-mode", "pairwise")
        assert result.exit_code == 0, result.output
        report = json.loads((tmp_path / "e" / "eval.json").read_text())
        assert len(judge.requests) == 6
        again = invoke("eval", write_jsonl(PAIRS), "-o", tmp_path / "e", "--judge-url", judge.url,
                       "--judge-model", "j", "--judge-mode", "pairwise")
        assert again.exit_code == 0 and len(judge.requests) == 6  # the cache: no request sent again
    assert report["accuracy"] == pytest.approx(0.5), report


def test_doctor_says_a_generative_judge_has_no_forward_paths(tiny_judge):
    result = invoke("doctor", "-m", tiny_judge, "--model-type", "genrm")
    one_line_error(result, "generates instead", "--limit")


def test_retry_after_and_endpoint_forms():
    from email.utils import formatdate
    import time

    from rmscore.models.judge_http import endpoint, retry_after

    assert retry_after("2") == 2 and retry_after("0.5") == 0.5 and retry_after(None) is None
    assert 5 < retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10 and retry_after("soon") is None
    for url in ("http://h:8/", "http://h:8/v1", "http://h:8/v1/chat/completions"):
        assert endpoint(url) == "http://h:8/v1/chat/completions"


def test_in_process_pairwise_generates_each_order_once(tiny_judge, write_jsonl, tmp_path):
    template = "Q: {{ prompt }} A: {{ completion_a }} B: {{ completion_b }}"
    summary, out = score(write_jsonl(PAIRS), tiny_judge, tmp_path / "o", None, model_type="genrm",
                         judge_mode="pairwise", judge_max_tokens=6, judge_template=template)
    assert summary.counts["judge_requests"] == 2 * len(PAIRS) and len(out) == 2 * len(PAIRS)
    rows = by_key(out)
    for i in range(len(PAIRS)):  # a pair's two rows read the same two replies, swapped
        assert rows[(i, 0)]["judge_output"] == rows[(i, 1)]["judge_output_swapped"]
        assert rows[(i, 1)]["judge_output"] == rows[(i, 0)]["judge_output_swapped"]


def test_build_pairs_takes_a_pairwise_judges_scores(write_jsonl, tmp_path):
    with FakeJudge(pairwise_script) as judge:
        judged(write_jsonl(PAIRS), judge, tmp_path / "o", judge_mode="pairwise")
    result = invoke("build-pairs", tmp_path / "o", "-o", tmp_path / "pairs.parquet")
    assert result.exit_code == 0, result.output
    pairs = ds.dataset(str(tmp_path / "pairs.parquet")).to_table().to_pylist()
    # p0 and p1 give a pair each (the judge's winner chosen); p2 is a 0.5 / 0.5 tie: no pair.
    assert sorted(p["chosen"] if isinstance(p["chosen"], str) else p["chosen"][-1]["content"] for p in pairs) == \
        ["a long and careful answer", "a much longer rejected answer"]


def test_progress_moves_as_batches_of_judged_rows_finish():
    from rmscore.config import BatchConfig
    from rmscore.score.engine import Engine

    with FakeJudge(rating_script) as judge:
        engine = Engine.load(ModelConfig(judge_url=judge.url, judge_model="j", concurrency=1), BatchConfig())
        calls = []
        engine.scorer.on_rows = lambda rows, tokens: calls.append(rows)
        engine.score_rows([{"prompt": f"q{i}", "completion": f"score {i}"} for i in range(10)] + [{"prompt": "x"}])
    # 4 x --concurrency rows per batch; the invalid row is counted first, before any request.
    assert calls == [1, 4, 4, 2]
    assert engine.scorer.budget >= 1_000_000  # serve's batcher hands a served judge many rows at once


@pytest.mark.parametrize("option, value, needle", [
    ("--judge-template", "{{ prompt }} {{ answer }}", "unknown variables ['answer']"),
    ("--judge-template", "{{ prompt }}", "never uses {{ completion }}"),
    ("--verdict-pattern", "Score: \\d+", "exactly one capture group"),
    ("--verdict-pattern", "Score: (", "not a valid regular expression"),
])
def test_a_bad_template_or_pattern_stops_before_any_request(write_jsonl, tmp_path, option, value, needle):
    with FakeJudge(rating_script) as judge:
        result = invoke("score", write_jsonl(POINTWISE), "-o", tmp_path / "o", "--judge-url", judge.url,
                        "--judge-model", "j", option, value)
    one_line_error(result, needle)
    assert judge.requests == []


def test_concurrency_bounds_the_requests_in_flight(write_jsonl, tmp_path):
    def slow(question):
        time.sleep(0.2)
        return rating_script(question)

    rows = [{"prompt": f"q{i}", "completion": f"score {i}"} for i in range(8)]
    with FakeJudge(slow) as judge:
        summary, _ = judged(write_jsonl(rows), judge, tmp_path / "o", concurrency=3)
    assert summary.statuses == {"ok": 8} and 2 <= judge.most_in_flight <= 3

"""`rmscore serve` over real HTTP on 127.0.0.1: the numbers of `rmscore score`, shared batches, and
the faults a long-running server meets (full queue, gone clients, bad bodies, SIGTERM, keys)."""

import json
import signal
import threading

import pytest
from serving import KEY, raw_request, read_response, running, spawned, wait_for
from tiny_orm import messages_of, mixed_rows, save_armorm, score_rows
from tiny_prm import save_qwen_prm, step_rows

ROWS = [
    {"prompt": "How do I bake bread?", "completion": "Mix flour, water, salt and yeast."},
    {"prompt": "Capital of France?", "completions": ["Paris.", "Berlin, I think.", "Paris."]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]},
    {"prompt": "Say sorry", "chosen": "I am sorry.", "rejected": "No."},
    {"prompt": "A null completion", "completion": None},
]


@pytest.fixture(scope="module")
def llama(tiny_models):
    """One seq-cls server (API key on) for the tests that do not need their own settings."""
    with running(tiny_models["llama"], max_wait_ms=2) as client:
        yield client


def by_file(rows, write_jsonl, tmp_path, model, **kw):
    """`rmscore score` on each row alone (rows of different shapes need one file each)."""
    expected = []
    for i, row in enumerate(rows):
        _, out = score_rows(write_jsonl([row], f"in{i}.jsonl"), model, tmp_path / f"o{i}", **kw)
        expected += [{**r, "input_index": i} for r in out]
    return expected


def assert_same(got, want, columns=("score",)):
    assert len(got) == len(want)
    for have, ref in zip(got, want):
        assert (have["input_index"], have["completion_index"], have["side"], have["status"]) == \
               (ref["input_index"], ref["completion_index"], ref["side"], ref["status"])
        assert have["num_tokens"] == ref["num_tokens"]
        for name in columns:
            a, b = have[name], ref[name]
            if b is None:
                assert a is None
            elif isinstance(b, list):
                assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 1e-5, name
            else:
                assert abs(a - b) < 1e-5, name


def test_v1_score_gives_rmscore_score_numbers(llama, tiny_models, write_jsonl, tmp_path):
    want = by_file(ROWS, write_jsonl, tmp_path, tiny_models["llama"])
    status, _, body = llama.post("/v1/score", {"rows": [*ROWS, "not an object"]})
    assert status == 200
    got = body["results"]
    assert set(got[0]) == {"input_index", "completion_index", "prompt_id", "side", "score", "num_tokens", "status",
                           "status_detail"}
    assert_same(got[:-1], want)
    assert got[-1]["status"] == "invalid_row" and "not an object" in got[-1]["status_detail"]
    assert got[1]["score"] == got[3]["score"]  # the repeated completion: scored once


def test_armorm_and_process_reward_model_match_rmscore_score(tmp_path, write_jsonl):
    armorm = save_armorm(tmp_path / "armorm")
    rows = mixed_rows(seed=3)
    _, want = score_rows(write_jsonl(rows, "armorm.jsonl"), armorm, tmp_path / "o-armorm")
    with running(armorm) as client:
        status, _, body = client.post("/v1/score", {"rows": rows})
    assert status == 200
    assert_same(body["results"], want, ("score", "rewards", "gating_output"))

    prm = save_qwen_prm(tmp_path / "prm")
    rows = step_rows(n=6, seed=1)
    _, want = score_rows(write_jsonl(rows, "prm.jsonl"), prm, tmp_path / "o-prm")
    with running(prm) as client:
        status, _, body = client.post("/v1/score", {"rows": rows})
        assert status == 200
        assert_same(body["results"], want, ("score", "step_scores", "score_min", "score_prod", "score_mean"))
        messages = [{"role": "user", "content": rows[0]["prompt"]},
                    {"role": "assistant", "content": "\n\n".join(rows[0]["steps"])}]
        status, _, pooled = client.post("/pooling", {"messages": messages, "task": "token_classify"})
    assert status == 200
    steps = pooled["data"][0]["data"]
    assert [round(p, 6) for _, p in steps] == [round(p, 6) for p in want[0]["step_scores"]]
    assert all(abs(a + b - 1) < 1e-9 for a, b in steps)


def test_get_reward_reads_the_policy_text_where_score_reads(tiny_models, write_jsonl, tmp_path):
    """OpenRLHF's query: the whole conversation as the policy rendered it, special tokens kept."""
    from transformers import AutoTokenizer

    rows = mixed_rows(seed=5)[:4]
    model = tiny_models["qwen2"]  # ChatML: the template ends a turn with "<|im_end|>\n"
    _, want = score_rows(write_jsonl(rows), model, tmp_path / "o")
    tok = AutoTokenizer.from_pretrained(model)
    texts = [tok.apply_chat_template(messages_of(r, c), tokenize=False) for r in rows for c in r["completions"]]
    # What a policy's decode looks like: it stops at <|im_end|>; a batched decode pads around it.
    queries = [t.removesuffix("\n") for t in texts]
    queries[1] = "<pad><pad>" + queries[1] + "<pad>"
    queries[2] = texts[2]  # already closed: left as it is
    with running(model) as client:
        status, _, body = client.post("/get_reward", {"query": queries, "prompts": ["p"] * len(queries),
                                                      "labels": [None] * len(queries)})
        assert status == 200 and body["status"] == ["ok"] * len(queries)
        assert max(abs(a - b["score"]) for a, b in zip(body["rewards"], want)) < 1e-5
        assert body["scores"] == body["rewards"] and body["extra_logs"] == {}
        # OpenRLHF with several servers sends the others empty lists
        assert client.post("/get_reward", {"query": [], "prompts": [], "labels": []})[2] == \
               {"rewards": [], "scores": [], "extra_logs": {}, "status": [], "status_detail": []}
        assert client.post("/get_reward", {"query": ["a"], "prompts": ["a", "b"]})[0] == 400


def test_get_reward_never_doubles_bos_and_split_mode(tiny_models, write_jsonl, tmp_path):
    from transformers import AutoTokenizer

    model = tiny_models["llama"]  # the template writes <|begin_of_text|>; tokenizer(text) would add another
    tok = AutoTokenizer.from_pretrained(model)
    row = {"prompt": "How do I bake bread?", "completion": "Mix flour, water, salt and yeast."}
    _, want = score_rows(write_jsonl([row]), model, tmp_path / "o")
    query = tok.apply_chat_template(messages_of(row, row["completion"]), tokenize=False)
    assert query.startswith(tok.bos_token)
    with running(model, query_format="split", unscored_reward=-5.0) as client:
        # split: plain-text prompt (no chat template on the policy side) + response + policy EOS
        status, _, body = client.post("/get_reward", {"query": [row["prompt"] + row["completion"] + "<|eot_id|>",
                                                                "unrelated"], "prompts": [row["prompt"]] * 2})
        assert status == 200 and body["status"] == ["ok", "invalid_row"]
        assert abs(body["rewards"][0] - want[0]["score"]) < 1e-5 and body["rewards"][1] == -5.0
        status, _, pooled = client.post("/classify", {"input": query, "use_activation": False})
    assert status == 200
    assert pooled["usage"]["prompt_tokens"] == want[0]["num_tokens"]  # one BOS, as score has
    assert abs(pooled["data"][0]["probs"][0] - want[0]["score"]) < 1e-5


def test_classify_is_vllms_shape_and_rejects_unknown_fields(llama, tiny_models, write_jsonl, tmp_path):
    import math

    row = ROWS[2]
    _, want = score_rows(write_jsonl([row]), tiny_models["llama"], tmp_path / "o")
    raw = want[0]["score"]
    for path in ("/classify", "/v1/classify"):
        status, _, body = llama.post(path, {"model": "llama", "messages": row["messages"], "use_activation": False})
        assert status == 200 and body["object"] == "list"
        item = body["data"][-1]
        assert set(item) == {"index", "label", "probs", "num_classes"} and item["num_classes"] == 1
        assert abs(item["probs"][-1] - raw) < 1e-5  # the raw head output: what RL wants
    status, _, body = llama.post("/classify", {"messages": row["messages"]})
    assert abs(body["data"][0]["probs"][0] - 1 / (1 + math.exp(-raw))) < 1e-5  # vLLM's default: sigmoid
    status, _, body = llama.post("/classify", {"input": "hello", "activation": False})
    assert status == 400 and "activation" in body["error"]["message"] and "use_activation" in body["error"]["message"]
    assert llama.post("/classify", {"input": [1, 2, 3]})[0] == 400  # token ids are not text
    assert llama.post("/classify", {"input": "x", "add_special_tokens": False})[0] == 200
    assert "BOS" in llama.post("/classify", {"input": "x", "add_special_tokens": True})[2]["error"]["message"]
    assert llama.post("/classify", {"model": "another-model", "input": "x"})[0] == 404
    status, _, body = llama.post("/pooling", {"input": "x", "task": "token_classify"})
    assert status == 400 and "process reward model" in body["error"]["message"]


@pytest.mark.parametrize("raw, needle", [
    (b"{not json", "malformed JSON"),
    (b"[1, 2]", "JSON object"),
    (b"{}", "rows: missing"),
    (b'{"rows": "abc"}', "rows"),
    (b'{"rows": [], "extra": 1, "more": 2}', "unknown field(s): extra, more"),
])
def test_bad_bodies_get_a_400_with_a_json_error(llama, raw, needle):
    status, _, body = llama.post("/v1/score", raw=raw)
    assert status == 400 and needle in body["error"]["message"]
    assert llama.get("/health")[0] == 200  # and the server keeps serving


def test_api_key_on_every_route_but_health(llama):
    assert llama.get("/health", key=None)[0] == 200
    for method, path in (("POST", "/v1/score"), ("GET", "/metrics"), ("GET", "/v1/models"), ("POST", "/get_reward")):
        status, headers, body = llama.request(method, path, {"rows": []}, key=None)
        assert status == 401 and headers.get("www-authenticate") == "Bearer", path
        assert llama.request(method, path, {"rows": []}, key="wrong")[0] == 401
    assert llama.get("/v1/models")[2]["data"][0]["family"] == "seq-cls"
    assert llama.get("/nowhere")[0] == 404


def test_a_failing_batch_is_retried_row_by_row(llama):
    model = llama.server.service.engine.model
    head = model.head

    def poisoned(hidden, batch):
        if any(len(e.ids) == poison for e in batch):
            raise RuntimeError("poisoned row")
        return head(hidden, batch)

    rows = [{"prompt": "a", "completion": "short"}, {"prompt": "b", "completion": "a much longer answer " * 5},
            {"prompt": "c", "completion": "fine"}]
    status, _, clean = llama.post("/v1/score", {"rows": rows})
    poison = clean["results"][1]["num_tokens"]
    model.head = poisoned
    try:
        status, _, body = llama.post("/v1/score", {"rows": rows})
    finally:
        del model.head
    assert status == 200
    got = body["results"]
    assert [r["status"] for r in got] == ["ok", "error", "ok"] and "poisoned row" in got[1]["status_detail"]
    assert_same([got[0], got[2]], [clean["results"][0], clean["results"][2]])
    assert_same(llama.post("/v1/score", {"rows": rows})[2]["results"], clean["results"])  # serving as before


def test_concurrent_requests_share_batches(tiny_models):
    rows = [{"prompt": f"question {i}", "completion": "answer " * (i + 1)} for i in range(8)]
    with running(tiny_models["llama"], max_wait_ms=1500) as client:
        alone = client.post("/v1/score", {"rows": rows})[2]["results"]
        before = client.metrics()
        results = [None] * len(rows)

        def one(i):
            results[i] = client.post("/v1/score", {"rows": [rows[i]]})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(rows))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        after = client.metrics()
    assert all(r[0] == 200 for r in results)
    assert [abs(r[2]["results"][0]["score"] - a["score"]) < 1e-5 for r, a in zip(results, alone)] == [True] * 8
    batches = after["rmscore_batches_total"] - before["rmscore_batches_total"]
    takes = after["rmscore_take_requests_count"] - before["rmscore_take_requests_count"]
    assert batches < len(rows) and takes < len(rows)  # 8 requests, fewer forwards: they shared
    assert after['rmscore_requests_total{code="200",route="/v1/score"}'] == 9
    assert after["rmscore_batch_tokens_count"] == after["rmscore_batches_total"]
    assert after['rmscore_request_latency_seconds_count{route="/v1/score"}'] == 9


def test_full_queue_503_gone_client_dropped_and_413(tiny_models):
    """max_wait 3 s and a big budget: a lone request's rows sit in the queue, so the test can act
    while they wait, with no race."""
    one = {"prompt": "q", "completion": "a"}
    with running(tiny_models["llama"], max_wait_ms=3000, max_queue=4, max_body_mb=0.01) as client:
        sock = raw_request(client, "/v1/score", json.dumps({"rows": [one]}).encode())
        wait_for(lambda: client.metric("rmscore_queue_depth") == 1, 10, "the row to queue")
        sock.close()  # the client goes away before its row is computed
        wait_for(lambda: client.metric("rmscore_dropped_rows_total") == 1, 10, "the row to be dropped")
        assert client.metric("rmscore_queue_depth") == 0 and client.metric("rmscore_batches_total") == 0

        answers = [{}, {}]
        full = [threading.Thread(target=lambda a=a: a.update(r=client.post("/v1/score", {"rows": [one] * 4})))
                for a in answers]
        full[0].start()
        wait_for(lambda: client.metric("rmscore_rows_pending") == 4, 10, "the queue to fill")
        full[1].start()  # does not fit: it waits in line (the admission line holds max_queue rows)
        wait_for(lambda: client.server.service.batcher.waiting == 4, 10, "the line to fill")
        status, headers, body = client.post("/v1/score", {"rows": [one]})
        assert status == 503 and int(headers["retry-after"]) >= 1 and "queue is full" in body["error"]["message"]
        for thread in full:
            thread.join(30)
        for a in answers:
            assert a["r"][0] == 200 and [r["status"] for r in a["r"][2]["results"]] == ["ok"] * 4

        status, _, body = client.post("/v1/score", {"rows": [one] * 5})
        assert status == 413 and "limit is 4" in body["error"]["message"]
        status, _, body = client.post("/v1/score", {"rows": [{"prompt": "x" * 20000, "completion": "y"}]})
        assert status == 413 and "--max-body-mb" in body["error"]["message"]


def test_sigterm_stops_accepting_finishes_in_flight_and_exits(tiny_models):
    body = json.dumps({"rows": [{"prompt": "q", "completion": "a"}]}).encode()
    with spawned(tiny_models["llama"], "--max-wait-ms", "1") as (proc, client, lines):
        held = raw_request(client, "/v1/score", body, send=10)  # in flight: its body is still coming
        wait_for(lambda: client.metric("rmscore_requests_in_flight") >= 2, 10, "the held request")
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: client.get("/health")[0] == 503, 10, "/health to say draining")
        status, headers, _ = client.post("/v1/score", {"rows": [{"prompt": "q", "completion": "a"}]})
        assert status == 503 and "retry-after" in headers
        held.sendall(body[10:])
        status, answer = read_response(held)
        assert status == 200 and answer["results"][0]["status"] == "ok"
        assert proc.wait(30) == 0
    assert any("every request received was answered" in line for line in lines)
    assert KEY not in "".join(lines)  # the key is never logged


def test_best_of_n_live_recipe_picks_what_rmscore_scores_highest(llama, monkeypatch, capsys):
    """The recipe against a stand-in OpenAI-compatible policy endpoint and a real rmscore serve."""
    import importlib.util
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    answers = ["No.", "Mix flour, water, salt and yeast, knead, rest, then bake.", "I cannot help.", "Bread."]

    class Policy(BaseHTTPRequestHandler):
        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.path == "/v1/chat/completions" and request["n"] == len(answers)
            body = json.dumps({"choices": [{"index": i, "message": {"role": "assistant", "content": a}}
                                           for i, a in reversed(list(enumerate(answers)))]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    policy = ThreadingHTTPServer(("127.0.0.1", 0), Policy)
    threading.Thread(target=policy.serve_forever, daemon=True).start()
    path = Path(__file__).resolve().parent.parent / "recipes" / "best_of_n_live.py"
    spec = importlib.util.spec_from_file_location("best_of_n_live", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    monkeypatch.setenv("RMSCORE_API_KEY", KEY)
    try:
        recipe.main(["How do I bake bread?", "--policy", f"http://127.0.0.1:{policy.server_port}/v1", "--model",
                     "policy", "--reward", f"http://{llama.host}:{llama.port}", "-n", str(len(answers))])
    finally:
        policy.shutdown()
    scores = [r["score"] for r in llama.post("/v1/score", {"rows": [
        {"prompt": [{"role": "user", "content": "How do I bake bread?"}], "completions": answers}]})[2]["results"]]
    assert capsys.readouterr().out.strip() == answers[max(range(len(answers)), key=scores.__getitem__)]


def test_health_is_503_while_loading_then_200(tiny_models, monkeypatch):
    from rmscore.score.engine import Engine

    release, original = threading.Event(), Engine.load.__func__

    def slow_load(cls, *args, **kwargs):
        assert release.wait(30)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Engine, "load", classmethod(slow_load))
    from serving import Client
    from rmscore.config import BatchConfig, ModelConfig, ServeConfig
    from rmscore.serve.server import bind, build, url_of

    sock = bind("127.0.0.1", 0)
    server = build(ModelConfig(str(tiny_models["llama"])), BatchConfig(), ServeConfig(port=0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    client = Client(url_of(sock), key=None)
    try:
        status, _, body = wait_for(lambda: _try(client.get, "/health"), 30, "the port to answer")
        assert status == 503 and body["status"] == "loading"
        status, headers, _ = client.post("/v1/score", {"rows": [ROWS[0]]})
        assert status == 503 and headers["retry-after"] == "5"
        release.set()
        wait_for(lambda: client.get("/health")[0] == 200, 30, "the model to load")
        assert client.post("/v1/score", {"rows": [ROWS[0]]})[0] == 200
    finally:
        release.set()
        server.should_exit = True
        thread.join(30)


def _try(call, *args):
    try:
        return call(*args)
    except OSError:
        return None


def test_a_model_that_fails_to_load_stops_the_server_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from rmscore.cli import app

    result = CliRunner().invoke(app, ["serve", "-m", str(tmp_path / "missing"), "--port", "0"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "missing" in errors[0]

"""`rmscore serve` under hostile load (issue 26), over real HTTP on 127.0.0.1: no request stalls the
server, exhausts its memory or holds its shutdown; a bad request gets a 4xx and the server keeps
serving. Timing bounds are generous (seconds) and still far below what each defect took (15-28 s)."""

import json
import signal
import socket
import threading
import time

import pytest
from serving import KEY, raw_request, read_response, running, spawned, wait_for

ONE = {"prompt": "How do I bake bread?", "completion": "Mix flour, water, salt and yeast."}


@pytest.fixture(scope="module")
def llama(tiny_models):
    with running(tiny_models["llama"], max_wait_ms=2) as client:
        yield client


def timed(call, *args, **kw):
    start = time.monotonic()
    out = call(*args, **kw)
    return time.monotonic() - start, out


def post_raw(client, path: str, body: bytes):
    sock = raw_request(client, path, body)
    try:
        return read_response(sock)
    finally:
        sock.close()


def test_a_body_past_a_limit_is_refused_in_time_bounded_by_the_limit_and_health_stays_fast(llama):
    """Was: 17-26 s to the 413 of 10M empty queries (28 MB), /health 15 s behind it, 2.7 GB."""
    queries = b'{"query": [' + b",".join([b'""'] * 10_000_000) + b"]}"
    health = []

    def probe():
        time.sleep(0.2)
        health.append(timed(llama.get, "/health"))

    thread = threading.Thread(target=probe)
    thread.start()
    seconds, (status, body) = timed(post_raw, llama, "/get_reward", queries)
    thread.join(30)
    assert status == 413 and "limit is 16384 rows" in body["error"]["message"] and seconds < 3
    assert health[0][1][0] == 200 and health[0][0] < 2
    # One row with 3M completions (was 13.8 s), and 1.5M rows (was 44 s): the same.
    completions = json.dumps({"rows": [{"prompt": "p", "completions": ["a"] * 3_000_000}]}).encode()
    seconds, (status, _) = timed(post_raw, llama, "/v1/score", completions)
    assert status == 413 and seconds < 3
    rows = b'{"rows": [' + b",".join([b'{"prompt":"p","completion":"c"}'] * 1_500_000) + b"]}"
    seconds, (status, _) = timed(post_raw, llama, "/v1/score", rows)
    assert status == 413 and seconds < 3
    assert llama.post("/v1/score", {"rows": [ONE]})[0] == 200


def test_rows_expanding_past_the_limit_are_refused_while_they_are_counted(tiny_models):
    """Each row's completions count: 3 rows of 3 are 9 rows to score, past a limit of 8."""
    with running(tiny_models["llama"], max_rows_per_request=8) as client:
        status, _, body = client.post("/v1/score", {"rows": [{"prompt": "p", "completions": ["a", "b", "c"]}] * 3})
        assert status == 413 and "9 rows" in body["error"]["message"]
        assert client.post("/v1/score", {"rows": [{"prompt": "p", "completions": ["a", "b"]}] * 4})[0] == 200


@pytest.mark.parametrize("path, body", [
    ("/v1/score", b'{"rows": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("/get_reward", b'{"query": ["a"], "labels": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
    ("/v1/score", b'{"rows": [{"prompt": "\\ud800", "completion": "x"}, {"prompt": "p", "completion": "c"}]}'),
    ("/v1/score", b"null"),
])
def test_bodies_that_broke_the_parser_get_a_json_400(llama, path, body):
    """Was a 500: RecursionError on deep nesting, UnicodeEncodeError on a lone surrogate."""
    status, _, answer = llama.post(path, raw=body)
    assert status == 400 and answer["error"]["type"] == "invalid_request", answer
    message = answer["error"]["message"]
    assert ("nests deeper" in message or "lone surrogate" in message or "got null" in message)
    assert llama.post("/v1/score", {"rows": [ONE]})[0] == 200


def test_a_huge_text_is_too_long_without_being_tokenized_and_never_delays_others(llama):
    """Was: 27.9 s for a 10 MB query to come back too_long, and a 1-row request 14 s behind it."""
    huge = "The quick brown fox jumps over the lazy dog. " * (10 * 2**20 // 45)
    done = {}

    def other():
        time.sleep(0.3)
        done["small"] = timed(llama.post, "/v1/score", {"rows": [ONE]})

    thread = threading.Thread(target=other)
    thread.start()
    seconds, (status, _, body) = timed(llama.post, "/get_reward", {"query": [huge, "short text"]})
    thread.join(60)
    assert status == 200 and body["status"] == ["too_long", "ok"] and seconds < 5
    assert body["status_detail"][0].startswith("longer than the max length (at least ")
    assert done["small"][1][0] == 200 and done["small"][0] < 3
    # the same through rows, and --on-overflow error names the row by its place in the request
    status, _, body = llama.post("/v1/score", {"rows": [ONE, {"prompt": "p", "completion": huge}]})
    assert [r["status"] for r in body["results"]] == ["ok", "too_long"] and body["results"][1]["num_tokens"] is None


def test_on_overflow_error_names_the_row_of_the_request(tiny_models):
    long_row = {"prompt": "p", "completion": "word " * 100}
    with running(tiny_models["llama"], batch={"max_length": 32, "on_overflow": "error"}) as client:
        assert client.post("/v1/score", {"rows": [ONE] * 3})[0] == 400  # rows 0-2 of the server
        status, _, body = client.post("/v1/score", {"rows": [{"prompt": "a", "completion": "b"}, long_row]})
    assert status == 400 and "row 1 of the request has" in body["error"]["message"]


def test_a_slow_body_gets_408_and_the_server_keeps_serving(tiny_models):
    body = json.dumps({"rows": [ONE]}).encode()
    with running(tiny_models["llama"], read_timeout_s=1) as client:
        sock = raw_request(client, "/v1/score", body, send=10)
        seconds, (status, answer) = timed(read_response, sock)
        sock.close()
        assert status == 408 and "did not arrive within 1s" in answer["error"]["message"] and seconds < 5
        assert client.post("/v1/score", {"rows": [ONE]})[0] == 200


def test_a_slow_client_cannot_hold_the_drain(tiny_models):
    """Was: alive 21.7 s after SIGTERM until the client left; exit 0 and "every request was answered"."""
    body = json.dumps({"rows": [ONE]}).encode()
    with spawned(tiny_models["llama"], "--drain-timeout", "2") as (proc, client, lines):
        held = raw_request(client, "/v1/score", body, send=10)
        wait_for(lambda: client.metric("rmscore_requests_in_flight") >= 2, 10, "the held request")
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status, answer = read_response(held)
        assert status == 503 and "drain timed out" in answer["error"]["message"]
        assert proc.wait(30) == 2 and time.monotonic() - start < 15
    log = "".join(lines)
    assert "cut short: 1 request(s)" in log and "every request received was answered" not in log
    assert "Traceback" not in log and "CancelledError" not in log


def test_a_large_request_gets_in_before_smaller_ones_that_came_after_it(tiny_models):
    """Was: with rows counted alone, 60-row requests got 503 240 times while a 16-row one got in."""
    with running(tiny_models["llama"], max_queue=4, max_wait_ms=1500) as client:
        answers = {}

        def send(name, rows):
            answers[name] = client.post("/v1/score", {"rows": [ONE] * rows})

        first = threading.Thread(target=send, args=("first", 2))
        first.start()
        wait_for(lambda: client.metric("rmscore_rows_pending") == 2, 10, "the first request")
        large = threading.Thread(target=send, args=("large", 3))
        large.start()
        wait_for(lambda: client.server.service.batcher.waiting == 3, 10, "the large request to wait")
        small = threading.Thread(target=send, args=("small", 1))  # fits now, but waits behind the large one
        small.start()
        wait_for(lambda: client.server.service.batcher.waiting == 4, 10, "the small request to wait")
        for thread in (first, large, small):
            thread.join(30)
    assert [answers[name][0] for name in ("first", "large", "small")] == [200, 200, 200]


def test_content_type_auth_scheme_health_and_empty_input(tiny_models):
    with running(tiny_models["llama"]) as client:
        sock = socket.create_connection((client.host, client.port), timeout=30)
        body = json.dumps({"rows": [ONE]}).encode()
        sock.sendall(f"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nAuthorization: bearer {KEY}"
                     f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        status, answer = read_response(sock)
        sock.close()
        assert status == 415 and "application/json" in answer["error"]["message"]  # was 200: a CSRF hole
        assert _post_with(client, f"bearer {KEY}")[0] == 200  # was 401: auth schemes are case-insensitive
        assert _post_with(client, f"BEARER  {KEY}")[0] == 200
        assert _post_with(client, f"Basic {KEY}")[0] == 401
        assert client.get("/health", key=None)[2] == {"status": "ready"}  # no model path without the key
        status, _, answer = client.post("/classify", {"input": []})
        assert status == 400 and "empty" in answer["error"]["message"]  # was 200 with empty data
    with running(tiny_models["llama"], key=None) as open_client:
        assert set(open_client.get("/health")[2]) == {"status", "model", "family"}


def _post_with(client, authorization: str):
    import http.client

    conn = http.client.HTTPConnection(client.host, client.port, timeout=30)
    try:
        conn.request("POST", "/v1/score", json.dumps({"rows": [ONE]}),
                     {"Content-Type": "application/json; charset=utf-8", "Authorization": authorization})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()

"""`rmscore serve` soaked (issue 26; -m slow): minutes of mixed traffic, good and poison, large and
small, with clients that disconnect mid-body or mid-answer. The server's memory stays within a
stated bound, /health answers within 100 ms at p99, and every good answer is `rmscore score`'s.

RMSCORE_SOAK_S sets the length (300 s by default), RMSCORE_SOAK_WORKERS the clients (4) and
RMSCORE_SOAK_MIX the weights of good, poison and disconnecting requests ("6,2,1"). Every loop is
bounded by the deadline.
"""

import json
import os
import random
import socket
import threading
import time

import pytest
from serving import KEY, raw_request, read_response, spawned
from tiny_orm import score_rows

SECONDS = float(os.environ.get("RMSCORE_SOAK_S", "300"))
RSS_BOUND_MB = 1024  # above the loaded server's own RSS, at any moment
HEALTH_P99_S = float(os.environ.get("RMSCORE_SOAK_HEALTH_P99_MS", "100")) / 1000  # the bound
MIX = [int(w) for w in os.environ.get("RMSCORE_SOAK_MIX", "6,2,1").split(",")]
WORKERS = int(os.environ.get("RMSCORE_SOAK_WORKERS", "4"))

POOL = [{"prompt": f"Question {i}: how do I bake bread?", "completion": "Mix flour, water and salt. " * (1 + i % 7)}
        for i in range(24)]
HUGE = "The quick brown fox jumps over the lazy dog. " * (8 * 2**20 // 45)
POISON = [  # (route, body, the status it must get)
    ("/v1/score", b'{"rows": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
    ("/get_reward", b'{"query": [' + b",".join([b'""'] * 10_000_000) + b"]}", 413),
    ("/v1/score", b'{"rows": [{"prompt": "\\ud800", "completion": "x"}]}', 400),
    ("/v1/score", b'{"rows": [1, 2', 400),
    ("/v1/score", b'{"rows": [], "data": 1}', 400),
    ("/get_reward", json.dumps({"query": [HUGE]}).encode(), 200),  # too_long, its text never tokenized whole
]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 300)
def test_soak_mixed_traffic_memory_health_and_numbers(tiny_models, write_jsonl, tmp_path):
    model = tiny_models["llama"]
    _, want = score_rows(write_jsonl(POOL), model, tmp_path / "ref")
    expected = {r["input_index"]: r["score"] for r in want}
    failures, health, counts = [], [], {}
    with spawned(model, "--max-queue", "512", "--drain-timeout", "10") as (proc, client, lines):
        idle = rss_mb(proc.pid)
        peak = [idle]
        deadline = time.monotonic() + SECONDS

        def count(kind):
            counts[kind] = counts.get(kind, 0) + 1

        def good(rng):
            picks = rng.sample(range(len(POOL)), rng.choice([1, 2, 8, 24]))
            status, _, body = client.post("/v1/score", {"rows": [POOL[i] for i in picks]})
            if status == 503:
                return count("503")
            got = [r["score"] for r in body["results"]] if status == 200 else None
            if got is None or max(abs(g - expected[i]) for g, i in zip(got, picks)) > 1e-5:
                failures.append(f"good: {status} {str(body)[:200]}")
            count("good")

        def poison(rng):
            route, raw, status_wanted = rng.choice(POISON)
            status, answer = _post(client, route, raw)
            ok = status == status_wanted or status == 503
            if route == "/get_reward" and status == 200:
                ok = answer["status"] == ["too_long"]
            if not ok:
                failures.append(f"poison {route} {raw[:40]!r}: {status} {str(answer)[:200]}")
            count("poison")

        def gone(rng):
            body = json.dumps({"rows": [POOL[i] for i in range(24)]}).encode()
            sock = raw_request(client, "/v1/score", body, send=rng.choice([10, len(body)]))
            time.sleep(rng.random() * 0.2)
            sock.close()
            count("gone")

        def worker(seed):
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                try:
                    rng.choices([good, poison, gone], MIX)[0](rng)
                except OSError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")

        def watch():
            while time.monotonic() < deadline:
                start = time.monotonic()
                status = client.get("/health", key=None)[0]
                health.append((time.monotonic() - start, status))
                peak[0] = max(peak[0], rss_mb(proc.pid))
                time.sleep(0.05)

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(WORKERS)]
        threads.append(threading.Thread(target=watch))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SECONDS + 120)
        assert client.get("/health")[0] == 200
    latencies = sorted(seconds for seconds, _ in health)
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    print(f"\nsoak {SECONDS:.0f}s: {counts}; /health n={len(latencies)} p50={latencies[len(latencies) // 2] * 1000:.1f} ms "
          f"p99={p99 * 1000:.1f} ms max={latencies[-1] * 1000:.1f} ms; RSS idle {idle:.0f} MB, peak {peak[0]:.0f} MB")
    assert not failures, failures[:5]
    assert all(status == 200 for _, status in health)
    assert p99 < HEALTH_P99_S
    assert peak[0] - idle < RSS_BOUND_MB


def _post(client, path: str, raw: bytes):
    sock = socket.create_connection((client.host, client.port), timeout=60)
    try:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer {KEY}"
                      f"\r\nContent-Length: {len(raw)}\r\n\r\n").encode() + raw)
        return read_response(sock)
    finally:
        sock.close()

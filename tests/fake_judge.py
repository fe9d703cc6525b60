"""An OpenAI-compatible judge server on 127.0.0.1 for the genrm tests: it answers with scripted
critiques, can answer 503 first, and counts what it was asked.

`script(question) -> reply text` decides each answer from the user message the judge got. The server
is http.server in a thread: no extra dependency, no event loop, stopped by the fixture.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    # http.server's default listen backlog is 5: more concurrent connections than that get their SYN
    # dropped and retried a second later, which would measure the kernel, not the client.
    request_queue_size = 256
    daemon_threads = True


class FakeJudge:
    def __init__(self, script, fail_first: int = 0, retry_after: str | None = "0", status: int = 503):
        self.script, self.fail_first, self.retry_after, self.status = script, fail_first, retry_after, status
        self.requests: list[dict] = []  # every body received, failed ones included
        self.headers: list[dict] = []
        self.in_flight = self.most_in_flight = 0  # requests being answered at once
        self.lock = threading.Lock()
        self.server = Server(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    @property
    def questions(self) -> list[str]:
        return [r["messages"][-1]["content"] for r in self.requests]

    def _answer(self, body: dict) -> tuple[int, dict, dict]:
        with self.lock:
            self.requests.append(body)
            failing = self.fail_first > 0
            self.fail_first -= failing
        if failing:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return self.status, {"error": {"message": "overloaded"}}, headers
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            text = self.script(body["messages"][-1]["content"])
        finally:
            with self.lock:
                self.in_flight -= 1
        if isinstance(text, int):  # a scripted HTTP error for this question
            return text, {"error": {"message": f"scripted {text}"}}, {}
        usage = {"prompt_tokens": len(body["messages"][-1]["content"].split()), "completion_tokens": len(text.split())}
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return 200, {"id": "x", "object": "chat.completion", "choices": [choice], "usage": usage}, {}

    def _handler(self):
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                judge.headers.append(dict(self.headers))
                code, answer, headers = judge._answer(body) if self.path == "/v1/chat/completions" else (404, {}, {})
                data = json.dumps(answer).encode()
                self.send_response(code)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_):
                pass

        return Handler


def between(text: str, start: str, end: str) -> str:
    return re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), text, re.S).group(1)


def rating_script(question: str) -> str:
    """Pointwise: rates an answer by the number it names ("score 7" -> 7); no number, no verdict."""
    answer = between(question, "[The Start of the Assistant's Answer]", "[The End of the Assistant's Answer]")
    found = re.search(r"score (\d+)", answer)
    if not found:
        return "The answer rambles. I cannot decide on a rating."
    return f"Critique: the answer is what it is.\n\nRating: [[{found.group(1)}]]"


def pairwise_script(question: str) -> str:
    """Pairwise: prefers the longer answer, except that answers containing "first-wins" make it
    pick A whatever the order (a position-biased judge)."""
    a = between(question, "[The Start of Assistant A's Answer]", "[The End of Assistant A's Answer]")
    b = between(question, "[The Start of Assistant B's Answer]", "[The End of Assistant B's Answer]")
    if "first-wins" in a + b:
        return "Both are fine; the first is better. [[A]]"
    return f"Comparing both answers. [[{'A' if len(a) >= len(b) else 'B'}]]"

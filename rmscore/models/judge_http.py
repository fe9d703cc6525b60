"""A judge served over HTTP: any OpenAI-compatible /v1/chat/completions (vLLM, SGLang, TGI,
llama.cpp's server, a hosted API).

Requests go out from a pool of --concurrency threads. Overload and outages are retried: 408, 429
and 5xx answers (waiting what Retry-After says, else 0.5 s doubling, at most 60 s), timeouts and
dropped connections. A request that still fails after --judge-retries tries stops the run with a
one-line error: the rows finished so far are saved, and rerunning the same command goes on from
there. Any other 4xx (a prompt too long for the server, say) is that row's answer: status
`judge_error`, and the run goes on.
"""

from __future__ import annotations

import email.utils
import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from rmscore import __version__
from rmscore.config import ModelConfig
from rmscore.errors import ConfigError, ModelError
from rmscore.models.judge_prompts import Reply

RETRIED = (408, 429, 500, 502, 503, 504)
MAX_WAIT_S = 60.0


def endpoint(url: str) -> str:
    """The chat-completions URL: given whole, or the server's /v1 (or its root) it is under."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return f"{url}/chat/completions" if url.endswith("/v1") else f"{url}/v1/chat/completions"


def api_key(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise ConfigError(f"--judge-api-key-env {env_name}: the variable {env_name} is not set or empty",
                          f"export {env_name}=... before the run (the key itself never goes on the command line)")
    return key


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if email.utils.parsedate_tz(value) else None
        return max(0.0, when.timestamp() - time.time()) if when else None


class HttpJudge:
    def __init__(self, cfg: ModelConfig, owner):
        self.url, self.owner, self.cfg = endpoint(cfg.judge_url), owner, cfg  # owner.counts: the run's counts
        self.headers = {"Content-Type": "application/json", "User-Agent": f"rmscore/{__version__}"}
        if (key := api_key(cfg.judge_api_key_env)) is not None:
            self.headers["Authorization"] = f"Bearer {key}"
        self.pool = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="rmscore-judge")
        self.lock = threading.Lock()  # the counts are shared by the pool's threads

    def replies(self, conversations: list[list[dict]]) -> list[Reply]:
        return list(self.pool.map(self.ask, conversations))

    def body(self, messages: list[dict]) -> bytes:
        cfg = self.cfg
        body = {"model": cfg.judge_model, "messages": messages, "max_tokens": cfg.judge_max_tokens,
                "temperature": cfg.judge_temperature}
        if cfg.judge_seed is not None:
            body["seed"] = cfg.judge_seed
        return json.dumps(body).encode()

    def ask(self, messages: list[dict]) -> Reply:
        data, last = self.body(messages), ""
        for attempt in range(self.cfg.judge_retries):
            if attempt:
                self.count(judge_retries=1)
            self.count(judge_requests=1)
            request = urllib.request.Request(self.url, data=data, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.cfg.judge_timeout) as response:
                    return self.read(json.loads(response.read()))
            except urllib.error.HTTPError as exc:
                text = _text(exc)
                if exc.code not in RETRIED:
                    return Reply(None, error=f"the judge server answered {exc.code}: {text}")
                last, wait = f"HTTP {exc.code}: {text}", retry_after(exc.headers.get("Retry-After"))
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as exc:
                last, wait = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}", None
            time.sleep(min(MAX_WAIT_S, wait if wait is not None else 0.5 * 2 ** attempt))
        raise ModelError(f"the judge at {self.url} failed {self.cfg.judge_retries} times; last: {last}",
                         "check the server (and --judge-model); rerun the same command to continue: finished rows "
                         "are saved")

    def read(self, answer: dict) -> Reply:
        try:
            choice = answer["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            return Reply(None, error=f"the judge's answer has no choices[0].message: {str(answer)[:200]}")
        usage = answer.get("usage") or {}
        self.count(judge_tokens_generated=int(usage.get("completion_tokens") or 0),
                   judge_prompt_tokens=int(usage.get("prompt_tokens") or 0))
        return Reply(text, choice.get("finish_reason"))

    def count(self, **amounts: int) -> None:
        with self.lock:
            self.owner.counts.update(amounts)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _text(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read().decode("utf-8", "replace")
    except Exception:  # a body cut off mid-read: the status code says enough
        body = ""
    return " ".join(body.split())[:200] or exc.reason

"""The parts of `rmscore serve` without HTTP: the batcher (no model), reading policy-rendered text,
the command line."""

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from rmscore.cli import app
from rmscore.serve.batcher import Batcher, Item, Overloaded


def sample(i):
    return SimpleNamespace(input_index=i, completion_index=0, prompt_id=None, side=None)


class FakeScorer:
    """Records each take; raises for any take holding a poisoned row."""

    def __init__(self, poison=None):
        self.takes, self.poison = [], poison

    def __call__(self, items):
        self.takes.append([item.sample.input_index for item in items])
        if any(item.sample.input_index == self.poison for item in items):
            raise RuntimeError("poisoned")
        return [{"input_index": item.sample.input_index, "status": "ok", "score": float(item.tokens)} for item in items]


def run(batcher, requests, cancel=()):
    """Submit requests (lists of token counts) at once; returns each request's rows (None if cancelled)."""
    async def main():
        loop = asyncio.get_running_loop()
        tickets, first = [], 0
        for sizes in requests:
            ticket = batcher.admit(len(sizes), loop)
            batcher.submit(ticket, [Item(ticket, k, sample(first + k), tokens=n) for k, n in enumerate(sizes)])
            tickets.append(ticket)
            first += len(sizes)
        for i in cancel:
            batcher.cancel(tickets[i])
        live = [t.future for i, t in enumerate(tickets) if i not in cancel]
        done = await asyncio.wait_for(asyncio.gather(*live), 10)
        return iter(done)

    batcher.start()
    try:
        done = asyncio.run(main())
        return [None if i in cancel else next(done) for i in range(len(requests))]
    finally:
        batcher.stop(5)


def test_rows_of_many_requests_share_one_take_and_come_back_to_their_own():
    scorer = FakeScorer()
    batcher = Batcher(scorer, lambda: 100, max_wait_s=0.5, max_queue=100)
    out = run(batcher, [[10, 11], [12], [13, 14, 15]])
    assert scorer.takes == [[0, 1, 2, 3, 4, 5]]  # all three requests in one device turn
    assert [[r["score"] for r in rows] for rows in out] == [[10, 11], [12], [13, 14, 15]]
    assert batcher.pending == 0


def test_waits_at_most_max_wait_and_not_at_all_once_a_budget_waits():
    start = time.monotonic()
    run(Batcher(FakeScorer(), lambda: 10_000, max_wait_s=0.3, max_queue=10), [[5]])
    assert 0.25 < time.monotonic() - start < 5
    start = time.monotonic()
    scorer = FakeScorer()
    run(Batcher(scorer, lambda: 10, max_wait_s=30, max_queue=100), [[4] * 10])
    assert time.monotonic() - start < 5  # a full budget goes at once, whatever --max-wait-ms says
    scorer = FakeScorer()
    run(Batcher(scorer, lambda: 10, max_wait_s=0.01, max_queue=100), [[4] * 12])
    assert [len(take) for take in scorer.takes] == [10, 2]  # a take holds at most TAKE_BUDGETS budgets


def test_a_cancelled_requests_rows_are_never_scored():
    scorer, dropped = FakeScorer(), []
    batcher = Batcher(scorer, lambda: 100, max_wait_s=0.3, max_queue=100, on_drop=dropped.append)
    out = run(batcher, [[10], [20, 30], [40]], cancel=(1,))
    assert scorer.takes == [[0, 3]] and dropped == [2]
    assert out[1] is None and out[2][0]["score"] == 40 and batcher.pending == 0


def test_admission_is_first_come_first_in_and_overloaded_only_when_the_line_is_full():
    """Issue 26: with rows counted alone, small requests kept the queue full and a large one never
    got in. A request that does not fit waits in line, and nothing behind it goes first."""
    batcher = Batcher(FakeScorer(), lambda: 100, max_wait_s=0, max_queue=4)
    loop = asyncio.new_event_loop()
    try:
        first = batcher.admit(3, loop)
        large = batcher.admit(3, loop)  # does not fit now: waits
        small = batcher.admit(1, loop)  # would fit, but the large one came first
        assert first.admitted.done() and not large.admitted.done() and not small.admitted.done()
        with pytest.raises(Overloaded) as raised:
            batcher.admit(1, loop)  # the line holds max_queue rows
        assert raised.value.retry_after >= 1
        batcher.cancel(first)  # its rows leave: the line moves up, in order
        loop.run_until_complete(asyncio.sleep(0))
        assert large.admitted.done() and small.admitted.done() and batcher.pending == 4 and batcher.waiting == 0
    finally:
        loop.close()


# --- reading text a policy rendered ------------------------------------------------------------

def test_rendered_text_is_closed_as_the_template_closes_a_turn():
    from tiny import build_tokenizer

    from rmscore.models.chat import RenderedText

    chatml = RenderedText(build_tokenizer("chatml"))
    assert chatml.end == "<|im_end|>\n"
    body = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello"
    assert chatml(body + "<|im_end|>") == body + "<|im_end|>\n"  # a policy stops at <|im_end|>
    assert chatml(body + "<|im_end|>\n") == body + "<|im_end|>\n"
    assert chatml(body) == body + "<|im_end|>\n"  # cut by the length limit
    assert chatml("<pad><pad>" + body + "<|im_end|><pad>") == body + "<|im_end|>\n"  # a batched decode
    assert chatml(body + "<") == body + "<<|im_end|>\n"  # never completes inside a token
    llama = RenderedText(build_tokenizer("llama3"))
    text = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    assert llama.end == "<|eot_id|>" and llama(text) == text


@pytest.mark.parametrize("family", ["seq-cls", "armorm", "internlm2"])
def test_encode_rendered_gives_what_encode_gives(family, tiny_models, tmp_path):
    from tiny import completions_rows
    from tiny_orm import messages_of, save_armorm, save_internlm2

    from rmscore.config import ColumnMap, ModelConfig
    from rmscore.score.engine import samples_from_rows
    from rmscore.models import chat, load_model

    path = {"seq-cls": lambda: tiny_models["llama"], "armorm": lambda: save_armorm(tmp_path / "a"),
            "internlm2": lambda: save_internlm2(tmp_path / "i")}[family]()
    model, name = load_model(ModelConfig(str(path)))
    assert name == family
    rows = completions_rows(n_prompts=3, n_completions=2)
    samples = samples_from_rows(rows, ColumnMap())
    texts = chat.render(model.tokenizer, [messages_of(r, c) for r in rows for c in r["completions"]])
    want, got = model.encode(samples), model.encode_rendered(texts)
    assert [(e.ids, e.positions) for e in got] == [(e.ids, e.positions) for e in want]
    bos = model.tokenizer.bos_token_id
    assert sum(1 for t in got[0].ids[:2] if t == bos) == (2 if family == "internlm2" else 1)  # its card's BOS


def test_families_without_a_rendered_text_reader_say_so_per_row(tmp_path):
    from tiny_orm import save_pair_encoder

    from rmscore.config import ModelConfig
    from rmscore.models import load_model

    model, _ = load_model(ModelConfig(str(save_pair_encoder(tmp_path / "pair"))))
    problems = model.encode_rendered(["a", "b"])
    assert len(problems) == 2 and all(p.status == "invalid_row" for p in problems)


# --- the command line --------------------------------------------------------------------------

def test_serve_help_and_one_line_errors(monkeypatch):
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--max-wait-ms" in result.output and "--device-map" in result.output
    result = CliRunner().invoke(app, ["serve", "--query-format", "tokens"])
    assert result.exit_code == 2 and "unknown --query-format 'tokens'" in result.output
    monkeypatch.setattr("rmscore.serve.find_spec", lambda name: None if name == "uvicorn" else object())
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: rmscore serve needs uvicorn: pip install 'rmscore[serve]'"


def test_a_port_in_use_is_a_one_line_error():
    from rmscore.serve.server import bind

    taken = bind("127.0.0.1", 0)
    taken.listen()
    result = CliRunner().invoke(app, ["serve", "--port", str(taken.getsockname()[1])])
    taken.close()
    assert result.exit_code == 2 and "cannot listen on 127.0.0.1" in result.output


def test_serve_all_gpus_starts_one_replica_per_gpu_and_prints_the_urls(tmp_path):
    """The recipe with stand-ins for rmscore, curl and nvidia-smi: one replica per GPU on its own
    device and port, the URL list once all answer, and SIGTERM passed on to every replica."""
    import signal
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "recipes" / "serve_all_gpus.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    (bin_dir / "rmscore").write_text(f"#!/bin/bash\ntrap 'echo drained >> {log}; exit 0' TERM\n"
                                     f"echo \"rmscore $*\" >> {log}\nwhile true; do sleep 0.05; done\n")
    # healthy once that replica has started (its trap set), as a real one answers only once loaded
    (bin_dir / "curl").write_text(f"#!/bin/bash\nport=${{2##*:}}; port=${{port%%/*}}\n"
                                  f"grep -q -- \"--port $port\" {log} 2>/dev/null\n")
    (bin_dir / "nvidia-smi").write_text("#!/bin/bash\necho 'GPU 0: H200'\necho 'GPU 1: H200'\n")
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "MODEL": "my/rm", "PORT": "9100", "LOGS": str(tmp_path / "logs"),
           "ROUTE": "/get_reward"}
    proc = subprocess.Popen(["bash", str(script), "--api-key", "k"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line == "http://127.0.0.1:9100/get_reward,http://127.0.0.1:9101/get_reward"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) is not None
    finally:
        proc.kill()
    seen = log.read_text()
    assert "rmscore serve -m my/rm --device cuda:0 --host 127.0.0.1 --port 9100 --api-key k" in seen
    assert "--device cuda:1 --host 127.0.0.1 --port 9101" in seen
    assert wait_lines(log, "drained") == 2


def wait_lines(path, text: str, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and path.read_text().count(text) < 2:
        time.sleep(0.05)
    return path.read_text().count(text)


# --- texts too long to ever fit, cut before tokenizing ------------------------------------------

def test_a_cut_sample_is_too_long_only_if_its_cut_is_and_else_is_encoded_whole():
    """lengths.py: no token of this vocabulary is longer than 3 characters, so a text of more than
    (4 + 1) * 3 characters has more than 4 tokens, unless the tokenizer drops characters (here
    spaces): then the whole text is encoded, as before."""
    from rmscore.errors import RowError
    from rmscore.score import records
    from rmscore.score.records import Encoded, Sample
    from rmscore.score.scorer import Prepared
    from rmscore.serve import lengths

    tokenizer = SimpleNamespace(get_vocab=lambda: {"abc": 0, "a": 1})
    cutter = lengths.Cutter(tokenizer, max_length=4, policy="skip")
    assert cutter.keep == 15 and lengths.Cutter(tokenizer, 4, "truncate-left").keep is None
    seen = []

    def prepare(samples, texts):  # a token per 3 non-space characters, as a normalizer that drops spaces
        seen.append([s.completion for s in samples])
        prepared = Prepared(samples, [], [])
        for s in samples:
            n = -(-len(s.completion.replace(" ", "")) // 3)
            if n > 4:
                prepared.problems.append((s, None, RowError(records.TOO_LONG, f"longer than the max length ({n} > 4 tokens)")))
            else:
                prepared.ready.append((s, Encoded([0] * n, [n - 1])))
        return prepared

    rows = [Sample(0, 0, None, [{"role": "user", "content": "q"}], True, "x" * 1000),
            Sample(1, 0, None, [{"role": "user", "content": "q"}], True, " " * 1000 + "abc"),
            Sample(2, 0, None, [{"role": "user", "content": "q"}], True, "short")]
    out = lengths.prepare(prepare, cutter, rows)
    assert [len(c) for c in seen[0]] == [14]  # the long text, cut to 15 characters with the prompt's one
    assert seen[-1] == [" " * 1000 + "abc", "short"]  # its cut fits: encoded whole; and the rest
    (sample, enc, problem), = out.problems
    assert sample.input_index == 0 and enc is None and problem.detail == "longer than the max length (at least 5 > 4 tokens)"
    assert [s.input_index for s in out.samples] == [0, 1, 2] and len(out.ready) == 2

"""Scoring one window of samples: encode, check, batch, forward, back off on out-of-memory.

prepare() is CPU work (render, tokenize, length policy) and runs on the background thread one
window ahead; run() owns the device and runs on the main thread. Every sample comes back as
exactly one output row, in input order: scored, or with a status saying why not.
"""

from __future__ import annotations

import gc
import hashlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rmscore.errors import InputError, RowError
from rmscore.score import records
from rmscore.score.forward import Runners
from rmscore.score.forward.outputs import WindowOutputs
from rmscore.score.pipeline import prefetch
from rmscore.score.records import Encoded, Sample


@dataclass
class Prepared:
    samples: list[Sample]
    ready: list[tuple[Sample, Encoded]]  # to score
    problems: list[tuple[Sample, Encoded | None, RowError]]  # not scorable, with the reason


def fit_length(enc: Encoded, max_length: int, policy: str, sample: Sample) -> Encoded:
    """Apply --on-overflow. Never cuts silently: the status says what happened."""
    if len(enc) <= max_length:
        return enc
    if policy == "error":
        raise InputError(
            f"input row {sample.input_index} has {len(enc)} tokens, more than --max-length {max_length}",
            "raise --max-length, or use --on-overflow skip / truncate-left",
        )
    if policy == "skip":
        raise RowError(records.TOO_LONG, f"longer than the max length ({len(enc)} > {max_length} tokens)")
    drop = len(enc) - max_length
    if min(enc.positions, default=0) < drop:
        raise RowError(records.TOO_LONG, f"truncating would cut a position the model reads ({len(enc)} tokens)")
    types = enc.token_type_ids[drop:] if enc.token_type_ids else None
    return Encoded(enc.ids[drop:], [p - drop for p in enc.positions], types, enc.expected_positions,
                   records.TRUNCATED, f"dropped the first {drop} of {len(enc)} tokens", payload=enc.payload)


def unique_rows(encs: list[Encoded]) -> tuple[list[Encoded], list[int]]:
    """The distinct token rows of a window, and for each row the index of its distinct copy.

    Sampled completions repeat (low temperature, short answers). Scoring each distinct input once
    saves the work, and guarantees the same input gets the very same score: two copies in
    different batches could otherwise differ in the last bits (kernels sum in batch-dependent order).
    """
    seen: dict[bytes, int] = {}
    distinct, which = [], []
    for enc in encs:
        digest = hashlib.blake2b(digest_size=16)
        for part in (enc.ids, enc.positions, enc.token_type_ids or ()):
            digest.update(array("q", part).tobytes())
            digest.update(b"|")
        key = digest.digest()
        if key not in seen:
            seen[key] = len(distinct)
            distinct.append(enc)
        which.append(seen[key])
    return distinct, which


def check_positions(enc: Encoded) -> None:
    if enc.expected_positions is not None and len(enc.positions) != enc.expected_positions:
        raise RowError(records.STEP_MISMATCH,
                       f"found {len(enc.positions)} step positions for {enc.expected_positions} steps")
    if not enc.positions:
        raise RowError(records.INVALID_ROW, "nothing to read: no score position in the rendered input")


class Scorer:
    def __init__(self, model, runners: Runners, max_length: int, batch_cfg, summary, check_stop=lambda: None):
        self.model, self.runners, self.max_length = model, runners, max_length
        self.batch_cfg, self.summary = batch_cfg, summary
        self.check_stop = check_stop  # raises Interrupted between batches once SIGTERM/SIGUSR1 arrived
        # Called with (rows, tokens) as batches finish: a progress bar moves per batch, not per
        # window (a generative judge can take minutes over one window).
        self.on_rows: Callable[[int, int], None] = lambda rows, tokens: None
        # Shrinks for good after an out-of-memory: the rest of the run keeps the smaller budget.
        self.budget = batch_cfg.max_tokens_per_batch
        # The window being scored: (rows done by key, samples per distinct row, slot or problem per
        # distinct row scored so far, the head outputs still on the device). A stop saves its rows.
        self._window: tuple | None = None

    def score_window(self, samples: list[Sample]) -> list[dict]:
        return self.run(self.prepare(samples))

    def prepare(self, samples: list[Sample], encoded: list | None = None) -> Prepared:
        """`encoded`: the samples' Encoded (or RowError) when the caller tokenized them itself
        (serve's already-rendered texts); the length policy and checks are the same."""
        prepared = Prepared(samples, [], [])
        for sample, enc in zip(samples, self._encode(samples) if encoded is None else encoded, strict=True):
            try:
                if isinstance(enc, RowError):
                    raise enc
                enc = fit_length(enc, self.max_length, self.batch_cfg.on_overflow, sample)
                check_positions(enc)
                enc.group = sample.prompt_id
                prepared.ready.append((sample, enc))
            except RowError as problem:
                prepared.problems.append((sample, enc if isinstance(enc, Encoded) else None, problem))
        return prepared

    def run(self, prepared: Prepared) -> list[dict]:
        done = {s.key: self._row(s, enc, {}, problem) for s, enc, problem in prepared.problems}
        encs, which = unique_rows([enc for _, enc in prepared.ready])
        users: list[list] = [[] for _ in encs]  # the samples each distinct row stands for
        for pair, u in zip(prepared.ready, which):
            users[u].append(pair)
        runner = self.runners.choose(encs) if encs else None
        batches = runner.plan(encs, self.budget, self.batch_cfg.max_batch_size) if encs else []
        collated = prefetch(((b, runner.collate([encs[i] for i in b], self.budget)) for b in batches), depth=2)
        kept = WindowOutputs(self.model)  # head outputs stay on the device until the window ends
        slots: dict[int, tuple[int | None, RowError | None]] = {}  # distinct row -> its slot in kept, or problem
        self._window = (done, users, slots, kept)
        self.on_rows(len(prepared.problems), sum(len(enc) for _, enc, _ in prepared.problems if enc is not None))
        for indices, inputs in collated:
            self.check_stop()
            for i, result in zip(indices, self._forward(runner, [encs[i] for i in indices], inputs, kept)):
                slots[i] = result
            self.on_rows(sum(len(users[i]) for i in indices), sum(len(encs[i]) * len(users[i]) for i in indices))
        self._fill(*self._window)  # the window's one copy to the host
        if runner is not None:
            self.summary.paths[runner.name] += len(prepared.ready)
            # Repeated completions are scored once; they still count as tokens the user scored.
            self.summary.tokens += sum(len(enc) for _, enc in prepared.ready) - sum(len(e) for e in encs)
        self._window = None
        return [done[s.key] for s in prepared.samples]  # input order, whatever the batch order

    def _fill(self, done: dict, users: list, slots: dict, kept: WindowOutputs) -> None:
        """Output rows of every distinct row scored so far (one copy to the host), for each sample
        it stands for."""
        outputs = kept.rows()
        for i, (slot, problem) in slots.items():
            for sample, enc in users[i]:
                done[sample.key] = self._row(sample, enc, {} if slot is None else outputs[slot], problem)

    def finished(self) -> list[dict]:
        """The rows of the window in flight that are done (rows with a problem, and every batch
        that came back), in input order: what a stop or a failure mid-window still saves."""
        if self._window is None:
            return []
        done = self._window[0]
        try:
            self._fill(*self._window)
        except Exception:  # a broken device cannot hand its outputs back: save the rows with a problem
            pass
        self._window = None
        return [row for _, row in sorted(done.items())]

    def _forward(self, runner, batch: list[Encoded], inputs: dict | None,
                 kept: WindowOutputs) -> list[tuple[int | None, RowError | None]]:
        """Each row's slot in kept.rows(), or its problem."""
        cost = runner.cost(batch)
        try:
            outputs = runner.outputs(batch, inputs, self.budget)
        except torch.cuda.OutOfMemoryError:
            outputs = None
        # Retried only once out of the except block: while in it, the error's traceback keeps every
        # frame of the failed forward alive, and with them the activations it had allocated, so
        # the halves (and in the end single rows) would run out of memory too (PyTorch FAQ, "My out
        # of memory exception handler can't allocate memory").
        if outputs is None:
            return self._back_off(runner, batch, cost.padded, kept)
        self.summary.count_batch(cost)
        first = kept.add(batch, outputs)
        return [(first + k, None) for k in range(len(batch))]

    def _back_off(self, runner, batch: list[Encoded], padded: int,
                  kept: WindowOutputs) -> list[tuple[int | None, RowError | None]]:
        """Halve the budget for the rest of the run and score the batch again in two halves.
        Every row is still scored exactly once; a row that fails alone gets a status."""
        gc.collect()  # frames of the failed forward caught in reference cycles
        if self.model.device.type == "cuda":
            torch.cuda.empty_cache()
        self.summary.oom_retries += 1
        self.budget = max(1, min(self.budget, padded) // 2)
        if len(batch) == 1:
            problem = RowError(records.OUT_OF_MEMORY, f"out of device memory even alone ({len(batch[0])} tokens)")
            return [(None, problem)]
        half = len(batch) // 2
        return self._forward(runner, batch[:half], None, kept) + self._forward(runner, batch[half:], None, kept)

    def _encode(self, samples: list[Sample]) -> list[Encoded | RowError]:
        out: list = [None if s.error is None else RowError(records.INVALID_ROW, s.error) for s in samples]
        todo = [i for i, s in enumerate(samples) if s.error is None]
        try:
            encoded = self.model.encode([samples[i] for i in todo])
        except Exception:  # one bad row (a template that raises) must not sink the window
            encoded = [self._encode_one(samples[i]) for i in todo]
        for i, enc in zip(todo, encoded, strict=True):
            out[i] = enc
        return out

    def _encode_one(self, sample: Sample) -> Encoded | RowError:
        try:
            return self.model.encode([sample])[0]
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return RowError(records.INVALID_ROW, f"cannot render: {reason}")

    def _row(self, sample: Sample, enc: Encoded | None, out: dict, problem: RowError | None = None) -> dict:
        # A family whose output can fail per row (a judge's reply without a verdict) says so in it.
        status = problem.status if problem else out.get("status", enc.status)
        detail = problem.detail if problem else out.get("status_detail", enc.detail)
        self.summary.statuses[status] += 1
        if problem or "status" in out:
            self.summary.details[f"{status}: {_reason(detail)}"] += 1
        row = {
            "input_index": sample.input_index, "completion_index": sample.completion_index,
            "prompt_id": sample.prompt_id, "side": sample.side, "prompt": sample.prompt,
            "prompt_is_text": sample.prompt_is_text, "completion": sample.completion,
            "num_tokens": len(enc) if enc is not None else None, "status": status, "status_detail": detail,
        }
        row.update(out)
        row.update(sample.extra)
        return row


def _reason(detail: str | None) -> str:
    # Group counts by the kind of problem, not by the exact numbers in the message.
    return (detail or "").split(" (")[0].split(":")[0][:80]

"""`rmscore score --ray ADDRESS`: the windows of the run scored by a pool of Ray actors.

The driver (the `rmscore score` process) stays the only reader and the only writer: it reads the
input, keeps the shard's resume state and lock, and writes the parts by input range through the
same ScoreSink as a plain run (rmscore/score/run.py). Only the compute moves: each actor loads the
model once through the same Engine as `score` and scores whole windows of samples (the same
--window chunking, so a row's completions stay together); the rows come back in input order.

Why this is exactly once: an actor writes nothing. A window's rows exist only once they are back
on the driver, which writes them once. A killed actor is restarted by Ray (max_restarts=-1) and
the windows it held are sent again to the restarted one (max_task_retries): the driver still gets
one answer per window. A killed driver loses the windows in flight; the parts it finished are
recorded and a rerun resumes after them, as after any stop of `rmscore score`.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from rmscore.errors import ModelError, RmscoreError
from rmscore.ray import cluster
from rmscore.score.records import Sample

# A window whose actor died is sent again this many times; a window that kills every actor it meets
# (a poison row, a crash in a kernel) then stops the run instead of restarting actors forever.
TASK_RETRIES = 3
WAIT_S = 0.5  # how often the driver looks at SIGTERM/SIGUSR1 while it waits for a window
TEST_EXIT = "RMSCORE_TEST_RAY_EXIT"  # tests only: "K:MARKER" or "K:" (tests/test_ray.py)


class EngineActor:
    """One Ray actor: the model loaded once through the Engine `rmscore score` uses."""

    def __init__(self, model_cfg, batch_cfg, check=None, test_exit: str | None = None):
        from rmscore.score.engine import Engine
        from rmscore.score.summary import RunSummary

        self.test_exit, self.error, self.engine = test_exit, None, None
        try:
            device = cluster.actor_device(model_cfg.device)
            self.engine = Engine.load(replace(model_cfg, device=device), batch_cfg, RunSummary("<ray>"), check=check)
        except Exception as exc:  # said by describe(): an actor failing its creation is not restarted usefully
            self.error = exc

    def describe(self) -> dict:
        if self.error is not None:
            exc = self.error
            return {"error": (type(exc), getattr(exc, "message", str(exc)), getattr(exc, "hint", None))}
        return {"facts": self.engine.facts(), "budget": self.engine.scorer.budget,
                "device": str(self.engine.model.device)}

    def score(self, seq: int, samples: list[Sample]):
        """The rows of window `seq`, the counts of the work, the token budget now."""
        self._test_exit(seq)
        rows = self.engine.score_samples(samples)
        return rows, self.engine.take_summary(), self.engine.scorer.budget

    def _test_exit(self, seq: int) -> None:
        """Tests only: die (as a killed process dies) the first time window K is scored; the marker
        file makes it once, so the restarted actor scores the window. Without a marker: every time."""
        if not self.test_exit:
            return
        k, _, marker = self.test_exit.partition(":")
        if seq == int(k) and not (marker and os.path.exists(marker)):
            if marker:
                open(marker, "w").close()
            os._exit(1)


class RayPool:
    """A compute (rmscore/score/compute.py) whose windows are scored by Ray actors, at most
    `in_flight` windows per actor sent ahead, so the driver's memory stays flat."""

    def __init__(self, ray, actors: list, facts, budget: int, summary, check_stop, record: dict, started: bool):
        self.ray, self.actors, self.facts, self.budget = ray, actors, facts, budget
        self.summary, self.check_stop, self.record, self.started = summary, check_stop, record, started
        self.in_flight = 2
        self._pending: deque = deque()  # (ref, actor) of the windows sent and not handed back, in order

    @classmethod
    def start(cls, cfg, summary, check, check_stop: Callable[[], None], log) -> "RayPool":
        ray = cluster.require_ray()
        started = cluster.connect(cfg.ray.address, log)
        try:
            count, gpus = cluster.defaults(cfg.ray.actors, cfg.ray.gpus_per_actor)
            if count * gpus > cluster.cluster_gpus():
                log(f"the cluster has {cluster.cluster_gpus():g} GPU(s) now, {count} actor(s) x {gpus:g} asked: "
                    "they wait for an autoscaler to add GPUs (Ctrl-C to stop)")
            remote = ray.remote(num_gpus=gpus, max_restarts=-1, max_task_retries=TASK_RETRIES)(EngineActor)
            test_exit = os.environ.get(TEST_EXIT)
            actors = [remote.remote(cfg.model, cfg.batch, check, test_exit) for _ in range(count)]
            log(f"loading {cfg.model.checkpoint} on {count} Ray actor(s), {gpus:g} GPU(s) each")
            described = _wait(ray, [a.describe.remote() for a in actors], check_stop)
        except BaseException:
            if started:
                ray.shutdown()
            raise
        for one in described:
            if "error" in one:
                for actor in actors:
                    ray.kill(actor)
                if started:
                    ray.shutdown()
                raise _rebuilt(*one["error"], cfg.model.checkpoint)
        first = described[0]
        facts = first["facts"]
        summary.model_type = facts.family
        if cfg.batch.max_tokens_per_batch is None:
            cfg.batch.max_tokens_per_batch = first["budget"]  # what ran, as a plain run records it
        log(f"model {cfg.model.path} as {facts.family} on {', '.join(d['device'] for d in described)}; max length "
            f"{facts.max_length}, {first['budget']} tokens per batch")
        record = {"ray": {"address": cfg.ray.address, "job_id": ray.get_runtime_context().get_job_id(),
                          "actors": count, "gpus_per_actor": gpus, "ray_version": ray.__version__,
                          "devices": [d["device"] for d in described],
                          "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
        pool = cls(ray, actors, facts, first["budget"], summary, check_stop, record, started)
        pool.in_flight = cfg.ray.in_flight
        return pool

    def windows(self, windows: Iterable[list[Sample]], on_rows) -> Iterator[list[dict]]:
        load = [0] * len(self.actors)  # windows sent to each actor and not handed back
        source, seq = iter(windows), 0
        while True:
            while len(self._pending) < self.in_flight * len(self.actors):
                window = next(source, None)
                if window is None:
                    break
                which = min(range(len(self.actors)), key=load.__getitem__)
                rows = (window[0].input_index, window[-1].input_index)
                self._pending.append((self.actors[which].score.remote(seq, window), which, rows))
                load[which], seq = load[which] + 1, seq + 1
            if not self._pending:
                return
            ref, which, (first, last) = self._pending[0]
            try:
                rows = self._take(_wait(self.ray, [ref], self.check_stop)[0])
            except self.ray.exceptions.RayActorError as exc:  # died on this window TASK_RETRIES + 1 times
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelError(f"a Ray actor died {TASK_RETRIES + 1} times scoring input rows {first}-{last}: "
                                 f"{reason}", "rerun the same command to continue after the saved parts; if it "
                                 "dies there again, look at those rows and at the actors' memory") from None
            self._pending.popleft()
            load[which] -= 1
            on_rows(len(rows), sum(r["num_tokens"] or 0 for r in rows))
            yield rows

    def _take(self, result) -> list[dict]:
        rows, counts, budget = result
        self.summary.add_work(counts)
        self.budget = min(self.budget, budget)
        return rows

    def finished(self) -> list[dict]:
        """After a stop or a failure: the rows of the windows that came back but were not handed
        on yet (a later window can finish before an earlier one), in input order."""
        refs = [ref for ref, _, _ in self._pending]
        self._pending.clear()
        ready = set(self.ray.wait(refs, num_returns=len(refs), timeout=0)[0]) if refs else set()
        rows = []
        for ref in refs:
            if ref in ready:
                try:
                    rows += self._take(self.ray.get(ref))
                except Exception:  # that window failed: its rows are scored again by a rerun
                    pass
        return sorted(rows, key=lambda row: (row["input_index"], row["completion_index"]))

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already gone with its cluster
                pass
        if self.started:
            self.ray.shutdown()


def _wait(ray, refs: list, check_stop: Callable[[], None]) -> list:
    """ray.get(refs), looking at SIGTERM/SIGUSR1 every WAIT_S while it waits. An error raised in
    an actor (an InputError of --on-overflow error, say) is raised here as itself."""
    while True:
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=WAIT_S)
        if len(ready) == len(refs):
            try:
                return ray.get(refs)
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, Exception):
                    raise exc.cause from None
                raise
        check_stop()


def _rebuilt(kind: type, message: str, hint: str | None, model: str) -> Exception:
    """An actor's loading error, raised on the driver as `score` raises it."""
    if isinstance(kind, type) and issubclass(kind, RmscoreError):
        exc = kind.__new__(kind)
        Exception.__init__(exc, message)
        exc.message, exc.hint = message, hint
        return exc
    return ModelError(f"a Ray actor could not load {model}: {kind.__name__}: {message}")

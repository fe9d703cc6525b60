"""One writer per shard (rmscore/store/lock.py): a second process stops at once naming the holder; a
lock left by a dead process never blocks a rerun or a SLURM requeue; a holder that lost its lock
writes nothing more."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from rmscore.cli import app
from rmscore.distributed.env import DistInfo
from rmscore.errors import ShardBusy
from rmscore.store import lock
from rmscore.store.writers import PartWriter
from scored import subprocess_env

HOLD = ("import sys, time\nfrom pathlib import Path\nfrom rmscore.store.lock import ShardLock\n"
        "from rmscore.distributed.env import DistInfo\n"
        "with ShardLock(Path(sys.argv[1]), DistInfo()):\n    print('held', flush=True)\n    time.sleep(120)\n")


def score(tiny_models, path, out, *extra, env=None):
    args = ["score", path, "-m", tiny_models["llama"], "-o", out, "--no-progress", *extra]
    return CliRunner().invoke(app, [str(a) for a in args], env={"RMSCORE_DEBUG": "", **(env or {})})


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "input.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question {i}?", "completion": "Yes."}) + "\n" for i in range(4)))
    return path


def plant(out, stem="00000-of-00001", mtime=None, **holder):
    """A lock file as another process would have left it."""
    path = out / ".rmscore" / "locks" / f"{stem}.lock"
    path.parent.mkdir(parents=True)
    fields = {"host": "node-17", "pid": 4242, "since": "2026-11-28T23:00:00Z", "token": "theirs"} | holder
    path.write_text(json.dumps(fields))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@contextmanager
def beating(path):
    """The heartbeat of a live holder on another host, as the file server shows it."""
    stop = threading.Event()

    def beat():
        while not stop.wait(0.05):
            os.utime(path)

    threading.Thread(target=beat, daemon=True).start()
    try:
        yield
    finally:
        stop.set()


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(lock, "STALE_S", 0.6)
    monkeypatch.setattr(lock, "POLL_S", 0.05)


def test_a_second_process_stops_at_once_and_a_killed_ones_lock_does_not_block(tiny_models, data, tmp_path,
                                                                                monkeypatch):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=subprocess_env(), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with monkeypatch.context() as patched:
            patched.setattr("rmscore.models.load_model", lambda *a, **k: pytest.fail("the model was loaded"))
            started = time.monotonic()
            refused = score(tiny_models, data, out)
        assert time.monotonic() - started < 10
        errors = [text for text in refused.output.splitlines() if text.startswith("Error:")]
        assert refused.exit_code == 2 and len(errors) == 1, refused.output
        assert f"pid {holder.pid} on {socket.gethostname()} since 20" in errors[0]
        assert not list(out.glob("part-*"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The holder died by SIGKILL and left its lock file: the rerun takes it over at once.
    assert list((out / ".rmscore" / "locks").glob("*.lock"))
    again = score(tiny_models, data, out)
    assert again.exit_code == 0, again.output
    assert not list((out / ".rmscore" / "locks").glob("*"))  # released on the way out


def test_a_dead_holder_on_another_host_is_taken_over_once_its_heartbeat_stops(tmp_path, quick):
    out = tmp_path / "out"
    plant(out, mtime=time.time() - 5)
    started = time.monotonic()
    with lock.ShardLock(out, DistInfo()) as held:
        assert held.held
        assert json.loads(held.path.read_text())["token"] == held.me.token
    assert time.monotonic() - started >= lock.STALE_S  # it watched the heartbeat first


def test_a_live_holder_on_another_host_refuses(tmp_path, quick):
    out = tmp_path / "out"
    path = plant(out)
    with beating(path), pytest.raises(ShardBusy, match="pid 4242 on node-17 since 2026-11-28T23:00:00Z"):
        lock.ShardLock(out, DistInfo()).acquire()
    assert json.loads(path.read_text())["token"] == "theirs"


def test_a_slurm_requeue_takes_over_without_waiting(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "STALE_S", 60.0)  # the heartbeat rule would take a minute
    out = tmp_path / "out"
    plant(out, job="81234", restarts=0)  # written by this job's previous run, on another node
    started = time.monotonic()
    with lock.ShardLock(out, DistInfo(job="81234", restarts=1)) as held:
        assert held.held
    assert time.monotonic() - started < 5
    other = plant(tmp_path / "other", job="99999", restarts=0)  # another job's lock is not ours to take
    with beating(other), pytest.raises(ShardBusy):
        lock.ShardLock(tmp_path / "other", DistInfo(job="81234", restarts=1)).acquire()


def test_a_holder_that_lost_its_lock_writes_nothing_more(tmp_path):
    out = tmp_path / "out"
    with lock.ShardLock(out, DistInfo()) as held:
        writer = PartWriter(out, pa.schema([("x", pa.int64())]), "00000-of-00001", 10, check=held.check)
        writer.write(pa.table({"x": [1, 2]}))
        held.path.write_text(json.dumps({"host": "node-3", "pid": 7, "since": "now", "token": "new owner"}))
        with pytest.raises(ShardBusy, match="taken over by pid 7 on node-3"):
            writer.close()
    assert not list(out.glob("*.parquet")) and not list(out.glob(".tmp-*"))
    assert json.loads(held.path.read_text())["token"] == "new owner"  # not removed on the way out


def test_live_writers_of_other_shards_are_told_from_dead_ones_in_one_watch(tmp_path, quick):
    """What a run of another shard count checks before claiming the folder (rmscore/store/resume.py):
    lock files left by dead holders on another host cost one STALE_S together, not one each."""
    out = tmp_path / "out"
    (out / ".rmscore" / "locks").mkdir(parents=True)
    stems = [f"{i:05d}-of-00004" for i in range(4)]
    for stem in stems:
        path = out / ".rmscore" / "locks" / f"{stem}.lock"
        path.write_text(json.dumps({"host": "node-17", "pid": 4242, "since": "2026-11-28T23:00:00Z",
                                    "token": stem}))
        os.utime(path, (time.time() - 5, time.time() - 5))
    started = time.monotonic()
    with beating(out / ".rmscore" / "locks" / f"{stems[3]}.lock"):
        found = lock.live_writers(out, DistInfo(), stems)
    assert found == ["shard 00003-of-00004 (pid 4242 on node-17 since 2026-11-28T23:00:00Z)"]
    assert time.monotonic() - started < 2 * lock.STALE_S

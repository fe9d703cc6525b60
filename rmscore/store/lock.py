"""One writer per shard: OUTPUT/.rmscore/locks/{shard}.lock names the process writing that shard.

Why a lock file created with link() and kept alive by a heartbeat, not fcntl/flock: SLURM clusters
keep outputs on NFS or Lustre, where kernel locks depend on mount options (Lustre: `flock`,
`localflock` or none; NFSv3: lockd, and a `nolock` mount makes every lock local). There a kernel lock
can protect nothing across nodes without saying so. link() of a finished file onto the lock name is
atomic on NFS and Lustre whatever the mount, fails if the name exists, and the file says who holds
the shard (host, pid, since), which a kernel lock cannot tell the user. The price: a dead holder
leaves its file behind, so a later run takes it over
  - at once on the same host (and pid namespace), when the holder's process is gone, or its pid now
    belongs to another;
  - at once after a SLURM requeue: the file names this SLURM job with a lower restart count, and
    SLURM requeues a job only once it holds the old run for over;
  - otherwise when the holder's heartbeat stops: a holder touches the file every HEARTBEAT_S
    seconds, and a file whose mtime does not move while we watch it for STALE_S seconds is dead.
    Only the file's own mtime is compared with itself, never the clocks of two hosts.
Before renaming each part into place the holder checks that the file is still its own, so a run
that was frozen long enough for another to take over stops without writing.

OUTPUT/.rmscore/locks/folder.lock (FolderLock) is the same kind of file, held for moments by any
shard: while a run claims the folder's shard layout (so two runs of different shard counts cannot
both start), and while a finishing shard rewrites parts to the folder's schema. It waits for another
holder instead of refusing.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from rmscore.distributed.completion import META_DIR
from rmscore.errors import ShardBusy

FOLDER_WAIT_S = 600.0  # a folder lock is held for moments; a wait this long means something is wrong
HEARTBEAT_S = 10.0
STALE_S = 25.0  # more than two heartbeats: a live holder's file moves while we watch
POLL_S = 0.5
NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)  # filesystems without hard links


@dataclass
class Holder:
    host: str
    pid: int
    since: str
    token: str
    job: str | None = None  # SLURM_JOB_ID
    restarts: int = 0  # SLURM_RESTART_COUNT
    started: str | None = None  # the process's start time (Linux), so a reused pid is not taken for it
    pidns: str | None = None  # its pid namespace (Linux): a container's pids mean nothing outside it

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"


class ShardLock:
    """Held for a `with` block: acquire() or ShardBusy, a heartbeat thread, release() on the way out."""

    def __init__(self, out_dir: Path, dist):
        self.out_dir, self.stem = Path(out_dir), dist.stem
        self.path = self.out_dir / META_DIR / "locks" / f"{dist.stem}.lock"
        pid = os.getpid()
        self.me = Holder(socket.gethostname(), pid, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         uuid.uuid4().hex, dist.job, dist.restarts, _started(pid), _pid_namespace())
        self.held = False
        self._stop = threading.Event()

    def __enter__(self) -> "ShardLock":
        if not (self.out_dir.exists() and not self.out_dir.is_dir()):  # else resume says what is wrong
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            if self._create():
                self.held = True
                threading.Thread(target=self._beat, name="rmscore-lock", daemon=True).start()
                return
            holder, mtime = _read(self.path)
            if holder is None:
                continue  # released meanwhile
            if not self._dead(holder, mtime):
                raise ShardBusy(
                    f"shard {self.stem} of {self.out_dir} is being written by {holder.describe()}",
                    f"wait for it to finish or stop it; if it is dead, its lock ({self.path}) is taken over at once "
                    f"on the same host or after a SLURM requeue, otherwise once its heartbeat stops for {STALE_S:.0f}s",
                )
            self._break(holder)
        raise ShardBusy(f"could not take the lock of shard {self.stem} of {self.out_dir}: others keep taking it")

    def check(self) -> None:
        """Raise unless the lock file is still ours (called before each part is renamed into place)."""
        if not self.held:
            return
        holder, _ = _read(self.path)
        if holder is None or holder.token != self.me.token:
            who = holder.describe() if holder else "nobody: the lock file was removed"
            raise ShardBusy(f"shard {self.stem} of {self.out_dir} was taken over by {who}",
                            "this run stops without writing more; the other run continues the shard")

    def release(self) -> None:
        self._stop.set()
        if not self.held:
            return
        holder, _ = _read(self.path)
        if holder is not None and holder.token == self.me.token:
            self.path.unlink(missing_ok=True)
        self.held = False

    def _create(self) -> bool:
        tmp = self.path.with_name(f".{self.path.name}.{self.me.token}")
        tmp.write_text(json.dumps(asdict(self.me)))
        try:
            os.link(tmp, self.path)  # atomic, and fails if the name exists: on NFS and Lustre too
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno in NO_LINKS:
                return self._create_exclusive()
            return tmp.stat().st_nlink == 2  # NFS may report a retried link as failed: the count tells
        finally:
            tmp.unlink(missing_ok=True)

    def _create_exclusive(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(asdict(self.me)))
        return True

    def _dead(self, holder: Holder, mtime: float) -> bool:
        known = self._known_dead(holder)
        return known if known is not None else not _beating({self.path: (holder, mtime)})

    def _known_dead(self, holder: Holder) -> bool | None:
        """Whether the holder is dead, when that can be told at once; None: watch its heartbeat."""
        if holder.host == self.me.host and holder.pidns == self.me.pidns:
            return not _alive(holder.pid, holder.started)
        if holder.job is not None and holder.job == self.me.job and holder.restarts < self.me.restarts:
            return True  # SLURM requeued this very job: the run that wrote the file is over
        return None

    def _break(self, dead: Holder) -> None:
        """Move a dead holder's file aside, unless a live one took its place since we looked."""
        grave = self.path.with_name(f".{self.path.name}.dead-{self.me.token}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        moved, _ = _read(grave)
        if moved is not None and moved.token != dead.token:
            try:
                os.link(grave, self.path)  # not ours to break: put it back
            except OSError:
                pass
        grave.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                holder, _ = _read(self.path)
                if holder is None or holder.token != self.me.token:
                    return  # taken over: check() stops the writer at its next part
                os.utime(self.path)
            except OSError:
                pass  # a file-server hiccup: the next beat tries again


class FolderLock(ShardLock):
    """The folder's own lock (see the module docstring): waits up to `wait_s` for another holder."""

    def __init__(self, out_dir: Path, dist, wait_s: float = FOLDER_WAIT_S):
        super().__init__(out_dir, dist)
        self.stem, self.path, self.wait_s = "folder", self.path.with_name("folder.lock"), wait_s

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                return super().acquire()
            except ShardBusy:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(POLL_S)


def live_writers(out_dir: Path, dist, stems) -> list[str]:
    """Which of the shards `stems` a live process is writing now, each with its holder. Holders on
    other hosts are watched together, so many dead ones cost one STALE_S, not one each."""
    probe = ShardLock(out_dir, dist)
    found, watched = [], {}
    for stem in stems:
        path = probe.path.with_name(f"{stem}.lock")
        holder, mtime = _read(path)
        if holder is None or holder.token == probe.me.token:
            continue
        dead = probe._known_dead(holder)
        if dead is None:
            watched[path] = (holder, mtime)
        elif not dead:
            found.append(f"shard {stem} ({holder.describe()})")
    alive = _beating(dict(watched)) if watched and not found else []
    return found + [f"shard {path.stem} ({watched[path][0].describe()})" for path in alive
                    if _read(path)[0] is not None]  # released while we watched: not a writer


def _beating(watched: dict[Path, tuple[Holder, float]]) -> list[Path]:
    """The lock files whose mtime moves (or that change hands) while we watch them for STALE_S:
    their holders are alive. Only a file's own mtime is compared with itself."""
    alive, deadline = [], time.monotonic() + STALE_S
    while watched and time.monotonic() < deadline:
        time.sleep(POLL_S)
        for path, (holder, mtime) in list(watched.items()):
            now, moved = _read(path)
            if now is None or now.token != holder.token or moved != mtime:
                alive.append(path)  # it beats (or changed hands): alive, or let the caller look again
                del watched[path]
    return alive


def _read(path: Path) -> tuple[Holder | None, float]:
    """The holder named in a lock file and the file's mtime; (None, 0) when there is no file. An
    unreadable file names an unknown holder, which is judged by its heartbeat like any other."""
    try:
        with open(path) as handle:  # open() revalidates NFS attributes (close-to-open), so mtime is fresh
            text, mtime = handle.read(), os.fstat(handle.fileno()).st_mtime
    except FileNotFoundError:
        return None, 0.0
    try:
        return Holder(**json.loads(text)), mtime
    except (ValueError, TypeError):
        return Holder("unknown host", 0, "an unknown time", f"unreadable-{mtime}"), mtime


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    now = _started(pid, zombie_is_dead=True)
    return now != "dead" and (started is None or now is None or now == started)


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _started(pid: int, zombie_is_dead: bool = False) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), "dead" for a zombie when
    asked, or None where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if zombie_is_dead and fields[0] in ("Z", "X"):
        return "dead"
    return fields[19]

"""Ray itself: importing it, joining or starting a cluster, reading what it offers."""

from __future__ import annotations

import os
import sys

from rmscore.errors import ConfigError

LOCAL = "local"  # start Ray on this machine, no dashboard, this process's job only
# Ray's single-machine mode (what it runs on macOS and Windows): every Ray process on 127.0.0.1,
# where by default on Linux ray.init turns 127.0.0.1 into the node's address and Ray 2.60's GCS and
# raylet listen on every interface. Ray reads it once, when it is imported.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def require_ray():
    """The ray module, or a one-line error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError("rmscore[ray] is not installed: Ray is needed here",
                          "pip install 'rmscore[ray]'") from None
    return ray


def connect(address: str, log=None) -> bool:
    """Join the cluster at `address` (auto: the one `ray start` or RAY_ADDRESS names; ray://host:10001: a
    Ray Client address), or start one on this machine for `local`. A process already connected
    (a notebook, a test, an OpenRLHF/verl driver) keeps its connection. True if this call started
    the connection, so the caller ends it."""
    if address == LOCAL and "ray" not in sys.modules:
        for name, value in LOOPBACK.items():
            os.environ.setdefault(name, value)  # the actors inherit it
    ray = require_ray()
    if ray.is_initialized():
        return False
    if address == LOCAL:
        # No dashboard (an HTTP server); on 127.0.0.1 only (LOOPBACK) unless Ray was imported before
        # (a notebook that imported it then asked for --ray local): then Ray binds as it always does.
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, ValueError) as exc:  # ValueError: a ray:// address without ray[client]
            raise ConfigError(f"cannot join the Ray cluster at {address!r}: {str(exc).splitlines()[0]}",
                              "start one with `ray start --head`, set RAY_ADDRESS, or use --ray local") from None
    if log is not None:
        log(f"Ray {ray.__version__}: {'started on this machine' if address == LOCAL else 'joined ' + address}, "
            f"job {ray.get_runtime_context().get_job_id()}")
    return True


def cluster_gpus() -> float:
    """GPUs of the cluster this process is connected to (connecting as Ray Data would, if not yet)."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init()
    return float(ray.cluster_resources().get("GPU", 0))


def defaults(actors: int | None, gpus_per_actor: float | None) -> tuple[int, float]:
    """(actors, GPUs per actor): one actor per GPU (per gpus_per_actor GPUs) of the cluster; one
    actor without a GPU on a cluster that has none (torch on one thread there: Ray sets
    OMP_NUM_THREADS=1 in an actor that reserves no CPU)."""
    gpus = cluster_gpus()
    per = gpus_per_actor if gpus_per_actor is not None else (1.0 if gpus else 0.0)
    if actors is None:
        actors = max(1, int(gpus // per)) if per else 1
    return actors, per


def actor_device(device: str) -> str:
    """The device of a model loaded in a Ray actor: with device auto, its GPU if Ray gave it one,
    else the CPU (never a GPU Ray did not assign). Outside an actor, `device` as given."""
    if device != "auto":
        return device
    try:
        import ray
    except ImportError:
        return device
    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return device
    return "cuda" if ray.get_gpu_ids() else "cpu"

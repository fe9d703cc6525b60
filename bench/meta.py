"""What a benchmark's JSON records beside its figures, so bench/readme.py can say when, how and where
they were measured: the date, the command, the commit, the versions, the machine and its load."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_average() -> float | None:
    """The 1-minute load average: on a shared machine, how many others were running."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() + ("+changes" if dirty else "")


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_meta(script: str, load_at_start: float | None, **extra) -> dict:
    """The run's provenance; `script` is how the command starts (e.g. "python bench/run.py")."""
    return {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([script, *sys.argv[1:]]), "commit": git_commit(),
        "torch": version("torch"), "transformers": version("transformers"), "python": platform.python_version(),
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "load_average": [load_at_start, load_average()],
        **extra,
    }

"""`make`'s install stamp: a changed TORCH_SPEC installs again into an existing .venv (issue 19.5)."""

import shutil
import subprocess

import pytest

from scored import REPO


@pytest.fixture
def fake_make(tmp_path):
    """The repository's Makefile with a fake interpreter that logs the commands it is given."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(REPO / "Makefile", tmp_path)
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    python = tmp_path / "v" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/log\n')
    python.chmod(0o755)

    def run(*args):
        done = subprocess.run(["make", "-s", "v/bin/.installed", "VENV=v", f"PYTHON={python}", *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        log = tmp_path / "log"
        text = log.read_text() if log.exists() else ""
        log.unlink(missing_ok=True)
        return [line for line in text.splitlines() if line.startswith("-m pip install -q torch")]

    return run


def test_the_install_stamp_follows_torch_spec(fake_make):
    assert fake_make() == ["-m pip install -q torch==2.13.0"]
    assert fake_make() == []  # installed: nothing to do
    assert fake_make("TORCH_SPEC=torch>=2.4") == ["-m pip install -q torch>=2.4"]
    assert fake_make("TORCH_SPEC=torch>=2.4") == []
    assert fake_make() == ["-m pip install -q torch==2.13.0"]  # back to the default spec

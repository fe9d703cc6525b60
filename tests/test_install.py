"""A real, non-editable install (what `pip install .`, a wheel or `pip install git+...` give) finds
its package data: the demo reward model (the default model), and the CSS and JS of inspect's
report.html."""

import shutil
import subprocess
import sys

import pyarrow.dataset as ds

from scored import REPO, subprocess_env


def test_default_model_works_from_a_non_editable_install(tmp_path):
    # Build from a copy, so the build leaves nothing in the repository (build/, *.egg-info).
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "rmscore", source / "rmscore", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
           "--no-compile", "--target", str(target), str(source)]
    built = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert (target / "rmscore" / "data" / "demo-rm" / "model.safetensors").is_file()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.jsonl").write_text('{"prompt": "Say hello.", "completion": "Hello!"}\n')
    env = subprocess_env(PYTHONPATH=str(target))  # the installed copy only: not the repository
    run = subprocess.run([sys.executable, "-m", "rmscore", "score", "data.jsonl", "-o", "out", "--no-progress"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = ds.dataset(str(elsewhere / "out")).to_table().to_pylist()
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["score"] is not None
    meta = ds.dataset(str(elsewhere / "out")).schema.metadata[b"rmscore"].decode()
    assert str(target / "rmscore" / "data" / "demo-rm") in meta  # the model came from the install
    page = subprocess.run([sys.executable, "-m", "rmscore", "inspect", "out", "-o", "look"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert page.returncode == 0, page.stderr
    assert '<script type="application/json" id="rows-data">' in (elsewhere / "look" / "report.html").read_text()

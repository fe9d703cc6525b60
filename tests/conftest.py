import json
import os
import shutil
import sys
from pathlib import Path

import pytest

# Tests are offline and CPU-only; one thread keeps them stable on a shared 2-core machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Tiny seq-cls checkpoints, built once per session: copy before modifying."""
    from tiny import save_seq_cls

    root = tmp_path_factory.mktemp("models")
    return {
        "llama": save_seq_cls(root / "llama", "llama", "llama3"),
        "qwen2": save_seq_cls(root / "qwen2", "qwen2", "chatml"),
        "gemma2": save_seq_cls(root / "gemma2", "gemma2", "gemma"),
        "llama-pad-eos": save_seq_cls(root / "llama-pad-eos", "llama", "llama3", pad="<|eot_id|>"),
        "llama-3labels": save_seq_cls(root / "llama-3labels", "llama", "llama3", num_labels=3),
    }


@pytest.fixture(scope="session")
def smollm2(request, tmp_path_factory):
    """SmolLM2-135M-Instruct (real weights) as (ordinary checkpoint folder, its GGUF file); built
    once and cached in the pytest cache (tests/real_weights.py). Skips when it cannot be had."""
    from real_weights import smollm2_checkpoint

    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider: this session only
    root = Path(cache.mkdir("rmscore-smollm2")) if cache else tmp_path_factory.mktemp("rmscore-smollm2")
    folder, gguf, reason = smollm2_checkpoint(root)
    if folder is None:
        pytest.skip(reason)
    return folder, gguf


@pytest.fixture
def write_jsonl(tmp_path):
    def write(rows, name="input.jsonl"):
        path = tmp_path / name
        with open(path, "w") as f:
            for row in rows:
                f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
        return path

    return write


@pytest.fixture
def copy_model(tmp_path):
    def copy(src: Path) -> Path:
        dst = tmp_path / f"model-{src.name}"
        shutil.copytree(src, dst)
        return dst

    return copy


def make_demo_commands() -> list[list[str]]:
    """The `rmscore ...` lines of the Makefile's demo target (argv after `rmscore`)."""
    import re
    import shlex

    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe, "Makefile has no demo target"
    commands = []
    for line in recipe.group(1).splitlines():
        if line.strip().lstrip("@-").startswith("echo "):
            continue  # what make demo says, not what it makes
        assert "rmscore " in line, f"make demo runs {line.strip()!r}: teach the tests to do the same"
        commands.append(shlex.split(line.split("rmscore ", 1)[1]))
    return commands


@pytest.fixture(scope="session")
def made_demo(tmp_path_factory):
    """A folder as a fresh clone is after `make demo`: data/ and recipes/ linked, demo-out/ written
    by the Makefile's demo lines (run in-process, once per session). Returns (folder, [(argv,
    output)]); a failing line fails every test that uses it."""
    from typer.testing import CliRunner

    from rmscore.cli import app

    root = tmp_path_factory.mktemp("make-demo")
    for name in ("data", "recipes"):
        (root / name).symlink_to(REPO / name, target_is_directory=True)
    outputs, old = [], Path.cwd()
    os.chdir(root)
    try:
        for args in make_demo_commands():
            result = CliRunner().invoke(app, args, env={"RMSCORE_DEBUG": ""})
            assert result.exit_code == 0, f"make demo's `rmscore {' '.join(args)}` failed:\n{result.output}"
            outputs.append((args, result.output))
    finally:
        os.chdir(old)
    return root, outputs

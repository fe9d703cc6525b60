"""Every forward path under flex_attention equals the batch-size-1 reference, on CPU.

torch compiles flex_attention with Inductor's C++ template on CPU: the first call of each mask rule
compiles (10-30 s on an idle core). Compiled kernels live in the process, so the default run checks
Llama on every path in one test, and the other architectures (Qwen2, Gemma-2 past its sliding
window, ArmoRM, a process reward model) are marked slow: `pytest -m slow tests/test_flex.py`.
A second batch shape compiles once more, with dynamic shapes; later shapes reuse that.
"""

import random

import pytest

from test_forward_paths import shared_prompt_rows
from test_scoring import reference_scores, score
from tiny import random_text

TOL = 1e-5
PATHS = ("padded", "packed", "prompt-reuse")
FLEX = {"attn_implementation": "flex_attention"}


def check_paths(model_dir, rows, expected, write_jsonl, tmp_path, paths=PATHS, budget=600, key="score"):
    for path in paths:
        summary, out = score(write_jsonl(rows, f"{path}.jsonl"), model_dir, tmp_path / path, budget, forward=path, **FLEX)
        assert path in summary.forward_path and summary.statuses == {"ok": len(expected)}
        for r in out:
            want = expected[(r["input_index"], r["completion_index"])]
            got = r[key]
            worst = max(abs(a - b) for a, b in zip(got, want, strict=True)) if key == "step_scores" else abs(got - want)
            assert worst < TOL, (path, worst)
        if path == "prompt-reuse":
            assert summary.tokens_saved > 0


def test_llama_every_path_under_flex(tiny_models, write_jsonl, tmp_path):
    rows = shared_prompt_rows(n_prompts=2, n_completions=3, seed=11)
    check_paths(tiny_models["llama"], rows, reference_scores(tiny_models["llama"], rows), write_jsonl, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["qwen2", "gemma2"])
def test_every_path_under_flex(tiny_models, write_jsonl, tmp_path, arch):
    rng = random.Random(12)
    rows = [{"prompt": random_text(rng, 30, 45), "completions": [random_text(rng, 5, 40) for _ in range(3)]}
            for _ in range(2)]
    expected = reference_scores(tiny_models[arch], rows)
    check_paths(tiny_models[arch], rows, expected, write_jsonl, tmp_path)
    if arch == "gemma2":  # rows past the 64-token sliding window: the window really cuts
        _, out = score(write_jsonl(rows), tiny_models[arch], tmp_path / "len", 600)
        assert min(r["num_tokens"] for r in out) > 64


@pytest.mark.slow
def test_armorm_under_flex(tmp_path, write_jsonl):
    from tiny_orm import armorm_reference, load_ref_armorm, messages_of, mixed_rows, save_armorm

    armorm = save_armorm(tmp_path / "armorm")
    rows = [r for r in mixed_rows(seed=13) if len(r["completions"]) > 1][:3]
    model, tokenizer = load_ref_armorm(armorm)
    expected = {(i, j): armorm_reference(model, tokenizer, messages_of(r, c))[0]
                for i, r in enumerate(rows) for j, c in enumerate(r["completions"])}
    check_paths(armorm, rows, expected, write_jsonl, tmp_path)


@pytest.mark.slow
def test_process_reward_model_under_flex(tmp_path, write_jsonl):
    from prm_cards import qwen_prm_reference
    from tiny_prm import save_qwen_prm, step_rows

    prm = save_qwen_prm(tmp_path / "prm")
    reference = qwen_prm_reference(prm)
    rows = [{"prompt": r["prompt"], "steps": s["steps"]} for r in step_rows(2, seed=14) for s in step_rows(2, seed=15)]
    expected = {(i, 0): reference(r["prompt"], r["steps"]) for i, r in enumerate(rows)}
    check_paths(prm, rows, expected, write_jsonl, tmp_path, key="step_scores")


def test_flex_on_cuda_with_a_head_dim_under_16_refuses_before_loading(tiny_models, monkeypatch):
    """Inductor's Triton flex kernel cannot take head dim 8 (the tiny models'): the first forward
    failed deep in torch.compile on the H200 (2026-12-04). Now the load refuses, in one line."""
    import torch

    from rmscore.config import ModelConfig
    from rmscore.errors import ModelError
    from rmscore.models import load_model, loading

    monkeypatch.setattr(loading, "resolve_device", lambda name: torch.device(name))  # as if CUDA were here
    with pytest.raises(ModelError, match="flex attention on CUDA needs a head dimension of at least 16; .* has 8"):
        load_model(ModelConfig(str(tiny_models["llama"]), device="cuda", **FLEX))
    loading.check_attention(ModelConfig("m", device="cpu", **FLEX), {"hidden_size": 32, "num_attention_heads": 4})
    loading.check_attention(ModelConfig("m", device="cuda", **FLEX), {"head_dim": 16, "num_attention_heads": 4})

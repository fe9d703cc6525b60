"""The flash-attention path's plumbing, checked on CPU.

The kernel needs a GPU, but what rmscore hands it does not. A pure-torch varlen attention,
registered through transformers' AttentionInterface under a name with "flash" in it (which is how
transformers, and rmscore, recognise a flash kernel), stands in for it: it records what every
attention layer receives and computes causal attention inside each packed sequence only, from
cu_seq_lens alone. Packed scores must then equal the batch-size-1 reference, and every layer of
every forward must have been given the sequence boundaries and max lengths as Python ints (a
tensor there would cost a device sync in every layer).
"""

import pytest
import torch

from test_scoring import reference_scores
from tiny import completions_rows

NAME = "rmscore_flash_standin"
TOL = 1e-5


class Calls(list):
    pass


CALLS = Calls()


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None,
                     sliding_window=None, **kwargs):
    """query (1, heads, T, d), key/value (1, kv heads, T, d) -> (1, T, heads, d), like FA varlen."""
    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    max_q, max_k = kwargs.get("max_length_q"), kwargs.get("max_length_k")
    CALLS.append({"layer": module.layer_idx, "cu_q": None if cu_q is None else cu_q.tolist(), "max_q": max_q,
                  "max_k": max_k, "same": cu_k is not None and torch.equal(cu_q, cu_k), "mask": attention_mask})
    assert cu_q is not None, "no cu_seq_lens reached this layer: sequences would attend to each other"
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    out = torch.empty_like(query)
    bounds = cu_q.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        scores = query[:, :, start:end] @ key[:, :, start:end].transpose(-1, -2) * scaling  # (1, h, n, n)
        if softcap is not None:
            scores = softcap * torch.tanh(scores / softcap)
        pos = torch.arange(end - start)
        allowed = pos[None, :] <= pos[:, None]
        if sliding_window is not None:
            allowed &= pos[:, None] - pos[None, :] < sliding_window
        scores = scores.masked_fill(~allowed, float("-inf"))
        out[:, :, start:end] = scores.softmax(-1) @ value[:, :, start:end]
    return out.transpose(1, 2).contiguous(), None


@pytest.fixture(scope="module", autouse=True)
def registered():
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, varlen_attention)
    yield


def on_standin(model_dir):
    """The adapter loaded as usual, then switched to the stand-in (loading under a flash name would
    make transformers look for the real kernel)."""
    from rmscore.config import ModelConfig
    from rmscore.models import load_model

    model, _ = load_model(ModelConfig(str(model_dir)))
    model.backbone.config._attn_implementation = NAME
    return model


def score_window(model, rows, path="auto", budget=400):
    from rmscore.config import BatchConfig
    from rmscore.score.forward import Runners
    from rmscore.score.records import Sample, prompt_hash
    from rmscore.score.scorer import Scorer
    from rmscore.score.summary import RunSummary

    summary = RunSummary("x")
    scorer = Scorer(model, Runners(model, path), 4096, BatchConfig(max_tokens_per_batch=budget), summary)
    samples = [Sample(i, j, prompt_hash([{"role": "user", "content": r["prompt"]}]),
                      [{"role": "user", "content": r["prompt"]}], True, c)
               for i, r in enumerate(rows) for j, c in enumerate(r["completions"])]
    out = scorer.score_window(samples)
    return summary, {(r["input_index"], r["completion_index"]): r for r in out}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2"])
def test_packed_rows_hand_sequence_bounds_to_every_layer(tiny_models, arch):
    rows = completions_rows(n_prompts=4, n_completions=3, seed=21)
    expected = reference_scores(tiny_models[arch], rows)
    model = on_standin(tiny_models[arch])
    CALLS.clear()
    summary, out = score_window(model, rows)
    assert summary.paths == {"packed": len(expected)}  # auto packs on flash kernels
    assert max(abs(out[k]["score"] - expected[k]) for k in expected) < TOL
    layers = model.backbone.config.num_hidden_layers
    forwards = [CALLS[i:i + layers] for i in range(0, len(CALLS), layers)]
    assert len(forwards) == summary.batches > 1
    for calls in forwards:
        assert [c["layer"] for c in calls] == list(range(layers))  # every layer, each forward
        assert all(c["cu_q"] == calls[0]["cu_q"] and c["same"] for c in calls)
        assert all(type(c["max_q"]) is int and c["max_q"] == c["max_k"] for c in calls)  # no device sync
        assert calls[0]["max_q"] == max(b - a for a, b in zip(calls[0]["cu_q"], calls[0]["cu_q"][1:]))
        assert all(c["mask"] is None for c in calls)  # boundaries from cu_seq_lens alone
    if arch == "gemma2":  # rows past the sliding window, so the window really mattered
        assert max(r["num_tokens"] for r in out.values()) > model.backbone.config.sliding_window


def test_prompt_reuse_is_not_attempted_on_flash_kernels(tiny_models):
    """A flash kernel takes no 4-D mask: auto packs rows that share prompts, and forced prompt
    reuse scores through padded rows (which the stand-in, varlen only, refuses)."""
    from test_forward_paths import shared_prompt_rows

    rows = shared_prompt_rows(n_prompts=2, n_completions=3, seed=22)
    expected = reference_scores(tiny_models["llama"], rows)
    model = on_standin(tiny_models["llama"])
    summary, out = score_window(model, rows)
    assert summary.paths == {"packed": len(expected)}
    assert max(abs(out[k]["score"] - expected[k]) for k in expected) < TOL
    with pytest.raises(AssertionError, match="no cu_seq_lens"):
        score_window(model, rows, path="prompt-reuse")

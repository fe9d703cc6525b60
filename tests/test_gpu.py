"""What only a GPU can show: no host sync per batch, a real out-of-memory back-off, pinned inputs,
the CUDA token budget, --device-map and flex attention compiled for the GPU.

Run by `bench/device_check.sh` (pytest -m gpu); skipped where CUDA is absent.
"""

import warnings

import pytest
import torch

from test_forward_paths import shared_prompt_rows
from test_scoring import reference_scores, score
from tiny import completions_rows

pytestmark = pytest.mark.gpu


def cuda_model(model_dir, **kw):
    from rmscore.config import ModelConfig
    from rmscore.models import load_model

    model, _ = load_model(ModelConfig(str(model_dir), device="cuda", dtype="float32", **kw))
    return model


def samples_of(rows):
    from rmscore.score.records import Sample, prompt_hash

    return [Sample(i, j, prompt_hash([{"role": "user", "content": r["prompt"]}]), [{"role": "user", "content": r["prompt"]}],
                   True, c) for i, r in enumerate(rows) for j, c in enumerate(r["completions"])]


def scorer_for(model, path, budget):
    from rmscore.config import BatchConfig
    from rmscore.score.forward import Runners
    from rmscore.score.scorer import Scorer
    from rmscore.score.summary import RunSummary

    summary = RunSummary("gpu")
    return Scorer(model, Runners(model, path), 4096, BatchConfig(max_tokens_per_batch=budget), summary), summary


def syncs_while_scoring(model, path, budget, samples) -> tuple[int, int, list[str]]:
    """(device syncs counted by torch.cuda.set_sync_debug_mode, forwards, where they happened) for
    one window. The places (file:line of the Python frame that called the syncing op) are what a
    failure needs: the first GPU run saw a sync per padded forward that no CPU check reproduces."""
    scorer, summary = scorer_for(model, path, budget)
    scorer.score_window(samples[:4])  # warm-up: allocator, kernels, lazily built buffers
    summary.batches = 0
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            scorer.score_window(samples)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    places = sorted({f"{w.filename}:{w.lineno}" for w in syncs})
    return len(syncs), summary.batches, places


@pytest.mark.parametrize("path", ["padded", "prompt-reuse"])
def test_no_host_sync_per_batch(tiny_models, path):
    """Heads leave scores on the device and the window copies them back once: the syncs of a
    window do not grow with its number of forwards."""
    model = cuda_model(tiny_models["llama"])
    samples = samples_of(shared_prompt_rows(n_prompts=6, n_completions=5, seed=31))
    few, few_forwards, _ = syncs_while_scoring(model, path, 100_000, samples)
    many, many_forwards, places = syncs_while_scoring(model, path, 96, samples)
    assert many_forwards > 4 * few_forwards
    assert many == few <= 2, f"{many} syncs for {many_forwards} forwards, {few} for {few_forwards}, at {places}"


def test_out_of_memory_on_real_memory_backs_off_and_scores_every_row(tiny_models):
    model = cuda_model(tiny_models["llama"])
    samples = samples_of(completions_rows(n_prompts=64, n_completions=40, seed=32))  # 2,560 distinct rows
    clean, _ = scorer_for(model, "padded", 4096)
    expected = {(r["input_index"], r["completion_index"]): r["score"] for r in clean.score_window(samples)}
    # Leave ~4 MiB free: the first batch (512 rows, ~100k padded tokens) needs far more.
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    filler = torch.empty(max(free - 4 * 2**20, 0), dtype=torch.uint8, device="cuda")
    try:
        scorer, summary = scorer_for(model, "padded", 1 << 20)
        out = scorer.score_window(samples)
    finally:
        del filler
        torch.cuda.empty_cache()
    assert summary.oom_retries > 0 and scorer.budget < 1 << 20
    assert [r["status"] for r in out] == ["ok"] * len(samples)
    assert max(abs(r["score"] - expected[(r["input_index"], r["completion_index"])]) for r in out) < 1e-4


def test_inputs_are_pinned_and_the_cuda_budget_fills_free_memory(tiny_models):
    from rmscore.score.forward import PaddedForward, default_token_budget

    model = cuda_model(tiny_models["llama"])
    batch = model.encode(samples_of(completions_rows(2, 2, seed=33)))
    assert all(t.is_pinned() for t in PaddedForward(model).collate(batch).values())
    budget = default_token_budget(model, 2048)
    assert 2048 <= budget <= 65_536


def test_device_map_auto_scores_like_the_reference(tiny_models, write_jsonl, tmp_path):
    rows = completions_rows(n_prompts=3, n_completions=3, seed=34)
    expected = reference_scores(tiny_models["llama"], rows)
    summary, out = score(write_jsonl(rows), tiny_models["llama"], tmp_path / "o", 512, device_map="auto",
                         dtype="float32")
    assert summary.statuses == {"ok": len(expected)}
    assert max(abs(r["score"] - expected[(r["input_index"], r["completion_index"])]) for r in out) < 1e-4


@pytest.fixture(scope="module")
def llama_head_dim_16(tmp_path_factory):
    """The tiny Llama has head dim 8; Inductor's Triton flex kernel needs at least 16."""
    from tiny import save_seq_cls

    return save_seq_cls(tmp_path_factory.mktemp("models") / "llama-hd16", "llama", "llama3", head_dim=16)


@pytest.mark.parametrize("path", ["padded", "packed", "prompt-reuse"])
def test_flex_attention_on_the_gpu(llama_head_dim_16, write_jsonl, tmp_path, path):
    rows = shared_prompt_rows(n_prompts=3, n_completions=3, seed=35)
    expected = reference_scores(llama_head_dim_16, rows)
    summary, out = score(write_jsonl(rows), llama_head_dim_16, tmp_path / path, 600, forward=path, device="cuda",
                         dtype="float32", attn_implementation="flex_attention")
    assert path in summary.forward_path
    assert max(abs(r["score"] - expected[(r["input_index"], r["completion_index"])]) for r in out) < 1e-4


def test_flex_attention_with_a_small_head_dim_refuses_before_scoring(tiny_models, write_jsonl, tmp_path):
    from rmscore.errors import ModelError

    with pytest.raises(ModelError, match="head dimension of at least 16"):
        score(write_jsonl(shared_prompt_rows(n_prompts=1, n_completions=2, seed=36)), tiny_models["llama"],
              tmp_path / "o", 600, device="cuda", attn_implementation="flex_attention")

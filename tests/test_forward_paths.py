"""Packed, prompt-reuse and padded forwards all give the batch-size-1 numbers; OOM loses no row."""

import random

import pytest
import torch

from rmscore.config import BatchConfig, ModelConfig
from rmscore.score.forward import Runners, reuse_saving
from rmscore.score.forward.prefix import shared_prefix
from rmscore.models import load_model
from rmscore.score.records import OUT_OF_MEMORY, Sample, prompt_hash
from rmscore.score.scorer import Scorer
from rmscore.score.summary import RunSummary
from test_scoring import reference_scores, score
from tiny import completions_rows, random_text

TOL = 1e-5


def shared_prompt_rows(n_prompts=4, n_completions=5, seed=0):
    """Long prompts, several short completions each: where prompt reuse pays."""
    rng = random.Random(seed)
    return [{"prompt": random_text(rng, 30, 60), "completions": [random_text(rng, 1, 15) for _ in range(n_completions)]}
            for _ in range(n_prompts)]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2"])
@pytest.mark.parametrize("path", ["padded", "packed", "prompt-reuse"])
def test_every_path_equals_batch_size_one(tiny_models, write_jsonl, tmp_path, arch, path):
    rows = shared_prompt_rows(seed=1) + completions_rows(n_prompts=2, n_completions=3, seed=2)
    expected = reference_scores(tiny_models[arch], rows)
    for budget in (150, 2000):
        summary, out = score(write_jsonl(rows), tiny_models[arch], tmp_path / f"o{budget}", budget, forward=path)
        got = {(r["input_index"], r["completion_index"]): r["score"] for r in out}
        worst = max(abs(got[k] - expected[k]) for k in expected)
        assert worst < TOL, f"{arch}/{path}/{budget}: {worst}"
        assert summary.statuses == {"ok": len(expected)}
        assert path in summary.forward_path


def test_prompt_reuse_reports_saved_tokens(tiny_models, write_jsonl, tmp_path):
    rows = shared_prompt_rows(n_prompts=3, n_completions=4, seed=3)
    summary, out = score(write_jsonl(rows), tiny_models["llama"], tmp_path / "o", 4000, forward="prompt-reuse")
    # Each prompt's shared tokens are computed once instead of four times.
    assert summary.tokens == sum(r["num_tokens"] for r in out)
    assert 0 < summary.tokens_saved < summary.tokens
    assert summary.computed_tokens == summary.tokens - summary.tokens_saved
    assert summary.tokens_saved / summary.tokens > 0.3


def test_auto_picks_prompt_reuse_only_when_it_pays(tiny_models, write_jsonl, tmp_path):
    shared, _ = score(write_jsonl(shared_prompt_rows(seed=4), "a.jsonl"), tiny_models["llama"], tmp_path / "a", 2000)
    assert "prompt-reuse" in shared.forward_path
    single = [{"prompt": r["prompt"], "completion": r["completions"][0]} for r in completions_rows(4, 1, seed=5)]
    alone, _ = score(write_jsonl(single, "b.jsonl"), tiny_models["llama"], tmp_path / "b", 2000)
    assert alone.forward_path.startswith("padded")


def test_reuse_saving_counts_only_shared_tokens():
    from rmscore.score.records import Encoded

    encs = [Encoded([1, 2, 3, 4], [3], group="a"), Encoded([1, 2, 3, 9, 9], [4], group="a"),
            Encoded([1, 2, 3, 4], [3], group="b")]
    assert reuse_saving(encs) == pytest.approx(3 / 13)  # group a shares 3 tokens once; b alone


class FlakyRunner:
    """Wraps a real runner; raises CUDA's out-of-memory error above a token threshold."""

    def __init__(self, runner, limit):
        self.runner, self.limit, self.name = runner, limit, runner.name
        self.calls = []

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def outputs(self, batch, inputs=None, max_tokens=None):
        self.calls.append(len(batch))
        if self.runner.cost(batch).padded > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.runner.outputs(batch, inputs, max_tokens)


def test_out_of_memory_splits_and_keeps_every_row_once(tiny_models):
    model, _ = load_model(ModelConfig(str(tiny_models["llama"])))
    runners = Runners(model, "padded")
    flaky = FlakyRunner(runners.padded, limit=300)
    runners.padded = flaky
    summary = RunSummary("x")
    scorer = Scorer(model, runners, 2048, BatchConfig(max_tokens_per_batch=4000), summary)
    rows = completions_rows(n_prompts=4, n_completions=4, seed=6)
    prompt = [{"role": "user", "content": "x"}]
    samples = [Sample(i, j, prompt_hash(prompt), [{"role": "user", "content": r["prompt"]}], True, c)
               for i, r in enumerate(rows) for j, c in enumerate(r["completions"])]
    samples.append(Sample(99, 0, "long", prompt, True, "word " * 400))  # too big even alone
    out = scorer.score_window(samples)
    assert [(r["input_index"], r["completion_index"]) for r in out] == [s.key for s in samples]
    assert summary.oom_retries > 0 and scorer.budget <= 300
    assert out[-1]["status"] == OUT_OF_MEMORY and out[-1].get("score") is None
    scored = [r for r in out if r["status"] == "ok"]
    assert len(scored) == len(samples) - 1
    # The same rows scored without memory trouble give the same numbers.
    plain = Scorer(model, Runners(model, "padded"), 2048, BatchConfig(max_tokens_per_batch=4000), RunSummary("y"))
    clean = {(r["input_index"], r["completion_index"]): r["score"] for r in plain.score_window(samples[:-1])}
    assert max(abs(clean[(r["input_index"], r["completion_index"])] - r["score"]) for r in scored) < TOL
    # After the back-off, a new window plans under the smaller budget: no further failures.
    before = summary.oom_retries
    scorer.score_window(samples[:-1])
    assert summary.oom_retries == before


class FakeDevice:
    """Memory of a pretend GPU: a block counts while something holds it, as a CUDA tensor does."""

    def __init__(self, size):
        self.size, self.used = size, 0

    def take(self, n):
        if self.used + n > self.size:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        self.used += n
        return Block(self, n)


class Block:
    def __init__(self, device, n):
        self.device, self.n = device, n

    def __del__(self):
        self.device.used -= self.n


class HoldingRunner(FlakyRunner):
    """Allocates as a real forward does: the inputs first, then activations that may not fit. A
    failed forward's inputs stay held for as long as something keeps its frame."""

    def __init__(self, runner, device):
        super().__init__(runner, limit=None)
        self.device = device

    def outputs(self, batch, inputs=None, max_tokens=None):
        tokens = self.runner.cost(batch).padded
        ids = self.device.take(tokens)  # noqa: F841  (held by this frame, like a tensor local)
        self.device.take(8 * tokens)  # activations
        return self.runner.outputs(batch, inputs, max_tokens)


def test_out_of_memory_retries_after_the_failed_forward_is_freed(tiny_models):
    """The retry must not run while the error's traceback holds the failed forward's memory: on a
    GPU the halves, and at last single rows, ran out of memory too (device check, 2026-12-04)."""
    model, _ = load_model(ModelConfig(str(tiny_models["llama"])))
    samples = [Sample(i, j, None, [{"role": "user", "content": r["prompt"]}], True, c)
               for i, r in enumerate(completions_rows(n_prompts=4, n_completions=4, seed=7)) for j, c in enumerate(r["completions"])]
    longest = max(len(e) for e in model.encode(samples))
    device = FakeDevice(9 * longest + 8)  # any row fits alone, on an otherwise empty device
    runners = Runners(model, "padded")
    runners.padded = HoldingRunner(runners.padded, device)
    summary = RunSummary("x")
    out = Scorer(model, runners, 2048, BatchConfig(max_tokens_per_batch=100_000), summary).score_window(samples)
    assert summary.oom_retries > 0
    assert [r["status"] for r in out] == ["ok"] * len(samples)
    assert device.used == 0


def test_prefetch_keeps_order_and_raises():
    from rmscore.score.pipeline import prefetch

    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("boom")

    got = []
    with pytest.raises(ValueError, match="boom"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1]


@pytest.mark.parametrize("path", ["padded", "prompt-reuse"])
def test_repeated_completions_scored_once_and_identically(tiny_models, write_jsonl, tmp_path, path):
    rows = [{"prompt": "same question", "completions": ["an answer", "another answer", "an answer", "an answer"]},
            {"prompt": "other", "completion": "an answer"}]
    rows = [{"prompt": r["prompt"], "completions": r.get("completions", [r.get("completion")])} for r in rows]
    summary, out = score(write_jsonl(rows), tiny_models["llama"], tmp_path / "o", 64, forward=path)
    scores = [r["score"] for r in out]
    assert scores[0] == scores[2] == scores[3]  # bit-identical, whatever batch each copy fell in
    assert scores[0] != scores[4]  # same completion, other prompt: a different input
    assert summary.tokens == sum(r["num_tokens"] for r in out)
    assert summary.computed_tokens < summary.tokens


def test_prompt_reuse_shares_a_group_bigger_than_the_budget(tiny_models, write_jsonl, tmp_path):
    """One prompt, twelve completions, a budget smaller than the group (and than some rows): the
    prompt is still computed once, and the scores are the batch-size-1 ones."""
    rng = random.Random(7)
    rows = [{"prompt": random_text(rng, 40, 40), "completions": [random_text(rng, 2, 30) for _ in range(12)]}]
    expected = reference_scores(tiny_models["llama"], rows)
    summary, out = score(write_jsonl(rows), tiny_models["llama"], tmp_path / "o", 96, forward="prompt-reuse")
    assert max(r["num_tokens"] for r in out) > 96  # rows longer than the budget
    model, _ = load_model(ModelConfig(str(tiny_models["llama"])))
    prompt = [{"role": "user", "content": rows[0]["prompt"]}]
    encs = model.encode([Sample(0, j, "p", prompt, True, c) for j, c in enumerate(rows[0]["completions"])])
    shared = shared_prefix([e.ids for e in encs])
    assert shared > 40 and summary.tokens_saved == 11 * shared  # the prompt computed once, not 12 times
    assert summary.batches > 2  # the group's completions ran in several forwards
    assert max(abs(r["score"] - expected[(r["input_index"], r["completion_index"])]) for r in out) < TOL


def test_prompt_reuse_on_gemma2_rows_longer_than_its_sliding_window(tiny_models, write_jsonl, tmp_path):
    """Gemma-2 alternates sliding-window (64 tokens here) and full layers: reused prompt keys must
    drop out of the window exactly as in a whole-sequence forward."""
    rng = random.Random(8)
    rows = [{"prompt": random_text(rng, 30, 45), "completions": [random_text(rng, 5, 40) for _ in range(4)]}
            for _ in range(3)]
    expected = reference_scores(tiny_models["gemma2"], rows)
    summary, out = score(write_jsonl(rows), tiny_models["gemma2"], tmp_path / "o", 400, forward="prompt-reuse")
    assert min(r["num_tokens"] for r in out) > 64 and summary.tokens_saved > 0
    assert max(abs(r["score"] - expected[(r["input_index"], r["completion_index"])]) for r in out) < TOL


def test_prompt_reuse_reads_armorm_gate_inside_the_shared_prompt(tmp_path, write_jsonl):
    from tiny_orm import armorm_reference, load_ref_armorm, messages_of, mixed_rows, save_armorm

    armorm = save_armorm(tmp_path / "armorm")
    rows = [r for r in mixed_rows(seed=3) if len(r["completions"]) > 1]
    model, tokenizer = load_ref_armorm(armorm)
    expected = {(i, j): armorm_reference(model, tokenizer, messages_of(r, c))
                for i, r in enumerate(rows) for j, c in enumerate(r["completions"])}
    summary, out = score(write_jsonl(rows), armorm, tmp_path / "o", 300, forward="prompt-reuse")
    assert summary.tokens_saved > 0 and "prompt-reuse" in summary.forward_path
    for r in out:
        score_, rewards, gating = expected[(r["input_index"], r["completion_index"])]
        assert abs(r["score"] - score_) < TOL and max(abs(a - b) for a, b in zip(r["gating_output"], gating)) < TOL
    # The gate position really is inside the prompt the completions share.
    adapter, _ = load_model(ModelConfig(str(armorm)))
    prompt = [{"role": "user", "content": rows[0]["prompt"]}]
    encs = adapter.encode([Sample(0, j, "p", prompt, True, c) for j, c in enumerate(rows[0]["completions"])])
    assert encs[0].positions[0] < shared_prefix([e.ids for e in encs])


def test_prompt_reuse_scores_process_reward_model_steps(tmp_path, write_jsonl):
    from prm_cards import qwen_prm_reference
    from tiny_prm import save_qwen_prm, step_rows

    prm = save_qwen_prm(tmp_path / "prm")
    reference = qwen_prm_reference(prm)
    rows = [{"prompt": r["prompt"], "steps": s["steps"]} for r in step_rows(3, seed=9)
            for s in step_rows(3, seed=10)]  # each prompt with three step lists
    summary, out = score(write_jsonl(rows), prm, tmp_path / "o", 300, forward="prompt-reuse")
    assert summary.tokens_saved > 0 and summary.statuses == {"ok": len(rows)}
    for r in out:
        expected = reference(rows[r["input_index"]]["prompt"], rows[r["input_index"]]["steps"])
        assert max(abs(a - b) for a, b in zip(r["step_scores"], expected, strict=True)) < TOL


def test_heads_leave_outputs_on_the_device(tiny_models, tmp_path):
    """Every head returns tensors (no .tolist() per batch: on a GPU that waits for the device);
    the window copies them to the host once. A head that still returns dicts keeps working."""
    from rmscore.score.forward.outputs import WindowOutputs
    from tiny_orm import save_armorm
    from tiny_prm import save_qwen_prm

    prompt = [{"role": "user", "content": "What is 2 + 3?"}]
    for model_dir in (tiny_models["llama-3labels"], save_armorm(tmp_path / "a"), save_qwen_prm(tmp_path / "q")):
        model, _ = load_model(ModelConfig(str(model_dir)))
        batch = model.encode([Sample(0, j, "p", prompt, True, c, steps=["2 + 3 = 5.", "So 5."])
                              for j, c in enumerate(["5", "It is 5, since 2 + 3 = 5."])])
        runner = Runners(model, "padded").padded
        outputs = runner.outputs(batch)
        assert outputs and all(isinstance(v, torch.Tensor) for v in outputs.values()), model_dir.name
        kept = WindowOutputs(model)
        assert kept.add(batch, outputs) == 0 and kept.add(batch, runner.score(batch)) == 2
        rows = kept.rows()
        assert rows[:2] == rows[2:] == runner.score(batch)  # device copy and direct dicts agree


def test_bucket_lengths_are_few_and_never_cut_a_row():
    from rmscore.score.forward.packed import bucket_length

    assert [bucket_length(n, 65_536) for n in (1, 1000, 1025, 40_000, 65_000, 65_536)] == \
        [1024, 1024, 2048, 65_536, 65_536, 65_536]
    assert bucket_length(300, 600) == 600 and bucket_length(9000, 4096) == 9000  # a long row runs alone
    assert len({bucket_length(n, 65_536) for n in range(1, 65_537)}) == 7


def test_packed_rows_padded_to_buckets_score_like_batch_size_one(tiny_models):
    """On flex, packed rows are padded to a few lengths (compiled shapes); the pad is a sequence of
    its own that no row reads or attends to. Checked here on sdpa, which masks it the same way."""
    model, _ = load_model(ModelConfig(str(tiny_models["llama"])))
    rows = shared_prompt_rows(n_prompts=3, n_completions=4, seed=8) + completions_rows(n_prompts=3, n_completions=3, seed=9)
    samples = [Sample(i, j, None, [{"role": "user", "content": r["prompt"]}], True, c)
               for i, r in enumerate(rows) for j, c in enumerate(r["completions"])]
    plain = Scorer(model, Runners(model, "padded"), 2048, BatchConfig(max_tokens_per_batch=1), RunSummary("p"))
    expected = [r["score"] for r in plain.score_window(samples)]
    runners = Runners(model, "packed")
    runners.packed.bucketed = True
    widths = []
    collate = runners.packed.collate

    def recording(batch, max_tokens=None):
        inputs = collate(batch, max_tokens)
        widths.append(inputs["input_ids"].shape[1])
        return inputs

    runners.packed.collate = recording
    summary = RunSummary("b")
    out = Scorer(model, runners, 2048, BatchConfig(max_tokens_per_batch=1500), summary).score_window(samples)
    assert max(abs(r["score"] - e) for r, e in zip(out, expected)) < TOL
    assert len(widths) > 1 and set(widths) <= {1024, 1500}, widths
    assert summary.padded_tokens == sum(widths) > summary.computed_tokens

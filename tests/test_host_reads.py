"""No host read of a device tensor per forward, checked on CPU.

On a GPU, `bool(tensor)`, `.item()`, `nonzero()` and the like make the host wait for the device,
so the next batch cannot be queued while this one runs (tests/test_gpu.py counts the real syncs
with torch.cuda.set_sync_debug_mode). On CPU the same code dispatches the same aten ops, so
counting them here catches a per-batch sync before a GPU is ever lent: transformers' packed-sequence
check was one on the padded path (31 syncs for 30 forwards on an H200, 2026-12-04).
"""

from collections import Counter

import pytest
from torch.utils._python_dispatch import TorchDispatchMode

from rmscore.config import BatchConfig, ModelConfig
from rmscore.score.forward import Runners
from rmscore.models import load_model
from rmscore.score.records import Sample, prompt_hash
from rmscore.score.scorer import Scorer
from rmscore.score.summary import RunSummary
from test_forward_paths import shared_prompt_rows

# aten ops whose result the host must read from the device (a sync on CUDA).
HOST_READS = ("aten._local_scalar_dense", "aten.is_nonzero", "aten.item", "aten.nonzero", "aten.equal",
              "aten.masked_select", "aten._unique", "aten.unique")


class HostReads(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name.startswith(HOST_READS):
            self.seen[name] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("path", ["padded", "packed", "prompt-reuse"])
def test_no_host_read_per_forward(tiny_models, path):
    model, _ = load_model(ModelConfig(str(tiny_models["llama"])))
    prompt = lambda r: [{"role": "user", "content": r["prompt"]}]  # noqa: E731
    samples = [Sample(i, j, prompt_hash(prompt(r)), prompt(r), True, c)
               for i, r in enumerate(shared_prompt_rows(n_prompts=6, n_completions=5, seed=31))
               for j, c in enumerate(r["completions"])]
    counts = []
    for budget in (100_000, 96):
        summary = RunSummary("x")
        scorer = Scorer(model, Runners(model, path), 4096, BatchConfig(max_tokens_per_batch=budget), summary)
        with HostReads() as reads:
            scorer.score_window(samples)
        counts.append((sum(reads.seen.values()), summary.batches, dict(reads.seen)))
    (few, few_forwards, _), (many, many_forwards, seen) = counts
    assert many_forwards > 4 * few_forwards
    assert many == few == 0, f"{many} host reads for {many_forwards} forwards: {seen}"

"""`rmscore doctor`: is this model scored right here, batched, in this dtype, on this device?

Two checks, both through the normal scoring path (adapter.encode -> Scorer -> forward -> head):
  batching  a built-in probe set of varied lengths, scored one row per forward and then batched;
            every numeric output must agree within a floor that fits the dtype plus a multiple of
            the model's own kernel noise, measured on the same probes (NOISE_FACTOR).
  golden    for checkpoints whose model card publishes numbers (table GOLDEN, keyed by checkpoint
            name; other families add entries), the card's example must give the card's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rmscore.config import ModelConfig
from rmscore.doctor.golden import GOLDEN, Golden  # noqa: F401  (Golden: for families adding entries)
from rmscore.doctor.invariance import InvarianceReport, check_batch_invariance
from rmscore.doctor.probes import PROBES, numbers, probe_samples, score_samples  # noqa: F401  (imported from here too)
from rmscore.errors import ConfigError
from rmscore.score.records import SCORED_STATUSES, Sample

# (rtol, atol) for batched vs batch size 1: the floor. fp32 should agree to kernel noise; half
# precision differs with batch shape through different kernels (vLLM tests use rtol 1.5e-2 in fp16).
TOLERANCE = {"float32": (1e-4, 1e-4), "float16": (1.5e-2, 2e-2), "bfloat16": (2e-2, 5e-2)}
# On top of the floor, batched scores may differ by this many times the model's own kernel noise:
# the largest change in a one-row score when only the attention kernel changes (sdpa's default vs
# its math kernel). A fixed floor cannot fit every model: on random Llama-3-8B weights in bf16,
# transformers' own padded batches differ from one-row forwards by up to 0.12 (bench gpu-8b,
# H200, 2026-12-04), over the floor's 0.05 + 0.02|x|, while a batching bug (padding or another
# row leaking in) moves scores by about their spread, far more than kernel noise. Two sides each
# carry that noise, and GEMM kernels change with batch shape too: hence 3.
NOISE_FACTOR = 3


def golden_for(path: str) -> tuple[str, Golden] | None:
    """The GOLDEN entry for a --model value: the Hub name, a folder named like the repo, or a
    Hugging Face cache path (models--org--name)."""
    text = path.rstrip("/")
    for name, golden in GOLDEN.items():
        repo = name.split("/")[-1].lower()
        if text == name or Path(text).name.lower() == repo or f"models--{name.replace('/', '--')}" in text:
            return name, golden
    return None




@dataclass
class Report:
    model: str
    family: str
    dtype: str
    probes: int
    max_diff: float = 0.0
    worst: str = ""
    tolerance: tuple[float, float] = (0.0, 0.0)
    noise: float = 0.0  # kernel noise of the one-row scores (see NOISE_FACTOR)
    batching_ok: bool = True
    problems: list[str] = field(default_factory=list)  # each one fails the batching check
    notes: list[str] = field(default_factory=list)
    golden: str = ""
    golden_ok: bool | None = None  # None: not run
    paths: tuple[str, ...] = ()  # the forward paths compared with one row per forward
    invariance: InvarianceReport | None = None  # doctor --batch-invariant

    @property
    def ok(self) -> bool:
        invariant = self.invariance is None or self.invariance.ok
        return self.batching_ok and self.golden_ok is not False and invariant


def forward_paths(model) -> tuple[str, ...]:
    """Every forward layout a real run may pick for this model: each must match batch size 1."""
    return ("padded", "packed", "prompt-reuse") if model.is_causal else ("padded",)


def kernel_noise(model, samples: list[Sample], single: list[dict]) -> float:
    """Largest difference between the one-row numbers and the same forwards run with sdpa's math
    kernel (0 where attention is not sdpa: eager, flex and flash kernels ignore the choice)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        again = score_samples(model, samples, max_batch_size=1, budget=model.max_length)
    diffs = [abs(x - y) for one, two in zip(single, again) for key, values in numbers(one).items()
             for x, y in zip(values, numbers(two).get(key, []))]
    return max(diffs, default=0.0)


def compare_batching(single: list[dict], batched: list[dict], report: Report, path: str = "padded") -> None:
    rtol, atol = report.tolerance
    atol += NOISE_FACTOR * report.noise
    for one, many in zip(single, batched, strict=True):
        where = f"probe {one['input_index']} ({path})"
        if one["status"] != many["status"]:
            report.problems.append(f"{where}: status {one['status']} alone but {many['status']} batched")
            continue
        a, b = numbers(one), numbers(many)
        if a.keys() != b.keys():
            report.problems.append(f"{where}: columns differ alone vs batched")
            continue
        for key in a:
            for x, y in zip(a[key], b[key], strict=True):
                diff = abs(x - y)
                if diff > report.max_diff:
                    report.max_diff, report.worst = diff, f"{key} of {where}"
                if diff > atol + rtol * abs(x):
                    report.batching_ok = False
    report.batching_ok = report.batching_ok and not report.problems


def check_golden(model, family: str, path: str, report: Report) -> None:
    found = golden_for(path)
    if found is None:
        report.golden = no_golden(path, family)
        return
    name, golden = found
    prompt = [{"role": "user", "content": golden.prompt}]
    samples = [Sample(i, 0, None, prompt, True, c) for i, c in enumerate(golden.completions)]
    rows = score_samples(model, samples, max_batch_size=1, budget=model.max_length)
    misses = []
    for row, expected in zip(rows, golden.expected):
        for key, want in expected.items():
            want = want if isinstance(want, list) else [want]
            got = numbers(row).get(key, [])[: len(want)]
            if len(got) != len(want) or any(abs(g - w) > golden.atol + golden.rtol * abs(w) for g, w in zip(got, want)):
                misses.append(f"{key} {_fmt(got)} vs card {_fmt(want)}")
    report.golden_ok = not misses
    report.golden = (f"{'PASS' if not misses else 'FAIL'} against {name} ({golden.source})"
                     + ("" if not misses else ": " + "; ".join(misses)))


def no_golden(path: str, family: str) -> str:
    """Why no card's numbers were checked, worded as what it is: nothing to compare with, not a
    failure. The batching check is then the whole check."""
    from rmscore.config import default_model

    if Path(path).resolve() == Path(default_model()).resolve():
        return ("none to run: the demo model is rmscore's own toy, with no published numbers "
                "(its held-out accuracy is in data/demo-rm/README.md); the batching check above is the check")
    names = [n for n, g in GOLDEN.items() if g.family == family]
    if not names:
        return f"none to run: no model card publishes reference numbers for {family}"
    return (f"none to run: {path} is not a checkpoint whose card publishes numbers (for {family}: "
            f"{', '.join(names)}; pass one of those, or a folder of the same name, to check it)")


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def run_doctor(cfg: ModelConfig, log=print, batch_invariant: bool = False) -> Report:
    """batch_invariant: also check that --batch-invariant gives the same bits under every batching."""
    from rmscore.models import get_adapter, load_model

    if cfg.model_type != "auto" and get_adapter(cfg.model_type).generates:
        raise ConfigError(f"rmscore doctor compares forward paths, and a {cfg.model_type} judge generates instead",
                          "try the judge on a few rows: rmscore score INPUT --limit 5 -o OUT")
    model, family = load_model(cfg)
    dtype = str(next(model.backbone.parameters()).dtype).replace("torch.", "")
    report = Report(cfg.path, family, dtype, len(PROBES), tolerance=TOLERANCE.get(dtype, TOLERANCE["float32"]))
    log(f"model {cfg.path} as {family}, {dtype} on {model.device}; {len(PROBES)} probes")
    samples = probe_samples()
    single = score_samples(model, samples, max_batch_size=1, budget=model.max_length)
    report.noise = kernel_noise(model, samples, single)
    report.paths = forward_paths(model)
    for path in report.paths:
        try:
            batched = score_samples(model, samples, len(samples), len(samples) * model.max_length, path)
        except Exception as exc:  # a path that cannot run this model is a finding, not a crash
            report.problems.append(f"{path} forward failed: {str(exc).splitlines()[0][:160]}")
            report.batching_ok = False
            continue
        compare_batching(single, batched, report, path)
    # A probe this family cannot score (alike both ways) is a note; none scored at all is a failure.
    unscored = [r for r in single if r["status"] not in SCORED_STATUSES]
    report.notes += [f"probe {r['input_index']} not scored: {r['status_detail']}" for r in unscored]
    if len(unscored) == len(single):
        report.problems.append("no probe could be scored")
        report.batching_ok = False
    check_golden(model, family, cfg.path, report)
    if batch_invariant:
        report.invariance = check_batch_invariance(model, single)
    return report

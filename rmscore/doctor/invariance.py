"""`rmscore doctor --batch-invariant`: are scores bit-identical here whatever the batching?

The probes are scored in batch-invariant mode (rmscore/score/forward/bucketed.py) one row per
forward, then under several batchings: other batch sizes, token budgets and input orders. Every
numeric output must be the very same float, compared bit for bit, not within a tolerance. What
passes holds for this machine, these library versions and this dtype only.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from rmscore.doctor.probes import numbers, probe_samples, score_samples

# (most rows per forward, token budget, shuffle seed or None): the batchings compared with one row
# per forward. Budgets from below one probe's padded length (every row alone) to all rows at once.
BATCHINGS = ((2, 256, None), (3, 512, 1), (512, 1024, 2), (512, 4096, None), (512, 1 << 20, 3))


@dataclass
class InvarianceReport:
    batchings: int = 0
    compared: int = 0  # numbers compared bit for bit, over all batchings
    mismatches: list[str] = field(default_factory=list)
    max_diff: float = 0.0  # largest difference from the default mode's batch-size-1 scores
    default_differ: int = 0  # numbers that differ under the same batchings without the mode

    @property
    def ok(self) -> bool:
        return self.compared > 0 and not self.mismatches


def check_batch_invariance(model, default_alone: list[dict]) -> InvarianceReport:
    """Score the probes alone and under BATCHINGS in batch-invariant mode; compare bit for bit.
    default_alone: the default mode's batch-size-1 rows. The same batchings run without the mode
    too, to show what the check would catch (default_differ)."""
    samples = probe_samples()
    alone = score_samples(model, samples, 1, model.max_length, batch_invariant=True)
    report = InvarianceReport()
    for rows, budget, seed in BATCHINGS:
        order = list(samples)
        if seed is not None:
            random.Random(seed).shuffle(order)
        where = f"{rows} rows / {budget} tokens per forward{', shuffled' if seed is not None else ''}"
        got = {r["input_index"]: r for r in score_samples(model, order, rows, budget, batch_invariant=True)}
        report.compared += sum(_compare(one, got[one["input_index"]], where, report.mismatches) for one in alone)
        plain = {r["input_index"]: r for r in score_samples(model, order, rows, budget)}
        differ: list[str] = []
        for one in default_alone:
            _compare(one, plain[one["input_index"]], where, differ)
        report.default_differ += len(differ)
        report.batchings += 1
    for one, ref in zip(alone, default_alone):
        for key, values in numbers(ref).items():
            for x, y in zip(values, numbers(one).get(key, [])):
                report.max_diff = max(report.max_diff, abs(x - y))
    return report


def _compare(one: dict, other: dict, where: str, mismatches: list[str]) -> int:
    a, b = numbers(one), numbers(other)
    if one["status"] != other["status"] or a.keys() != b.keys():
        mismatches.append(f"probe {one['input_index']}: status or columns differ at {where}")
        return 0
    count = 0
    for key in a:
        for x, y in zip(a[key], b[key], strict=True):
            count += 1
            if _bits(x) != _bits(y):
                mismatches.append(f"probe {one['input_index']} {key}: {x!r} alone, {y!r} at {where}")
    return count


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)  # NaN == NaN here, and 0.0 != -0.0: the very same float or not

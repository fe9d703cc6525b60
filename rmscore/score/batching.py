"""Token-budgeted, length-sorted batching. Pure Python: no torch, no model.

The cost of a padded forward is rows x longest row, so batches are cut on that product, not on a
row count. Sorting by length first makes each batch's rows nearly equal in length, which is what
removes the padding that fixed-size batches in input order waste (half or more on a long-tailed
length mix).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items: the bounded look-ahead window of the stream."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def plan_batches(lengths: Sequence[int], max_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Group indices of `lengths` into batches, longest first.

    Each batch satisfies len(batch) * max(lengths in batch) <= max_tokens and
    len(batch) <= max_batch_size. A row longer than max_tokens on its own gets a batch of one
    (it cannot be split). Every index appears in exactly one batch.
    """
    if max_tokens <= 0 or max_batch_size <= 0:
        raise ValueError("max_tokens and max_batch_size must be positive")
    # Longest first: the biggest batch runs first, so an out-of-memory shows at once and the
    # back-off budget holds for the rest of the window. Ties broken by index: deterministic.
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        length = max(lengths[index], 1)
        # rows arrive in non-increasing length, so the first row of a batch is its longest
        width = longest if current else length
        if current and ((len(current) + 1) * width > max_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        if not current:
            longest = length
        current.append(index)
    if current:
        batches.append(current)
    _check_partition(batches, len(lengths))
    return batches


def padding_efficiency(lengths: Sequence[int], batches: Iterable[Sequence[int]]) -> float:
    """Real tokens / padded tokens computed. 1.0 means no padding at all."""
    real = padded = 0
    for batch in batches:
        batch_lengths = [lengths[i] for i in batch]
        real += sum(batch_lengths)
        padded += len(batch_lengths) * max(batch_lengths, default=0)
    return real / padded if padded else 1.0


def _check_partition(batches: list[list[int]], n: int) -> None:
    # The list-in/list-out contract: every row scored exactly once, none invented.
    seen = sorted(i for batch in batches for i in batch)
    if seen != list(range(n)):
        raise AssertionError(f"batching lost or duplicated rows ({len(seen)} placed, {n} given)")


def plan_packed(lengths: Sequence[int], max_tokens: int, max_rows: int) -> list[list[int]]:
    """Batches for padding-free (packed) forwards: the budget is on the *sum* of lengths.

    Longest first, next-fit: neighbours have similar lengths, so each packed row ends close to the
    budget. A row longer than the budget gets a batch of its own.
    """
    if max_tokens <= 0 or max_rows <= 0:
        raise ValueError("max_tokens and max_rows must be positive")
    batches = _next_fit([max(n, 1) for n in lengths], [1] * len(lengths), max_tokens, max_rows)
    _check_partition(batches, len(lengths))
    return batches


def _next_fit(sizes: Sequence[int], counts: Sequence[int], max_tokens: int, max_rows: int) -> list[list[int]]:
    """Largest first, next-fit, on summed sizes and summed row counts."""
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    total = rows = 0
    for index in order:
        if current and (total + sizes[index] > max_tokens or rows + counts[index] > max_rows):
            batches.append(current)
            current, total, rows = [], 0, 0
        current.append(index)
        total += sizes[index]
        rows += counts[index]
    if current:
        batches.append(current)
    return batches


def plan_stages(prefix: Sequence[int], stage_tokens: int) -> list[list[int]]:
    """Groups (a prompt of prefix[g] tokens + its completions) into stages for prompt-cache reuse:
    a stage's prompts run first and their keys/values are held while its completions run, so a
    stage holds at most `stage_tokens` prompt tokens (one group at least, whatever its size).
    Longest prompt first: a stage's prompts pad little against each other, and neither do the
    prompt keys its completion batches gather."""
    if stage_tokens <= 0:
        raise ValueError("stage_tokens must be positive")
    stages: list[list[int]] = []
    held = 0
    for g in sorted(range(len(prefix)), key=lambda g: (-prefix[g], g)):
        if stages and held + prefix[g] <= stage_tokens:
            stages[-1].append(g)
            held += prefix[g]
        else:
            stages.append([g])
            held = prefix[g]
    return stages


def plan_suffixes(prefix: Sequence[int], suffix: Sequence[int], max_tokens: int, max_rows: int) -> list[list[int]]:
    """Batches of rows that each attend to a cached prompt of prefix[i] tokens and run suffix[i]
    tokens of their own. Longest suffix first; a batch's cost is rows x (longest prompt + longest
    suffix): its queries padded to the longest suffix, and the prompt keys it gathers padded to the
    longest prompt."""
    if max_tokens <= 0 or max_rows <= 0:
        raise ValueError("max_tokens and max_rows must be positive")
    order = sorted(range(len(suffix)), key=lambda i: (-suffix[i], -prefix[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    width = keys = 0
    for i in order:
        new_keys = max(keys, prefix[i]) if current else prefix[i]
        new_width = width if current else max(suffix[i], 1)
        if current and ((len(current) + 1) * (new_keys + new_width) > max_tokens or len(current) >= max_rows):
            batches.append(current)
            current, new_keys, new_width = [], prefix[i], max(suffix[i], 1)
        current.append(i)
        keys, width = new_keys, new_width
    if current:
        batches.append(current)
    _check_partition(batches, len(suffix))
    return batches


# --batch-invariant (issue 31). A row's score depends, in its last bits, on the length it is padded
# to, never on its companions (measured on CPU: bit-identical at batch sizes 1 to 40 once the
# padded length is fixed). So every row is padded to a width that depends on its own length only,
# and a batch holds rows of one width. The name goes into the output's metadata and the resume
# settings: another rule would give other bits, and must not be mixed with this one.
INVARIANT_SCHEME = "bucketed-v1"  # canonical_length below, padded rows, one head call per row


def canonical_length(n: int, cap: int | None = None) -> int:
    """The padded length of a row of n tokens: n rounded up to 8 steps per doubling (a multiple of
    16 below 128 tokens), so padding adds at most 15 tokens or 12.5%. Never above `cap` (the
    model's position limit) unless n itself is."""
    n = max(n, 1)
    step = max(16, 1 << max(n.bit_length() - 4, 0))
    width = -(-n // step) * step
    return max(n, min(width, cap)) if cap else width


def plan_buckets(lengths: Sequence[int], max_tokens: int, max_batch_size: int, width=canonical_length) -> list[list[int]]:
    """Batches whose rows share one canonical width, widest first, each of at most
    max(1, max_tokens // width) rows and max_batch_size rows. `width` maps a length to its padded
    length. Which batch a row lands in never changes what it is computed at."""
    if max_tokens <= 0 or max_batch_size <= 0:
        raise ValueError("max_tokens and max_batch_size must be positive")
    widths = [width(n) for n in lengths]
    order = sorted(range(len(lengths)), key=lambda i: (-widths[i], -lengths[i], i))
    batches: list[list[int]] = []
    for index in order:
        room = min(max_batch_size, max(1, max_tokens // widths[index]))
        if batches and widths[batches[-1][0]] == widths[index] and len(batches[-1]) < room:
            batches[-1].append(index)
        else:
            batches.append([index])
    _check_partition(batches, len(lengths))
    return batches

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
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for index in order:
        length = max(lengths[index], 1)
        if current and (total + length > max_tokens or len(current) >= max_rows):
            batches.append(current)
            current, total = [], 0
        current.append(index)
        total += length
    if current:
        batches.append(current)
    _check_partition(batches, len(lengths))
    return batches


def plan_grouped(prefix: Sequence[int], suffixes: Sequence[Sequence[int]], max_tokens: int,
                 max_rows: int) -> list[list[tuple[int, list[int]]]]:
    """Batches for shared-prompt forwards. Group g has one shared prefix of prefix[g] tokens and
    rows whose remaining lengths are suffixes[g]. A batch of G groups and B rows costs
    G * longest prefix (the prompt forward) + B * longest suffix (the completion forward), and
    holds B copies of the prompt's keys and values, so B * longest prefix is kept under the budget
    too. A group too big for one batch is split into chunks (each chunk recomputes its prompt).

    Returns batches as lists of (group, [row positions within the group]).
    """
    if max_tokens <= 0 or max_rows <= 0:
        raise ValueError("max_tokens and max_rows must be positive")
    chunks = [(g, rows) for g in range(len(prefix)) for rows in _chunk_group(prefix[g], suffixes[g], max_tokens, max_rows)]
    chunks.sort(key=lambda c: (-prefix[c[0]], -max(suffixes[c[0]][r] for r in c[1]), c[0], c[1][0]))
    batches: list[list[tuple[int, list[int]]]] = []
    current: list[tuple[int, list[int]]] = []
    p_max = r_max = rows = 0
    for g, members in chunks:
        p, r = max(prefix[g], 1), max(max(suffixes[g][i] for i in members), 1)
        new_p, new_r, new_rows = max(p_max, p), max(r_max, r), rows + len(members)
        fits = (len(current) + 1) * new_p + new_rows * new_r <= max_tokens and new_rows * new_p <= max_tokens
        if current and (not fits or new_rows > max_rows):
            batches.append(current)
            current, new_p, new_r, new_rows = [], p, r, len(members)
        current.append((g, members))
        p_max, r_max, rows = new_p, new_r, new_rows
    if current:
        batches.append(current)
    placed = sorted((g, i) for batch in batches for g, members in batch for i in members)
    if placed != [(g, i) for g in range(len(prefix)) for i in range(len(suffixes[g]))]:
        raise AssertionError("grouped batching lost or duplicated rows")
    return batches


def _chunk_group(prefix: int, suffixes: Sequence[int], max_tokens: int, max_rows: int) -> list[list[int]]:
    order = sorted(range(len(suffixes)), key=lambda i: (-suffixes[i], i))
    chunks, current = [], []
    for i in order:
        r_max = suffixes[current[0]] if current else suffixes[i]
        n = len(current) + 1
        if current and (prefix + n * r_max > max_tokens or n * prefix > max_tokens or n > max_rows):
            chunks.append(current)
            current = []
        current.append(i)
    if current:
        chunks.append(current)
    return chunks

"""The n-th row of a ranking over all scored rows, found in a few streaming passes (bounded memory).

`build-sft --select overall` keeps the best fraction of all usable completions, and its random
baseline the same number drawn at random; both need the row at a given rank of the whole input
without holding the input. Each row's rank key is a tuple of three uint64 (score or random draw,
input_index, completion_index), read as one 192-bit number; a radix select fixes it 8 bits per pass
among the rows that still match, and stops as soon as those rows are few enough to sort
(COLLECT). Scores spread out: two or three passes. Many equal keys (a vote ensemble) take more
passes, never more memory.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

COLLECT = 1 << 16  # rows matched so far that are sorted in memory instead of another pass
SIGN = np.uint64(1 << 63)
MASK = (1 << 64) - 1

Keys = list[np.ndarray]  # three uint64 columns, one entry per row


def descending(score: np.ndarray) -> np.ndarray:
    """float64 -> uint64 whose ascending order is the scores' descending order (-0.0 is 0.0)."""
    bits = (np.asarray(score, np.float64) + 0.0).view(np.uint64)
    ascending = np.where(bits & SIGN, ~bits, bits | SIGN)
    return ~ascending


def unsigned(values: np.ndarray) -> np.ndarray:
    """int64 -> uint64 in the same order."""
    return np.asarray(values, np.int64).view(np.uint64) ^ SIGN


def draw(seed: int, input_index: np.ndarray, completion_index: np.ndarray) -> np.ndarray:
    """A seeded pseudo-random uint64 per row key (splitmix64): the same whatever the sharding."""
    z = unsigned(input_index) * np.uint64(0x9E3779B97F4A7C15) + unsigned(completion_index)
    z = z + np.uint64(seed & MASK)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def draw_one(seed: int, key: tuple[int, int]) -> int:
    """draw() for one row, in plain Python (called once per completion: numpy per call is slower)."""
    z = ((key[0] + (1 << 63)) * 0x9E3779B97F4A7C15 + key[1] + (1 << 63) + seed) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def descending_one(score: float) -> int:
    """descending() for one score, in plain Python."""
    bits = struct.unpack("<Q", struct.pack("<d", score + 0.0))[0]
    return (~(bits ^ MASK if bits >> 63 else bits | (1 << 63))) & MASK


def nth(passes: Callable[[], Iterator[Keys]], n: int) -> tuple[int, int, int]:
    """The n-th smallest (0-based) key of the rows that `passes()` yields, batch by batch."""
    fixed: list[int] = []  # bits fixed so far, as 8-bit digits from the most significant
    while True:
        hist, found = np.zeros(256, np.int64), []
        for keys in passes():
            picked = [k[_matches(keys, fixed)] for k in keys]
            if len(fixed) < 24:
                hist += np.bincount(_digit(picked, len(fixed)), minlength=256)
            if found is not None:
                found.append(picked)
                if sum(len(f[0]) for f in found) > COLLECT:
                    found = None  # too many to sort: narrow by one more digit
        if found is not None or len(fixed) == 24:
            return _sorted_nth(found, n) if found is not None else _join(fixed)
        below = np.cumsum(hist)
        digit = int(np.searchsorted(below, n, side="right"))
        n -= int(below[digit - 1]) if digit else 0
        fixed.append(digit)


def _digit(keys: Keys, position: int) -> np.ndarray:
    column, shift = divmod(position, 8)
    return ((keys[column] >> np.uint64(56 - 8 * shift)) & np.uint64(255)).astype(np.int64)


def _matches(keys: Keys, fixed: list[int]) -> np.ndarray:
    match = np.ones(len(keys[0]), bool)
    for position, digit in enumerate(fixed):
        match &= _digit(keys, position) == digit
    return match


def _sorted_nth(found: list[Keys], n: int) -> tuple[int, int, int]:
    columns = [np.concatenate([f[c] for f in found]) for c in range(3)]
    order = np.lexsort(columns[::-1])  # lexsort's last key is the primary one
    return tuple(int(c[order[n]]) for c in columns)


def _join(digits: list[int]) -> tuple[int, int, int]:
    return tuple(int.from_bytes(bytes(digits[8 * c: 8 * c + 8]), "big") for c in range(3))


@dataclass(frozen=True)
class Cutoff:
    """The last row kept of an overall ranking: a row is kept if its key is at or before this one."""

    key: tuple[int, int, int]
    seed: int | None = None  # None: ranked by score; else by draw(seed, ...)

    def admits(self, score: float, key: tuple[int, int]) -> bool:
        first = draw_one(self.seed, key) if self.seed is not None else descending_one(score)
        return (first, key[0] + (1 << 63), key[1] + (1 << 63)) <= self.key


def kept_count(fraction: float, rows: int) -> int:
    """Rows in the best `fraction` of `rows`: rounded up, so any fraction above 0 keeps one."""
    return min(rows, math.ceil(fraction * rows - 1e-9))

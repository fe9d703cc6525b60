"""Tell transformers' mask code what the runner already knows: whether a row holds one sequence or several.

With no attention mask and no cache, transformers 5 looks for packed sequences in the position ids
(masking_utils.find_packed_sequence_indices) and decides with `(mask[:, -1] == 0).all()`: reading a
device tensor on the host, one sync per forward. Padded and packed runners know the answer when
they build the batch, so while they run the backbone the check answers from that: `None` (one
sequence per row, the causal kernels stay) for padded rows, and the sequence index of every
token, computed as transformers computes it but never read, for packed rows. The hook is installed
once and is gated per thread: anything else that calls transformers gets its own check unchanged.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

_state = threading.local()


@contextmanager
def known_layout(layout: str | None):
    """layout: "padded", "packed", or None (transformers checks for itself)."""
    _install()
    previous = getattr(_state, "layout", None)
    _state.layout = layout
    try:
        yield
    finally:
        _state.layout = previous


def _install() -> None:
    from transformers import masking_utils

    original = getattr(masking_utils, "find_packed_sequence_indices", None)
    if original is None or getattr(original, "rmscore_hook", False):
        return  # already installed, or a transformers without the check: nothing to skip

    def find_packed_sequence_indices(position_ids: torch.Tensor):
        layout = getattr(_state, "layout", None)
        if layout == "padded":
            return None
        if layout == "packed":
            first = position_ids[:, :1] - 1
            return (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)  # (B, T)
        return original(position_ids)

    find_packed_sequence_indices.rmscore_hook = True
    masking_utils.find_packed_sequence_indices = find_packed_sequence_indices

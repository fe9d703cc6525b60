"""Head outputs of one window, kept on the device until the window ends, then copied to the host
in one go.

A head returns device tensors ({column: (rows or read positions, ...)}); reading them on the host
(`.tolist()`, `.item()`) would make the CPU wait for the device after every batch, so the next
batch could not be queued while this one runs. Here each column of every batch is concatenated and
copied once per window (asynchronously, into pinned memory), with a single wait at the end.
"""

from __future__ import annotations

import torch

from rmscore.score.records import Encoded


class WindowOutputs:
    def __init__(self, model):
        self.model = model
        self.batches: list[tuple[list[Encoded], object]] = []  # (batch, its head output)
        self.count = 0  # rows added so far

    def add(self, batch: list[Encoded], outputs) -> int:
        """Keep one batch's head output; returns the index its first row will have in rows()."""
        self.batches.append((batch, outputs))
        self.count += len(batch)
        return self.count - len(batch)

    def rows(self) -> list[dict]:
        """Output dicts of every row added, in the order added."""
        tensors = [(b, o) for b, o in self.batches if isinstance(o, dict)]
        host = iter(_to_host([o for _, o in tensors]))
        rows: list[dict] = []
        for batch, outputs in self.batches:
            # A head that already returns output dicts synced by itself: taken as they are.
            rows += self.model.rows(next(host), batch) if isinstance(outputs, dict) else outputs
        return rows


def head_rows(model, outputs, batch: list[Encoded]) -> list[dict]:
    """One batch's output dicts right away (one wait for the device): for callers outside a window."""
    return model.rows(_to_host([outputs])[0], batch) if isinstance(outputs, dict) else outputs


def _to_host(outputs: list[dict[str, torch.Tensor]]) -> list[dict[str, list]]:
    """Python lists of every column of every batch: one device-to-host copy per column."""
    if not outputs:
        return []
    names = list(outputs[0])
    sizes = {name: [o[name].shape[0] for o in outputs] for name in names}
    copies = {name: torch.cat([o[name] for o in outputs]).to("cpu", non_blocking=True) for name in names}
    if any(o[name].is_cuda for o in outputs for name in names):
        torch.cuda.current_stream().synchronize()  # the one wait of the window: copies are done
    lists = {name: copy.tolist() for name, copy in copies.items()}
    per_batch: list[dict[str, list]] = [{} for _ in outputs]
    for name in names:
        start = 0
        for b, size in enumerate(sizes[name]):
            per_batch[b][name] = lists[name][start:start + size]
            start += size
    return per_batch

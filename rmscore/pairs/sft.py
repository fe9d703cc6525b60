"""Which scored completions of one prompt `build-sft` keeps (rejection sampling), and why the rest
are not kept.

Pure: no I/O. Completions are ranked as build-pairs ranks them (pairs/select.py): score high first,
equal scores in input order (input_index, completion_index). A completion is usable when its status
is ok/truncated and it has a finite score and a text.
  --select per-prompt  the K best usable completions of each prompt (--per-prompt K)
  --select overall     the usable completions at or above the cutoff of the best fraction of all
                       usable completions of the input (pairs/cutoff.py)
--min-score X then drops those scoring below X. Identical texts are not merged. A prompt with
nothing kept is dropped for the first reason that applies:
  no_usable        no usable completion
  not_in_top       (overall) none of its usable completions is in the best fraction
  below_min_score  every one left scores under --min-score
The random baseline keeps as many of each prompt's usable completions as the selection did, drawn
with Random(f"{seed}:{prompt_id}") (per prompt), or the same total drawn over the whole input
(overall: pairs/cutoff.py's draw); --min-score does not apply to it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from rmscore.config import SftConfig
from rmscore.pairs.cutoff import Cutoff
from rmscore.pairs.select import Completion
from rmscore.score.records import SCORED_STATUSES

PROMPT_REASONS = ("no_usable", "not_in_top", "below_min_score")


@dataclass(slots=True)
class Choice:
    kept: list[Completion]  # best first
    usable: list[Completion]  # in input order
    bad_status: list[str]  # the status code of each unusable completion
    not_selected: int  # usable, but past K or outside the best fraction
    below_min_score: int  # selected, then under --min-score
    dropped: str | None = None  # one of PROMPT_REASONS when `kept` is empty


def select_sft(completions: list[Completion], cfg: SftConfig, cutoff: Cutoff | None = None) -> Choice:
    rows = sorted(completions, key=lambda c: c.order)
    problems = [c.problem for c in rows]
    usable = [c for c, problem in zip(rows, problems) if problem is None]
    ranked = sorted(usable, key=lambda c: (-c.score, c.order))
    top = [c for c in ranked if cutoff.admits(c.score, c.key)] if cutoff else ranked[:cfg.k]
    kept = [c for c in top if cfg.min_score is None or c.score >= cfg.min_score]
    choice = Choice(kept, usable, [p for p in problems if p], len(ranked) - len(top), len(top) - len(kept))
    if not kept:
        choice.dropped = "no_usable" if not usable else "not_in_top" if not top else "below_min_score"
    return choice


def baseline(prompt_id: str, choice: Choice, seed: int, cutoff: Cutoff | None = None) -> list[Completion]:
    """The random selection of the same size as `choice`, in input order."""
    if cutoff is not None:
        return [c for c in choice.usable if cutoff.admits(c.score, c.key)]
    # Seeded by prompt id, not a shared stream: the same draw however the input is sharded or bucketed.
    picked = random.Random(f"{seed}:{prompt_id}").sample(range(len(choice.usable)), len(choice.kept))
    return [choice.usable[i] for i in sorted(picked)]


@dataclass
class SftReport:
    """Counts over all prompts: every prompt is kept or dropped for exactly one reason."""

    prompts: Counter = field(default_factory=Counter)  # in, kept
    dropped: Counter = field(default_factory=Counter)  # prompts, by PROMPT_REASONS
    completions: Counter = field(default_factory=Counter)  # in, usable, bad_status, not_selected, ...
    bad_status: Counter = field(default_factory=Counter)
    rows: int = 0

    def add(self, choice: Choice) -> None:
        self.prompts["in"] += 1
        if choice.dropped:
            self.dropped[choice.dropped] += 1
        else:
            self.prompts["kept"] += 1
        usable = len(choice.usable)
        self.completions.update({"in": usable + len(choice.bad_status), "usable": usable,
                                 "bad_status": len(choice.bad_status), "not_selected": choice.not_selected,
                                 "below_min_score": choice.below_min_score, "kept": len(choice.kept)})
        self.bad_status.update(choice.bad_status)
        self.rows += len(choice.kept)

    def add_without_prompt(self, statuses: list[str | None]) -> None:
        """Rows with no prompt_id (an unreadable input line): never kept."""
        codes = [s if s and s not in SCORED_STATUSES else "no_prompt_id" for s in statuses]
        self.completions.update({"in": len(codes), "bad_status": len(codes)})
        self.bad_status.update(codes)

    def as_dict(self) -> dict:
        counts = ("in", "usable", "bad_status", "not_selected", "below_min_score", "kept")
        return {
            "rows": self.rows,
            "prompts": {"in": self.prompts["in"], "kept": self.prompts["kept"],
                        "dropped": {r: self.dropped[r] for r in PROMPT_REASONS}},
            "completions": {k: self.completions[k] for k in counts}
            | {"bad_status_by_status": dict(sorted(self.bad_status.items()))},
        }

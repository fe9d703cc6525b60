"""Which scored completions of one prompt become (chosen, rejected) pairs, and why the rest do not.

Pure: no torch, no I/O. The caller groups scored rows by prompt_id and hands each group here.

Order: completions are ranked by score, high first; equal scores by `key` (input_index,
completion_index), low first, then by text (two scoring runs of one prompt can reuse a key). Every choice follows this ranking, so results never depend on the
order rows were read in. The best completion is the first of the ranking; max-min's worst is the
lowest score, and among several equal lowest scores the smallest key. A tied best (or worst) is
therefore picked by position and the pair is still valid when its margin is above zero.

A prompt goes through these filters; when one leaves fewer than --min-completions completions the
prompt is dropped for that reason (the first that applies):
  too_few_completions  fewer rows than --min-completions, whatever their status
  bad_status           status not ok/truncated, or no finite score or text: never in a pair
  identical            the same text, after whitespace normalisation, as a completion with a
                       smaller key (that first one is kept)
The rule then proposes candidate pairs. Each is a tie (margin 0: never a pair), below --min-margin,
below --min-agreement (a combined folder: too few models' own scores prefer chosen), over
--max-length-ratio (chosen more than R times as long as rejected, in characters), kept, or not
selected (past the --pairs-per-prompt cap, or not drawn by max-random). A prompt whose candidates
all fail is dropped for the last filter any of them reached: `length_ratio` if one cleared the
agreement, else `disagreement` if one cleared the margin, else `below_margin` if one was not a
tie, else `ties`.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations

from rmscore.config import PairConfig
from rmscore.score.records import SCORED_STATUSES

PROMPT_REASONS = ("too_few_completions", "bad_status", "identical", "ties", "below_margin", "disagreement",
                  "length_ratio")
CANDIDATE_OUTCOMES = ("ties", "below_margin", "disagreement", "length_ratio", "not_selected", "kept")


@dataclass(slots=True)
class Completion:
    key: tuple[int, int]  # (input_index, completion_index): where it came from, and the tie-break
    text: str | None
    score: float | None
    status: str | None
    row: int = -1  # the caller's handle (its row in a table); selection never reads it
    models: list[float] | None = None  # a combined folder's model_scores: each model's own score

    @property
    def order(self) -> tuple:
        """Position, then text: total even when two scoring runs of one prompt reuse a key."""
        return self.key, self.text or ""

    @property
    def problem(self) -> str | None:
        """Why this completion can never be in a pair, or None if it can."""
        if self.status not in SCORED_STATUSES:
            return self.status or "no_status"
        if self.score is None or not math.isfinite(self.score):
            return "no_score"
        return "no_text" if self.text is None else None


@dataclass(slots=True)
class Pair:
    chosen: Completion
    rejected: Completion

    @property
    def margin(self) -> float:
        return self.chosen.score - self.rejected.score

    @property
    def agreement(self) -> float | None:
        """The share of models whose own scores prefer chosen (a tie prefers neither); None unless combined."""
        a, b = self.chosen.models, self.rejected.models
        if a is None or b is None:
            return None
        return sum(x > y for x, y in zip(a, b)) / len(a)


@dataclass(slots=True)
class Selection:
    """The outcome for one prompt. Plain dicts, not Counters: this runs once per prompt."""

    pairs: list[Pair]
    scored: list[Completion]  # usable, before de-duplication, in key order (SimPO's all_* columns)
    completions: dict  # in = bad_status + identical + distinct
    bad_status: list[str]  # the status code of each unusable completion
    candidates: dict = field(default_factory=lambda: dict.fromkeys(CANDIDATE_OUTCOMES, 0))
    dropped: str | None = None  # one of PROMPT_REASONS when `pairs` is empty


def normalise(text: str) -> str:
    """Whitespace-insensitive identity: runs of whitespace become one space, ends are stripped."""
    return " ".join(text.split())


def dedupe(completions: list[Completion]) -> list[Completion]:
    """The first (in the given order) of each group of texts equal after normalise()."""
    seen: set[str] = set()
    out = []
    for completion in completions:
        text = normalise(completion.text)
        if text not in seen:
            seen.add(text)
            out.append(completion)
    return out


def select_pairs(prompt_id: str, completions: list[Completion], cfg: PairConfig) -> Selection:
    rows = sorted(completions, key=lambda c: c.order)
    problems = [c.problem for c in rows]
    scored = [c for c, problem in zip(rows, problems) if problem is None]
    distinct = dedupe(scored)
    counts = {"in": len(rows), "bad_status": len(rows) - len(scored), "identical": len(scored) - len(distinct),
              "distinct": len(distinct)}
    sel = Selection([], scored, counts, [p for p in problems if p])
    for reason, left in (("too_few_completions", rows), ("bad_status", scored), ("identical", distinct)):
        if len(left) < cfg.min_completions:
            sel.dropped = reason
            return sel
    ranked = sorted(distinct, key=lambda c: (-c.score, c.order))
    eligible = [p for p in CANDIDATES[cfg.rule](ranked) if _clears(p, cfg, sel.candidates)]
    sel.pairs = _choose(eligible, cfg, prompt_id)
    sel.candidates["kept"], sel.candidates["not_selected"] = len(sel.pairs), len(eligible) - len(sel.pairs)
    sel.candidates["considered"] = sum(sel.candidates[k] for k in CANDIDATE_OUTCOMES)
    if not sel.pairs:
        sel.dropped = next((r for r in ("length_ratio", "disagreement", "below_margin") if sel.candidates[r]),
                           "ties")
    return sel


def _clears(pair: Pair, cfg: PairConfig, counts: dict) -> bool:
    if pair.margin <= 0:  # ranked order makes margins >= 0; 0 is a tie
        counts["ties"] += 1
        return False
    if pair.margin < cfg.min_margin:
        counts["below_margin"] += 1
        return False
    if cfg.min_agreement is not None and pair.agreement < cfg.min_agreement:
        counts["disagreement"] += 1
        return False
    if cfg.max_length_ratio is not None and len(pair.chosen.text) > cfg.max_length_ratio * len(pair.rejected.text):
        counts["length_ratio"] += 1
        return False
    return True


def _max_min(ranked: list[Completion]) -> list[Pair]:
    worst = min(ranked[1:], key=lambda c: (c.score, c.order))
    return [Pair(ranked[0], worst)]


def _best_vs_rest(ranked: list[Completion]) -> list[Pair]:
    return [Pair(ranked[0], other) for other in ranked[1:]]


def _all_pairs(ranked: list[Completion]) -> list[Pair]:
    return [Pair(a, b) for a, b in combinations(ranked, 2)]  # a ranks above b: a is chosen


CANDIDATES = {"max-min": _max_min, "max-random": _best_vs_rest, "best-vs-rest": _best_vs_rest,
              "all-pairs": _all_pairs}


def _choose(eligible: list[Pair], cfg: PairConfig, prompt_id: str) -> list[Pair]:
    """Up to cfg.cap pairs, largest margin first (ties of margin by position)."""
    cap = cfg.cap or len(eligible)
    if cfg.rule == "max-random":
        # Seeded by prompt id, not by a shared stream: the draw for one prompt is the same
        # whatever else is in the input, however it is sharded or bucketed.
        eligible = random.Random(f"{cfg.seed}:{prompt_id}").sample(eligible, min(cap, len(eligible)))
    ordered = sorted(eligible, key=lambda p: (-p.margin, p.chosen.order, p.rejected.order))
    return ordered[:cap]


@dataclass
class DropReport:
    """Counts over all prompts: every prompt is paired or dropped for exactly one reason."""

    prompts: Counter = field(default_factory=Counter)  # in, paired
    dropped: Counter = field(default_factory=Counter)  # prompts, by PROMPT_REASONS
    completions: Counter = field(default_factory=Counter)
    bad_status: Counter = field(default_factory=Counter)
    candidates: Counter = field(default_factory=Counter)
    pairs: int = 0

    def add(self, sel: Selection) -> None:
        self.prompts["in"] += 1
        if sel.dropped:
            self.dropped[sel.dropped] += 1
        else:
            self.prompts["paired"] += 1
        for key, n in sel.completions.items():
            self.completions[key] += n
        for key, n in sel.candidates.items():
            self.candidates[key] += n
        if sel.bad_status:
            self.bad_status.update(sel.bad_status)
        self.pairs += len(sel.pairs)

    def add_without_prompt(self, statuses: list[str | None]) -> None:
        """Rows with no prompt_id (an unreadable input line): no prompt to pair them under."""
        codes = [s if s and s not in SCORED_STATUSES else "no_prompt_id" for s in statuses]
        self.completions.update({"in": len(codes), "bad_status": len(codes)})
        self.bad_status.update(codes)

    def as_dict(self) -> dict:
        return {
            "pairs": self.pairs,
            "prompts": {"in": self.prompts["in"], "paired": self.prompts["paired"],
                        "dropped": {r: self.dropped[r] for r in PROMPT_REASONS}},
            "completions": {k: self.completions[k] for k in ("in", "distinct", "bad_status", "identical")}
            | {"bad_status_by_status": dict(sorted(self.bad_status.items()))},
            "candidate_pairs": {k: self.candidates[k] for k in ("considered", *CANDIDATE_OUTCOMES)},
        }

"""Texts too long to ever fit --max-length, cut before they are tokenized.

A tokenizer's work and memory grow with its text: one 10 MB query took 28 s and 1.3 GB to come
back too_long, and held up every other request's rows meanwhile. No token is longer than the
vocabulary's longest (L characters, special tokens included), so a text of more than
(max_length + 1) * L characters has more than max_length tokens, unless the tokenizer's normalizer
or the chat template drops characters (collapsed whitespace, stripped accents). So a sample whose
texts are longer than that is first encoded with only that many characters kept (the middle of its
longest texts dropped, both ends kept, so a template's or a step marker's end survives). If even
that is longer than --max-length, the sample is too_long ("at least" N tokens) without its whole
text ever being tokenized; if not, it is encoded whole, as before. This holds for --on-overflow
skip and error; truncate-left scores the text's end, so it needs the text whole.
"""

from __future__ import annotations

from dataclasses import replace

from rmscore.score import records
from rmscore.errors import RowError
from rmscore.score.records import Sample


class Cutter:
    def __init__(self, tokenizer, max_length: int, policy: str):
        try:
            longest = max(map(len, tokenizer.get_vocab()), default=0)
        except Exception:  # a tokenizer without a vocabulary to read: nothing is cut
            longest = 0
        self.keep = (max_length + 1) * longest if longest and policy in ("skip", "error") else None

    def sample(self, sample: Sample) -> Sample | None:
        """A copy of the sample holding `keep` characters of text, or None if it holds fewer."""
        if self.keep is None or sample.error is not None:
            return None
        lengths = []
        _texts(sample, lambda text: lengths.append(len(text)) or text)
        if sum(lengths) <= self.keep:
            return None
        cap = _cap(lengths, self.keep)
        return _texts(sample, lambda text: middle_cut(text, cap))

    def text(self, text: str) -> str | None:
        if self.keep is None or len(text) <= self.keep:
            return None
        return middle_cut(text, self.keep)


def prepare(prepare_fn, cutter: Cutter, samples: list[Sample], texts: list[str] | None = None):
    """prepare_fn(samples, texts) (the Scorer's prepare: encode and length policy), with each sample
    too long to ever fit tried cut first: too_long as cut means too_long whole."""
    from rmscore.score.scorer import Prepared

    settled = {}
    for i, sample in enumerate(samples):
        cut_sample = cutter.sample(sample) if texts is None else None
        cut_text = cutter.text(texts[i]) if texts is not None else None
        if cut_sample is None and cut_text is None:
            continue
        trial = prepare_fn([cut_sample or sample], None if texts is None else [cut_text])
        problem = trial.problems[0][2] if trial.problems else None
        if problem is not None and problem.status == records.TOO_LONG:
            detail = problem.detail.replace("(", "(at least ", 1)
            settled[i] = (trial.samples[0], None, RowError(records.TOO_LONG, detail))
    if not settled:
        return prepare_fn(samples, texts)
    rest = [i for i in range(len(samples)) if i not in settled]
    main = prepare_fn([samples[i] for i in rest], None if texts is None else [texts[i] for i in rest])
    order = [settled[i][0] if i in settled else samples[i] for i in range(len(samples))]
    return Prepared(order, main.ready, main.problems + list(settled.values()))


def middle_cut(text: str, keep: int) -> str:
    if len(text) <= keep:
        return text
    head = keep - keep // 2
    return text[:head] + text[len(text) - keep // 2:]


def _cap(lengths: list[int], keep: int) -> int:
    """The largest length c such that keeping at most c characters of each text keeps >= keep."""
    left, count = keep, len(lengths)
    for i, length in enumerate(sorted(lengths)):
        share = -(-left // (count - i))
        if length >= share:
            return share
        left -= length
    return max(lengths)


def _texts(sample: Sample, change) -> Sample:
    """The sample with change(text) for each of its texts: prompt contents, completion, steps."""
    def one(value):
        return change(value) if isinstance(value, str) else value

    prompt = sample.prompt
    if isinstance(prompt, list):
        prompt = [{**m, "content": one(m["content"])} if isinstance(m, dict) and "content" in m else m for m in prompt]
    steps = [one(step) for step in sample.steps] if isinstance(sample.steps, list) else sample.steps
    return replace(sample, prompt=prompt, completion=one(sample.completion), steps=steps)

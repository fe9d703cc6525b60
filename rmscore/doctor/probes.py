"""The doctor's probes and how they are scored: the built-in probe set of varied lengths, scored
through the normal Scorer on a named forward path, and the numbers a row's outputs hold."""

from __future__ import annotations

from rmscore.config import BatchConfig
from rmscore.score.records import Sample, prompt_hash

# Varied lengths and shapes: single words, multi-turn with a system prompt, code, unicode,
# "\n\n"-separated reasoning (process reward models split it into steps), a long answer.
_STEPS = "\n\n".join(f"Step {i}: {3 * i} + {i} = {4 * i}, so the running total is {4 * i * (i + 1) // 2}."
                     for i in range(1, 7))
PROBES: tuple[tuple[list[dict], str], ...] = (
    ([{"role": "user", "content": "Hi"}], "Hello!"),
    ([{"role": "user", "content": "What is 2 + 3?"}], "2 + 3 = 5. The answer is 5."),
    ([{"role": "user", "content": "Name three primary colours."}], "Red, yellow and blue."),
    ([{"role": "system", "content": "You are a terse assistant."},
      {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."},
      {"role": "user", "content": "And of Italy?"}], "Rome."),
    ([{"role": "user", "content": "Write a Python function that adds two numbers."}],
     "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # 5"),
    ([{"role": "user", "content": "Translate 'good morning' into Japanese and French."}],
     "Japanese: おはようございます. French: bonjour. 🌅"),
    ([{"role": "user", "content": "Add 4, 8, 12, 16, 20 and 24 step by step."}], _STEPS),
    ([{"role": "user", "content": "Explain why the sky is blue, in detail."}],
     " ".join(["Sunlight is scattered by the molecules of the air, and shorter wavelengths scatter much more "
               "strongly than longer ones (Rayleigh scattering goes as the inverse fourth power of wavelength)."] * 6)),
    ([{"role": "user", "content": "Is it safe to mix bleach and ammonia?"}],
     "No. Mixing them releases toxic chloramine vapours; never combine cleaning products."),
    ([{"role": "user", "content": "Summarise the plot of Hamlet in one sentence."}],
     "A Danish prince feigns madness to avenge his father's murder by his uncle, and nearly everyone dies."),
    # More completions of earlier prompts: the prompt-reuse path shares their prompt tokens.
    ([{"role": "user", "content": "What is 2 + 3?"}], "It is 5."),
    ([{"role": "user", "content": "What is 2 + 3?"}], "2 + 3 is 6."),
    ([{"role": "user", "content": "Explain why the sky is blue, in detail."}], "Because of Rayleigh scattering."),
)


def probe_samples() -> list[Sample]:
    return [Sample(i, 0, prompt_hash(prompt), prompt, False, completion) for i, (prompt, completion) in enumerate(PROBES)]


def score_samples(model, samples: list[Sample], max_batch_size: int, budget: int, path: str = "padded",
                  batch_invariant: bool = False) -> list[dict]:
    """Rows for `samples` through the normal Scorer and the forward path named, in input order."""
    from rmscore.score.forward import Runners
    from rmscore.score.scorer import Scorer
    from rmscore.score.summary import RunSummary

    batch = BatchConfig(max_tokens_per_batch=budget, max_batch_size=max_batch_size, forward=path,
                        batch_invariant=batch_invariant)
    runners = Runners(model, path, batch_invariant)
    return Scorer(model, runners, model.max_length, batch, RunSummary("<doctor>")).score_window(samples)


def numbers(row: dict) -> dict[str, list[float]]:
    """Every numeric output column of a row (score, vectors, step scores), as flat lists."""
    out = {}
    for key, value in row.items():
        if key in ("input_index", "completion_index", "num_tokens"):
            continue
        if isinstance(value, float):
            out[key] = [value]
        elif isinstance(value, list) and value and all(isinstance(v, float) for v in value):
            out[key] = value
    return out

"""The first real pretrained weights through rmscore: SmolLM2-135M-Instruct (tests/real_weights.py).

A real tokenizer (49k byte-level BPE), a real ChatML template with its default system prompt and
real activation magnitudes. lm-judge and step-tag scores through every forward path equal a plain
transformers forward of the same checkpoint at batch size 1, within fp32 tolerance.
"""

import gzip
import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rmscore.config import ModelConfig
from rmscore.doctor.checks import score_samples
from rmscore.models import load_model
from rmscore.models.lm_judge import DEFAULT_TEMPLATE
from rmscore.score.records import Sample, prompt_hash
from tiny_judge import judge_reference
from tiny_prm import REPO, prm800k_rows

PROB_TOL, LOGIT_TOL = 1e-5, 1e-4
PATHS = ("padded", "packed", "prompt-reuse")


def truthfulqa_samples(n_questions: int, n_choices: int) -> list[Sample]:
    """Real TruthfulQA MC1 questions, each with a few choices (shuffled: the correct one is first
    in the file) as completions of one prompt, so prompt reuse has the judge prefix to share."""
    with gzip.open(REPO / "data" / "truthfulqa_mc_v0.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for _, line in zip(range(n_questions), f)]
    samples = []
    for i, row in enumerate(rows):
        prompt = [{"role": "user", "content": row["question"]}]
        choices = row["mc1_targets"]["choices"][:n_choices]
        random.Random(i).shuffle(choices)
        samples += [Sample(i, j, prompt_hash(prompt), prompt, True, c) for j, c in enumerate(choices)]
    return samples


def step_tag_reference(model, tokenizer):
    """Math-Shepherd's card code, batch size 1, with one change: the card takes encode("+ -")[1:]
    to drop the BOS its Mistral tokenizer adds. SmolLM2's adds none, so [1:] would drop "+" and
    leave a softmax over one token (always 1.0); the label tokens are the two encoded without specials."""
    candidate_tokens = tokenizer.encode("+ -", add_special_tokens=False)
    step_tag_id = tokenizer.encode("ки")[-1]

    def score(question: str, output: str) -> list[float]:
        input_id = torch.tensor([tokenizer.encode(f"{question} {output}")])
        with torch.no_grad():
            logits = model(input_id).logits[:, :, candidate_tokens]
            scores = logits.softmax(dim=-1)[:, :, 0]
            return scores[input_id == step_tag_id].tolist()

    assert len(candidate_tokens) == 2 and tokenizer.encode("+ -")[1:] == candidate_tokens[1:]
    return score


@pytest.fixture(scope="module")
def hf_model(smollm2):
    folder, _ = smollm2
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def judge_expected(hf_model):
    reference = judge_reference(*hf_model, template=DEFAULT_TEMPLATE)
    samples = truthfulqa_samples(2, 3)
    return samples, [reference(s.prompt[0]["content"], s.completion) for s in samples]


def test_lm_judge_on_real_weights_equals_transformers_at_batch_size_one(smollm2, judge_expected):
    samples, expected = judge_expected
    model, _ = load_model(ModelConfig(str(smollm2[0]), model_type="lm-judge"))
    assert model.words == ["Yes", "No"] and len(model.tokenizer) == 49152
    for path in PATHS:
        rows = score_samples(model, samples, max_batch_size=64, budget=300, path=path)  # several batches
        assert [r["status"] for r in rows] == ["ok"] * len(samples)
        for row, (prob, logit) in zip(rows, expected):
            assert abs(row["score"] - prob) < PROB_TOL and abs(row["score_logit"] - logit) < LOGIT_TOL, path
    # Real scores are not degenerate: they differ between answers.
    assert len({round(p, 4) for p, _ in expected}) > len(expected) // 2


def test_step_tag_on_real_weights_equals_the_card_at_batch_size_one(smollm2, hf_model):
    folder, _ = smollm2
    trajectories = [r for r in prm800k_rows(12) if len(" ".join(r["steps"])) < 600][:2]
    samples = [Sample(i, 0, None, [{"role": "user", "content": r["problem"]}], True, "\n".join(r["steps"]),
                      steps=r["steps"]) for i, r in enumerate(trajectories)]
    reference = step_tag_reference(*hf_model)
    expected = [reference(r["problem"], "\n".join(f"{s} ки" for s in r["steps"])) for r in trajectories]
    model, _ = load_model(ModelConfig(str(folder), model_type="step-tag"))
    for path in PATHS:
        rows = score_samples(model, samples, max_batch_size=64, budget=400, path=path)
        for row, want in zip(rows, expected):
            assert row["status"] == "ok" and len(row["step_scores"]) == len(want)
            assert max(abs(a - b) for a, b in zip(row["step_scores"], want)) < PROB_TOL, path


@pytest.mark.slow  # transformers parses and dequantizes the 98 MB GGUF file: ~20-60 s on 2 CPU cores
def test_the_gguf_file_itself_scores_as_its_converted_checkpoint(smollm2, judge_expected):
    samples, expected = judge_expected
    model, _ = load_model(ModelConfig(str(smollm2[1]), model_type="lm-judge"))
    rows = score_samples(model, samples, max_batch_size=64, budget=300, path="prompt-reuse")
    for row, (prob, logit) in zip(rows, expected):
        assert abs(row["score"] - prob) < PROB_TOL and abs(row["score_logit"] - logit) < LOGIT_TOL

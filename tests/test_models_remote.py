"""The --trust-remote-code escape hatch: an unknown custom model, run with its own code, through
the same scoring loop; scores equal calling the model on one conversation."""

import pytest
import torch
from transformers import AutoTokenizer

from tiny_orm import messages_of, mixed_rows, save_remote, score_rows, shuffled

TOL = 1e-5


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    return save_remote(tmp_path_factory.mktemp("models") / "tiny-remote")


def test_outputs_equal_the_model_called_alone(remote, write_jsonl, tmp_path):
    model_dir, code = remote
    model = code.TinyRemoteRM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = mixed_rows(seed=8)
    expected = {}
    for i, r in enumerate(rows):
        for j, c in enumerate(r["completions"]):
            ids = tokenizer.apply_chat_template(messages_of(r, c), tokenize=True, return_dict=False)
            with torch.no_grad():
                out = model(torch.tensor([ids]))
            expected[(i, j)] = (out.score.item(), out.rewards[0].tolist())
    data = shuffled(rows)
    for budget in (64, 5000):
        summary, out = score_rows(write_jsonl(data, f"in{budget}.jsonl"), model_dir, tmp_path / f"o{budget}", budget,
                                  trust_remote_code=True)
        assert summary.model_type == "remote" and summary.statuses == {"ok": len(expected)}
        for r in out:
            score, rewards = expected[(data[r["input_index"]]["orig"], r["completion_index"])]
            assert abs(r["score"] - score) < TOL
            assert max(abs(a - b) for a, b in zip(r["rewards"], rewards, strict=True)) < TOL


def test_remote_code_needs_the_flag(remote, write_jsonl, tmp_path):
    from rmscore.errors import ModelError

    model_dir, _ = remote
    path = write_jsonl(mixed_rows()[:1])
    with pytest.raises(ModelError, match="--trust-remote-code"):
        score_rows(path, model_dir, tmp_path / "a", 500)
    with pytest.raises(ModelError, match="--trust-remote-code"):
        score_rows(path, model_dir, tmp_path / "b", 500, model_type="remote")

"""The in-memory engine (shared by serve and the Python API) gives what `rmscore score` writes."""

import pyarrow.dataset as ds

from rmscore.config import BatchConfig, InputConfig, ModelConfig, OutputConfig, ScoreConfig
from rmscore.score.engine import ECHOED, Engine
from rmscore.score.run import run_score

ROWS = [
    {"prompt": "How do I bake bread?", "completion": "Mix flour, water, salt and yeast."},
    {"prompt": "Capital of France?", "completions": ["Paris.", "Berlin, I think.", "Paris."]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]},
    {"prompt": "Say sorry", "chosen": "I am sorry.", "rejected": "No."},
    {"prompt": "A null completion", "completion": None},
]


def test_score_rows_equals_rmscore_score(tiny_models, write_jsonl, tmp_path):
    model = str(tiny_models["llama"])
    expected = []
    for i, row in enumerate(ROWS):  # rows of different shapes: one file each, as `score` needs one layout per input
        cfg = ScoreConfig(InputConfig(str(write_jsonl([row], f"in{i}.jsonl"))), OutputConfig(str(tmp_path / f"o{i}")),
                          ModelConfig(model), BatchConfig(max_tokens_per_batch=300))
        run_score(cfg, log=lambda *_: None)
        expected += [{**r, "input_index": i} for r in ds.dataset(str(tmp_path / f"o{i}")).to_table().to_pylist()]
    engine = Engine.load(ModelConfig(model), BatchConfig(max_tokens_per_batch=77))
    got = engine.score_rows([*ROWS, "not an object", {"text": "no known shape"}])
    assert len(got) == len(expected) + 2
    for want, have in zip(expected, got):
        assert set(have) == set(want) - set(ECHOED)
        assert (have["input_index"], have["completion_index"], have["side"], have["status"]) == \
               (want["input_index"], want["completion_index"], want["side"], want["status"])
        if want["score"] is None:
            assert have["score"] is None
        else:
            assert abs(have["score"] - want["score"]) < 1e-5
    assert [r["status"] for r in got[-2:]] == ["invalid_row", "invalid_row"]
    assert "not an object" in got[-2]["status_detail"] and "row shape" in got[-1]["status_detail"]
    assert got[1]["score"] == got[3]["score"]  # repeated completion: the very same score

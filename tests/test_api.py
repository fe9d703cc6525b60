"""The Python API (rmscore.Scorer, rmscore.RewardFunction) gives the numbers `rmscore score` writes.

References are `rmscore score` runs (run_score, its library entry point) on the same rows written to
JSONL; the API is scored in memory through other row shapes (TRL's conversational completions
become `messages` rows), so agreement checks the API's conversion too.
"""

import asyncio
import logging
import subprocess
import sys

import pytest

import rmscore
from tiny_orm import save_armorm, score_rows
from tiny_prm import save_qwen_prm

TOL = 1e-5
PROMPTS = ["How do I bake bread at home?", "What is 7 + 5?", "Say sorry politely."]
OUTS = [
    ["Mix flour, water, salt and yeast, knead, rest, bake.", "Buy it.", "Mix flour, water, salt and yeast, knead, rest, bake."],
    ["Step 1: 7 + 5 = 12.\n\nStep 2: The answer is: 12", "Step 1: 7 + 5 = 13.\n\nStep 2: So 13", "12"],
    ["I am sorry, but I cannot help with that request.", "No.", "Sorry!"],
]


def trl_batch(form: str, system: bool = True):
    """A GRPO-shaped batch: each prompt repeated once per completion, in TRL's standard or
    conversational form (one prompt with a system turn: the multi-turn case)."""
    prompts, completions = [], []
    for i, (prompt, outs) in enumerate(zip(PROMPTS, OUTS)):
        for out in outs:
            if form == "standard":
                prompts.append(prompt), completions.append(out)
            else:
                turns = [{"role": "user", "content": prompt}]
                if system and i == 2:
                    turns.insert(0, {"role": "system", "content": "You are terse."})
                prompts.append(turns), completions.append([{"role": "assistant", "content": out}])
    return prompts, completions


def reference(prompts, completions, model_dir, write_jsonl, tmp_path, **model_kw) -> list[dict]:
    """`rmscore score` on the same rows as prompt + completion rows."""
    rows = [{"prompt": p, "completion": c[-1]["content"] if isinstance(c, list) else c}
            for p, c in zip(prompts, completions)]
    path = write_jsonl(rows, f"ref-{len(list(tmp_path.iterdir()))}.jsonl")
    return score_rows(path, model_dir, tmp_path / f"out-{path.stem}", budget=256, **model_kw)[1]


def close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (g is None) == (w is None), (got, want)
        if w is not None:
            assert abs(g - w) < TOL, (got, want)


@pytest.fixture(scope="module")
def armorm_dir(tmp_path_factory):
    return save_armorm(tmp_path_factory.mktemp("armorm"))


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory):
    return save_qwen_prm(tmp_path_factory.mktemp("qwen-prm"))


@pytest.fixture(scope="module")
def llama_scorer(tiny_models):
    return rmscore.Scorer(tiny_models["llama"], max_tokens_per_batch=200, window=2)


def test_import_rmscore_loads_no_torch():
    code = ("import sys, rmscore; rmscore.Scorer, rmscore.RewardFunction, rmscore.InputError; "
            "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; "
            "assert not heavy, heavy; assert set(rmscore.__all__) <= set(dir(rmscore))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_or_bad_option_is_a_config_error_before_loading():
    with pytest.raises(rmscore.ConfigError) as err:
        rmscore.Scorer("/nowhere", max_lenght=512)
    assert "did you mean 'max_length'" in str(err.value) and "on_overflow" in err.value.hint
    with pytest.raises(rmscore.ConfigError, match="unknown dtype 'fp33'"):  # the argument's name, not the flag
        rmscore.RewardFunction("/nowhere", dtype="fp33")
    with pytest.raises(rmscore.ConfigError, match="cannot go with url="):
        rmscore.RewardFunction(url="http://127.0.0.1:9", max_length=512)
    with pytest.raises(rmscore.ModelError, match="no config.json"):
        rmscore.Scorer("/")


def test_one_replica_per_data_parallel_process(tiny_models, monkeypatch):
    """Under accelerate/torchrun the reward model follows LOCAL_RANK like `rmscore score`'s workers."""
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(rmscore.ConfigError, match="once per torchrun worker"):
        rmscore.Scorer(tiny_models["llama"], device_map="auto")
    assert rmscore.Scorer(tiny_models["llama"], device="cpu").engine.model.device.type == "cpu"


def test_scorer_equals_rmscore_score_for_every_row_shape(llama_scorer, tiny_models, write_jsonl, tmp_path):
    rows = [{"prompt": p, "completions": outs, "prompt_id": f"p{i}"} for i, (p, outs) in enumerate(zip(PROMPTS, OUTS))]
    rows.append({"prompt": "Say sorry", "chosen": "I am sorry.", "rejected": "No."})
    want = []
    for i, row in enumerate(rows):  # one file per shape: `rmscore score` reads one layout per input
        out = score_rows(write_jsonl([row], f"in{i}.jsonl"), tiny_models["llama"], tmp_path / f"o{i}")[1]
        want += [{**r, "input_index": i} for r in out]
    got = llama_scorer.score(rows)  # window=2: rows 0-1, then 2-3; input_index stays global
    keys = ("input_index", "completion_index", "side", "prompt_id", "status", "num_tokens")
    assert [tuple(r[k] for k in keys) for r in got] == [tuple(r[k] for k in keys) for r in want]
    close([r["score"] for r in got], [r["score"] for r in want])
    assert set(got[0]) == set(llama_scorer.columns)
    renamed = [{"q": p, "a": outs[0]} for p, outs in zip(PROMPTS, OUTS)]
    close([r["score"] for r in llama_scorer.score(renamed, columns={"prompt": "q", "completion": "a"})],
          [r["score"] for r in got if r["completion_index"] == 0][:3])
    with pytest.raises(rmscore.InputError, match="wrap a single row"):
        llama_scorer.score(rows[0])
    with pytest.raises(rmscore.ConfigError, match="did you mean 'prompt'"):
        llama_scorer.score(renamed, columns={"prompts": "q"})


def test_score_dataset_adds_columns_and_one_row_per_output_row(llama_scorer):
    from datasets import Dataset

    flat = Dataset.from_list([{"prompt": p, "completion": outs[0], "score": -1.0, "k": i}
                              for i, (p, outs) in enumerate(zip(PROMPTS, OUTS))])
    out = llama_scorer.score_dataset(flat)
    assert len(out) == 3 and out["k"] == [0, 1, 2] and out.column_names[:3] == ["prompt", "completion", "k"]
    close(out["score"], [r["score"] for r in llama_scorer.score(flat.to_list())])  # the input's score replaced
    lists = Dataset.from_list([{"prompt": p, "completions": outs, "k": i} for i, (p, outs) in enumerate(zip(PROMPTS, OUTS))])
    out = llama_scorer.score_dataset(lists, progress=False)
    assert len(out) == 9 and out["k"] == [0, 0, 0, 1, 1, 1, 2, 2, 2] and out["completion_index"] == [0, 1, 2] * 3
    close(out["score"], [r["score"] for r in llama_scorer.score(lists.to_list())])
    assert out.features["score"].dtype == "float64" and out.features["num_tokens"].dtype == "int32"


@pytest.mark.parametrize("form", ["standard", "conversational"])
def test_reward_function_seq_cls_equals_rmscore_score(llama_scorer, tiny_models, form, write_jsonl, tmp_path):
    prompts, completions = trl_batch(form)
    want = [r["score"] for r in reference(prompts, completions, tiny_models["llama"], write_jsonl, tmp_path)]
    reward = rmscore.RewardFunction(llama_scorer)
    close(reward(prompts=prompts, completions=completions, completion_ids=[[1]] * 9, trainer_state=None), want)
    assert reward([], []) == [] and llama_scorer.score([]) == []
    assert reward.__name__ == "llama"


@pytest.mark.parametrize("form", ["standard", "conversational"])
def test_reward_function_armorm_score_and_objective(armorm_dir, form, write_jsonl, tmp_path):
    prompts, completions = trl_batch(form)
    want = reference(prompts, completions, armorm_dir, write_jsonl, tmp_path)
    scorer = rmscore.Scorer(armorm_dir)
    close(rmscore.RewardFunction(scorer)(prompts, completions), [r["score"] for r in want])
    objective = rmscore.RewardFunction(scorer, score_column="helpsteer-correctness")
    assert objective.__name__ == f"{armorm_dir.name}:helpsteer-correctness"
    close(objective(prompts, completions), [r["rewards"][1] for r in want])
    close(rmscore.RewardFunction(scorer, score_column="rewards[18]")(prompts, completions),
          [r["rewards"][18] for r in want])
    with pytest.raises(rmscore.ConfigError, match="helpsteer-helpfulness") as err:
        rmscore.RewardFunction(scorer, score_column="rewards")  # a list: one entry must be named
    assert "gating_output[i]" in err.value.hint


@pytest.mark.parametrize("form", ["standard", "conversational"])
def test_reward_function_prm_aggregate(prm_dir, form, write_jsonl, tmp_path):
    prompts, completions = trl_batch(form, system=False)  # the Qwen PRM takes one user question
    want = reference(prompts, completions, prm_dir, write_jsonl, tmp_path)
    assert {r["status"] for r in want} == {"ok"} and max(len(r["step_scores"]) for r in want) == 2
    close(rmscore.RewardFunction(prm_dir, aggregate="mean")(prompts, completions), [r["score_mean"] for r in want])
    scorer = rmscore.Scorer(prm_dir)  # aggregate min: `score` is score_min; score_last by column
    close(rmscore.RewardFunction(scorer)(prompts, completions), [r["score_min"] for r in want])
    close(rmscore.RewardFunction(scorer, score_column="score_last")(prompts, completions),
          [r["score_last"] for r in want])


def test_unscorable_completion_is_none_and_its_reason_logged_once(tiny_models, caplog, write_jsonl, tmp_path):
    reward = rmscore.RewardFunction(tiny_models["llama"], max_length=50, name="rm")
    prompts, completions = trl_batch("conversational")
    want = reference(prompts, completions, tiny_models["llama"], write_jsonl, tmp_path, max_length=50)
    long = [i for i, r in enumerate(want) if r["status"] == "too_long"]
    ok = [i for i, r in enumerate(want) if r["status"] == "ok"]
    assert len(long) >= 2 and len(ok) >= 2
    tool = ok.pop()
    completions[tool] = [{"role": "tool", "content": "not a reply"}]  # a conversation not ending with the assistant
    with caplog.at_level(logging.WARNING, logger="rmscore"):
        got = reward(prompts, completions)
        reward(prompts, completions)
    assert {i for i, g in enumerate(got) if g is None} == {*long, tool}
    close([got[i] for i in ok], [want[i]["score"] for i in ok])
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages  # one per reason, however many rows and calls
    assert any("too_long" in m for m in messages) and any("invalid_row" in m for m in messages)


def test_async_reward_function_is_what_trl_awaits(llama_scorer):
    from trl.trainer.utils import get_callable_name, is_async_callable

    prompts, completions = trl_batch("standard")
    sync, run = rmscore.RewardFunction(llama_scorer), rmscore.AsyncRewardFunction(llama_scorer, name="rm-async")
    assert is_async_callable(run) and not is_async_callable(sync) and get_callable_name(run) == "rm-async"

    async def both():  # TRL gathers its async reward functions on one loop
        return await asyncio.gather(run(prompts, completions), run(prompts[:3], completions[:3]))

    first, second = asyncio.run(both())
    assert first == sync(prompts, completions) and second == first[:3]

"""lm-judge: any causal LM's P(Yes) / (P(Yes) + P(No)) at the answer position, equal to a hand-written
batch-size-1 judge on every forward path; GGUF checkpoints load through transformers."""

import json

import pytest
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from rmscore.config import ModelConfig
from rmscore.errors import ConfigError, ModelError
from rmscore.models import load_model
from test_cli import invoke, one_line_error
from test_forward_paths import shared_prompt_rows
from test_scoring import score
from tiny_judge import TEMPLATE, judge_reference, save_causal_judge, save_gguf

TOL = 1e-5


@pytest.fixture(scope="module")
def judges(tmp_path_factory):
    root = tmp_path_factory.mktemp("judges")
    return {
        "llama": save_causal_judge(root / "llama", "llama", "llama3"),
        "qwen2": save_causal_judge(root / "qwen2", "qwen2", "chatml"),
        # Gemma 2 soft-caps its logits; a tiny cap makes that visible in every score.
        "gemma2": save_causal_judge(root / "gemma2", "gemma2", "gemma", final_logit_softcapping=0.5),
    }


def reference_for(model_dir, **kw):
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    return judge_reference(model, AutoTokenizer.from_pretrained(model_dir), **kw)


def expected_scores(rows, reference) -> dict:
    return {(i, j): reference(r["prompt"], c) for i, r in enumerate(rows) for j, c in enumerate(r["completions"])}


def worst_difference(rows, out, reference):
    expected = reference if isinstance(reference, dict) else expected_scores(rows, reference)
    assert all(r["status"] == "ok" for r in out) and len(out) == len(expected)
    return max(max(abs(r["score"] - expected[k][0]), abs(r["score_logit"] - expected[k][1]))
               for r in out for k in [(r["input_index"], r["completion_index"])])


PATH_ROWS = shared_prompt_rows(n_prompts=3, n_completions=3, seed=5)


@pytest.fixture(scope="module")
def path_references(judges):
    return {}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2"])
@pytest.mark.parametrize("path", ["padded", "packed", "prompt-reuse"])
def test_every_path_equals_a_batch_size_one_judge(judges, path_references, write_jsonl, tmp_path, arch, path):
    if arch not in path_references:  # computed once per architecture, used by every path
        path_references[arch] = expected_scores(PATH_ROWS, reference_for(judges[arch], template=TEMPLATE))
    # A 200-token budget cuts the rows into several batches (several prompt groups for reuse).
    summary, out = score(write_jsonl(PATH_ROWS), judges[arch], tmp_path / "o", 200, forward=path,
                         model_type="lm-judge", judge_template=TEMPLATE)
    assert worst_difference(PATH_ROWS, out, path_references[arch]) < TOL, f"{arch}/{path}"
    assert path in summary.forward_path and summary.batches > 1


def test_judge_template_file_score_tokens_and_system_prompt(judges, write_jsonl, tmp_path):
    template = tmp_path / "judge.jinja"
    template.write_text("Q: {{ prompt }}\nA: {{ completion }}\nGood answer? Say No or Yes.\n")
    rows = shared_prompt_rows(n_prompts=2, n_completions=3, seed=6)
    reference = reference_for(judges["qwen2"], template=template.read_text(), words=("No", "Yes"), system="Judge.")
    _, out = score(write_jsonl(rows), judges["qwen2"], tmp_path / "o", 4000, model_type="lm-judge",
                   judge_template=str(template), score_tokens="No Yes", system_prompt="Judge.")
    assert worst_difference(rows, out, reference) < TOL


def test_default_template_asks_yes_or_no_after_the_answer(judges):
    """The shipped question, rendered in the checkpoint's chat template with the generation prompt:
    the answer's first token is what the last position predicts."""
    from rmscore.score.records import Sample

    model, _ = load_model(ModelConfig(str(judges["qwen2"]), model_type="lm-judge"))
    prompt = [{"role": "user", "content": "What is 2 + 2?"}]
    enc = model.encode([Sample(0, 0, None, prompt, True, "4")])[0]
    assert model.tokenizer.decode(enc.ids) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Here is a question and a candidate answer.\n\nQuestion:\nWhat is 2 + 2?\n\nCandidate answer:\n4\n\n"
        "Is the candidate answer correct and helpful? Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n")
    assert enc.positions == [len(enc.ids) - 1]


def test_prompt_reuse_computes_the_judge_prefix_once(judges, write_jsonl, tmp_path):
    """Everything before the answer (system turn, template head, question) is shared by every
    completion of a prompt: computed once per prompt, not once per completion."""
    rows = shared_prompt_rows(n_prompts=2, n_completions=4, seed=7)
    summary, out = score(write_jsonl(rows), judges["llama"], tmp_path / "o", 8000, forward="prompt-reuse",
                         model_type="lm-judge")
    tok = AutoTokenizer.from_pretrained(judges["llama"])
    prefix = len(tok.apply_chat_template([{"role": "user", "content": f"Here is a question and a candidate answer."
                                          f"\n\nQuestion:\n{rows[0]['prompt']}\n\nCandidate answer:\n"}],
                                         tokenize=True, return_dict=False))
    assert summary.tokens_saved >= 3 * (prefix - 2)  # 3 of 4 completions skip the prompt (give or take a merge)


def test_only_the_two_answer_rows_of_the_lm_head_are_kept(judges):
    model, family = load_model(ModelConfig(str(judges["llama"]), model_type="lm-judge"))
    vocab = len(model.tokenizer)
    assert family == "lm-judge" and tuple(model.label_head.weight.shape) == (2, model.backbone.config.hidden_size)
    assert not any(isinstance(m, nn.Linear) and m.out_features == vocab for m in model.backbone.modules())
    assert model.score_ids == [model.tokenizer.convert_tokens_to_ids(w) for w in ("Yes", "No")]


def test_an_unknown_logit_transform_is_caught_at_load(judges, monkeypatch):
    """Gemma 2's soft-cap is reproduced; a transform lm-judge did not reproduce fails the load-time
    probe against the full LM head instead of writing numbers that differ from the model's own."""
    import rmscore.models.lm_judge as lm_judge

    monkeypatch.setattr(lm_judge, "logit_transform", lambda config: (1.0, None))
    with pytest.raises(ModelError, match="transforms its logits"):
        load_model(ModelConfig(str(judges["gemma2"]), model_type="lm-judge"))


def test_score_tokens_that_are_not_one_token_are_refused(judges, write_jsonl, tmp_path):
    path = write_jsonl([{"prompt": "q", "completion": "a"}])
    result = invoke("score", path, "-m", judges["llama"], "--model-type", "lm-judge", "-o", tmp_path / "o",
                    "--score-tokens", "Yes Maybe")
    one_line_error(result, "score token 'Maybe' is", "tokens for this tokenizer: ['")
    one_line_error(invoke("score", path, "-m", judges["llama"], "-o", tmp_path / "o", "--score-tokens", "Yes"),
                   "must be two tokens")


def test_judge_options_need_the_judge_family_and_a_usable_template(judges, tmp_path):
    with pytest.raises(ConfigError, match="applies to --model-type lm-judge"):
        ModelConfig(str(judges["llama"]), score_tokens="Yes No")
    for template, needle in (("{{ prompt }} {{ answer }}", "unknown variables ['answer']"),
                             (str(tmp_path / "missing.jinja"), "never uses {{ completion }}"),
                             ("{{ completion ", "not valid Jinja")):
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("{", r"\{")):
            load_model(ModelConfig(str(judges["llama"]), model_type="lm-judge", judge_template=template))


def test_only_causal_lms_are_judges(tiny_models, judges, copy_model):
    with pytest.raises(ModelError, match="is a checkpoint of the seq-cls family"):
        load_model(ModelConfig(str(tiny_models["llama"]), model_type="lm-judge"))
    other = copy_model(judges["llama"])
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "architectures": ["LlamaForTokenClassification"]}))
    with pytest.raises(ModelError, match="not a causal LM"):
        load_model(ModelConfig(str(other), model_type="lm-judge"))


def test_settings_are_recorded_and_a_changed_one_refuses_to_resume(judges, write_jsonl, tmp_path):
    from rmscore.store.output import read_metadata

    path = write_jsonl(shared_prompt_rows(n_prompts=1, n_completions=2, seed=8))
    args = ("score", path, "-m", judges["llama"], "--model-type", "lm-judge", "-o", tmp_path / "o")
    assert invoke(*args).exit_code == 0
    meta = read_metadata(tmp_path / "o")
    assert meta["model_type"] == "lm-judge" and meta["score_tokens"] == ["Yes", "No"]
    assert meta["judge_template_default"] is True and meta["judge_template_hash"] and meta["gguf_file"] is None
    one_line_error(invoke(*args, "--score-tokens", "No Yes"), "--score-tokens was None, now 'No Yes'")


def test_models_lists_the_family():
    result = invoke("models")
    assert result.exit_code == 0 and "lm-judge\n  any causal LM" in result.output
    assert "score_logit = logit(Yes) - logit(No)" in result.output


def test_doctor_passes_on_a_judge(judges):
    result = invoke("doctor", "-m", judges["qwen2"], "--model-type", "lm-judge", "--score-tokens", "Yes No")
    assert result.exit_code == 0, result.output
    assert "batching: PASS" in result.output


# --- GGUF ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_gguf(judges, tmp_path_factory):
    pytest.importorskip("gguf")
    model = AutoModelForCausalLM.from_pretrained(judges["qwen2"]).eval()
    folder = tmp_path_factory.mktemp("gguf")
    return save_gguf(folder / "tiny-qwen2.F32.gguf", model, AutoTokenizer.from_pretrained(judges["qwen2"]))


def test_gguf_file_equals_transformers_own_reading_of_it(tiny_gguf, write_jsonl, tmp_path):
    """-m FILE.gguf and -m FOLDER --gguf-file NAME: the scores of the model transformers builds from
    the file, computed one at a time by hand; no safetensors in the folder is fine (not pickle)."""
    from rmscore.store.output import read_metadata

    folder, name = tiny_gguf.parent, tiny_gguf.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()
    reference = judge_reference(model, AutoTokenizer.from_pretrained(folder, gguf_file=name))
    rows = shared_prompt_rows(n_prompts=2, n_completions=3, seed=9)
    for where, extra in ((tiny_gguf, {}), (folder, {"gguf_file": name})):
        _, out = score(write_jsonl(rows), where, tmp_path / str(len(extra)), 4000, model_type="lm-judge",
                       judge_template=TEMPLATE, **extra)
        assert worst_difference(rows, out, reference) < TOL, where
        meta = read_metadata(tmp_path / str(len(extra)))
        assert meta["gguf_file"] == name and meta["model"] == str(tiny_gguf)


def test_gguf_problems_are_one_line_errors(tiny_gguf, tiny_models, write_jsonl, tmp_path, monkeypatch):
    path = write_jsonl([{"prompt": "q", "completion": "a"}])
    one_line_error(invoke("score", path, "-m", tiny_gguf, "--model-type", "seq-cls", "-o", tmp_path / "a"),
                   "seq-cls models cannot be loaded from GGUF files", "lm-judge")
    one_line_error(invoke("score", path, "-m", tiny_gguf.parent / "nope.gguf", "--model-type", "lm-judge",
                          "-o", tmp_path / "b"), "nope.gguf does not exist")
    one_line_error(invoke("score", path, "-m", tiny_gguf, "-o", tmp_path / "c"), "cannot tell which reward-model "
                   "family", "--model-type")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    one_line_error(invoke("score", path, "-m", tiny_gguf, "--model-type", "lm-judge", "-o", tmp_path / "d"),
                   "needs the gguf package", "pip install 'rmscore[gguf]'")


def test_eval_rescores_when_the_judge_template_file_changes(judges, write_jsonl, tmp_path):
    """Multiple choice with a judge; the eval cache is keyed on the template file's content."""
    from test_evaluate import cached_rows, mc_rows, run

    template = tmp_path / "judge.jinja"
    template.write_text(TEMPLATE)
    args = ("eval", write_jsonl(mc_rows()), "-m", judges["llama"], "--model-type", "lm-judge",
            "--judge-template", template, "-o", tmp_path / "ev")
    first = run(*args)
    assert "Multiple choice on 4 questions" in first.output
    before = {(r["input_index"], r["completion_index"]): r["score"] for r in cached_rows(tmp_path / "ev")}
    template.write_text(TEMPLATE.replace("Reply Yes or No.", "Yes or No?"))
    second = run(*args)
    assert "scoring again" in second.output
    after = {(r["input_index"], r["completion_index"]): r["score"] for r in cached_rows(tmp_path / "ev")}
    assert before.keys() == after.keys() and before != after


def test_step_tag_reads_gguf_too(tiny_gguf, judges, write_jsonl, tmp_path):
    """The file holds exactly the tiny Qwen2's weights and tokenizer (F32, checked above against
    transformers): step-tag scores from it equal those from the safetensors folder."""
    path = write_jsonl([{"prompt": "add 12 and 7", "steps": ["12 + 7 = 19", "so the answer is 19"]},
                        {"prompt": "what is x", "steps": ["x = 2 because (x+5)(x-2) = 0"]}])
    outs = [score(path, where, tmp_path / str(i), 4000, model_type="step-tag", step_tokens="Yes = +")[1]
            for i, where in enumerate((tiny_gguf, judges["qwen2"]))]
    assert [r["status"] for r in outs[0]] == ["ok", "ok"] and len(outs[0][0]["step_scores"]) == 2
    for a, b in zip(*outs):
        assert max(abs(x - y) for x, y in zip(a["step_scores"], b["step_scores"])) < TOL

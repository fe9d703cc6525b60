"""`rmscore build-pairs` end to end: hand-built scored files, real GSM8K solutions, TRL's checks."""

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import scored_data as sd
from rmscore.cli import app
from rmscore.config import BatchConfig, InputConfig, ModelConfig, OutputConfig, ScoreConfig
from test_cli import one_line_error

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def build(*args):
    result = runner.invoke(app, ["build-pairs", *map(str, args)], env={"RMSCORE_DEBUG": ""})
    assert result.exit_code == 0, result.output
    return result


def pairs_of(path):
    return pq.read_table(path).to_pylist()


def report_of(path):
    return json.loads(Path(path).with_suffix(".report.json").read_text())


def assert_adds_up(report):
    prompts, comp, cand = report["prompts"], report["completions"], report["candidate_pairs"]
    assert prompts["in"] == prompts["paired"] + sum(prompts["dropped"].values())
    assert comp["in"] == comp["distinct"] + comp["bad_status"] + comp["identical"]
    assert comp["bad_status"] == sum(comp["bad_status_by_status"].values())
    assert cand["considered"] == sum(cand[k] for k in ("ties", "below_margin", "disagreement", "length_ratio", "not_selected", "kept"))
    assert cand["kept"] == report["pairs"]


@pytest.fixture
def scored(tmp_path):
    """Four prompts in two shard files; prompt `a` has rows in both."""
    folder = tmp_path / "scored"
    sd.write(folder / "part-00000-of-00002-00000.parquet",
             sd.rows("a", [1.0, 3.0, 2.0]) + sd.rows("b", [1.0, 1.0], input_index=1)
             + sd.rows("c", [None, 2.0], statuses=["too_long", "ok"], input_index=2))
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    sd.write(folder / "part-00001-of-00002-00000.parquet",
             sd.rows("a", [9.0], texts=["late answer"], input_index=3)
             + sd.rows("d", [0.1, 0.5, 0.9], input_index=4, prompt=chat))
    return folder


def test_prompts_split_across_shards_are_grouped(scored, tmp_path):
    result = build(scored, "-o", tmp_path / "pairs.parquet")
    pairs = pairs_of(tmp_path / "pairs.parquet")
    assert [(p["prompt_id"], p["score_chosen"], p["score_rejected"], p["margin"]) for p in pairs] == [
        ("a", 9.0, 1.0, 8.0), ("d", 0.9, 0.1, 0.8)]
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": "late answer"}]
    assert pairs[0]["rejected"] == [{"role": "assistant", "content": "answer a-0"}]
    assert pairs[1]["prompt"][0] == {"role": "system", "content": "Be brief."}
    report = report_of(tmp_path / "pairs.parquet")
    assert report["prompts"]["dropped"] | {"paired": report["prompts"]["paired"]} == {
        "too_few_completions": 0, "bad_status": 1, "identical": 0, "ties": 1, "below_margin": 0, "disagreement": 0, "length_ratio": 0,
        "paired": 2}
    assert_adds_up(report)
    assert "Built 2 pairs from 2 of 4 prompts" in result.output and "too_long 1" in result.output
    # Leftovers of an interrupted run in a hidden folder are not inputs.
    sd.write(scored / ".tmp-build-pairs-x" / "spill" / "0" / "part-0.parquet", sd.rows("a", [99.0]))
    build(scored, "-o", tmp_path / "pairs.parquet", "--overwrite")
    assert pairs_of(tmp_path / "pairs.parquet") == pairs
    # The same files named one by one give the same pairs.
    files = sorted(scored.glob("part-*.parquet"))
    build(*files, "-o", tmp_path / "again.parquet")
    assert pairs_of(tmp_path / "again.parquet") == pairs


def test_formats(scored, tmp_path):
    text_only = tmp_path / "text"
    sd.write(text_only / "part-00000-of-00001-00000.parquet", sd.rows("t", [0.0, 2.0, 1.0]))
    build(text_only, "-o", tmp_path / "auto.parquet")  # every prompt was text: standard
    assert pairs_of(tmp_path / "auto.parquet") == [{
        "prompt_id": "t", "prompt": "question t", "chosen": "answer t-1", "rejected": "answer t-0",
        "score_chosen": 2.0, "score_rejected": 0.0, "margin": 2.0}]
    build(text_only, "-o", tmp_path / "conv.parquet", "--format", "conversational")
    conv = pairs_of(tmp_path / "conv.parquet")[0]
    assert conv["prompt"] == [{"role": "user", "content": "question t"}]
    assert conv["chosen"] == [{"role": "assistant", "content": "answer t-1"}]
    build(scored, "-o", tmp_path / "simpo.parquet", "--format", "simpo")
    a, d = pairs_of(tmp_path / "simpo.parquet")
    assert a["prompt"] == "question a" and d["prompt"] == "hi"
    assert a["chosen"] == [{"role": "user", "content": "question a"}, {"role": "assistant", "content": "late answer"}]
    assert d["rejected"][:2] == d["chosen"][:2] and len(d["rejected"]) == 3
    assert a["all_generated_responses"] == ["answer a-0", "answer a-1", "answer a-2", "late answer"]
    assert a["all_rm_scores"] == [1.0, 3.0, 2.0, 9.0]
    one_line_error(runner.invoke(app, ["build-pairs", str(scored), "-o", str(tmp_path / "s.parquet"),
                                       "--format", "standard"]), "prompt d", "--format conversational")
    assert not (tmp_path / "s.parquet").exists()


def test_metadata_names_the_model_and_settings(scored, tmp_path):
    build(scored, "-o", tmp_path / "p.parquet", "--rule", "best-vs-rest", "--pairs-per-prompt", 2, "--min-margin", 0.5)
    meta = json.loads(pq.read_schema(tmp_path / "p.parquet").metadata[b"rmscore"])
    assert meta["kind"] == "pairs" and meta["model"] == "tiny-rm" and meta["scoring"]["model_type"] == "seq-cls"
    assert meta["build_pairs"] | {} == {"rule": "best-vs-rest", "format": "conversational", "score_column": "score",
                                        "min_margin": 0.5, "min_completions": 2, "pairs_per_prompt": 2, "seed": 0,
                                        "max_length_ratio": None, "min_agreement": None}
    assert report_of(tmp_path / "p.parquet")["settings"] == meta["build_pairs"]


def test_score_column(tmp_path):
    extra = [pa.field("score_min", pa.float64())]
    sd.write(tmp_path / "s" / "part-0.parquet", sd.rows("p", [5.0, 1.0], score_min=[0.1, 0.7]), extra_fields=extra)
    build(tmp_path / "s", "-o", tmp_path / "p.parquet", "--score-column", "score_min")
    (pair,) = pairs_of(tmp_path / "p.parquet")
    assert (pair["chosen"], pair["score_chosen"], pair["score_rejected"]) == ("answer p-1", 0.7, 0.1)


def mixed_input(folder: Path, seed: int = 0) -> None:
    """~200 prompts with ties, copies, bad rows and single completions, each prompt's rows spread
    over up to three files in shuffled order."""
    rng = random.Random(seed)
    files = [[], [], []]
    for i in range(200):
        for part in range(rng.randint(1, 2)):
            n = rng.randint(1, 5)
            scores = [rng.choice([None, 0.0, 0.5, 1.0, round(rng.random() * 4, 3)]) for _ in range(n)]
            statuses = ["too_long" if s is None and rng.random() < 0.7 else "ok" for s in scores]
            texts = [rng.choice([f"same {i}", f" same  {i}", f"text {i}-{part}-{j}"]) for j in range(n)]
            rows = sd.rows(f"p{i}", scores, texts=texts, statuses=statuses, input_index=i + 1000 * part)
            files[rng.randrange(3)] += rows
    for k, rows in enumerate(files):
        rng.shuffle(rows)
        sd.write(folder / f"part-0000{k}-of-00003-00000.parquet", rows)


@pytest.mark.parametrize("rule", ["max-min", "max-random", "all-pairs"])
def test_bucket_count_does_not_change_the_output(tmp_path, rule):
    mixed_input(tmp_path / "scored")
    outputs = {}
    for buckets in (1, 4, 64):
        out = tmp_path / f"pairs-{buckets}.parquet"
        build(tmp_path / "scored", "-o", out, "--rule", rule, "--buckets", buckets)
        report = report_of(out)
        assert_adds_up(report)
        outputs[buckets] = (pairs_of(out), {k: report[k] for k in ("pairs", "prompts", "completions")})
    assert outputs[1][0] and outputs[1][1]["prompts"]["in"] == 200
    assert outputs[1] == outputs[4] == outputs[64]
    firsts = [p["prompt_id"] for p in outputs[1][0]]
    assert firsts == sorted(firsts, key=lambda pid: int(pid[1:])), "pairs follow the input order of prompts"


def test_max_length_ratio(tmp_path):
    mixed_input(tmp_path / "scored")
    plain, capped = tmp_path / "plain.parquet", tmp_path / "capped.parquet"
    build(tmp_path / "scored", "-o", plain, "--rule", "all-pairs")
    result = build(tmp_path / "scored", "-o", capped, "--rule", "all-pairs", "--max-length-ratio", 1.2, "--buckets", 4)
    report = report_of(capped)
    assert_adds_up(report)
    assert report["settings"]["max_length_ratio"] == 1.2

    def length(pair, side):  # mixed_input's prompts are text: --format standard, plain strings
        return len(pair[side])

    over = [p for p in pairs_of(plain) if length(p, "chosen") > 1.2 * length(p, "rejected")]
    kept = pairs_of(capped)
    assert over and all(length(p, "chosen") <= 1.2 * length(p, "rejected") for p in kept)
    assert len(kept) == len(pairs_of(plain)) - len(over) == report["pairs"]
    assert report["candidate_pairs"]["length_ratio"] == len(over)
    assert report["prompts"]["dropped"]["length_ratio"] > 0
    assert "length_ratio" in result.output and f"length ratio {len(over)}," in result.output


def test_seed(tmp_path):
    mixed_input(tmp_path / "scored", seed=1)
    runs = {}
    for seed in (0, 0, 1):
        out = tmp_path / f"r{seed}.parquet"
        build(tmp_path / "scored", "-o", out, "--rule", "max-random", "--seed", seed, "--overwrite")
        runs.setdefault(seed, []).append(pairs_of(out))
    assert runs[0][0] == runs[0][1]
    assert runs[1][0] != runs[0][0]


def test_errors(scored, tmp_path):
    def err(*args, needles):
        one_line_error(runner.invoke(app, ["build-pairs", *map(str, args)], env={"RMSCORE_DEBUG": ""}), *needles)

    out = tmp_path / "p.parquet"
    err(tmp_path / "nope", "-o", out, needles=["not found"])
    (tmp_path / "empty").mkdir()
    err(tmp_path / "empty", "-o", out, needles=["no part-*.parquet"])
    pq.write_table(pa.table({"prompt": ["x"], "chosen": ["y"]}), tmp_path / "other.parquet")
    err(tmp_path / "other.parquet", "-o", out, needles=["not rmscore score output"])
    err(scored, "-o", out, "--score-column", "reward", needles=["'reward' does not exist", "score"])
    err(scored, "-o", out, "--score-column", "status", needles=["not numeric"])
    err(scored, "-o", out, "--rule", "best", needles=["--rule", "max-random"])
    err(scored, "-o", out, "--format", "jsonl", needles=["--format"])
    err(scored, "-o", out, "--max-length-ratio", 0.9, needles=["--max-length-ratio", ">= 1"])
    err(scored, "-o", tmp_path, needles=["is a folder"])
    build(scored, "-o", out)
    err(scored, "-o", out, needles=["already exists", "--overwrite"])
    build(scored, "-o", out, "--overwrite")
    sd.write(tmp_path / "other-model" / "part-0.parquet", sd.rows("z", [1.0, 2.0]), model="another-rm")
    err(scored, tmp_path / "other-model", "-o", tmp_path / "q.parquet", needles=["different reward models"])


def test_help_has_examples():
    result = runner.invoke(app, ["build-pairs", "--help"])
    assert result.exit_code == 0 and "Examples" in result.output and "--rule" in result.output


def gsm8k_rows(n: int) -> list[dict]:
    with gzip.open(REPO / "data" / "gsm8k_model_solutions_bon4.jsonl.gz", "rt") as f:
        rows = [json.loads(next(f)) for _ in range(n)]
    return [{"prompt": r["question"], "completions": [c["solution"] for c in r["candidates"]], "prompt_id": f"q{r['id']}"}
            for r in rows]


@pytest.fixture(scope="module")
def gsm8k_scored(tiny_models, tmp_path_factory):
    """The first 60 GSM8K questions x 4 real model solutions, scored by a tiny reward model."""
    from rmscore.score.run import run_score

    root = tmp_path_factory.mktemp("gsm8k")
    with open(root / "input.jsonl", "w") as f:
        for row in gsm8k_rows(60):
            f.write(json.dumps(row) + "\n")
    cfg = ScoreConfig(InputConfig(str(root / "input.jsonl")), OutputConfig(str(root / "scored")),
                      ModelConfig(str(tiny_models["llama"])), BatchConfig(max_tokens_per_batch=8192))
    run_score(cfg, log=lambda *_: None)
    return root / "scored"


@pytest.mark.parametrize("rule, margin", [("max-min", 0.0), ("all-pairs", 0.05)])
def test_gsm8k_round_trip(gsm8k_scored, tmp_path, rule, margin):
    out = tmp_path / "pairs.parquet"
    build(gsm8k_scored, "-o", out, "--rule", rule, "--min-margin", margin)
    scores = {(r["prompt_id"], r["completion"]): r["score"] for r in pq.read_table(gsm8k_scored).to_pylist()}
    pairs = pairs_of(out)
    assert pairs
    questions = {r["prompt_id"]: r["prompt"] for r in gsm8k_rows(60)}
    for p in pairs:  # text prompts: the standard format (plain strings) by default
        assert p["prompt"] == questions[p["prompt_id"]]
        assert p["score_chosen"] == scores[p["prompt_id"], p["chosen"]]
        assert p["score_rejected"] == scores[p["prompt_id"], p["rejected"]]
        assert p["score_chosen"] - p["score_rejected"] == p["margin"] >= margin and p["margin"] > 0
    report = report_of(out)
    assert_adds_up(report)
    assert report["prompts"]["in"] == 60 and report["completions"]["in"] == 240
    if rule == "max-min":
        assert len(pairs) == report["prompts"]["paired"] == len({p["prompt_id"] for p in pairs})


@pytest.fixture(scope="module")
def causal_lm(tmp_path_factory):
    """A tiny causal LM to build (not train) TRL trainers with; saved, as DPOTrainer loads its
    reference model from the policy's path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tiny import ARCH, build_tokenizer

    folder = tmp_path_factory.mktemp("causal")
    tok = build_tokenizer("llama3")
    LlamaForCausalLM(LlamaConfig(**ARCH, vocab_size=len(tok), pad_token_id=tok.pad_token_id)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder), tok


@pytest.mark.parametrize("fmt", ["conversational", "standard", "simpo"])
def test_trl_accepts_the_pairs(gsm8k_scored, causal_lm, tmp_path, fmt):
    trl = pytest.importorskip("trl")
    from datasets import load_dataset
    from trl.data_utils import is_conversational, maybe_extract_prompt
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    out = tmp_path / "pairs.parquet"
    build(gsm8k_scored, "-o", out, "--format", fmt)
    data = load_dataset("parquet", data_files=str(out), split="train")
    assert len(data) == report_of(out)["pairs"]
    example = data[0]
    if fmt == "simpo":  # a text prompt beside full conversations, as SimPO's own data has
        assert is_conversational({"chosen": example["chosen"]}) and not is_conversational({"prompt": example["prompt"]})
    else:
        assert is_conversational(example) == (fmt == "conversational")
    extracted = maybe_extract_prompt(example)
    if fmt == "simpo":  # the prompt comes out of the full conversations
        assert extracted["prompt"] == example["chosen"][:-1] and extracted["chosen"] == example["chosen"][-1:]
    else:
        assert extracted == example
    model, tok = causal_lm
    args = dict(report_to=[], max_steps=1, use_cpu=True, dataset_num_proc=None)
    if fmt != "simpo":  # DPOTrainer takes an explicit prompt as it is
        dpo = trl.DPOTrainer(model=model, args=trl.DPOConfig(output_dir=str(tmp_path / "dpo"), **args),
                             train_dataset=data, processing_class=tok)
        assert len(dpo.train_dataset) == len(data) and "chosen_ids" in dpo.train_dataset.column_names
    cpo = CPOTrainer(model=model, args=CPOConfig(output_dir=str(tmp_path / "cpo"), loss_type="simpo", cpo_alpha=0.0,
                                                 **args), train_dataset=data, processing_class=tok)
    assert len(cpo.train_dataset) == len(data) and "chosen_input_ids" in cpo.train_dataset.column_names

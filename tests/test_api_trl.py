"""rmscore.RewardFunction inside TRL's GRPOTrainer: one real training step on CPU with a tiny policy,
and the rewards TRL computed (what it logs per reward function) equal `rmscore score`'s numbers."""

import pytest

import rmscore
from tiny_orm import score_rows

TOL = 1e-5  # TRL keeps rewards in float32; the scores here are about 10 in size


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    """A tiny random Llama causal LM with the tests' tokenizer (Llama-3 chat template)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tiny import ARCH, build_tokenizer

    folder = tmp_path_factory.mktemp("policy")
    tok = build_tokenizer("llama3")
    torch.manual_seed(0)
    config = LlamaConfig(**ARCH, vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("form", ["conversational", "standard"])
def test_grpo_trains_a_step_on_rmscore_rewards(policy, tiny_models, form, write_jsonl, tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    prompts = ["How do I bake bread at home?", "What is 7 + 5?"]
    rows = [{"prompt": [{"role": "user", "content": p}] if form == "conversational" else p} for p in prompts]
    reward = rmscore.RewardFunction(tiny_models["llama"], name="rm")
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), report_to=[], use_cpu=True, max_steps=1, seed=0,
                      per_device_train_batch_size=4, num_generations=4, max_completion_length=12,
                      logging_steps=1, save_strategy="no", dataloader_num_workers=0)
    trainer = GRPOTrainer(model=policy, reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    assert trainer.state.global_step == 1
    seen_prompts, completions = list(trainer._logs["prompt"]), list(trainer._logs["completion"])
    rewards = list(trainer._logs["rewards"]["rm"])  # what TRL computed and optimised this step
    assert len(rewards) == len(completions) == 4
    texts = [c[-1]["content"] if form == "conversational" else c for c in completions]
    path = write_jsonl([{"prompt": p, "completion": t} for p, t in zip(seen_prompts, texts)])
    want = [r["score"] for r in score_rows(path, tiny_models["llama"], tmp_path / "ref")[1]]
    assert all(w is not None for w in want) and len(set(want)) > 1  # distinct: a reordering would show
    assert all(abs(r - w) < TOL for r, w in zip(rewards, want)), (rewards, want)
    assert "rewards/rm/mean" in trainer.state.log_history[0]

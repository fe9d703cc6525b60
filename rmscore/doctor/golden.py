"""Golden numbers: model cards' published examples and the scores the cards print for them.

`rmscore doctor` checks a checkpoint against its entry when the real weights are present. Keyed by
checkpoint name; a family adds its card's example here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Golden:
    """A model card's example: conversations and the numbers the card prints for them."""

    family: str
    prompt: str
    completions: tuple[str, ...]
    expected: tuple[dict, ...]  # per completion: output column -> number, or list (checked as a prefix)
    source: str
    atol: float = 0.1  # the cards run bf16/fp16 with other kernels: agree to about their rounding
    rtol: float = 2e-2


JANE = ("Jane has 12 apples. She gives 4 apples to her friend Mark, then buys 1 more apple, and finally splits "
        "all her apples equally among herself and her 2 siblings. How many apples does each person get?")
_JANE_STEPS = ("1. Jane starts with 12 apples and gives 4 to Mark. 12 - 4 = 8. Jane now has 8 apples.\n"
               "2. Jane buys 1 more apple. 8 + 1 = 9. Jane now has 9 apples.\n")
JANE_ANSWERS = (
    _JANE_STEPS + "3. Jane splits the 9 apples equally among herself and her 2 siblings (3 people in total). "
                  "9 ÷ 3 = 3 apples each. Each person gets 3 apples.",
    _JANE_STEPS + "3. Jane splits the 9 apples equally among her 2 siblings (2 people in total). "
                  "9 ÷ 2 = 4.5 apples each. Each person gets 4 apples.",
)
# Process reward models: the cards' examples. A completion is split into steps by the family's own
# rule (blank lines for Qwen); Math-Shepherd's is already in its tagged format and scored as it stands.
FLAMINGO = ("Sue lives in a fun neighborhood.  One weekend, the neighbors decided to play a prank on Sue.  On Friday "
            "morning, the neighbors placed 18 pink plastic flamingos out on Sue's front yard.  On Saturday morning, "
            "the neighbors took back one third of the flamingos, painted them white, and put these newly painted "
            "white flamingos back out on Sue's front yard.  Then, on Sunday morning, they added another 18 pink "
            "plastic flamingos to the collection. At noon on Sunday, how many more pink plastic flamingos were out "
            "than white plastic flamingos?")
FLAMINGO_STEPS = (
    "To find out how many more pink plastic flamingos were out than white plastic flamingos at noon on Sunday, "
    "we can break down the problem into steps. First, on Friday, the neighbors start with 18 pink plastic flamingos.",
    "On Saturday, they take back one third of the flamingos. Since there were 18 flamingos, (1/3 \\times 18 = 6) "
    "flamingos are taken back. So, they have (18 - 6 = 12) flamingos left in their possession. Then, they paint "
    "these 6 flamingos white and put them back out on Sue's front yard. Now, Sue has the original 12 pink flamingos "
    "plus the 6 new white ones. Thus, by the end of Saturday, Sue has (12 + 6 = 18) pink flamingos and 6 white "
    "flamingos.",
    "On Sunday, the neighbors add another 18 pink plastic flamingos to Sue's front yard. By the end of Sunday "
    "morning, Sue has (18 + 18 = 36) pink flamingos and still 6 white flamingos.",
    "To find the difference, subtract the number of white flamingos from the number of pink flamingos: "
    "(36 - 6 = 30). Therefore, at noon on Sunday, there were 30 more pink plastic flamingos out than white plastic "
    "flamingos. The answer is (\\boxed{30}).",
)
DUCKS = ("Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for "
         "her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck "
         "egg. How much in dollars does she make every day at the farmers' market?")
SHEPHERD = ("Step 1: Janet's ducks lay 16 eggs per day. ки\nStep 2: She eats three for breakfast every morning, so "
            "she has 16 - 3 = 13 eggs left. ки\nStep 3: She bakes muffins for her friends every day with four eggs, "
            "so she has 13 - 4 = 9 eggs left. ки\nStep 4: She sells the remainder at the farmers' market daily for "
            "$2 per fresh duck egg, so she makes 9 * $2 = ${ans} every day at the farmers' market. The answer is: "
            "{ans} ки")
INTERNLM_ANSWERS = ("My name is InternLM2! A helpful AI assistant. What can I do for you?", "I have no idea.")


def _skywork(a: float, b: float, card: str) -> Golden:
    return Golden("seq-cls", JANE, JANE_ANSWERS, ({"score": a}, {"score": b}), card)


GOLDEN: dict[str, Golden] = {
    # The card prints HelpSteer-scale predictions rewards[:5] * 5 - 0.5; stored here as rewards[:5].
    "RLHFlow/ArmoRM-Llama3-8B-v0.1": Golden(
        "armorm", 'What are some synonyms for the word "beautiful"?',
        ("Nicely, Beautifully, Handsome, Stunning, Wonderful, Gorgeous, Pretty, Stunning, Elegant",),
        ({"rewards": [(p + 0.5) / 5 for p in (2.78125, 2.859375, 3.484375, 1.3847656, 1.296875)]},),
        "ArmoRM model card (RLHFlow/RLHF-Reward-Modeling armo-rm/README.md), bf16", atol=0.02),
    "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2": _skywork(13.6875, -9.1875, "Skywork-Reward v0.2 card, bf16"),
    "Skywork/Skywork-Reward-Gemma-2-27B-v0.2": _skywork(
        4.59375, -18.125, "Skywork-Reward v0.2 card, bf16; the card warns sdpa can misbehave for this model: "
                          "try --attn-implementation eager"),
    "Skywork/Skywork-Reward-V2-Llama-3.1-8B": _skywork(23.0, 3.59375, "Skywork-Reward-V2 card, bf16 + flash-attn-2"),
    "internlm/internlm2-20b-reward": Golden(
        "internlm2", "Hello! What's your name?", INTERNLM_ANSWERS, ({"score": 0.767578125}, {"score": -2.22265625}),
        "internlm2-20b-reward card (get_score), fp16", atol=0.05),
    "Qwen/Qwen2.5-Math-PRM-7B": Golden(
        "qwen-prm", FLAMINGO, ("\n\n".join(FLAMINGO_STEPS),), ({"step_scores": [1.0, 0.1904296875, 0.9765625, 1.0]},),
        "Qwen2.5-Math-PRM-7B card, bf16 (vLLM's fp16 fixture: 0.99951, 0.18127, 0.97461, 0.99951)", atol=2e-2),
    "peiyi9979/math-shepherd-mistral-7b-prm": Golden(
        "step-tag", DUCKS, (SHEPHERD.format(ans=18), SHEPHERD.format(ans=17)),
        ({"step_scores": [0.9955, 0.9958, 0.9983, 0.9957]}, {"step_scores": [0.9955, 0.9958, 0.9983, 0.0240]}),
        "math-shepherd card, fp32, printed to 4 decimals", atol=1e-2),
}

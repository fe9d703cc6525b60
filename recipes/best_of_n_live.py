"""Best-of-N with a live policy: sample N answers from any OpenAI-compatible endpoint (vLLM, SGLang,
llama.cpp, a hosted API) and keep the one `rmscore serve` scores highest.

    vllm serve Qwen/Qwen2.5-1.5B-Instruct --port 8001
    rmscore serve -m Skywork/Skywork-Reward-V2-Qwen3-0.6B --port 8000
    python recipes/best_of_n_live.py --policy http://127.0.0.1:8001/v1 --model Qwen/Qwen2.5-1.5B-Instruct \\
        --reward http://127.0.0.1:8000 -n 8 "How do I bake bread at home?"
    python recipes/best_of_n_live.py ... --prompts questions.jsonl -o best.jsonl   # {"prompt": ...} per line

The N samples of a prompt go to /v1/score in one row (prompt + completions), so the reward model
scores them in one batch and computes the shared prompt once. Keys: OPENAI_API_KEY for the policy,
RMSCORE_API_KEY for rmscore serve. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def post(url: str, body: dict, key: str | None = None, tries: int = 10) -> dict:
    """POST JSON; a 503 (rmscore's full queue, a draining replica) is retried after Retry-After."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    for attempt in range(tries):
        request = urllib.request.Request(url, json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == tries - 1:
                raise SystemExit(f"{url}: HTTP {exc.code}: {exc.read().decode()[:300]}") from None
            time.sleep(float(exc.headers.get("Retry-After", "1")))
    raise AssertionError("unreachable")


def sample(args, messages: list[dict]) -> list[str]:
    """N answers from the policy's /chat/completions (n samples in one request)."""
    body = {"model": args.model, "messages": messages, "n": args.n, "temperature": args.temperature,
            "max_tokens": args.max_tokens}
    reply = post(f"{args.policy.rstrip('/')}/chat/completions", body, os.environ.get("OPENAI_API_KEY"))
    return [choice["message"]["content"] for choice in sorted(reply["choices"], key=lambda c: c["index"])]


def best_of_n(args, prompt: str) -> dict:
    messages = [{"role": "user", "content": prompt}]
    answers = sample(args, messages)
    scored = post(f"{args.reward.rstrip('/')}/v1/score", {"rows": [{"prompt": messages, "completions": answers}]},
                  os.environ.get("RMSCORE_API_KEY"))["results"]
    scores = [r["score"] if r["status"] in ("ok", "truncated") else None for r in scored]  # in completion order
    ranked = sorted((i for i in range(len(answers)) if scores[i] is not None), key=lambda i: -scores[i])
    if not ranked:
        raise SystemExit(f"no answer could be scored: {[r['status_detail'] for r in scored]}")
    return {"prompt": prompt, "best": answers[ranked[0]], "best_score": scores[ranked[0]],
            "answers": answers, "scores": scores}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt", nargs="?", help="one prompt (or --prompts FILE)")
    parser.add_argument("--prompts", help="JSONL file with a `prompt` per line")
    parser.add_argument("--policy", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8001/v1")
    parser.add_argument("--model", required=True, help="the policy's model name on that endpoint")
    parser.add_argument("--reward", default="http://127.0.0.1:8000", help="rmscore serve URL")
    parser.add_argument("-n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("-o", "--output", help="write one JSON line per prompt here (default: print the best)")
    args = parser.parse_args(argv)
    if (args.prompt is None) == (args.prompts is None):
        parser.error("give one prompt or --prompts FILE")
    if args.prompt:
        prompts = [args.prompt]
    else:
        with open(args.prompts) as f:
            prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
    out = open(args.output, "w") if args.output else None
    for prompt in prompts:
        result = best_of_n(args, prompt)
        if out:
            out.write(json.dumps(result) + "\n")
        else:
            for answer, score in zip(result["answers"], result["scores"]):
                print(f"{'*' if answer is result['best'] else ' '} {score if score is None else round(score, 4)}\t"
                      f"{answer[:80]!r}", file=sys.stderr)
            print(result["best"])
    if out:
        out.close()


if __name__ == "__main__":
    main()

"""The two baseline reward servers of bench/serve.py, both speaking OpenRLHF's POST /get_reward.

    python bench/serve_baselines.py one-at-a-time FOLDER DEVICE DTYPE
    python bench/serve_baselines.py count-batcher FOLDER DEVICE DTYPE

one-at-a-time: OpenRLHF's serve_rm.py, as people deploy it: the request holds the model until its
  queries are scored, in fixed batches of 16 in input order, right-padded (transformers' pooling
  reads the last non-pad token). One forward per single-query request.
count-batcher: Mixedbread's `batched` (@batched.aio.dynamically(batch_size=32, timeout_ms=5)):
  queries of all requests go to one queue; a batch closes at 32 queries or 5 ms after its first,
  then runs padded, in arrival order, with no token budget and no queue bound.
Both read the text as it stands (add_special_tokens=False), so they score what rmscore scores.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from transformers import AutoModelForSequenceClassification, AutoTokenizer

FIXED_BATCH, COUNT_BATCH, TIMEOUT_S = 16, 32, 0.005


class Model:
    def __init__(self, folder: str, device: str, dtype: str):
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=getattr(torch, dtype))
        self.model.to(device).eval()
        self.device = device

    def score(self, texts: list[str]) -> list[float]:
        enc = self.tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            return self.model(**enc).logits[:, 0].float().tolist()


def one_at_a_time(model: Model) -> FastAPI:
    app, lock = FastAPI(), asyncio.Lock()

    @app.post("/get_reward")
    async def get_reward(request: Request):
        queries = (await request.json())["query"]
        async with lock:  # one request on the model at a time, as a single Flask worker
            rewards = []
            for start in range(0, len(queries), FIXED_BATCH):
                rewards += await asyncio.to_thread(model.score, queries[start:start + FIXED_BATCH])
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": {}})

    return app


def count_batcher(model: Model) -> FastAPI:
    app = FastAPI()
    queue: asyncio.Queue = asyncio.Queue()

    async def worker():
        while True:
            batch = [await queue.get()]
            deadline = asyncio.get_running_loop().time() + TIMEOUT_S
            while len(batch) < COUNT_BATCH:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:
                    break
            try:
                scores = await asyncio.to_thread(model.score, [text for text, _ in batch])
                for (_, future), score in zip(batch, scores):
                    future.set_result(score)
            except Exception as exc:  # as in `batched`: one failure fails the whole batch
                for _, future in batch:
                    future.set_exception(exc)

    @app.on_event("startup")
    async def start_worker():
        app.state.worker = asyncio.create_task(worker())

    @app.post("/get_reward")
    async def get_reward(request: Request):
        queries = (await request.json())["query"]
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in queries]
        for query, future in zip(queries, futures):
            queue.put_nowait((query, future))
        rewards = list(await asyncio.gather(*futures))
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": {}})

    return app


def main() -> None:
    name, folder, device, dtype = sys.argv[1:5]
    torch.set_num_threads(1) if device == "cpu" else None
    model = Model(folder, device, dtype)
    app = {"one-at-a-time": one_at_a_time, "count-batcher": count_batcher}[name](model)
    app.get("/health")(lambda: {"status": "ok"})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]} ({name})", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    main()

"""The HTTP routes. Each parses its body strictly, scores through the Service, and shapes the answer.

  POST /v1/score               {"rows": [...]} -> {"results": [...]}: what `rmscore score` writes
  POST /get_reward             OpenRLHF's remote reward model
  POST /classify, /v1/classify vLLM's classify API (what verl's reward loop calls)
  POST /pooling                vLLM's pooling API: token_classify for process reward models
  GET  /health, /v1/models, /metrics
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from rmscore.errors import RmscoreError
from rmscore.serve import limits, protocols
from rmscore.serve.guard import Guard, error_body
from rmscore.serve.schemas import (
    BadRequest, ClassifyRequest, PoolingRequest, RewardRequest, ScoreRequest, parse,
)
from rmscore.serve.service import NotReady, Overloaded, Service, TooLarge, UnknownModel

SMALL_BODY = 16 << 10  # bodies past this are checked and parsed off the event loop
GONE = 499  # nginx's "client closed request": logged, never read by anyone


class ClientGone(Exception):
    pass


def create_app(service: Service):
    @asynccontextmanager
    async def lifespan(app):
        await service.start()
        yield
        service.stop()

    app = FastAPI(title="rmscore", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    _errors(app)
    _score_routes(app, service)
    _vllm_routes(app, service)
    _service_routes(app, service)
    return Guard(app, service)


def _errors(app: FastAPI) -> None:
    def handler(status: int, headers=lambda exc: None):
        async def handle(request, exc):
            return Response(error_body(status, str(exc)), status, headers(exc), media_type="application/json")
        return handle

    app.add_exception_handler(TooLarge, handler(413))
    app.add_exception_handler(BadRequest, handler(400))
    app.add_exception_handler(RmscoreError, handler(400))  # e.g. --on-overflow error on an over-long row
    app.add_exception_handler(UnknownModel, handler(404))
    app.add_exception_handler(Overloaded, handler(503, lambda exc: {"Retry-After": str(exc.retry_after)}))
    app.add_exception_handler(NotReady, handler(503, lambda exc: {"Retry-After": str(exc.retry_after)}))
    app.add_exception_handler(ClientGone, handler(GONE))
    app.add_exception_handler(404, handler(404))
    app.add_exception_handler(405, handler(405))


async def body_of(request: Request, model, service: Service):
    """The body as `model`, its limits checked before it is parsed (limits.py); a large body is
    both checked and parsed on the one parsing thread, so the event loop keeps answering meanwhile
    (one thread: the loop waits for the GIL behind one parser, not a crowd of them)."""
    body = await request.body()
    if len(body) > SMALL_BODY:
        return await asyncio.get_running_loop().run_in_executor(service.parsing, read, model, body,
                                                                service.cfg.row_limit)
    return read(model, body, service.cfg.row_limit)


def read(model, body: bytes, max_items: int):
    limits.check(body, max_items)
    return parse(model, body)


async def until_done(request: Request, work):
    """Await the scoring, or drop it (its rows not yet computed are never computed) if the client
    disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientGone("the client disconnected; its rows were dropped")
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _score_routes(app: FastAPI, service: Service) -> None:
    @app.post("/v1/score")
    async def score(request: Request):
        req = await body_of(request, ScoreRequest, service)
        return JSONResponse({"results": await until_done(request, service.score_rows(req.rows))})

    @app.post("/get_reward")
    async def get_reward(request: Request):
        req = await body_of(request, RewardRequest, service)
        if req.prompts is not None and len(req.prompts) != len(req.query):
            raise BadRequest(f"{len(req.query)} queries but {len(req.prompts)} prompts: send one prompt per query")
        if service.cfg.query_format == "split":
            work = service.score_split(req.query, req.prompts)
        else:
            work = service.score_texts(req.query, req.prompts)
        results = await until_done(request, work)
        return JSONResponse(protocols.reward_response(results, service.cfg.unscored_reward))


async def _results(request: Request, service: Service, req: ClassifyRequest) -> list[dict]:
    service.check_model(req.model)
    if req.messages is not None:
        work = service.score_rows([{"messages": [m.model_dump() for m in req.messages]}])
    else:
        work = service.score_texts([req.input] if isinstance(req.input, str) else req.input)
    results = await until_done(request, work)
    protocols.require_scored(results)
    return results


def _vllm_routes(app: FastAPI, service: Service) -> None:
    async def classify(request: Request):
        req = await body_of(request, ClassifyRequest, service)
        results = await _results(request, service, req)
        model = service.engine.model
        data = protocols.classify_data(results, req.use_activation is not False, model.reads_steps,
                                       getattr(model, "labels", None))
        return JSONResponse(protocols.envelope("classify", service.model_id, data, results))

    app.post("/classify")(classify)
    app.post("/v1/classify")(classify)

    @app.post("/pooling")
    async def pooling(request: Request):
        req = await body_of(request, PoolingRequest, service)
        model = service.ready_engine().model
        if req.task == "token_classify" and not model.reads_steps:
            raise BadRequest(f"task token_classify needs a process reward model; this one ({service.engine.family}) "
                             "scores whole conversations: use task classify, or /classify")
        if req.task == "token_classify" and req.use_activation is False:
            raise BadRequest("use_activation false: rmscore's process reward models return step probabilities only")
        results = await _results(request, service, req)
        if req.task == "token_classify":
            data = protocols.step_data(results)
        else:
            rows = protocols.classify_data(results, req.use_activation is not False, model.reads_steps, None)
            data = [{"index": r["index"], "object": "pooling", "data": r["probs"]} for r in rows]
        return JSONResponse(protocols.envelope("pool", service.model_id, data, results))


def _service_routes(app: FastAPI, service: Service) -> None:
    @app.get("/health")
    async def health():
        # It needs no key, so with a key set it says no more than whether to send requests here.
        ready = service.state == "ready"
        body = {"status": service.state}
        if not service.cfg.api_key:
            body["model"] = service.model_id
            if ready:
                body["family"] = service.engine.family
        return JSONResponse(body, 200 if ready else 503, headers=None if ready else {"Retry-After": "5"})

    @app.get("/v1/models")
    async def models():
        engine = service.ready_engine()
        return JSONResponse({"object": "list", "data": [{
            "id": service.model_id, "object": "model", "created": service.started, "owned_by": "rmscore",
            "root": service.model_id, "max_model_len": engine.max_length, "family": engine.family}]})

    @app.get("/metrics")
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.text(), media_type=CONTENT_TYPE_LATEST)

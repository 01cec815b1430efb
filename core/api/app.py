"""The FastAPI app: one handler per route, errors mapped once, SSE streaming, bearer-key auth, metrics.

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` (JSON or SSE), ``GET /metrics``.
Generation runs in a worker thread per request; the async side relays its pieces and watches the client:
a client that disconnects sets the request's stop event, which frees the model (or its place in the queue).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.api.completions import Completions, EngineGetter, Outcome, Prepared
from core.api.errors import ApiError, from_domain, validation_error
from core.api.metrics import CONTENT_TYPE, ApiMetrics
from core.api.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    FunctionCall,
    ModelList,
    ToolCallParam,
    Usage,
)
from core.errors import InkstoneError

DISCONNECT_POLL_S = 0.25
_END = object()


def create_app(engine: EngineGetter, *, api_key: str | None = None, cors_origins: list[str] | None = None) -> FastAPI:
    """The API over the engine ``engine()`` returns now; with ``api_key`` every route but /health needs it."""
    metrics = ApiMetrics()
    metrics.bind(lambda: _backend_or_none(engine))
    completions = Completions(engine, metrics)
    app = FastAPI(title="Inkstone API", docs_url=None, redoc_url=None)
    app.state.metrics = metrics
    app.state.completions = completions
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    def require_key(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "Missing or wrong API key: send `Authorization: Bearer <key>` with the key the "
                           "server was started with.", code="invalid_api_key")

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        route = _route(request)
        metrics.requests.labels(route, getattr(request.state, "model", ""), str(response.status_code)).inc()
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        metrics.errors.labels(_route(request), getattr(request.state, "model", ""), exc.code or exc.type).inc()
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(InkstoneError)
    async def domain_error(request: Request, exc: InkstoneError) -> JSONResponse:
        return await api_error(request, from_domain(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return await api_error(request, validation_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):  # e.g. JSON nested too deeply
            return await api_error(request, ApiError(400, "The request body could not be parsed as JSON (nested "
                                                     "too deeply?): send a JSON object.", code="invalid_json"))
        code = "not_found" if exc.status_code == 404 else "http_error"
        return await api_error(request, ApiError(exc.status_code, f"{request.method} {request.url.path}: "
                                                 f"{exc.detail}.", code=code))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        current = await run_in_threadpool(completions.engine)
        return {"status": "ok", "model": current.backend.model_id, "busy": bool(current.backend.busy)}

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def list_models() -> ModelList:
        return ModelList(data=await run_in_threadpool(completions.model_cards))

    @app.get("/metrics", dependencies=[Depends(require_key)])
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)], response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        request.state.model = body.model
        prep = await run_in_threadpool(completions.prepare, body)
        stop = threading.Event()
        pieces = _pump(completions.run(prep, stop), stop, request)
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            return StreamingResponse(_sse(cid, prep, pieces, stop, metrics), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        text: list[str] = []
        outcome: Outcome | None = None
        async for item in pieces:
            if isinstance(item, Outcome):
                outcome = item
            else:
                text.append(item)
        assert outcome is not None  # _pump raises or ends with the Outcome
        usage = Usage(prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.completion_tokens,
                      total_tokens=outcome.prompt_tokens + outcome.completion_tokens)
        content = "".join(text)
        message = AssistantMessage(content=content.strip() or None if outcome.tool_calls else content)
        if outcome.tool_calls and prep.tools.legacy:
            message.function_call = FunctionCall(name=outcome.tool_calls[0].name,
                                                 arguments=outcome.tool_calls[0].arguments_json)
        elif outcome.tool_calls:
            message.tool_calls = [ToolCallParam.model_validate(call.openai()) for call in outcome.tool_calls]
        body = ChatCompletion(id=cid, model=prep.model, usage=usage, inkstone_session=outcome.session_id,
                              choices=[Choice(message=message, finish_reason=outcome.finish_reason)],
                              ).model_dump(exclude_none=True)
        body["choices"][0]["message"].setdefault("content", None)  # OpenAI sends null beside tool calls
        return JSONResponse(body)

    return app


async def _pump(run: Iterator[Any], stop: threading.Event, request: Request) -> AsyncIterator[Any]:
    """Drive the blocking ``run`` in its own thread and relay what it yields; a gone client sets ``stop``.

    Exceptions from ``run`` are re-raised here. Whatever ends this relay (client gone, error, cancellation),
    ``stop`` is set so the generation ends and frees the model.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def work() -> None:
        try:
            for item in run:
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except BaseException as exc:  # handed to the async side, which re-raises it
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            run.close()
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    threading.Thread(target=work, name="inkstone-api-request", daemon=True).start()
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), DISCONNECT_POLL_S)
            except TimeoutError:
                if await request.is_disconnected():
                    stop.set()
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # harmless after a finished answer; ends one whose client is gone


async def _sse(cid: str, prep: Prepared, pieces: AsyncIterator[Any], stop: threading.Event,
               metrics: ApiMetrics) -> AsyncIterator[str]:
    """SSE events: a role chunk, one chunk per text piece, a finish chunk, a usage chunk, ``[DONE]``.

    An error after the stream started is sent as an ``{"error": ...}`` event (OpenAI clients raise it).
    """

    def chunk(delta: Delta, finish: str | None = None) -> str:
        body = ChatCompletionChunk(id=cid, model=prep.model, choices=[ChunkChoice(delta=delta, finish_reason=finish)])
        return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

    try:
        yield chunk(Delta(role="assistant", content=""))
        async for item in pieces:
            if isinstance(item, Outcome):
                for delta in _call_deltas(item, prep.tools.legacy):
                    yield chunk(delta)
                yield chunk(Delta(), item.finish_reason)
                usage = Usage(prompt_tokens=item.prompt_tokens, completion_tokens=item.completion_tokens,
                              total_tokens=item.prompt_tokens + item.completion_tokens)
                last = ChatCompletionChunk(id=cid, model=prep.model, choices=[], usage=usage,
                                           inkstone_session=item.session_id)
                yield f"data: {last.model_dump_json(exclude_none=True)}\n\n"
            else:
                yield chunk(Delta(content=item))
        yield "data: [DONE]\n\n"
    except (InkstoneError, ApiError) as exc:
        error = exc if isinstance(exc, ApiError) else from_domain(exc)
        metrics.errors.labels("/v1/chat/completions", prep.model, error.code or error.type).inc()
        yield f"data: {json.dumps(error.body(), ensure_ascii=False)}\n\n"
    finally:
        stop.set()


ARGUMENT_PIECE = 24
"""Characters of a streamed call's arguments per chunk (OpenAI streams them in pieces too)."""


def _call_deltas(outcome: Outcome, legacy: bool) -> Iterator[Delta]:
    """The chunks of the answer's calls: per call, one with its index, id and name, then its arguments in pieces."""
    for index, call in enumerate(outcome.tool_calls):
        if legacy:
            if index == 0:
                yield Delta(function_call=DeltaFunction(name=call.name, arguments=""))
                args = call.arguments_json
                for i in range(0, len(args), ARGUMENT_PIECE):
                    yield Delta(function_call=DeltaFunction(arguments=args[i : i + ARGUMENT_PIECE]))
            continue
        yield Delta(tool_calls=[DeltaToolCall(index=index, id=call.id, type="function",
                                              function=DeltaFunction(name=call.name, arguments=""))])
        args = call.arguments_json
        for i in range(0, len(args), ARGUMENT_PIECE):
            yield Delta(tool_calls=[DeltaToolCall(index=index, function=DeltaFunction(
                arguments=args[i : i + ARGUMENT_PIECE]))])


def _route(request: Request) -> str:
    """The matched route's path (a fixed set of labels), or ``other``."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "other"


def _backend_or_none(engine: EngineGetter) -> Any | None:
    try:
        return engine().backend
    except InkstoneError:
        return None

"""One chat completion, framework-free: resolve the model id (loaded model or persona), check the request
against the context window, stream through the shared fair queue, honour stop strings, record figures (the
``Finished`` event's reason and timings, never re-derived here; stored by the one answer recorder).

``prepare`` raises ``ApiError`` before anything runs or is stored; ``run`` yields text pieces and ends with
one ``Outcome``. The HTTP layer (``core.api.app``) only translates these to JSON or SSE.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any

from core.api.errors import ApiError, from_domain
from core.api.images import request_images
from core.api.metrics import ApiMetrics
from core.api.record import start_exchange
from core.api.schemas import ChatCompletionRequest, ImagePart, ModelCard
from core.api.tooling import ToolRequest, conversation, has_tool_turns, tool_request
from core.backends.base import AdapterSpec, ChatMessages, Finished, TextDelta, ToolCalls
from core.chat.config import ChatConfig
from core.config import GenerationSettings
from core.errors import ConfigError, GenerationError, InkstoneError, InputError, ModelError, NotFoundError
from core.generation.constrain import Constraint, compile_for
from core.history.recorder import NO_FINISH
from core.images import ImageInput
from core.models.vision import image_models_hint
from core.personas.store import Persona
from core.tools.formats import ToolFormat, tool_format
from core.tools.spec import ToolCall, new_call_id
from core.tools.stream import ToolStream

EngineGetter = Callable[[], Any]
"""Returns the current ``core.engine.Engine``; raises ``ModelError`` when the model failed to load."""


@dataclass(frozen=True)
class Prepared:
    """A validated request, ready to run."""

    model: str
    messages: ChatMessages
    settings: GenerationSettings
    adapter: AdapterSpec | None
    persona: Persona | None
    prompt_tokens: int
    stops: list[str]
    seed: int | None
    session: str | None
    user_text: str
    config: ChatConfig | None = None
    """The chat config with this request's settings: what a new ``inkstone_session`` is created with."""
    tools: ToolRequest = field(default_factory=ToolRequest)
    tool_format: ToolFormat | None = None
    """How this model renders and writes tool calls (None: no tools in this request)."""
    constraint: Constraint | None = None
    """The grammar state that forces a call or a JSON answer (one per request), or None."""
    user_images: list[ImageInput] = field(default_factory=list)
    """The pictures of the last user message (checked), for the history to store with it (``inkstone_session``)."""
    forward: dict[str, Any] | None = None
    """For a backend that forwards tools (a remote server): the request's OpenAI tool and ``response_format``
    fields, sent as they are; the server renders, parses and constrains them."""


@dataclass(frozen=True)
class Outcome:
    """How a completion ended: OpenAI ``finish_reason`` (``Finished.reason``: ``stop`` / ``length``; ``stop`` for
    a stop string; ``cancelled`` when the stop event ended it) and the ``Finished`` event's figures."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    tokens_per_s: float | None
    session_id: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    """The calls the answer made (then ``finish_reason`` is ``tool_calls``, or ``function_call`` for legacy)."""


class Completions:
    """Runs chat completions on whatever engine ``engine()`` returns now (it follows model switches)."""

    def __init__(self, engine: EngineGetter, metrics: ApiMetrics) -> None:
        self._engine = engine
        self.metrics = metrics

    def engine(self) -> Any:
        """The current engine; ApiError 503 when the model failed to load."""
        try:
            return self._engine()
        except InkstoneError as exc:
            raise from_domain(exc if isinstance(exc, ModelError) else ModelError(str(exc))) from None

    def model_cards(self) -> list[ModelCard]:
        """The loaded model, then every valid persona that fits it."""
        engine = self.engine()
        model_id = engine.backend.model_id
        cards = [ModelCard(id=model_id)]
        personas, _broken = engine.personas()
        cards += [ModelCard(id=p.id, root=model_id, parent=model_id) for p in personas
                  if not p.lora or p.fits_model(model_id)]
        return cards

    def _config(self, engine: Any, model: str, overrides: dict[str, Any]) -> Any:
        """The chat config for model id ``model``: the loaded model (no persona) or a persona that fits it."""
        backend = engine.backend
        base = model in (backend.model_id, engine.profile.id, _short(backend.model_id))
        try:
            return engine.chat_config(persona="" if base else model, overrides=overrides)
        except NotFoundError:
            ids = ", ".join(card.id for card in self.model_cards())
            raise ApiError(404, f"The model {model!r} does not exist. Available models: {ids}.",
                           code="model_not_found", param="model") from None
        except ConfigError as exc:
            if base:  # the persona is fine; a generation setting is out of range
                raise ApiError(400, str(exc), code="invalid_value") from None
            raise ApiError(404, f"The model {model!r} cannot be used: {exc}", code="model_not_found",
                           param="model") from None

    def prepare(self, req: ChatCompletionRequest) -> Prepared:
        """Validate ``req`` against the loaded model; ApiError says what is wrong. Persona, system prompt and
        settings come from ``chat_config`` (the one place that decides them); a system message sent by the
        client replaces the persona's system prompt."""
        engine = self.engine()
        backend = engine.backend
        # OpenAI's format has no repetition penalty: none unless the request asks (as vLLM does); this also lets
        # the answer join the continuous batch, which has none.
        overrides = {"temperature": req.temperature, "top_p": req.top_p, "top_k": req.top_k,
                     "repetition_penalty": 1.0 if req.repetition_penalty is None else req.repetition_penalty}
        config = self._config(engine, req.model, overrides)
        tools = tool_request(req)
        messages = conversation(req)
        pictures = request_images(req, engine.settings.api_image_downloads)
        if pictures and not backend.capabilities.images:
            first = min(pictures)
            where = next(f"messages[{first}].content[{j}]" for j, part in enumerate(req.messages[first].content or [])
                         if isinstance(part, ImagePart))
            raise ApiError(400, f"The model {req.model!r} does not read pictures ({where} is one): send text only, or "
                           f"use a model that takes images: {image_models_hint()}.", code="unsupported_value",
                           param=where)
        for i, images in pictures.items():
            messages[i]["images"] = images
        users = [m for m in messages if m["role"] == "user"]
        if not users or not (users[-1]["content"].strip() or users[-1].get("images")):
            raise ApiError(400, "The messages have no non-empty user message: add one with role 'user'.",
                           code="invalid_value", param="messages")
        if config.system_prompt and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": config.system_prompt})
        fmt = tool_format(backend.codec)
        forward = _forward(req, tools) if backend.capabilities.tools else None
        constraint = None
        if forward is None:
            if tools.active or has_tool_turns(messages):
                messages = fmt.render(messages, tools.tools if tools.active else [])
            constraint = self._constraint(backend, tools, fmt)
        window = backend.context_window
        prompt_tokens = _count(backend, messages)
        if prompt_tokens >= window:
            raise ApiError(400, f"This model's maximum context length is {window} tokens, but the messages take "
                           f"{prompt_tokens}: shorten them.", code="context_length_exceeded", param="messages")
        limit = req.answer_limit
        if limit is not None and prompt_tokens + limit > window:
            raise ApiError(400, f"This model's maximum context length is {window} tokens. However, you requested "
                           f"{prompt_tokens + limit} tokens ({prompt_tokens} in the messages, {limit} in the "
                           "completion): reduce max_tokens or the messages.",
                           code="context_length_exceeded", param="max_tokens")
        max_new = limit if limit is not None else min(config.settings.max_new_tokens, window - prompt_tokens)
        try:
            settings = config.settings.with_updates(max_new_tokens=max_new)
        except ConfigError as exc:
            raise ApiError(400, str(exc), code="invalid_value", param="max_tokens") from None
        if req.inkstone_session not in (None, "new"):
            try:
                engine.store.get_session(req.inkstone_session)
            except NotFoundError as exc:
                raise ApiError(404, f"{exc} Pass inkstone_session=\"new\" to start one.", code="session_not_found",
                               param="inkstone_session") from None
        stored = replace(config, settings=settings, stored={**config.stored, **settings.to_dict()})
        return Prepared(req.model, messages, settings, config.adapter, config.persona, prompt_tokens, req.stops,
                        req.seed, req.inkstone_session, users[-1]["content"], stored, tools,
                        fmt if tools.active and forward is None else None, constraint,
                        list(users[-1].get("images") or []), forward or None)

    @staticmethod
    def _constraint(backend: Any, tools: ToolRequest, fmt: ToolFormat) -> Constraint | None:
        """The grammar state for a forced call or a JSON answer (ApiError 400 when it cannot be built)."""
        codec = backend.codec
        grammar = tools.grammar(fmt, codec)
        if grammar is None:
            return None
        param = "response_format" if grammar.purpose == "response_format" else "tool_choice"
        if not backend.capabilities.grammar or codec is None:
            raise ApiError(400, f"{param} needs constrained decoding, which this model's backend does not offer "
                           "(it runs only on a model loaded in-process): leave it out.", code="unsupported_value",
                           param=param)
        try:
            return compile_for(codec, grammar)
        except InputError as exc:
            raise ApiError(400, str(exc), code="invalid_value", param=param) from None
        except ModelError as exc:
            raise ApiError(400, str(exc), code="unsupported_value", param=param) from None

    def run(self, prep: Prepared, stop: threading.Event) -> Iterator[str | Outcome]:
        """Stream the answer: text pieces, then one ``Outcome``. Failures raise ``GenerationError``/``ModelError``
        after the partial answer is stored (with ``inkstone_session``)."""
        engine = self.engine()
        backend = engine.backend
        record = start_exchange(engine, prep) if prep.session else None
        scanner = StopScanner(prep.stops)
        finished: Finished | None = None
        hit_stop = False
        kwargs: dict[str, Any] = {"seed": prep.seed} if prep.seed is not None and _takes_seed(backend) else {}
        if prep.constraint is not None:
            kwargs["constraint"] = prep.constraint
        if prep.forward:
            kwargs["tools"] = prep.forward
        made: list[ToolCall] = []
        calls = ToolStream(prep.tool_format, prep.tools.tools, prep.tools.forced) if prep.tool_format else None
        lead = prep.constraint is not None and prep.tools.json_mode  # whitespace a grammar lets open the JSON
        events = backend.stream(prep.messages, prep.settings, stop, prep.adapter, **kwargs)
        try:
            for event in events:
                if isinstance(event, Finished):
                    finished = event
                elif isinstance(event, ToolCalls):  # a remote server's calls
                    made = [ToolCall(c["id"] or new_call_id(), c["name"], c["arguments"]) for c in event.calls]
                elif isinstance(event, TextDelta) and not hit_stop:
                    text, hit_stop = scanner.feed(event.text)
                    if hit_stop:
                        stop.set()
                    if calls is not None:
                        text = calls.feed(text)
                        if calls.repeated and not stop.is_set():  # the model repeats its call: end it here
                            stop.set()
                            hit_stop = True
                    if lead:
                        text = text.lstrip()
                        lead = not text
                    if text:
                        if record:
                            record.add(text)
                        yield text
            if finished is None:  # the recorder's rule: a stream without ``Finished`` is the backend's error
                raise GenerationError(NO_FINISH)
        except InkstoneError as exc:
            if record:
                with suppress(InkstoneError):  # the store will settle it later; the client gets the real error
                    record.save(record.end(str(exc)))
            raise
        finally:
            if finished is None:  # the client went away (or it failed): end generation, free the model now
                stop.set()
                events.close()
                if record and not record.settled:
                    with suppress(InkstoneError):
                        record.save(record.end())  # stored as ``stopped``
        tail = scanner.flush() if not hit_stop else ""
        if calls is not None:
            tail = calls.feed(tail)
            rest, made = calls.finish(cut=finished.reason == "length")
            tail += rest
        if lead:
            tail = tail.lstrip()
        if tail:
            if record:
                record.add(tail)
            yield tail
        if hit_stop:  # a stop string (or a repeated call) ended it through the stop event: OpenAI's ``stop``
            finished = replace(finished, reason="stop")
        prompt = finished.prompt_tokens or prep.prompt_tokens
        completion, ttft, rate = finished.completion_tokens, finished.ttft_s, finished.tokens_per_s
        self.metrics.record_completion(prep.model, prompt, completion, ttft, rate)
        if record:
            record.finish(finished)
            record.save(record.end())
        reason = "cancelled" if finished.reason == "stopped" else finished.reason
        if made and reason == "stop":
            reason = "function_call" if prep.tools.legacy else "tool_calls"
        elif made and reason != "length":  # cut by max_tokens: the complete calls, finish_reason "length"
            made = []  # a cancelled answer's calls are not complete
        yield Outcome(reason, prompt, completion, ttft, rate, record.session_id if record else None, made)


class StopScanner:
    """Finds OpenAI ``stop`` strings in streamed text, holding back a tail that could start one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.buffer = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Text safe to emit now, and whether a stop string was found (the text before it is emitted)."""
        if not self.stops:
            return text, False
        self.buffer += text
        hits = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buffer = self.buffer[: min(hits)], ""
            return out, True
        cut = max(0, len(self.buffer) - self.hold)
        out, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return out, False

    def flush(self) -> str:
        """The held-back tail, at the end of the answer."""
        out, self.buffer = self.buffer, ""
        return out


def _forward(req: ChatCompletionRequest, tools: ToolRequest) -> dict[str, Any]:
    """The request's tool and ``response_format`` fields in OpenAI's shape (legacy ``functions`` as ``tools``), for
    a server that handles them itself; only the fields the client sent."""
    out: dict[str, Any] = {}
    if tools.tools:
        out["tools"] = [t.openai() for t in tools.tools]
        if req.tool_choice is not None or req.function_call is not None:
            out["tool_choice"] = tools.choice if tools.choice in ("none", "auto", "required") else \
                {"type": "function", "function": {"name": tools.choice}}
        if req.parallel_tool_calls is not None:
            out["parallel_tool_calls"] = req.parallel_tool_calls
    if req.response_format is not None and req.response_format.type != "text":
        out["response_format"] = req.response_format.model_dump(by_alias=True, exclude_none=True)
    return out


def _count(backend: Any, messages: ChatMessages) -> int:
    """Prompt tokens; a template that cannot render these messages is the client's error (400)."""
    from jinja2 import TemplateError

    try:
        return backend.count_prompt_tokens(messages)
    except (TemplateError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise ApiError(400, f"The model's chat template cannot render these messages ({exc}): check the roles "
                       "and their order.", code="invalid_value", param="messages") from None


def _takes_seed(backend: Any) -> bool:
    """Whether ``backend`` declares seeded sampling (``Backend.capabilities``): only then is ``seed=`` passed."""
    return backend.capabilities.seed


def _short(model_id: str) -> str:
    """The last path part of a local model id (``/models/Qwen2`` -> ``Qwen2``)."""
    return model_id.rstrip("/").rsplit("/", 1)[-1]

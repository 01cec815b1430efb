"""The remote backend: any OpenAI-compatible server (vLLM, another Inkstone, llama.cpp server, Ollama) through the
official ``openai`` client. The only module that imports ``openai``.

A profile in ``inkstone.toml`` names it::

    [models.quill-vllm]
    backend = "openai"
    base_url = "http://gpu-box:8000/v1"
    model = "Qwen/Qwen2.5-7B-Instruct"   # the server's model name
    api_key = "..."                      # optional
    context_window = 32768
    adapters = { quill = "quill" }       # persona id -> the server's LoRA name (default: the persona id)

A persona's LoRA maps to the server's adapter model (vLLM ``--lora-modules quill=adapters/quill``). Token counts
come from the server's usage chunk; prompt sizes for trimming history are estimated (no local tokenizer). A user
message's pictures travel as ``image_url`` parts with ``data:`` URLs (vLLM and Inkstone take them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from core.backends.base import AdapterSpec, Capabilities, ChatMessages, ModelInfo, StreamEvent, TextDelta, ToolCalls
from core.backends.timing import StreamTimer
from core.config import GenerationSettings
from core.errors import GenerationError, InputError, ModelError


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: ~4 characters a token for ASCII, one per other character (CJK)."""
    ascii_chars = sum(1 for c in text if ord(c) < 128)
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars)


class OpenAIBackend:
    """Streams answers from an OpenAI-compatible server."""

    capabilities = Capabilities(seed=True, max_concurrent=32, adapters=True, images=True, tools=True)
    """The server takes a seed; 32 answers are sent to it at once (it batches them; more wait in Inkstone's fair
    queue); a persona's adapter maps to the server's LoRA model name; pictures are forwarded as ``image_url`` parts
    (the server decides whether its model reads them, and its refusal is passed on as it says it); tools and
    ``response_format`` are forwarded (the server renders, parses and constrains them)."""

    def __init__(self, *, model_id: str, base_url: str, model: str, api_key: str | None = None,
                 context_window: int = 4096, adapters: tuple[tuple[str, str], ...] = (),
                 timeout_s: float = 600.0) -> None:
        from openai import OpenAI

        self.model_id = model_id
        self.context_window = context_window
        self.codec = None
        self.base_url = base_url
        self.remote_model = model
        self.adapters = dict(adapters)
        self.client = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=0)
        self._active = 0
        self._count_lock = threading.Lock()

    @property
    def busy(self) -> bool:
        """True while an answer streams from the server."""
        return self._active > 0

    @property
    def loaded(self) -> None:
        """No in-process model: the weights live on the server."""
        return None

    def info(self) -> ModelInfo:
        """The profile id, context window and ``openai`` (the server's URL as the device)."""
        return ModelInfo(self.model_id, self.context_window, "openai", device=self.base_url)

    def count_prompt_tokens(self, messages: ChatMessages) -> int:
        """An estimate (no local tokenizer): characters per message plus 4 for its role markers, plus 2, plus each
        picture's image tokens as a Qwen2-VL-style server counts them (one per 28 x 28 pixels, 64 to 1,280)."""
        pictures = sum(estimate_image_tokens(i.width, i.height) for m in messages for i in m.get("images") or [])
        return sum(estimate_tokens(m.get("content") or "") + 4 for m in messages) + 2 + pictures

    def generate_ids(self, messages: ChatMessages, settings: GenerationSettings) -> list[int]:
        """Refused: the server's token ids are not exposed (no local tokenizer)."""
        raise ModelError(f"The model {self.model_id!r} runs on the server at {self.base_url}, which returns text, not "
                         "token ids: load a model that runs in-process.")

    def set_adapters_enabled(self, enabled: bool) -> None:
        """A no-op: the server picks the adapter per request by model name."""

    def server_model(self, adapter: AdapterSpec | None) -> str:
        """The server's model name for this answer: the adapter's LoRA name, or the base model."""
        if adapter is None:
            return self.remote_model
        return self.adapters.get(adapter.name, adapter.name)

    def stream(
        self,
        messages: ChatMessages,
        settings: GenerationSettings,
        stop: threading.Event,
        adapter: AdapterSpec | None = None,
        seed: int | None = None,
        tools: dict[str, Any] | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream from the server (see ``Backend.stream``); a dropped connection or server error raises
        GenerationError naming the server, after the text received so far was yielded. ``tools`` (OpenAI fields:
        ``tools``, ``tool_choice``, ``parallel_tool_calls``, ``response_format``) are forwarded; the server's calls
        come back as one ``ToolCalls`` event; a server that refuses them raises ``InputError`` naming the field."""
        import openai

        timer = StreamTimer()
        with self._count_lock:
            self._active += 1
        produced: list[str] = []
        pieces: dict[int, dict[str, str]] = {}  # streamed calls by index: id, name, arguments so far
        usage: Any = None
        finish: str | None = None
        response: Any = None
        try:
            response = self.client.chat.completions.create(
                model=self.server_model(adapter), messages=wire_messages(messages),  # type: ignore[misc]
                stream=True, stream_options={"include_usage": True}, max_tokens=settings.max_new_tokens,
                temperature=settings.temperature, top_p=settings.top_p, **({"seed": seed} if seed is not None else {}),
                extra_body={"top_k": settings.top_k, "repetition_penalty": settings.repetition_penalty},
                **(tools or {}),
            )
            for chunk in response:
                if stop.is_set():
                    break
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.delta.content:
                        timer.token()
                        produced.append(choice.delta.content)
                        yield TextDelta(choice.delta.content)
                    for piece in choice.delta.tool_calls or []:
                        timer.token()
                        call = pieces.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
                        call["id"] = piece.id or call["id"]
                        if piece.function is not None:
                            call["name"] += piece.function.name or ""
                            call["arguments"] += piece.function.arguments or ""
                    finish = choice.finish_reason or finish
        except openai.NotFoundError as exc:
            raise ModelError(f"The server at {self.base_url} has no model {self.server_model(adapter)!r} "
                             f"({_detail(exc)}): check `model` / `adapters` in [models.{self.model_id}].") from None
        except openai.APIStatusError as exc:
            if tools and exc.status_code in (400, 422) and not produced:
                fields = ", ".join(tools)
                raise InputError(f"The model server at {self.base_url} refused this request, which sent {fields} "
                                 f"(HTTP {exc.status_code}: {_detail(exc)}). If the server does not support them "
                                 "(vLLM needs --enable-auto-tool-choice and --tool-call-parser for tools), leave them "
                                 "out, or load the model in-process, where Inkstone renders and constrains them.",
                                 param=_param(exc, list(tools))) from None
            raise GenerationError(f"The server at {self.base_url} refused the answer (HTTP {exc.status_code}: "
                                  f"{_detail(exc)}).") from None
        except openai.APIConnectionError as exc:
            raise GenerationError(f"Lost the connection to the model server at {self.base_url} ({_detail(exc)}); "
                                  "the text so far is kept. Check that the server is running, then regenerate."
                                  ) from None
        except openai.APIError as exc:
            raise GenerationError(f"The model server at {self.base_url} failed mid-answer ({_detail(exc)}); the text "
                                  "so far is kept. Regenerate, or check the server's log.") from None
        except _httpx_errors() as exc:
            raise GenerationError(f"Lost the connection to the model server at {self.base_url} mid-answer "
                                  f"({type(exc).__name__}: {exc}); the text so far is kept. Check that the server is "
                                  "running, then regenerate.") from None
        finally:
            if response is not None:
                response.close()
            with self._count_lock:
                self._active -= 1
        if stop.is_set():
            reason = "stopped"
        elif finish is None:
            raise GenerationError(f"The model server at {self.base_url} ended the stream before the answer finished; "
                                  "the text so far is kept. Check the server, then regenerate.")
        else:
            reason = "length" if finish == "length" else "stop"  # the server's reason (tool calls, filter: stop)
        if pieces and not stop.is_set():
            yield ToolCalls(self._calls(pieces))
        prompt = usage.prompt_tokens if usage is not None else self.count_prompt_tokens(messages)
        completion = usage.completion_tokens if usage is not None else estimate_tokens("".join(produced))
        yield timer.finished(prompt, completion, reason)

    def _calls(self, pieces: dict[int, dict[str, str]]) -> list[dict[str, Any]]:
        """The server's streamed calls, in index order: ``{"id", "name", "arguments"}`` with the arguments read as
        a JSON object."""
        import json

        calls = []
        for _, piece in sorted(pieces.items()):
            try:
                args = json.loads(piece["arguments"] or "{}")
            except (ValueError, RecursionError):
                args = None
            if not isinstance(args, dict) or not piece["name"]:
                raise GenerationError(f"The model server at {self.base_url} returned a tool call that is not a "
                                      f"function name with a JSON object of arguments ({piece['name']!r}, "
                                      f"{piece['arguments'][:80]!r}); check the server's tool-call parser.")
            calls.append({"id": piece["id"], "name": piece["name"], "arguments": args})
        return calls


def _wire(message: dict[str, Any]) -> dict[str, Any]:
    """A prompt message as OpenAI's API takes it: role and content, an assistant's calls with their arguments as
    JSON strings, a tool result with its ``tool_call_id``."""
    import json

    out: dict[str, Any] = {"role": message["role"], "content": message.get("content")}
    if message.get("tool_calls"):
        out["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
            "name": c["function"]["name"], "arguments": c["function"]["arguments"]
            if isinstance(c["function"]["arguments"], str) else json.dumps(c["function"]["arguments"],
                                                                            ensure_ascii=False)}}
            for c in message["tool_calls"]]
        out["content"] = out["content"] or None
    if message["role"] == "tool":
        out["tool_call_id"] = message.get("tool_call_id", "")
    return out


def _param(exc: Exception, fields: list[str]) -> str:
    """The forwarded field the server named in its error (``param``), else the first one sent."""
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    named = error.get("param") if isinstance(error, dict) else None
    return named if named in fields else fields[0]


def estimate_image_tokens(width: int, height: int) -> int:
    """Image tokens a server's model is likely to spend on a ``width`` x ``height`` picture (an estimate)."""
    return max(64, min(1280, width * height // (28 * 28)))


def wire_messages(messages: ChatMessages) -> list[dict[str, Any]]:
    """The messages as the OpenAI wire format carries them (``_wire``): a message's pictures (``images``) become
    ``image_url`` parts with ``data:`` URLs after its text part."""
    out = []
    for message in messages:
        wired = _wire(message)
        if images := message.get("images"):
            parts: list[dict[str, Any]] = [{"type": "text", "text": message["content"]}] if message.get("content") \
                else []
            wired["content"] = parts + [{"type": "image_url", "image_url": {"url": i.data_url()}} for i in images]
        out.append(wired)
    return out


def _detail(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc) or type(exc).__name__


def _httpx_errors() -> tuple[type[BaseException], ...]:
    import httpx

    return (httpx.HTTPError,)

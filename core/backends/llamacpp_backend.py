"""The llama.cpp engine: a bundled GGUF model answered by a managed ``llama-server`` (``core.llamacpp.server``).

Inkstone renders every prompt with its own chat codec (the same ids the PyTorch path builds) and sends the ids;
the server only continues them and streams the new ids back, which are decoded here as on the PyTorch path. Each
setting maps onto llama.cpp's sampler in transformers' order (repetition penalty over the whole context, then
temperature, top-k, top-p; llama.cpp's own extras off), and a seed seeds the answer's sampler. Up to ``slots``
answers run at once in the server's continuous batch (the fair queue admits that many). Personas' PEFT adapters are
converted to GGUF LoRA once (``core.llamacpp.lora``), loaded at scale 0, and applied per request; a new or retrained
adapter restarts the server between answers.

What the server cannot do runs on the PyTorch engine, loaded on first need: grammar-constrained answers (forced tool
calls, ``response_format``: the mask comes from llguidance token by token) and adapters llama.cpp cannot apply.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from core.backends.base import AdapterSpec, Capabilities, ChatMessages, ModelInfo, StreamEvent
from core.backends.timing import StreamTimer
from core.config import GenerationSettings
from core.errors import GenerationError, ModelError
from core.llamacpp.lora import LoraUnsupported, cached
from core.llamacpp.server import LlamaServer
from core.models.codec import HFChatCodec

SAMPLERS = ["penalties", "temperature", "top_k", "top_p"]


def sampling_body(settings: GenerationSettings, context: int, seed: int | None = None) -> dict[str, Any]:
    """llama-server's sampling fields for ``settings`` (see the module docstring); the repetition penalty looks back
    over the whole ``context``, as transformers' does."""
    body: dict[str, Any] = {
        "n_predict": settings.max_new_tokens, "temperature": max(0.0, settings.temperature),
        "top_k": max(0, settings.top_k), "top_p": settings.top_p, "min_p": 0.0, "typical_p": 1.0,
        "repeat_penalty": settings.repetition_penalty, "repeat_last_n": context, "presence_penalty": 0.0,
        "frequency_penalty": 0.0, "dry_multiplier": 0.0, "xtc_probability": 0.0, "mirostat": 0,
        "samplers": SAMPLERS, "ignore_eos": False,
    }
    if seed is not None:
        body["seed"] = int(seed) & 0xFFFFFFFF
    return body


class LlamaCppBackend:
    """Streams answers of a bundled GGUF from ``llama-server``; see the module docstring."""

    def __init__(self, model_id: str, server: LlamaServer, codec: HFChatCodec, context_window: int,
                 torch_backend: Callable[[], Any], lora_cache: Path, load_seconds: float, note: str) -> None:
        self.model_id = model_id
        self.server = server
        self.codec = codec
        self.context_window = context_window
        self.capabilities = Capabilities(seed=True, max_concurrent=server.slots, adapters=True, grammar=True)
        """Seeded sampling, ``slots`` answers at once, LoRA personas; grammar answers on the PyTorch engine."""
        self.loaded = None
        self._make_torch = torch_backend
        self._torch: Any = None
        self._torch_lock = threading.Lock()
        self._lora_cache = lora_cache
        self._lora: dict[str, Path] = {}
        """Persona id -> its GGUF LoRA file, as loaded by the running server (its order gives the request ids)."""
        self._converted: dict[str, tuple[tuple[int, int] | None, Path]] = {}
        """Persona id -> (its weights file's version, its GGUF LoRA): converted (and hashed) again only when the
        persona's files change."""
        self._active = 0
        self._cond = threading.Condition()
        self._load_seconds = load_seconds
        self._note = note

    @property
    def busy(self) -> bool:
        """True while every slot is answering."""
        return self._active >= self.server.slots

    def info(self) -> ModelInfo:
        """The model, its context window, the engine and why it was chosen."""
        return ModelInfo(self.model_id, self.context_window, "llama.cpp", "cpu", "gguf", None, self._load_seconds,
                         engine_note=self._note)

    def count_prompt_tokens(self, messages: ChatMessages) -> int:
        """Exact prompt length in the model's chat format."""
        return len(self.codec.prompt_ids(messages))

    def set_adapters_enabled(self, enabled: bool) -> None:
        """Nothing to switch: each request names its adapter."""

    def torch(self) -> Any:
        """The PyTorch engine for the same model, loaded on first need (grammar answers, adapters llama.cpp cannot
        apply, ``generate_ids``)."""
        with self._torch_lock:
            if self._torch is None:
                self._torch = self._make_torch()
            return self._torch

    def generate_ids(self, messages: ChatMessages, settings: GenerationSettings) -> list[int]:
        """New token ids without streaming (on the PyTorch engine, which keeps the final stop id)."""
        return list(self.torch().generate_ids(messages, settings))

    def _lora_ids(self, adapter: AdapterSpec | None) -> list[dict[str, float]] | None:
        """The request's ``lora`` field (every loaded adapter, the persona's at scale 1); restarts the server first
        when the persona's adapter is new or changed. Call with a slot counted in ``_active``."""
        if adapter is None:
            return [{"id": i, "scale": 0.0} for i in range(len(self._lora))] or None
        version = adapter.version()
        known = self._converted.get(adapter.name)
        if known is None or known[0] != version:
            known = (version, cached(adapter.path, self.server.gguf, self._lora_cache))
            self._converted[adapter.name] = known
        path = known[1]
        if self._lora.get(adapter.name) != path:
            self._restart_with(adapter.name, path)
        names = list(self._lora)
        return [{"id": i, "scale": 1.0 if name == adapter.name else 0.0} for i, name in enumerate(names)]

    def _restart_with(self, name: str, path: Path) -> None:
        """Restart the server with ``name``'s adapter added, once the other answers in flight are done."""
        with self._cond:
            self._active -= 1  # this answer waits too; it takes its slot back below
            self._cond.wait_for(lambda: self._active == 0)
            try:
                if self._lora.get(name) != path:
                    lora = {**self._lora, name: path}
                    self.server.start(list(lora.values()))
                    self._lora = lora
            finally:
                self._active += 1

    def stream(
        self,
        messages: ChatMessages,
        settings: GenerationSettings,
        stop: threading.Event,
        adapter: AdapterSpec | None = None,
        seed: int | None = None,
        constraint: Any = None,
    ) -> Iterator[StreamEvent]:
        """Stream the answer (see ``Backend.stream``); a ``constraint`` runs on the PyTorch engine."""
        if constraint is not None:
            yield from self.torch().stream(messages, settings, stop, adapter, seed=seed, constraint=constraint)
            return
        timer = StreamTimer()
        prompt = self.codec.prompt_ids(messages)
        with self._cond:
            self._active += 1
        try:
            try:
                lora = self._lora_ids(adapter)
            except LoraUnsupported:
                yield from self.torch().stream(messages, settings, stop, adapter, seed=seed)
                return
            yield from self._generate(prompt, settings, stop, seed, lora, timer)
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def _generate(self, prompt: list[int], settings: GenerationSettings, stop: threading.Event, seed: int | None,
                  lora: list[dict[str, float]] | None, timer: StreamTimer) -> Iterator[StreamEvent]:
        from core.backends.streaming import IdStreamer

        # A seeded answer computes its whole prompt afresh: a prefix reused from another answer's cache comes from
        # batches of another shape, whose rounding can change a sampled token.
        body = {"prompt": prompt, "cache_prompt": seed is None, "return_tokens": True,
                **sampling_body(settings, self.context_window, seed)}
        if lora is not None:
            body["lora"] = lora
        if not self.server.running:
            self._revive()
        streamer = IdStreamer(self.codec, timer)
        streamer.put(prompt)  # the prompt: skipped, as generate's first call
        stop_type = None
        try:
            for batch in self.server.stream(body, stop):
                tokens = [int(t) for event in batch for t in event.get("tokens") or ()]
                if tokens:
                    streamer.put(tokens)
                    yield from streamer.ready_text()
                stop_type = next((e.get("stop_type") for e in batch if e.get("stop")), stop_type)
        except ModelError as exc:
            raise GenerationError(f"The llama.cpp engine failed during this answer: {exc}") from None
        streamer.end()
        yield from streamer.ready_text()
        if stop.is_set():
            reason = "stopped"
        elif streamer.saw_stop_id or stop_type in ("eos", "word"):
            reason = "stop"
        else:
            reason = "length"
        yield timer.finished(len(prompt), len(streamer.ids), reason)

    def _revive(self) -> None:
        """Start a server that died (a crash in native code) again, with the same adapters."""
        try:
            self.server.start(list(self._lora.values()))
        except ModelError as exc:
            raise GenerationError(f"The llama.cpp engine stopped and did not start again: {exc} Restart Inkstone, "
                                  "or set engine = \"torch\".") from None



def start(profile_id: str, title: str, gguf: Path, tokenizer_dir: Path, binary: Path, cache: Path,
          torch_backend: Callable[[], Any], say: Callable[[str], None]) -> LlamaCppBackend:
    """Load the codec (from its cached copy, else from the GGUF, then cached), start the server, and build the
    backend; ModelError when the server does not start."""
    from transformers import AutoTokenizer

    from core.llamacpp.server import default_threads
    from core.storage.dirswap import replace_dir

    started = time.perf_counter()
    if (tokenizer_dir / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    else:
        say(f"Reading the tokenizer of {title} (first start only)…")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        with replace_dir(tokenizer_dir) as tmp:
            tokenizer.save_pretrained(tmp)
    codec = HFChatCodec(tokenizer, None, title)
    context = _context_length(gguf)
    say(f"Starting llama.cpp's server for {title}…")
    server = LlamaServer(binary, gguf, context=context, slots=8, threads=default_threads(),
                         log=cache / "logs" / f"{profile_id}.log")
    server.start()
    note = (f"llama.cpp ({binary.name}, {server.slots} answers at once, {server.threads} threads; "
            'engine = "torch" switches to PyTorch)')
    return LlamaCppBackend(profile_id, server, codec, context, torch_backend, cache / "lora",
                           time.perf_counter() - started, note)


def _context_length(gguf: Path) -> int:
    """The model's trained context length from its GGUF metadata."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf))
    arch = reader.fields["general.architecture"].contents()
    field = reader.fields.get(f"{arch}.context_length")
    return int(field.contents()) if field is not None else 4096

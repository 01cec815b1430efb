"""The one protocol every model backend implements, and the events a backend streams.

A backend turns prompt messages (``[{"role": ..., "content": ...}]``) into streamed text. It counts
tokens with the model's own chat format so that the prompt builder can trim history exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core.config import GenerationSettings

if TYPE_CHECKING:  # pragma: no cover
    from core.models.loader import LoadedModel

ChatMessages = list[dict[str, Any]]
"""Prompt messages: ``{"role", "content"}`` strings; a user message may also carry ``"images"``, a list of
``core.images.ImageInput`` (checked pictures), for a backend that declares ``capabilities.images``."""


@dataclass(frozen=True)
class TextDelta:
    """New text of the answer (may be several tokens' worth, or empty text for a held-back byte)."""

    text: str


FINISH_REASONS = ("stop", "length", "stopped", "error")
"""Why a generation ended: ``stop`` (the model ended it), ``length`` (``max_new_tokens`` reached), ``stopped``
(the stop event ended it), ``error`` (it failed: backends raise instead; recorders close such a stream with it)."""


@dataclass(frozen=True)
class Finished:
    """End of one generation, with its reason (one of ``FINISH_REASONS``) and timings, measured once where the
    tokens are produced (``core.backends.timing``); callers read them, never re-derive them.

    Timings do not take part in equality: two runs of the same answer are equal.
    """

    prompt_tokens: int
    completion_tokens: int
    reason: str
    ttft_s: float | None = field(default=None, compare=False)
    """Seconds from the request (queue wait included) to the first answer token; None without a token."""
    decode_s: float | None = field(default=None, compare=False)
    """Seconds from the first answer token to the end of generation; None without a token."""

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed: tokens after the first over the time after the first (prefill excluded)."""
        if self.decode_s is None or self.decode_s <= 0 or self.completion_tokens < 2:
            return None
        return (self.completion_tokens - 1) / self.decode_s


@dataclass(frozen=True)
class ToolCalls:
    """The calls a remote server's answer made, sent before ``Finished`` by a backend that declares
    ``capabilities.tools`` when it was given ``tools=``: each ``{"id", "name", "arguments"}`` (arguments a dict; the
    id may be empty)."""

    calls: list[dict[str, Any]]


StreamEvent = TextDelta | ToolCalls | Finished


@dataclass(frozen=True)
class AdapterSpec:
    """A LoRA adapter to apply for one answer: its name (the persona id) and the directory of its PEFT files."""

    name: str
    path: Path

    def version(self) -> tuple[int, int] | None:
        """(mtime, size) of the adapter's weights file, to notice a persona retrained in place; None when it cannot
        be read."""
        try:
            stat = (self.path / "adapter_model.safetensors").stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size


@dataclass(frozen=True)
class ModelInfo:
    """What front ends show about a loaded model (settings page, ``model`` commands, API)."""

    model_id: str
    context_window: int
    backend: str
    """The backend's name in the factory table (``transformers``, ``fake``...)."""
    device: str | None = None
    dtype: str | None = None
    quantize: str | None = None
    load_seconds: float | None = None
    """Seconds the model took to load (None: nothing was loaded in this process)."""
    cpu_weights: str | None = None
    """Weights held on the CPU (int4, int8, bf16, fp32) where the ``cpu_weights`` setting decided them."""
    cpu_weights_note: str | None = None
    """With ``cpu_weights = "auto"``: the choice and each candidate's timed figure on this CPU, in one line."""
    engine_note: str | None = None
    """Which engine runs the model and why (llama.cpp's server, or PyTorch because llama.cpp is not built or did
    not start), in one line; None where there was no choice."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared by the backend; callers read this and never probe the backend for it."""

    seed: bool = False
    """``stream`` takes a keyword ``seed`` (an int), and the same seed samples the same answer. Callers pass ``seed=``
    only to a backend that declares it."""
    max_concurrent: int = 1
    """Answers ``stream`` runs at once: 1 for a backend that generates one at a time (behind its lock), more for
    one that batches them itself (a remote server, or the fair queue in front of a batching in-process model)."""
    adapters: bool = False
    """``stream`` applies a persona's LoRA adapter (``AdapterSpec``) for one answer."""
    grammar: bool = False
    """``stream`` takes a keyword ``constraint`` (``core.generation.constrain.Constraint``): every sampled token is
    one the grammar allows. Callers pass ``constraint=`` only to a backend that declares it."""
    tools: bool = False
    """``stream`` takes a keyword ``tools``: the request's OpenAI fields (``tools``, ``tool_choice``,
    ``parallel_tool_calls``, ``response_format``) to forward to a server that renders, parses and constrains them
    itself; its calls come back as one ``ToolCalls`` event. Callers pass ``tools=`` only to a backend that
    declares it, and then render nothing themselves."""
    images: bool = False
    """The model reads pictures: user messages may carry ``"images"`` (``core.images.ImageInput``). Callers refuse
    a message with pictures, before storing it, for a backend that does not declare it."""


@runtime_checkable
class Backend(Protocol):
    """A loaded model that can stream answers. One generation at a time per backend (it holds a lock).

    Callers use only these members, and learn what the backend can do from ``capabilities``. ``loaded`` is the
    in-process model (``core.models.loader.LoadedModel``: weights, codec, device) for the continuous batch
    (``core.generation.batching``) and for tools that need its weights or tokenizer (``model inspect``), None
    for a backend
    without one.
    """

    model_id: str
    context_window: int
    codec: Any
    """The chat codec (``core.models.codec``) that renders this model's prompts here (tool formats and grammars are
    built for it); None for a backend whose server renders its own (remote) or that has none (fake)."""

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do (seeded sampling, answers at once, adapters)."""
        ...

    @property
    def busy(self) -> bool:
        """True while an answer is being generated (another caller would wait for the lock)."""
        ...

    @property
    def loaded(self) -> LoadedModel | None:
        """The in-process loaded model, or None (scripted or remote backends)."""
        ...

    def info(self) -> ModelInfo:
        """What this backend runs: model id, context window, backend name, device, dtype, quantization."""
        ...

    def count_prompt_tokens(self, messages: ChatMessages) -> int:
        """Tokens of the full prompt these messages render to, generation prompt included."""
        ...

    def generate_ids(self, messages: ChatMessages, settings: GenerationSettings) -> list[int]:
        """New token ids of the base model for ``messages`` (a final stop id included), without streaming, for
        debugging (``model generate``); ``core.errors.ModelError`` from a backend without local token ids."""
        ...

    def set_adapters_enabled(self, enabled: bool) -> None:
        """Turn LoRA layers injected into the shared weights on (the default) or off, for answers that run on
        the bare base model while others may be waiting (batched decoding); a no-op for a backend without
        in-process adapters. ``stream`` with an adapter needs them on."""
        ...

    def stream(
        self,
        messages: ChatMessages,
        settings: GenerationSettings,
        stop: threading.Event,
        adapter: AdapterSpec | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream the answer to ``messages``: ``TextDelta`` events, then exactly one ``Finished``.

        ``Finished`` carries the reason and the timings (build it with ``core.backends.timing.StreamTimer``). The
        answer recorder (``core.history.recorder``) enforces the rule: a stream that ends without it is stored
        as an error.

        ``adapter`` is applied for this answer only (None: the base model). A backend that declares
        ``capabilities.seed`` also takes ``seed=``. Setting ``stop`` ends generation early (reason ``stopped``).
        Failures raise ``core.errors.GenerationError`` (or ``ModelError`` for an adapter that does not fit); the
        backend stays usable afterwards.
        """
        ...

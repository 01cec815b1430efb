"""The one protocol every model backend implements, and the events a backend streams.

A backend turns prompt messages (``[{"role": ..., "content": ...}]``) into streamed text. It counts
tokens with the model's own chat format so that the prompt builder can trim history exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from core.config import GenerationSettings

ChatMessages = list[dict[str, str]]


@dataclass(frozen=True)
class TextDelta:
    """New text of the answer (may be several tokens' worth, or empty text for a held-back byte)."""

    text: str


@dataclass(frozen=True)
class Finished:
    """End of one generation. ``reason`` is ``complete`` (eos or length) or ``stopped`` (stop event)."""

    prompt_tokens: int
    completion_tokens: int
    reason: str


StreamEvent = TextDelta | Finished


@dataclass(frozen=True)
class AdapterSpec:
    """A LoRA adapter to apply for one answer: its name (the persona id) and the directory of its PEFT files."""

    name: str
    path: Path


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


@runtime_checkable
class Backend(Protocol):
    """A loaded model that can stream answers. One generation at a time per backend (it holds a lock).

    Callers use only these members. ``loaded`` is the in-process model (``core.models.loader.LoadedModel``)
    for tools that need its weights or tokenizer (``model inspect``), None for a backend without one.
    """

    model_id: str
    context_window: int

    @property
    def busy(self) -> bool:
        """True while an answer is being generated (another caller would wait for the lock)."""
        ...

    @property
    def loaded(self) -> Any | None:
        """The in-process loaded model, or None (scripted or remote backends)."""
        ...

    def info(self) -> ModelInfo:
        """What this backend runs: model id, context window, backend name, device, dtype, quantization."""
        ...

    def count_prompt_tokens(self, messages: ChatMessages) -> int:
        """Tokens of the full prompt these messages render to, generation prompt included."""
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

        The chat service enforces the ``Finished`` rule: a stream that ends without it is stored as an error.

        ``adapter`` is applied for this answer only (None: the base model). Setting ``stop`` ends generation
        early (reason ``stopped``). Failures raise ``core.errors.GenerationError`` (or ``ModelError`` for an
        adapter that does not fit); the backend stays usable afterwards.
        """
        ...

"""A scripted backend: runs the UI and its tests without a model. Never a substitute for the real path.

Its answers are deterministic: a scripted list of replies in order, or by default an echo of the last user
message. Tokens are whitespace-separated words; an optional delay per token lets tests press Stop. With
``images=True`` it declares ``capabilities.images`` and its echo says what pictures it received ("I see 1 picture,
32x24."), so picture chats run without a model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from core.backends.base import AdapterSpec, Capabilities, ChatMessages, ModelInfo, StreamEvent, TextDelta
from core.backends.timing import StreamTimer
from core.config import GenerationSettings
from core.errors import ModelError

IMAGE_TOKENS = 64
"""Prompt tokens one picture counts for (a vision model's picture takes a fixed budget of image tokens)."""


def echo_reply(messages: ChatMessages) -> str:
    """Default script: echo the last user message, after what pictures it carried (if any)."""
    last = next((m for m in reversed(messages) if m["role"] == "user"), {"content": ""})
    pictures = last.get("images") or []
    if not pictures:
        return f"You said: {last['content']}"
    sizes = ", ".join(f"{p.width}x{p.height}" for p in pictures)
    seen = f"I see {len(pictures)} picture{'s' if len(pictures) > 1 else ''}, {sizes}."
    return f"{seen} You said: {last['content']}" if last["content"] else seen


class FakeBackend:
    """Scripted stand-in for a model (profile ``fake``)."""

    capabilities = Capabilities(seed=False, max_concurrent=1, adapters=True)
    """Scripted replies (nothing to seed), one at a time; an adapter is recorded in ``adapters``, not applied."""

    def __init__(
        self,
        replies: list[str] | Callable[[ChatMessages], str] | None = None,
        *,
        delay_s: float = 0.0,
        context_window: int = 4096,
        model_id: str = "fake",
        images: bool = False,
    ) -> None:
        if images:
            self.capabilities = Capabilities(seed=False, max_concurrent=1, adapters=True, images=True)
        self.model_id = model_id
        self.context_window = context_window
        self.codec = None
        self.delay_s = delay_s
        self._replies = replies
        self._index = 0
        self._lock = threading.Lock()
        self.prompts: list[ChatMessages] = []
        """Every prompt this backend was asked to answer (tests read it)."""
        self.adapters: list[str | None] = []
        """The adapter name used for each answer (None: base model)."""
        self.adapter_switches: list[bool] = []
        """Each ``set_adapters_enabled`` call, in order."""

    @property
    def busy(self) -> bool:
        """True while an answer is being streamed."""
        return self._lock.locked()

    @property
    def loaded(self) -> None:
        """No in-process model behind a scripted backend."""
        return None

    def info(self) -> ModelInfo:
        """The scripted model's id and context window (no device, dtype or quantization)."""
        return ModelInfo(self.model_id, self.context_window, "fake")

    def count_prompt_tokens(self, messages: ChatMessages) -> int:
        """Words of every message plus 4 per message for its role markers and ``IMAGE_TOKENS`` per picture, plus 2
        for the answer prefix."""
        return sum(len(m["content"].split()) + 4 + IMAGE_TOKENS * len(m.get("images") or ()) for m in messages) + 2

    def generate_ids(self, messages: ChatMessages, settings: GenerationSettings) -> list[int]:
        """Refused: a scripted backend has no tokenizer, so no token ids."""
        raise ModelError(f"The scripted model {self.model_id!r} has no token ids: load a model that runs in-process.")

    def set_adapters_enabled(self, enabled: bool) -> None:
        """Recorded in ``adapter_switches`` (a scripted backend has no adapter layers)."""
        self.adapter_switches.append(enabled)

    def script(self, replies: list[str] | Callable[[ChatMessages], str] | None) -> None:
        """Answer from now on with ``replies`` (in order, then round again), a function of the prompt, or None for the
        echo: how a test scripts the model of a running app (a tool call, then the answer from its result)."""
        with self._lock:
            self._replies, self._index = replies, 0

    def _next_reply(self, messages: ChatMessages) -> str:
        if callable(self._replies):
            return self._replies(messages)
        if self._replies:
            reply = self._replies[self._index % len(self._replies)]
            self._index += 1
            return reply
        return echo_reply(messages)

    def stream(
        self,
        messages: ChatMessages,
        settings: GenerationSettings,
        stop: threading.Event,
        adapter: AdapterSpec | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream the scripted reply word by word, at most ``max_new_tokens`` words (reason ``length`` when the
        reply is cut there; else ``stop``, after one more step for the end-of-answer token)."""
        timer = StreamTimer()
        with self._lock:
            self.prompts.append([dict(m) for m in messages])
            self.adapters.append(adapter.name if adapter else None)
            reply = self._next_reply(messages).split(" ")
            words = reply[: settings.max_new_tokens]
            prompt = self.count_prompt_tokens(messages)
            produced = 0
            for i, word in enumerate(words):
                if stop.is_set():
                    yield timer.finished(prompt, produced, "stopped")
                    return
                self._step()
                produced += 1
                timer.token()
                yield TextDelta(word if i == 0 else " " + word)
            if stop.is_set():
                reason = "stopped"
            elif len(reply) > len(words):
                reason = "length"
            else:
                self._step()  # the model's end-of-answer token
                reason = "stop"
            yield timer.finished(prompt, produced, reason)

    def _step(self) -> None:
        """One decoding step: waits ``delay_s`` (a test can override it to drive a clock instead)."""
        if self.delay_s:
            time.sleep(self.delay_s)

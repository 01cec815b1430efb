"""A scripted backend: runs the UI and its tests without a model. Never a substitute for the real path.

Its answers are deterministic: a scripted list of replies in order, or by default an echo of the last user
message. Tokens are whitespace-separated words; an optional delay per token lets tests press Stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from core.backends.base import AdapterSpec, ChatMessages, Finished, ModelInfo, StreamEvent, TextDelta
from core.config import GenerationSettings


def echo_reply(messages: ChatMessages) -> str:
    """Default script: echo the last user message."""
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return f"You said: {last}"


class FakeBackend:
    """Scripted stand-in for a model (profile ``fake``)."""

    def __init__(
        self,
        replies: list[str] | Callable[[ChatMessages], str] | None = None,
        *,
        delay_s: float = 0.0,
        context_window: int = 4096,
        model_id: str = "fake",
    ) -> None:
        self.model_id = model_id
        self.context_window = context_window
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
        """Words of every message plus 4 per message for its role markers, plus 2 for the answer prefix."""
        return sum(len(m["content"].split()) + 4 for m in messages) + 2

    def set_adapters_enabled(self, enabled: bool) -> None:
        """Recorded in ``adapter_switches`` (a scripted backend has no adapter layers)."""
        self.adapter_switches.append(enabled)

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
        """Stream the scripted reply word by word, at most ``max_new_tokens`` words."""
        with self._lock:
            self.prompts.append([dict(m) for m in messages])
            self.adapters.append(adapter.name if adapter else None)
            words = self._next_reply(messages).split(" ")[: settings.max_new_tokens]
            produced = 0
            for i, word in enumerate(words):
                if stop.is_set():
                    yield Finished(self.count_prompt_tokens(messages), produced, "stopped")
                    return
                if self.delay_s:
                    time.sleep(self.delay_s)
                produced += 1
                yield TextDelta(word if i == 0 else " " + word)
            yield Finished(self.count_prompt_tokens(messages), produced, "stopped" if stop.is_set() else "complete")

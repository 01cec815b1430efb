"""Per-call streaming pieces for ``model.generate``: an id streamer with incremental decoding and a stop check.

Incremental decoding keeps two offsets into the answer's ids: each step decodes a short window twice, with and
without the new tokens, and emits the difference. The tokens before the new ones give the decoder its context,
so SentencePiece leading spaces and byte-fallback pieces come out right, and a trailing U+FFFD (half of a
multi-byte character) is held back until the rest arrives. The cost per token stays constant.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from core.backends.base import TextDelta
from core.backends.timing import StreamTimer
from core.models.codec import ChatCodec

_END = object()


class IdStreamer(BaseStreamer):
    """Receives ids from ``generate`` (prompt first, skipped) and queues new text for the consumer.

    It is where the answer's tokens arrive: it notes the first one on ``timer`` and whether the model ended the
    answer with a stop id (``reason``).
    """

    def __init__(self, codec: ChatCodec, timer: StreamTimer | None = None) -> None:
        self.codec = codec
        self.timer = timer
        self.saw_stop_id = False
        """True once the model produced one of its stop ids (eos, end of turn)."""
        self.ids: list[int] = []
        self.queue: queue.Queue[Any] = queue.Queue()
        self._prefix = 0  # start of the context window
        self._read = 0  # end of the text already emitted
        self._prompt_seen = False
        self._ended = False
        self._stop = set(codec.stop_ids)

    def put(self, value: Any) -> None:
        """Called by ``generate`` with the prompt, then with each new token (a tensor, or a list of ids)."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        new = [int(i) for i in (value if isinstance(value, list) else value.reshape(-1).tolist())]
        if new and self.timer is not None:
            self.timer.token()
        self.saw_stop_id = self.saw_stop_id or any(i in self._stop for i in new)
        self.ids.extend(i for i in new if i not in self._stop)
        self._emit(final=False)

    def _emit(self, final: bool) -> None:
        """Queue the text the ids after ``_read`` add, unless it ends in half a character (and not final)."""
        if len(self.ids) == self._read:
            return
        before = self.codec.decode(self.ids[self._prefix : self._read])
        after = self.codec.decode(self.ids[self._prefix :])
        if (after.endswith("\ufffd") and not final) or len(after) <= len(before):
            if final and after != before:
                self.queue.put(after[len(before) :])
            return
        self.queue.put(after[len(before) :])
        self._prefix, self._read = self._read, len(self.ids)

    def ready_text(self) -> Iterator[TextDelta]:
        """The text queued so far, without waiting (for a consumer that feeds ``put`` itself, between tokens)."""
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, str) and item:
                yield TextDelta(item)

    def end(self) -> None:
        """Called by ``generate`` at the end: flush what was held back and signal the end (once)."""
        if self._ended:
            return
        self._ended = True
        self._emit(final=True)
        self.queue.put(_END)

    def finish_with_error(self, exc: BaseException) -> None:
        """Hand an exception from the generation thread to the consumer."""
        self._ended = True
        self.queue.put(exc)
        self.queue.put(_END)

    def reason(self, stop: threading.Event) -> str:
        """Why the answer ended: ``stopped`` (stop event), ``stop`` (a stop id) or ``length`` (max_new_tokens)."""
        if stop.is_set():
            return "stopped"
        return "stop" if self.saw_stop_id else "length"

    def items(self) -> Any:
        """Yield queued text pieces (or an exception) until the end marker."""
        while (item := self.queue.get()) is not _END:
            yield item


class StopOnEvent(StoppingCriteria):
    """Stops generation as soon as a ``threading.Event`` is set (Stop button, Ctrl-C, client gone)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)

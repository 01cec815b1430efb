"""Continuous batching for the in-process transformers backend: many answers decode together in one batch.

transformers' own engine (``model.init_continuous_batching``, the one behind ``transformers serve``) keeps a paged
KV cache and adds/removes requests between decoding steps. One router thread hands its outputs to the waiting
callers, each of which decodes its new ids incrementally (``IdStreamer``). Temperature, top-p and top-k apply per
request (greedy is top-k 1); a stop event cancels the request at once.

Not everything can be batched: an answer with a LoRA adapter (adapters are switched on the shared weights), a
seeded one (one shared generator), one with a repetition penalty (the batch engine has none) or one longer than
the cache's share goes through the backend's own ``generate`` instead; ``core.scheduler`` decides and keeps the
two kinds from running at once.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from itertools import count
from typing import Any

from core.backends.base import ChatMessages, Finished, StreamEvent, TextDelta
from core.config import GenerationSettings
from core.errors import GenerationError

PAGE_TOKENS = 256
POLL_S = 0.05


class ContinuousBatcher:
    """A continuous-batching manager over a ``TransformersBackend``'s model, started on first use."""

    def __init__(self, backend: Any, capacity: int = 8, tokens_per_answer: int = 1024) -> None:
        self.backend = backend
        self.capacity = capacity
        self.cache_tokens = capacity * tokens_per_answer
        self._manager: Any = None
        self._queues: dict[str, queue.Queue[Any]] = {}
        self._lock = threading.Lock()
        self._ids = count()

    @staticmethod
    def supported(backend: Any) -> bool:
        """True for an in-process model with plain float weights whose class offers continuous batching."""
        loaded = getattr(backend, "loaded", None)
        model = getattr(loaded, "model", None)
        if model is None or not hasattr(model, "init_continuous_batching") or loaded.quantize is not None:
            return False
        if getattr(model.config, "_attn_implementation", "") not in ("sdpa", "eager"):
            return False
        # torch's int4pack CPU kernel (core.models.lowbit_layers) crashes the process on multi-request batches
        return not any(hasattr(module, "lowbit_kind") for module in model.modules())

    def fits(self, messages: ChatMessages, settings: GenerationSettings, seed: int | None) -> bool:
        """Whether this answer can join the batch (see the module docstring)."""
        if seed is not None or settings.repetition_penalty != 1.0:
            return False
        return self.backend.count_prompt_tokens(messages) + settings.max_new_tokens <= self.cache_tokens // 2

    def _start(self) -> Any:
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        with self._lock:
            if self._manager is None:
                model, codec = self.backend.model, self.backend.codec
                config = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=40, max_new_tokens=512,
                                          eos_token_id=list(codec.stop_ids), pad_token_id=codec.stop_ids[0])
                cb = ContinuousBatchingConfig(
                    per_request_processors=True, auto_switch_to_flash=False, page_size=PAGE_TOKENS,
                    num_blocks=math.ceil(self.cache_tokens / PAGE_TOKENS), max_batch_tokens=1024,
                    max_requests_per_batch=self.capacity, allow_block_sharing=False)
                manager = model.init_continuous_batching(generation_config=config, continuous_batching_config=cb)
                # A thread inherits daemon-ness from its creator: started from a daemon thread, the batch loop never
                # keeps the process alive at exit.
                starter = threading.Thread(target=manager.start, daemon=True)
                starter.start()
                starter.join()
                threading.Thread(target=self._route, args=(manager,), name="inkstone-batch-router",
                                 daemon=True).start()
                self._manager = manager
            return self._manager

    def _route(self, manager: Any) -> None:
        """Hand each output to its caller's queue (outputs of cancelled requests are dropped)."""
        while manager.is_running():
            output = manager.get_result(timeout=0.5)
            if output is not None and (target := self._queues.get(output.request_id)) is not None:
                target.put(output)

    def stream(self, messages: ChatMessages, settings: GenerationSettings, stop: threading.Event
               ) -> Iterator[StreamEvent]:
        """Stream one answer from the batch: text as it decodes, then ``Finished``."""
        import torch

        from core.backends.streaming import IdStreamer

        manager = self._start()
        codec = self.backend.codec
        prompt = codec.prompt_ids(messages)
        rid = f"inkstone-{next(self._ids)}"
        inbox: queue.Queue[Any] = queue.Queue()
        self._queues[rid] = inbox
        streamer = IdStreamer(codec)
        streamer.put(torch.tensor(prompt))  # the streamer skips the prompt
        sampling = ({"top_k": 1} if settings.temperature <= 0 else
                    {"temperature": float(settings.temperature), "top_p": float(settings.top_p),
                     "top_k": int(settings.top_k) or 0})
        seen = 0
        finished = False
        try:
            manager.add_request(prompt, request_id=rid, max_new_tokens=settings.max_new_tokens, streaming=True,
                                eos_token_id=list(codec.stop_ids), **sampling)
            while not stop.is_set():
                try:
                    output = inbox.get(timeout=POLL_S)
                except queue.Empty:
                    if not manager.is_running():
                        raise GenerationError("The batch generation loop stopped unexpectedly: try again.") from None
                    continue
                if output.error:
                    raise GenerationError(f"Generation failed in the batch: {output.error}")
                new = output.generated_tokens[seen:]
                seen = len(output.generated_tokens)
                if new:
                    streamer.put(torch.tensor(new))
                    yield from _drain(streamer)
                if output.is_finished():
                    finished = True
                    break
        finally:
            self._queues.pop(rid, None)
            if not finished:
                manager.cancel_request(rid)
        streamer.end()
        yield from _drain(streamer)
        yield Finished(len(prompt), len(streamer.ids), "stopped" if stop.is_set() else "complete")

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until the batch loop has no request left (cancelled ones finish their current step), so the
        weights and the global random generator are the next caller's alone."""
        import time

        manager = self._manager
        if manager is None:
            return
        deadline = time.monotonic() + timeout_s
        while manager.is_running() and time.monotonic() < deadline:
            processor = manager.batch_processor
            if manager.input_queue.empty() and manager.cancel_queue.empty() and (
                    processor is None or not processor.has_pending_requests()):
                return
            time.sleep(0.005)

    def close(self) -> None:
        """Stop the batch loop (the model stays loaded)."""
        with self._lock:
            if self._manager is not None:
                self._manager.stop(block=True, timeout=10)
                self._manager = None


def _drain(streamer: Any) -> Iterator[TextDelta]:
    while True:
        try:
            item = streamer.queue.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, str) and item:
            yield TextDelta(item)

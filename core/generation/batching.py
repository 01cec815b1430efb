"""Continuous batching for the in-process transformers backend: many answers decode together in one batch.

One decode thread owns a left-padded batch over the shared model and a transformers ``DynamicCache``. Each step
feeds every running answer's last token at once: on a CPU, where a decoding step reads all the weights once,
eight answers cost little more than one. A new answer joins between steps: its prompt is prefilled alone, in
blocks (at most ``PREFILL_PER_STEP`` tokens between two steps while other answers decode, so a long prompt does
not stall them), its first token is sampled and its cache is merged into the batch's, left-padded to a common
length, with per-row positions and attention mask. A finished or cancelled answer leaves before the next step,
and padding columns that no remaining row needs are cut off.

Sampling is per answer, with ``core.generation.sampling`` (the sampler the backend's ``generate`` uses too): repetition
penalty, temperature, top-k and top-p, greedy at temperature 0; each answer stops at the model's stop ids or its
own ``max_new_tokens``, and its stop event ends it before the next step. A grammar-constrained answer
(``core.generation.constrain``) is batched too: its row is masked to what its grammar allows before it is sampled.
The decode thread also turns each new id into text (the caller's ``IdStreamer``), between steps.

Why not transformers' own engine (``init_continuous_batching``, behind ``transformers serve``): on CPU its paged
cache, per-step scheduling and output routing cost more than the batched matmuls save (8 clients reached 1.6x one
client on qwen2.5-coder int8, where this loop reaches over 3x); its packed varlen batches also gave the low-bit
kernels shapes they crashed on before the layers copied their inputs.

A vision-language model (``core.models.vision``) is not batched at all (``supported``): its prompts carry pixel
tensors and position ids of their own (Qwen2-VL's 3-D rotary positions), so each answer runs alone, in turn, through
the backend's ``generate`` behind the same fair queue.

Not batched (``fits`` says no): an answer with a LoRA adapter (adapters are switched on the shared weights), a
seeded one (its sampling must not depend on what else runs), one longer than the batch's token budget, or one that
prompt-lookup decoding would speed up (``core.generation.lookup.prompt_lookup_tokens``) arriving while the batch is
empty; it goes through the backend's own ``generate``, and ``core.generation.scheduler`` keeps the two kinds
from running at once.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from core.backends.base import Backend, ChatMessages, StreamEvent
from core.backends.timing import StreamTimer
from core.backends.transformers_backend import as_generation_error
from core.config import GenerationSettings
from core.errors import GenerationError, ModelError
from core.generation import sampling
from core.generation.batch_parts import BLOCK, ROWS_ATTENTION, PrefixCache, left_pad, register_rows_attention
from core.generation.lookup import prompt_lookup_tokens
from core.generation.threads import release_idle_workers

_END = object()
_TEXT = object()
WAIT_S = 0.1
"""How long the idle decode thread waits for a new answer before checking whether it should stop."""
PREFILL_PER_STEP = 4 * BLOCK
"""Prompt tokens prefilled between two decoding steps while answers are decoding (a 2,000-token prompt then
costs each running answer ~16 slower steps instead of one pause of several seconds on a CPU)."""


@dataclass(eq=False)
class _Answer:
    """One answer in the batch: what the caller asked for and what the decode thread hands back."""

    prompt: list[int]
    settings: GenerationSettings
    stop: threading.Event
    streamer: Any = None
    """The caller's ``IdStreamer``: the decode thread feeds it each new id (see ``_deliver``)."""
    out: queue.Queue[Any] = field(default_factory=queue.Queue)
    """``_TEXT`` when the streamer has new text, then ``_END`` (or an exception, then ``_END``)."""
    produced: int = 0
    cancelled: bool = False
    seen: set[int] = field(default_factory=set)
    """Ids in the context (prompt and answer), for the repetition penalty."""
    seen_ids: Any = None
    cache: Any = None
    """While the prompt is being prefilled: its own ``DynamicCache`` (the prompt's ids in ``ids``)."""
    ids: Any = None
    constraint: Any = None
    """The answer's grammar state (``core.generation.constrain.Constraint``), or None."""

    @property
    def gone(self) -> bool:
        return self.cancelled or self.stop.is_set()

    def end(self, error: BaseException | None = None) -> None:
        """Tell the caller this answer is over (after ``error``, when it failed); its prefill state is dropped."""
        self.cache = self.ids = None
        if error is not None:
            self.out.put(error)
        self.out.put(_END)


class ContinuousBatcher:
    """A batched decode loop over an in-process backend's model (``Backend.loaded``), started on first use."""

    def __init__(self, backend: Backend, capacity: int = 8, tokens_per_answer: int = 1024,
                 prefill_per_step: int = PREFILL_PER_STEP) -> None:
        if backend.loaded is None:
            raise ModelError(f"The model {backend.model_id!r} does not run in-process: it cannot be batched here.")
        self.backend = backend
        self.loaded = backend.loaded
        """The model decoded in the batch: its weights (``model``), ``codec`` and ``device``."""
        self.capacity = capacity
        self.prefill_per_step = prefill_per_step
        self.cache_tokens = capacity * tokens_per_answer
        self._inbox: queue.Queue[_Answer] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._idle_lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        model = self.loaded.model
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self._stop_ids = set(self.loaded.codec.stop_ids)
        # the batch (decode thread only)
        self.stats = {"steps": 0, "rows": 0, "step_s": 0.0, "prefill_s": 0.0}
        """Decoding steps, rows decoded over all steps, seconds in steps and in prefills (for benchmarks)."""
        self.prefixes = PrefixCache()
        """Keys and values of recent prompts (decode thread only)."""
        self._rows: list[_Answer] = []
        self._waiting: list[_Answer] = []  # taken in, prompt not fully prefilled yet (arrival order)
        self._cache: Any = None
        self._mask: Any = None  # [rows, columns] 1 for real tokens, 0 for left padding
        self._positions: Any = None  # [rows] position of each row's next token
        self._last: Any = None  # [rows] each row's last sampled token (the next input)

    @property
    def running(self) -> int:
        """Answers in the batch now."""
        return len(self._rows)

    @staticmethod
    def supported(backend: Backend) -> bool:
        """True for an in-process causal LM whose attention layers all fit one plain ``DynamicCache``."""
        loaded = backend.loaded
        if loaded is None or loaded.quantize is not None or loaded.images:
            return False  # a vision-language model's prefill takes pixel tensors: its answers run alone, queued
        model = loaded.model  # the transformers model: what it supports is read from its class and config
        if not hasattr(model, "generate"):
            return False
        config = model.config.get_text_config(decoder=True)
        if getattr(model.config, "is_encoder_decoder", False) or not model._supports_default_dynamic_cache():
            return False
        return all(kind == "full_attention" for kind in (getattr(config, "layer_types", None) or ["full_attention"]))

    def fits(self, messages: ChatMessages, settings: GenerationSettings, seed: int | None) -> bool:
        """Whether this answer can join the batch (see the module docstring)."""
        if seed is not None:
            return False
        if self._idle.is_set() and self._inbox.empty() and prompt_lookup_tokens(
                settings, messages, self.loaded.device):
            return False  # alone anyway: the backend's generate can draft from the prompt (faster where it copies)
        return self.backend.count_prompt_tokens(messages) + settings.max_new_tokens <= self.cache_tokens // 2

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._closing.clear()
                self._thread = threading.Thread(target=self._run, name="inkstone-batch", daemon=True)
                self._thread.start()

    def stream(self, messages: ChatMessages, settings: GenerationSettings, stop: threading.Event,
               constraint: Any = None) -> Iterator[StreamEvent]:
        """Stream one answer from the batch: text as it decodes, then ``Finished``; ``constraint`` masks this
        answer's row to what its grammar allows."""
        from core.backends.streaming import IdStreamer

        timer = StreamTimer()
        self._start()
        codec = self.loaded.codec
        streamer = IdStreamer(codec, timer)
        answer = _Answer(codec.prompt_ids(messages), settings, stop, streamer, constraint=constraint)
        streamer.put(answer.prompt)  # the streamer skips the prompt
        release_idle_workers()  # this thread only waits from here on (see core.generation.threads)
        with self._idle_lock:  # not idle from here: the loop cannot see an empty inbox in between
            self._idle.clear()
            self._inbox.put(answer)
        finished = False
        try:
            while True:
                item = answer.out.get()
                if item is _END:
                    finished = True
                    break
                if isinstance(item, BaseException):
                    raise as_generation_error(item) from item
                yield from streamer.ready_text()
        finally:
            if not finished:
                answer.cancelled = True  # the consumer went away: the row leaves before the next step
        streamer.end()
        yield from streamer.ready_text()
        yield timer.finished(len(answer.prompt), len(streamer.ids), streamer.reason(stop))

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until the decode loop has no answer left (cancelled ones leave before the next step), so the
        weights and the global random generator are the next caller's alone."""
        self._idle.wait(timeout_s)

    def close(self) -> None:
        """Stop the decode loop (the model stays loaded); answers still in it end with an error."""
        self._closing.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

    # -- the decode thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        import torch

        register_rows_attention()
        with torch.inference_mode():
            while not self._closing.is_set():
                self._drop_gone()
                if not self._rows and not self._waiting and not self._idle.is_set() and self._inbox.empty():
                    release_idle_workers()  # an answer that runs alone next gets the cores' workers
                    with self._idle_lock:
                        if self._inbox.empty():
                            self._idle.set()
                self._admit(wait=not self._rows and not self._waiting)
                if self._waiting:
                    self._prefill()
                if not self._rows:
                    continue
                started = time.perf_counter()
                self.stats["steps"] += 1
                self.stats["rows"] += len(self._rows)
                try:
                    self._step()
                except Exception as exc:  # noqa: BLE001 - handed to every caller, which raises GenerationError
                    self._fail_all(exc)
                self.stats["step_s"] += time.perf_counter() - started
            self._fail_all(GenerationError("The model was unloaded during this answer: try again."))
            self._idle.set()

    def _admit(self, wait: bool) -> None:
        """Take in the answers that arrived (waiting a little for one when nothing runs)."""
        while len(self._rows) + len(self._waiting) < self.capacity:
            try:
                answer = self._inbox.get(timeout=WAIT_S) if wait else self._inbox.get_nowait()
            except queue.Empty:
                return
            wait = False
            if answer.gone:
                answer.end()
                continue
            self._waiting.append(answer)

    def _forward(self, ids: Any, cache: Any, **kwargs: Any) -> Any:
        return self.loaded.model(input_ids=ids, use_cache=True, **{self._cache_arg: cache}, **kwargs).logits[:, -1]

    def _prefill(self) -> None:
        """Prefill waiting prompts in arrival order: all of them while nothing decodes, else about
        ``prefill_per_step`` tokens."""
        spent = 0
        while self._waiting and (not self._rows or spent < self.prefill_per_step):
            answer = self._waiting[0]
            if answer.gone:  # stopped while its prompt was being read
                self._waiting.remove(answer)
                answer.end()
                continue
            started = time.perf_counter()
            try:
                spent += self._prefill_block(answer)
            except Exception as exc:  # noqa: BLE001 - this answer fails, the batch goes on
                if answer in self._waiting:
                    self._waiting.remove(answer)
                answer.end(exc)
            self.stats["prefill_s"] += time.perf_counter() - started

    def _prefill_block(self, answer: _Answer) -> int:
        """Run the next block of ``answer``'s prompt (its last block: sample the first token and join the batch);
        the number of prompt tokens run.

        The prompt runs in blocks of ``BLOCK`` tokens from its start, and the leading blocks it shares with a
        recent prompt are taken from ``prefixes`` instead: a block's keys and values are then the same bits
        whether computed now or reused (attention kernels round differently for other splits), so an answer
        does not depend on what was asked before it, nor on how its blocks were spread between steps.
        """
        import torch
        from transformers import DynamicCache

        model = self.loaded.model
        if answer.cache is None:
            answer.cache = DynamicCache()
            for i, (keys, values) in enumerate(self.prefixes.lookup(answer.prompt)):
                answer.cache.update(keys, values, i)
            answer.ids = torch.tensor([answer.prompt], dtype=torch.long, device=model.device)
        n, begin = len(answer.prompt), answer.cache.get_seq_length()
        if begin + BLOCK < n:  # keys and values only: no head for the logits
            model.base_model(input_ids=answer.ids[:, begin:begin + BLOCK], use_cache=True,
                             **{self._cache_arg: answer.cache})
            return BLOCK
        logits = self._forward(answer.ids[:, begin:], answer.cache, logits_to_keep=1)
        self._waiting.remove(answer)
        cache, answer.cache, answer.ids = answer.cache, None, None
        self._join(answer, cache, logits)
        return n - begin

    def _join(self, answer: _Answer, cache: Any, logits: Any) -> None:
        """Sample ``answer``'s first token from its prompt's ``logits`` and merge its ``cache`` into the batch."""
        import torch

        model = self.loaded.model
        n = len(answer.prompt)
        self.prefixes.store(answer.prompt, [(layer.keys, layer.values) for layer in cache.layers])
        answer.seen.update(answer.prompt)
        token = self._pick(logits, [answer])[0]
        if not self._rows:
            self._cache = cache
            self._mask = torch.ones(1, n, dtype=torch.long, device=model.device)
            self._positions = torch.tensor([n], device=model.device)
            self._last = torch.tensor([token], device=model.device)
        else:
            width = max(self._mask.shape[1], n)
            for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
                mine.keys = torch.cat([left_pad(mine.keys, width), left_pad(theirs.keys, width)])
                mine.values = torch.cat([left_pad(mine.values, width), left_pad(theirs.values, width)])
            row_mask = torch.ones(1, n, dtype=torch.long, device=model.device)
            self._mask = torch.cat([left_pad(self._mask, width, dim=1), left_pad(row_mask, width, dim=1)])
            self._positions = torch.cat([self._positions, self._positions.new_tensor([n])])
            self._last = torch.cat([self._last, self._last.new_tensor([token])])
        self._rows.append(answer)
        if self._deliver(answer, token):
            self._remove([len(self._rows) - 1])

    def _step(self) -> None:
        """One decoding step for every row of the batch."""
        import torch

        self._mask = torch.cat([self._mask, self._mask.new_ones(len(self._rows), 1)], dim=1)
        model = self.loaded.model
        kwargs: dict[str, Any] = {}
        if model.config._attn_implementation == "sdpa":
            model.config._attn_implementation = ROWS_ATTENTION
            kwargs["row_starts"] = (self._mask.shape[1] - self._mask.sum(1)).tolist()
        try:
            logits = self._forward(self._last[:, None], self._cache, attention_mask=self._mask,
                                   position_ids=self._positions[:, None], **kwargs)
        finally:
            if kwargs:
                model.config._attn_implementation = "sdpa"
        tokens = self._pick(logits, self._rows)
        self._positions += 1
        self._last = self._last.new_tensor(tokens)
        done = [i for i, (answer, token) in enumerate(zip(self._rows, tokens, strict=True))
                if self._deliver(answer, token)]
        self._remove(done)

    def _deliver(self, answer: _Answer, token: int) -> bool:
        """Hand ``token`` to its caller; True when the answer is complete."""
        answer.produced += 1
        if answer.constraint is not None:
            answer.constraint.consume(token)
        # Decoded here, between steps: decoding in the caller's thread while the next step's matmuls run on
        # every core slowed those steps by ~10% on 2 cores (a lone answer: 38 vs 35 ms per token).
        answer.streamer.put([token])
        answer.out.put(_TEXT)
        if token in self._stop_ids or answer.produced >= answer.settings.max_new_tokens:
            answer.end()
            return True
        if token not in answer.seen:
            answer.seen.add(token)
            answer.seen_ids = None
        return False

    def _drop_gone(self) -> None:
        for answer in [answer for answer in self._waiting if answer.gone]:
            self._waiting.remove(answer)
            answer.end()
        gone = [i for i, answer in enumerate(self._rows) if answer.gone]
        for i in gone:
            self._rows[i].end()
        self._remove(gone)

    def _remove(self, indices: list[int]) -> None:
        """Take these rows out of the batch and cut the padding columns no remaining row needs."""
        if not indices:
            return
        keep = [i for i in range(len(self._rows)) if i not in set(indices)]
        self._rows = [self._rows[i] for i in keep]
        if not self._rows:
            self._cache = self._mask = self._positions = self._last = None
            return
        import torch

        index = torch.tensor(keep, device=self._mask.device)
        mask = self._mask.index_select(0, index)
        start = int((mask.sum(0) > 0).nonzero()[0])
        self._mask = mask[:, start:]
        self._positions, self._last = self._positions[index], self._last[index]
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]

    def _fail_all(self, exc: BaseException) -> None:
        for answer in self._rows + self._waiting:
            answer.end(exc)
        self._rows, self._waiting = [], []
        self._cache = self._mask = self._positions = self._last = None
        while True:
            try:
                answer = self._inbox.get_nowait()
            except queue.Empty:
                return
            answer.end(exc)

    def _pick(self, logits: Any, rows: list[_Answer]) -> list[int]:
        """The next token of each row, with its own settings (``core.generation.sampling``, as ``generate``
        picks it)."""
        import torch

        logits = logits.float()
        tokens = logits.argmax(-1).tolist()  # every plain greedy row at once
        for i, answer in enumerate(rows):
            if sampling.is_plain_argmax(answer.settings) and answer.constraint is None:
                continue
            context = None
            if answer.settings.repetition_penalty != 1.0:  # the penalty needs the ids of the context
                if answer.seen_ids is None:
                    answer.seen_ids = torch.tensor(sorted(answer.seen), device=logits.device)
                context = answer.seen_ids[None]
            row = logits[i : i + 1] if answer.constraint is None else answer.constraint.allow(logits[i : i + 1])
            scores = sampling.process(context, row, answer.settings)
            tokens[i] = int(sampling.pick(scores, answer.settings)[0])
        return tokens

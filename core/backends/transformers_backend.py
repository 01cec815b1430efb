"""The in-process transformers backend: one loaded model, one generation at a time, streamed per call."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from core.backends.base import AdapterSpec, Capabilities, ChatMessages, ModelInfo, StreamEvent, TextDelta
from core.backends.streaming import IdStreamer, StopOnEvent
from core.backends.timing import StreamTimer
from core.config import GenerationSettings
from core.errors import GenerationError, ModelError
from core.generation.threads import release_idle_workers
from core.models.loader import LoadedModel


class TransformersBackend:
    """Streams answers from a model loaded by ``core.models.loader``."""

    def __init__(self, loaded: LoadedModel, engine_note: str | None = None) -> None:
        self.capabilities = Capabilities(seed=True, max_concurrent=1, adapters=True, grammar=True,
                                         images=loaded.images)
        """Seeded sampling (the torch generator, seeded under the lock), one answer at a time, PEFT LoRA adapters,
        grammar-constrained sampling; pictures for a vision-language model (``core.models.vision``)."""
        self.loaded = loaded
        self.model = loaded.model
        self.codec = loaded.codec
        self.model_id = loaded.model_id
        self.context_window = loaded.context_window
        self._lock = threading.Lock()
        self._peft: Any = None
        """The PeftModel wrapping ``model`` once the first adapter is loaded; adapters are then switched in place."""
        self._engine_note = engine_note
        """Why PyTorch runs this model where llama.cpp could have (not built, did not start); None otherwise."""
        self._adapter_files: dict[str, tuple[int, int] | None] = {}
        """Per loaded adapter, the (mtime, size) of its weights file, to notice a persona retrained in place."""

    def _use_adapter(self, adapter: AdapterSpec | None) -> AbstractContextManager[Any]:
        """Make ``adapter`` (or the bare base model) active for one answer; call with the lock held.

        Each adapter is loaded once and switched with ``set_adapter``; "no adapter" disables them for the
        duration of the answer. The base model is never reloaded.
        """
        if adapter is None:
            return self._peft.disable_adapter() if self._peft is not None else nullcontext()
        from safetensors import SafetensorError

        version = adapter.version()
        try:
            if self._peft is None:
                from peft import PeftModel

                self._peft = PeftModel.from_pretrained(self.model, str(adapter.path), adapter_name=adapter.name)
                self._peft.eval()
            elif adapter.name not in self._peft.peft_config:
                self._peft.load_adapter(str(adapter.path), adapter_name=adapter.name)
            elif self._adapter_files.get(adapter.name) != version:  # retrained under the same id: load the new one
                self._peft.delete_adapter(adapter.name)
                self._peft.load_adapter(str(adapter.path), adapter_name=adapter.name)
            self._adapter_files[adapter.name] = version
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as exc:
            raise ModelError(
                f"The LoRA adapter of persona {adapter.name!r} ({adapter.path}) does not fit the loaded model "
                f"{self.model_id}: {exc}. Load the model it was trained for, or pick another persona."
            ) from None
        self._peft.set_adapter(adapter.name)
        return nullcontext()

    def set_adapters_enabled(self, enabled: bool) -> None:
        """Turn the loaded LoRA layers on or off (off while batched answers run on the shared base weights)."""
        if self._peft is not None:
            base = self._peft.base_model
            (base.enable_adapter_layers if enabled else base.disable_adapter_layers)()

    @property
    def _runner(self) -> Any:
        return self._peft if self._peft is not None else self.model

    @property
    def busy(self) -> bool:
        """True while an answer (from any tab or thread) is being generated."""
        return self._lock.locked()

    def info(self) -> ModelInfo:
        """Model id, context window, device, dtype, quantization and load time of the loaded model."""
        lm = self.loaded
        auto = lm.cpu_weights_auto
        return ModelInfo(self.model_id, self.context_window, "transformers", lm.device, lm.dtype, lm.quantize,
                         lm.load_seconds, lm.cpu_weights, auto["summary"] if auto else None, self._engine_note)

    def count_prompt_tokens(self, messages: ChatMessages) -> int:
        """Exact prompt length in the model's chat format (a picture's image tokens included)."""
        if self.loaded.images:
            return self.codec.count(messages)  # type: ignore[attr-defined]
        return len(self.codec.prompt_ids(messages))

    def _prompt(self, messages: ChatMessages) -> tuple[list[int], dict[str, Any]]:
        """The prompt's ids and the tensors ``generate`` takes for it: ids and mask, plus the pixel tensors of a
        vision-language model's processor (moved to the model's device, floats in its dtype)."""
        import torch

        if self.loaded.images:
            inputs = self.codec.prompt_inputs(messages)  # type: ignore[attr-defined]
            dtype = self.model.dtype
            tensors = {k: v.to(self.model.device, dtype=dtype if v.is_floating_point() else None)
                       for k, v in inputs.items() if isinstance(v, torch.Tensor)}
            return [int(i) for i in inputs["input_ids"][0].tolist()], tensors
        prompt = self.codec.prompt_ids(messages)
        input_ids = torch.tensor([prompt], dtype=torch.long, device=self.model.device)
        return prompt, {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}

    def _generate_kwargs(
        self, prompt: list[int], inputs: dict[str, Any], settings: GenerationSettings, messages: ChatMessages,
        constraint: Any = None,
    ) -> dict[str, Any]:
        """``generate`` arguments shared by streaming and non-streaming calls (prompt lookup decided per prompt;
        never with a grammar, which checks one token at a time, nor with pictures)."""
        from core.generation.lookup import prompt_lookup_tokens
        from core.generation.sampling import generate_kwargs

        kwargs = dict(
            **inputs,
            eos_token_id=self.codec.stop_ids,
            pad_token_id=getattr(self.codec, "pad_id", None) or self.codec.stop_ids[0],
            **generate_kwargs(settings),
        )
        if constraint is not None:
            from core.generation.constrain import GrammarProcessor

            kwargs["logits_processor"].insert(0, GrammarProcessor(constraint, len(prompt)))
        elif not self.loaded.images and (lookup := prompt_lookup_tokens(settings, messages, self.loaded.device)):
            kwargs["prompt_lookup_num_tokens"] = lookup  # eos/length crop drafts; stop strings are cut on text
        return kwargs

    def generate_ids(self, messages: ChatMessages, settings: GenerationSettings) -> list[int]:
        """New token ids for ``messages`` without streaming (a final stop id included), for debugging."""
        import torch

        prompt, inputs = self._prompt(messages)
        with self._lock, self._use_adapter(None), torch.inference_mode():
            out = self._runner.generate(**self._generate_kwargs(prompt, inputs, settings, messages))
        return [int(i) for i in out[0, len(prompt) :].tolist()]

    def stream(
        self,
        messages: ChatMessages,
        settings: GenerationSettings,
        stop: threading.Event,
        adapter: AdapterSpec | None = None,
        seed: int | None = None,
        constraint: Any = None,
    ) -> Iterator[StreamEvent]:
        """Generate in a worker thread and yield text as it is decoded (see ``Backend.stream``); ``seed`` seeds the
        torch generator once the answer holds the model, so a seeded answer samples the same every time;
        ``constraint`` (``core.generation.constrain.Constraint``) masks each step to what its grammar allows."""
        import torch

        timer = StreamTimer()
        prompt, inputs = self._prompt(messages)  # a picture is preprocessed here, before the answer takes the model
        with self._lock, self._use_adapter(adapter):
            if seed is not None:
                torch.manual_seed(seed)
            streamer = IdStreamer(self.codec, timer)
            kwargs = self._generate_kwargs(prompt, inputs, settings, messages, constraint)
            kwargs.update(streamer=streamer, stopping_criteria=[StopOnEvent(stop)])

            def work() -> None:
                try:
                    with torch.inference_mode():
                        self._runner.generate(**kwargs)
                    streamer.end()
                except BaseException as exc:  # handed to the consumer thread, which re-raises it
                    streamer.finish_with_error(exc)

            thread = threading.Thread(target=work, name="inkstone-generate", daemon=True)
            release_idle_workers()  # this thread only waits from here on (see core.generation.threads)
            thread.start()
            drained = False
            try:
                for item in streamer.items():
                    if isinstance(item, BaseException):
                        raise as_generation_error(item) from item
                    yield TextDelta(item)
                drained = True
            finally:
                if not drained:
                    stop.set()  # the consumer went away or failed: end generation so the lock is released promptly
                thread.join()
            yield timer.finished(len(prompt), len(streamer.ids), streamer.reason(stop))


def as_generation_error(exc: BaseException) -> GenerationError:
    """The error a user sees for ``exc`` raised while generating (out of memory names the fix)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
        return GenerationError(
            "The GPU ran out of memory during this answer (the model is still loaded and usable): lower "
            "max_new_tokens or max_turns, start a new session, or load the model with --quantize 4bit."
        )
    if isinstance(exc, MemoryError):
        return GenerationError(
            "The machine ran out of memory during this answer: lower max_new_tokens or max_turns, close other "
            "programs, or use a smaller model."
        )
    return GenerationError(f"Generation failed: {type(exc).__name__}: {exc}")


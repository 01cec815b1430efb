"""Load a model profile into memory: device and dtype choice, GGUF conversion cache, checks before loading.

Bundled GGUF models are dequantized by transformers on the first load and saved as safetensors under
``<home>/cache/models``; later loads read that copy. A local directory is checked before any weights load
(``core.models.checkpoint``: config.json readable, no remote code unless ``trust_remote_code`` was given
explicitly, tokenizer files present; ``core.models.modelinfo``: the load fits in free memory), then loads
natively (ChatGLM3 through ``core.chatglm3`` without remote code). ``quantize`` uses bitsandbytes on CUDA or CPU.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import ModelError
from core.generation.threads import release_idle_workers
from core.models import bundled, lowbit
from core.models.autoweights import gguf_shapes
from core.models.checkpoint import check_remote_code, check_tokenizer_files, context_window_of, read_config
from core.models.codec import ChatCodec, ChatGLM3Codec, HFChatCodec
from core.models.modelinfo import check_fits, inspect_directory
from core.models.registry import ModelProfile
from core.models.vision import is_vision_config
from core.storage.dirswap import recover, replace_dir

Progress = Callable[[str], None]


@dataclass
class LoadedModel:
    """A model in memory with its codec and how it was loaded."""

    model_id: str
    model: Any
    codec: ChatCodec
    context_window: int
    device: str
    dtype: str
    quantize: str | None
    load_seconds: float
    from_cache: bool
    cpu_weights: str | None = None
    """int4/int8/bf16/fp32 when ``cpu_weights`` chose the weights held on the CPU (core.models.lowbit)."""
    images: bool = False
    """A vision-language model (``core.models.vision``): its codec takes pictures in user messages."""
    cpu_weights_auto: dict[str, Any] | None = None
    """With ``cpu_weights = "auto"``: the choice, each candidate's timed figure and what was left out, and why."""


def pick_device(settings: Settings) -> str:
    """``cuda`` or ``cpu`` from the ``device`` setting; asking for CUDA without one is an error."""
    import torch

    if settings.device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if settings.device == "cuda":
        raise ModelError("device=cuda was asked for but torch sees no CUDA GPU: use --device cpu or auto.")
    return "cpu"


def pick_dtype(settings: Settings, device: str) -> Any:
    """The torch dtype: bf16 on CUDA where supported (else fp16), fp32 on CPU, unless set explicitly."""
    import torch

    if settings.dtype != "auto":
        return getattr(torch, settings.dtype)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quantization_config(settings: Settings, device: str, compute_dtype: Any) -> Any:
    """A bitsandbytes config for ``quantize`` (nf4 + double quant for 4-bit), or None.

    bitsandbytes runs on CUDA and (since 0.45) on CPU; on CPU it saves memory but is slower than float32/bfloat16.
    """
    if settings.quantize is None:
        return None
    try:
        from transformers import BitsAndBytesConfig
        from transformers.utils import is_bitsandbytes_available
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        raise ModelError("--quantize needs transformers with bitsandbytes support.") from None
    if not is_bitsandbytes_available():
        raise ModelError(
            f"--quantize {settings.quantize} needs the bitsandbytes package on {device}: "
            "`pip install bitsandbytes`, or drop --quantize."
        )
    if settings.quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def _convert_gguf(source: bundled.GGUFSource, dest: Path | None, cache_root: Path, progress: Progress
                  ) -> tuple[Any, Any]:
    """Load a bundled GGUF (dequantized to fp32) and save it as safetensors at ``dest`` (None: keep it in memory
    only, and the joined GGUF for ``_repacker``); return model, tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"Verifying the bundled model files of {source.profile_id}…")
    gguf = bundled.assemble(source, cache_root / "gguf")
    progress(f"Converting {source.profile_id} from GGUF (first start only, 15-40 s)…")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if dest is None:  # the caller caches another form of it (and drops the joined GGUF: _drop_joined)
        return model, tokenizer
    with replace_dir(dest) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "inkstone-source.json").write_text(_source_json(source), encoding="utf-8")
    _drop_joined(source, cache_root)  # the safetensors copy replaces it; the packages still hold the original
    return model, tokenizer


def _repacker(source: bundled.GGUFSource, cache_root: Path) -> lowbit.Repack:
    """int4 codes of a float model taken from the bundled GGUF's own 4-bit blocks (core.models.gguf_blocks)."""
    def repack(model: Any) -> dict[str, dict[str, Any]]:
        from core.models.gguf_blocks import repack_int4

        return repack_int4(bundled.assemble(source, cache_root / "gguf"), model)[0]

    return repack


def _drop_joined(source: bundled.GGUFSource, cache_root: Path) -> None:
    """Remove the GGUF joined from package slices in the cache (never a package's own file)."""
    gguf = cache_root / "gguf" / source.gguf_name
    if len(source.parts) > 1 or source.sha256 is not None:
        gguf.unlink(missing_ok=True)


def _source_json(source: bundled.GGUFSource) -> str:
    return json.dumps({"profile": source.profile_id, "gguf": source.gguf_name, "sha256": source.sha256})


def _load_hf_dir(
    path: Path, settings: Settings, device: str, dtype: Any, say: Progress | None = None,
    repack: lowbit.Repack | None = None, model_key: str | None = None,
) -> tuple[Any, Any]:
    """Tokenizer and model of a Hugging Face directory; ModelError names the file that failed and the fix."""
    from huggingface_hub.errors import StrictDataclassError
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": settings.trust_remote_code}
    qconfig = quantization_config(settings, device, dtype)
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    if device == "cuda":
        kwargs["device_map"] = "auto"
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=settings.trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RuntimeError) as exc:
        raise ModelError(
            f"Could not load the tokenizer in {path} ({type(exc).__name__}: {_first_line(exc)}): check that "
            "tokenizer.json / tokenizer_config.json are complete, or re-download the model."
        ) from None
    try:
        if lowbit.applies(settings, device):  # int4/int8/bf16 weights on the CPU, cached once packed
            from core.models.packstream import hf_source

            model = lowbit.load_for_cpu(path, settings, lambda dt: AutoModelForCausalLM.from_pretrained(
                str(path), **{**kwargs, "dtype": dt}), say, repack, model_key, lambda: hf_source(path))
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError, StrictDataclassError) as exc:
        raise _weights_error(path, exc) from None
    return model, tokenizer


def _weights_error(path: Path, exc: BaseException) -> ModelError:
    """What a user reads when a directory's weights do not load: the path, the cause, the fix."""
    return ModelError(
        f"Could not load the model weights in {path} ({type(exc).__name__}: {_first_line(exc)}): check that "
        "the download is complete (missing or corrupt weight files), or re-download the model."
    )


def _first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (transformers appends long advice paragraphs)."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def load_model(profile: ModelProfile, settings: Settings, progress: Progress | None = None) -> LoadedModel:
    """Load ``profile`` for generation; ModelError says what is wrong and how to fix it."""
    from transformers.utils import logging as hf_logging

    from knowledge.embedders import quiet_load

    hf_logging.disable_progress_bar()  # progress goes through ``progress``; keep stderr clean
    with quiet_load():  # transformers' model code imports torchao, which warns about CUDA kernels we never use
        import transformers.modeling_utils  # noqa: F401
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    device = pick_device(settings)
    dtype = pick_dtype(settings, device)
    from_cache = False
    if profile.source == "bundled":
        source = bundled.source_for(profile.id)
        cached = settings.cache_dir / "models" / f"{profile.id}-{source.fingerprint()}"
        recover(cached)  # a conversion killed while swapping left the previous copy aside
        packed = None
        repack = _repacker(source, settings.cache_dir)
        try:
            if lowbit.applies(settings, device):  # int4/int8: only the packed copy is cached
                packed = lowbit.bundled_for_cpu(
                    cached, settings, lambda: _convert_gguf(source, None, settings.cache_dir, say),
                    {"inkstone-source.json": _source_json(source)}, say, repack, profile.id,
                    lambda: gguf_shapes(bundled.assemble(source, settings.cache_dir / "gguf")))
            if packed is not None:
                model, tokenizer, from_cache = packed
            elif (cached / "config.json").is_file() and (cached / "inkstone-source.json").is_file():
                say(f"Loading {profile.title} from the converted cache…")
                model, tokenizer = _load_hf_dir(cached, settings, device, dtype, say, repack, profile.id)
                from_cache = True
            else:
                model, tokenizer = _convert_gguf(source, cached, settings.cache_dir, say)
                if lowbit.applies(settings, device):
                    model = lowbit.load_for_cpu(cached, settings, lambda _dt: model, say, repack, profile.id)
                if device != "cpu" or settings.quantize or str(dtype) != "torch.float32":
                    del model
                    model, tokenizer = _load_hf_dir(cached, settings, device, dtype)
        finally:
            _drop_joined(source, settings.cache_dir)
        codec: ChatCodec = HFChatCodec(tokenizer, model.generation_config, profile.title)
    elif profile.source == "local" and profile.path is not None:
        model, codec = _load_local(profile.path, settings, device, dtype, say)
    else:
        raise ModelError(f"Profile {profile.id!r} has no weights to load.")
    model.eval()
    if device == "cpu" and settings.quantize is None:
        model.to("cpu")
    release_idle_workers()  # this thread's loading is done; answers decode on others (see core.generation.threads)
    return LoadedModel(
        model_id=profile.id,
        model=model,
        codec=codec,
        context_window=context_window_of(model.config),
        device=device,
        dtype=str(model.dtype).removeprefix("torch."),
        quantize=settings.quantize,
        load_seconds=time.perf_counter() - started,
        from_cache=from_cache,
        cpu_weights=getattr(model, "inkstone_cpu_weights", None),
        images=bool(getattr(codec, "images", False)),
        cpu_weights_auto=_auto_record(model),
    )


def _auto_record(model: Any) -> dict[str, Any] | None:
    made = getattr(model, "inkstone_auto", None)
    if made is None:
        return None
    from dataclasses import asdict

    return {**asdict(made), "summary": made.summary(), "repacked_int4_layers": len(
        getattr(model, "inkstone_repacked", []))}


def _load_local(path: Path, settings: Settings, device: str, dtype: Any, say: Progress) -> tuple[Any, ChatCodec]:
    """A local directory: config checked, remote code refused, memory checked, then ChatGLM3 or Hugging Face."""
    raw = read_config(path)
    chatglm3 = raw.get("model_type") == "chatglm"  # loads natively; its auto_map is never used
    chatglm3 = chatglm3 or _merged_chatglm3(path)  # ``core merge`` output: native GLM weights + tokenizer.model
    if not chatglm3:
        check_remote_code(path, settings.trust_remote_code, raw)
        check_tokenizer_files(path)
    if not settings.trust_remote_code:  # building a config with remote code would run that code
        info, fit_dtype = inspect_directory(path), str(dtype).removeprefix("torch.")  # the config checked first
        if lowbit.applies(settings, device) and not is_vision_config(raw):  # the weights cpu_weights holds
            kind = lowbit.decide(settings, path, None, say)[0]
            fit_dtype = {"bf16": "bfloat16", "fp32": "float32"}.get(kind, kind)
        check_fits(info, device, fit_dtype, settings.quantize)
    if settings.quantize and device == "cpu":
        say(f"Quantizing to {settings.quantize} on the CPU: it saves memory but answers more slowly than float32.")
    if chatglm3:
        return _load_chatglm3(path, settings, device, dtype, say)
    if is_vision_config(raw):
        return _load_vision(path, settings, device, dtype, say)
    say(f"Loading {path.name}…")
    model, tokenizer = _load_hf_dir(path, settings, device, dtype, say)
    return model, HFChatCodec(tokenizer, model.generation_config, str(path))


def _load_vision(path: Path, settings: Settings, device: str, dtype: Any, say: Progress) -> tuple[Any, ChatCodec]:
    """An image-text-to-text model and its processor (float or bitsandbytes weights; the CPU's int8/int4 packing
    is for text models)."""
    from huggingface_hub.errors import StrictDataclassError
    from safetensors import SafetensorError
    from transformers import AutoModelForImageTextToText

    from core.models.vision import VisionCodec, load_processor

    say(f"Loading {path.name} (a vision-language model)…")
    processor = load_processor(path)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": False}
    if (qconfig := quantization_config(settings, device, dtype)) is not None:
        kwargs["quantization_config"] = qconfig
    if device == "cuda":
        kwargs["device_map"] = "auto"
    try:
        model = AutoModelForImageTextToText.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError, StrictDataclassError) as exc:
        raise _weights_error(path, exc) from None
    return model, VisionCodec(processor, model.generation_config, str(path))


def _load_chatglm3(path: Path, settings: Settings, device: str, dtype: Any, say: Progress) -> tuple[Any, ChatCodec]:
    """ChatGLM3 weights on the native GLM architecture, its tokenizer rebuilt from tokenizer.model."""
    from core.chatglm3 import ChatGLM3Tokenizer, load_chatglm3_model

    say(f"Loading ChatGLM3 checkpoint {path.name} (converted once into the cache)…")
    tokenizer = ChatGLM3Tokenizer(path)
    def load(dt: Any) -> Any:
        if _merged_chatglm3(path):  # already GlmForCausalLM weights: nothing to convert
            from transformers import GlmForCausalLM

            return GlmForCausalLM.from_pretrained(path, dtype=dt, device_map="auto" if device == "cuda" else None,
                                                  quantization_config=quantization_config(settings, device, dt))
        return load_chatglm3_model(
            path,
            dtype=dt,
            device_map="auto" if device == "cuda" else None,
            quantization_config=quantization_config(settings, device, dt),
            cache_dir=settings.cache_dir / "chatglm3",
        )

    if not lowbit.applies(settings, device):
        return load(dtype), ChatGLM3Codec(tokenizer)
    return lowbit.load_for_cpu(path, settings, load, say, source=lambda: _chatglm3_source(path)), ChatGLM3Codec(
        tokenizer)


def _chatglm3_source(path: Path) -> Any:
    """The checkpoint as a ``packstream.PackSource``: converted tensor by tensor, shard by shard, never whole."""
    from core.models.packstream import PackSource, hf_source

    if _merged_chatglm3(path):
        return hf_source(path)
    from core.chatglm3.convert import iter_native_tensors, native_configs

    config, generation = native_configs(path)
    return PackSource(config, generation, lambda: iter_native_tensors(path))


def _merged_chatglm3(path: Path) -> bool:
    """A ChatGLM3 persona merged by ``core merge``: native GLM config, ChatGLM3's tokenizer.model, converter marker."""
    return (path / "tokenizer.model").is_file() and (path / "inkstone-chatglm3.json").is_file()

"""What a model is before loading it: architecture, parameter count, context window, dtype on disk, and
how much memory it needs in bf16, 8-bit and 4-bit, plus the check that refuses a load that will not fit.

Config-only: it reads ``config.json`` (through ``core.models.checkpoint``) and weight headers, builds the
model on the meta device to count parameters, and never loads weights. Free memory comes from ``psutil``
(RAM, any OS) or ``torch.cuda.mem_get_info`` (GPU).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ModelError
from core.models import lowbit
from core.models.checkpoint import check_remote_code, context_window_of, read_config

GIB = 1024**3
OVERHEAD_BYTES = int(0.75 * GIB)
"""CUDA context, activations and a modest KV cache, on top of the weights."""
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
PACKED_PEAK = 1.3
"""Peak resident memory of a load with int8/int4 CPU weights over their size (packed tensor by tensor:
``core.models.packstream``; ``bench/coldstart.py`` prints the measured figure)."""


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a checkpoint, read without loading its weights."""

    model: str
    architecture: str
    family: str
    parameters: int
    output_parameters: int
    """Parameters of lm_head (kept in 16-bit by bitsandbytes)."""
    context_window: int
    dtype_on_disk: str
    memory_gib: dict[str, float]
    """Estimated memory (weights + overhead) for bf16, 8bit and 4bit."""
    cpu_weights_gib: dict[str, float] = field(default_factory=dict)
    """Weights held on a CPU for each ``cpu_weights`` choice (int4, int8, bf16, fp32), GiB."""
    images: bool = False
    """The model reads pictures (an image-text-to-text model, ``core.models.vision``)."""
    cpu_weights: str | None = None
    """The weights held on the CPU (a loaded model) where ``cpu_weights`` decided them."""
    cpu_weights_auto: dict[str, Any] | None = None
    """``cpu_weights = "auto"``: the choice saved for this CPU, each candidate's timed ms per decode step and
    what the quality rule or the CPU left out."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def memory_estimate(parameters: int, output_parameters: int) -> dict[str, float]:
    """GiB needed for bf16, 8-bit and 4-bit (nf4 + double quant) weights plus a fixed overhead."""
    body = parameters - output_parameters
    head = output_parameters * 2
    sizes = {"bf16": parameters * 2, "8bit": body * 1.03 + head, "4bit": body * 0.53 + head}
    return {k: round((v + OVERHEAD_BYTES) / GIB, 2) for k, v in sizes.items()}


def parameter_counts(model: Any) -> tuple[int, int]:
    """(all parameters, untied lm_head parameters) of a model (real or on the meta device)."""
    total = sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings()
    total += sum(m.in_features * m.out_features for m in model.modules()  # int4/int8 layers hold buffers
                 if hasattr(m, "lowbit_kind") and not (m is head and model.config.tie_word_embeddings))
    head_params = head.weight.numel() if head is not None and not model.config.tie_word_embeddings else 0
    return total, head_params


def _count_parameters(config: Any, images: bool = False) -> tuple[int, int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    auto = AutoModelForImageTextToText if images else AutoModelForCausalLM
    with torch.device("meta"):
        return parameter_counts(auto.from_config(config))


def _safetensors_dtypes(file: Path) -> set[str]:
    """Tensor dtypes named in a safetensors header; ModelError for a file that is not safetensors."""
    try:
        with file.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= min(file.stat().st_size - 8, 100 << 20):
                raise ValueError(f"header length {size} does not fit the file")
            header = json.loads(f.read(size))
        return {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{file} is not a valid safetensors weight file ({exc}): re-download it.") from None


def _dtype_on_disk(path: Path, declared: Any) -> str:
    """dtypes in the weights' safetensors header, else (``.bin`` weights) the config's declaration.

    Only ``model*.safetensors`` count: a directory may hold other safetensors files (adapters, test references).
    """
    files = sorted(path.glob("model*.safetensors"))
    if files:
        names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
        return ",".join(sorted(names.get(d, str(d).lower()) for d in _safetensors_dtypes(files[0])))
    return str(declared or "unknown").removeprefix("torch.")


def _hf_config(path: Path, raw: dict[str, Any], trust_remote_code: bool) -> Any:
    """The transformers config object of a (checked) Hugging Face directory; ModelError for invalid fields."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, StrictDataclassError) as exc:
        raise ModelError(
            f"{path / 'config.json'} is not a valid {raw.get('model_type')!r} config ({type(exc).__name__}: {exc}): "
            "re-download the model or fix the named field."
        ) from None


def inspect_directory(path: Path, *, trust_remote_code: bool = False) -> ModelInfo:
    """Describe the checkpoint in ``path`` (ChatGLM3 or any natively supported architecture).

    ModelError for a broken directory: unreadable or invalid ``config.json``, remote code, corrupt weight headers.
    """
    from core.chatglm3 import glm_config_from_chatglm3
    from core.models.vision import is_vision_config

    raw = read_config(path)
    images = is_vision_config(raw)
    if raw.get("model_type") == "chatglm":
        config = glm_config_from_chatglm3(raw)
        family, declared = "chatglm3", raw.get("torch_dtype")
        architecture = "GlmForCausalLM (from ChatGLM3)"
    else:
        check_remote_code(path, trust_remote_code, raw)
        config = _hf_config(path, raw, trust_remote_code)
        family, declared = config.model_type, getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        architecture = (config.architectures or [type(config).__name__.replace("Config", "ForCausalLM")])[0]
    try:
        total, head = _count_parameters(config, images)
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as exc:
        raise ModelError(
            f"{path / 'config.json'} describes a model transformers cannot build ({type(exc).__name__}: {exc}): "
            "re-download the model or fix config.json."
        ) from None
    return ModelInfo(
        model=str(path),
        architecture=architecture,
        family=family,
        parameters=total,
        output_parameters=head,
        context_window=context_window_of(config),
        dtype_on_disk=_dtype_on_disk(path, declared),
        memory_gib=memory_estimate(total, head),
        cpu_weights_gib={} if images else lowbit.memory_gib(total, head, config),
        images=images,
    )


def available_memory(device: str) -> int | None:
    """Free bytes on the GPU (CUDA) or available RAM (CPU, via psutil on any OS); None when unknown."""
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except (ImportError, OSError, RuntimeError):
        return None


def _need_gib(info: ModelInfo, dtype: str, quantize: str | None) -> float:
    if quantize:
        return info.memory_gib[quantize]
    if dtype in ("int8", "int4") and dtype in info.cpu_weights_gib:  # CPU weights packed without a float copy
        return max(info.cpu_weights_gib[dtype] * PACKED_PEAK, info.cpu_weights_gib[dtype] + OVERHEAD_BYTES / GIB)
    return (info.parameters * DTYPE_BYTES.get(dtype, 4) + OVERHEAD_BYTES) / GIB


def check_fits(info: ModelInfo, device: str, dtype: str, quantize: str | None) -> None:
    """Refuse a load that needs more memory than is free, naming the smaller setting that would fit.

    ``dtype`` is the compute dtype's name (``float32``, ``bfloat16``, ``float16``), or ``int8`` / ``int4`` for
    packed CPU weights (``cpu_weights``). Suggestions, first that fits:
    16-bit weights (from float32), then ``--quantize 8bit``, then ``--quantize 4bit``.
    """
    free = available_memory(device)
    if free is None:
        return
    need = _need_gib(info, dtype, quantize)
    free_gib = free / GIB
    if need <= free_gib:
        return
    where = "GPU" if device == "cuda" else "RAM"
    setting = f"--quantize {quantize}" if quantize else f"{dtype}"
    problem = f"{info.model} in {setting} needs about {need:.1f} GiB but only {free_gib:.1f} GiB of {where} is free"
    options: list[tuple[str, float]] = []
    if not quantize and DTYPE_BYTES.get(dtype, 0) > 2:
        half = "bfloat16"
        options.append((f'dtype = "{half}" needs about {_need_gib(info, half, None):.1f} GiB and fits: set '
                        f'dtype = "{half}" in inkstone.toml', _need_gib(info, half, None)))
    for q in ("8bit", "4bit"):
        if quantize != "4bit" and q != quantize:
            options.append((f"with --quantize {q} it needs about {info.memory_gib[q]} GiB and fits: pass "
                            f'--quantize {q} (or quantize = "{q}" in inkstone.toml)', info.memory_gib[q]))
    hint = next((text for text, gib in options if gib <= free_gib), None)
    if hint is None:
        hint = "no smaller setting fits either: use a smaller model or free memory" + (
            "" if device == "cuda" else ", or use a GPU")
    raise ModelError(f"{problem}; {hint}.")


def inspect_loaded(loaded: Any) -> ModelInfo:
    """Describe a model already in memory (bundled profiles, whose files are GGUF)."""
    model = loaded.model
    total, head_params = parameter_counts(model)
    return ModelInfo(
        model=loaded.model_id,
        architecture=(model.config.architectures or [type(model).__name__])[0],
        family=model.config.model_type,
        parameters=total,
        output_parameters=head_params,
        context_window=context_window_of(model.config),
        dtype_on_disk="gguf (dequantized to float32)",
        memory_gib=memory_estimate(total, head_params),
        cpu_weights_gib={} if getattr(loaded, "images", False) else lowbit.memory_gib(total, head_params, model.config),
        images=bool(getattr(loaded, "images", False)),
        cpu_weights=loaded.cpu_weights,
        cpu_weights_auto=loaded.cpu_weights_auto,
    )

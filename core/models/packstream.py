"""Low-bit CPU weights without a float model in memory: pack tensor by tensor, load a packed cache directly.

A 6B model held as int8 takes about 6 GiB; building it in bf16 first, as ``from_pretrained`` does, takes 12 GiB
more. Here the model is built as a skeleton whose parameters live on the meta device (no memory; buffers such as
the rotary frequencies are computed as usual). On a first start each Linear weight read from the checkpoint, one
tensor at a time, is quantized and swapped in as its low-bit layer, and its float copy is dropped; the packed
tensors are written to the cache in parts of about ``PART_BYTES`` as they come. A cached start reads those parts
with plain file reads into fresh tensors: not memory-mapped, because the pages of a mapping count as resident
memory for as long as any tensor views them (the kernels need aligned copies, so a mapped file was held twice).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import ModelError
from core.models.safeparts import PartWriter, read_safetensors, tensor_names

ROWS_ELEMENTS = 8 * 1024**2
"""Weights quantized at a time (row blocks): float32 temporaries stay ~100 MB for the widest layers."""
TRIM_BYTES = 256 * 1024**2
"""Float bytes packed between two returns of freed heap memory to the OS (``release_freed``)."""


def release_freed() -> None:
    """Hand freed heap memory back to the OS (glibc's ``malloc_trim``; elsewhere nothing). Float tensors freed
    between long-lived packed ones leave holes that glibc keeps: about 1 GiB on ChatGLM3-6B's first start."""
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            pass


@dataclass
class PackSource:
    """A checkpoint to pack without loading it whole: its native config and its tensors, one at a time."""

    config: Any
    """The transformers config the model is built from."""
    generation_config: Any
    tensors: Callable[[], Iterator[tuple[str, torch.Tensor]]]
    """Yields (native state-dict name, float tensor); raises ModelError for a bad checkpoint."""


def empty_model(config: Any) -> nn.Module:
    """``config``'s causal LM in bf16 with every parameter on the meta device (buffers real): no weight memory."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    with init_empty_weights(include_buffers=False), no_init_weights():
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)


def layer_kinds(model: nn.Module, kind: str) -> dict[str, str]:
    """The Linear layers ``kind`` packs and each one's own kind (the output head int8, like ``quantize_model``)."""
    from core.models.lowbit_layers import eligible

    head = model.get_output_embeddings()
    out = {}
    for name, module in model.named_modules():
        layer_kind = "int8" if module is head else kind
        if eligible(layer_kind, module):
            out[name] = layer_kind
    return out


def quantize_rows(kind: str, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """``quantize_int4`` / ``quantize_int8`` of ``weight`` rounded to bf16, computed on blocks of rows (the same
    codes: both work row by row), so no bf16 or float32 copy of a 100M-weight layer is alive at once."""
    from core.models.lowbit_layers import quantize_int4, quantize_int8

    quantize = quantize_int4 if kind == "int4" else quantize_int8
    rows = max(16, ROWS_ELEMENTS // max(weight.shape[1], 1) // 16 * 16)
    if weight.shape[0] <= rows:
        return quantize(weight.to(torch.bfloat16))
    out: dict[str, torch.Tensor] = {}
    for start in range(0, weight.shape[0], rows):  # each block rounded to bf16 first, as a bf16 load holds it
        for part, t in quantize(weight[start:start + rows].to(torch.bfloat16)).items():
            if part not in out:  # scales_zeros is [groups, rows, 2]: rows are its second dimension
                shape = list(t.shape)
                shape[1 if part == "scales_zeros" else 0] = weight.shape[0]
                out[part] = torch.empty(shape, dtype=t.dtype)
            target = out[part][:, start:start + rows] if part == "scales_zeros" else out[part][start:start + rows]
            target.copy_(t)
    return out


def fill(model: nn.Module, source: PackSource, kind: str, writer: PartWriter) -> list[str]:
    """Load ``source``'s tensors into the skeleton ``model``, packing its Linear layers to ``kind`` on the way;
    each packed tensor goes to ``writer``. Returns the packed layers' names.

    ModelError for a tensor the model has not, a shape that does not match, or tensors the checkpoint lacks.
    """
    from core.models.lowbit_layers import build_layer

    kinds = layer_kinds(model, kind)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    where = getattr(source.config, "_name_or_path", "") or type(model).__name__
    biases: dict[str, torch.Tensor] = {}
    built: dict[str, nn.Module] = {}

    def put(owner: str, weight: torch.Tensor) -> None:
        t = quantize_rows(kinds[owner], weight)
        built[owner] = build_layer(kinds[owner], t, None)
        model.set_submodule(owner, built[owner])
        for part, x in t.items():
            writer.add(f"{owner}.{part}", x)

    done = 0
    for name, tensor in source.tensors():
        done += tensor.numel() * tensor.element_size()
        if done >= TRIM_BYTES:
            release_freed()
            done = 0
        if shapes.get(name) != tuple(tensor.shape):
            raise ModelError(f"{where}: tensor {name} {tuple(tensor.shape)} does not fit the model built from "
                             f"config.json (expected {shapes.get(name, 'no such tensor')}); fix config.json or "
                             "re-download the checkpoint")
        owner, _, attr = name.rpartition(".")
        if owner in kinds and attr == "weight":
            put(owner, tensor)  # rounded to bf16 block by block: never a whole bf16 copy beside the original
            del tensor
            continue
        tensor = tensor.to(torch.bfloat16)  # what a bf16 from_pretrained holds
        if owner in kinds and attr == "bias":
            biases[owner] = tensor
        else:
            model.load_state_dict({name: tensor}, strict=False, assign=True)
            writer.add(name, tensor)
        del tensor
    head = model.get_output_embeddings()
    for owner in kinds.keys() - built.keys():  # a tied output head has no tensor of its own
        if model.get_submodule(owner) is head and getattr(source.config, "tie_word_embeddings", False):
            put(owner, model.get_input_embeddings().weight.detach())
    for owner, bias in biases.items():
        built[owner].bias = nn.Parameter(bias, requires_grad=False)
        writer.add(f"{owner}.bias", bias)
    missing = [k for k, t in model.state_dict().items() if t.is_meta]
    missing += [f"{k}.weight" for k in kinds.keys() - built.keys()]
    if missing:
        listed = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise ModelError(f"{where}: the checkpoint lacks {len(missing)} tensors the model needs ({listed}); "
                         "finish the download or re-download it")
    writer.flush()
    release_freed()
    return sorted(built)


def load_packed(src: Path, meta: dict[str, Any]) -> nn.Module:
    """The packed model cached in ``src`` (``lowbit.json`` read as ``meta``), built without float weights.

    ValueError / OSError / KeyError / SafetensorError for a cache that does not match or is damaged.
    """
    from transformers import AutoConfig, GenerationConfig

    from core.models.lowbit_layers import build_layer

    model = empty_model(AutoConfig.from_pretrained(str(src)))
    tensors: dict[str, torch.Tensor] = {}
    for name in meta.get("files", ["model.safetensors"]):
        tensors.update(read_safetensors(src / name))
    for name in meta["layers"]:
        layer_kind = "int4" if f"{name}.scales_zeros" in tensors else "int8"
        parts = ("codes", "scales_zeros") if layer_kind == "int4" else ("codes", "scales")
        bias = tensors.get(f"{name}.bias")  # stays in ``tensors``: load_state_dict assigns it again
        model.set_submodule(name, build_layer(layer_kind, {p: tensors.pop(f"{name}.{p}") for p in parts}, bias))
    missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    if unexpected or set(missing) != set(meta["aliases"]):
        raise ValueError(f"cache does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for alias, target in meta["aliases"].items():
        owner, _, attr = alias.rpartition(".")
        t_owner, _, t_attr = target.rpartition(".")
        setattr(model.get_submodule(owner), attr, getattr(model.get_submodule(t_owner), t_attr))
    if (src / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(src))
    model.inkstone_repacked = list(meta.get("repacked", []))
    return model.eval()


def hf_source(path: Path) -> PackSource | None:
    """A Hugging Face directory whose safetensors hold exactly the model's own tensor names (a tied output head
    may be absent), as a ``PackSource``; None otherwise (renamed or missing tensors, ``.bin`` weights), and the
    directory then loads whole through ``from_pretrained``."""
    from transformers import AutoConfig, GenerationConfig

    index = path / "model.safetensors.index.json"
    try:
        if index.is_file():
            files = sorted({path / f for f in json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()})
        else:
            files = [path / "model.safetensors"] if (path / "model.safetensors").is_file() else []
        names: set[str] = set()
        for file in files:
            names.update(tensor_names(file))
        config = AutoConfig.from_pretrained(str(path))
        skeleton = empty_model(config)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # the whole load reports what is wrong
    expected = set(skeleton.state_dict())
    head = next((f"{n}.weight" for n, m in skeleton.named_modules() if m is skeleton.get_output_embeddings()), "")
    optional = {head} if getattr(config, "tie_word_embeddings", False) else set()
    if not files or not names <= expected or expected - names - optional:
        return None
    try:
        generation = GenerationConfig.from_pretrained(str(path))
    except OSError:
        generation = GenerationConfig.from_model_config(config)

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        for file in files:
            try:
                yield from read_safetensors(file)
            except (OSError, ValueError, KeyError) as exc:
                raise ModelError(f"Could not read the weights in {file} ({type(exc).__name__}: {exc}): the file is "
                                 "incomplete or corrupt; re-download the model.") from None

    return PackSource(config, generation, tensors)

"""Convert a ChatGLM3 checkpoint into a native GLM directory (cached) and load it as ``GlmForCausalLM``.

The converted directory holds ``config.json`` (``model_type: glm``, no ``auto_map``),
``generation_config.json`` (stop ids: eos, ``<|user|>``, ``<|observation|>``), safetensors weights with
GLM names and a marker file. Loading it with ``GlmForCausalLM.from_pretrained`` gives every standard
feature (dtype, ``device_map``, bitsandbytes ``quantization_config``, PEFT) and never runs code from the
checkpoint directory. Cache entries are keyed by a hash of the source config and weight file
sizes/mtimes and written beside their final name, then swapped in (``core.storage.dirswap``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from core.errors import ModelError
from core.storage.dirswap import is_leftover, recover, replace_dir

from .config import glm_config_from_chatglm3
from .detect import read_chatglm3_config
from .weights import (
    check_tensor_names,
    convert_chatglm3_state_dict,
    iter_weight_shards,
    tensor_names,
    weight_files,
)

CONVERTER_VERSION = 1
MARKER = "inkstone-chatglm3.json"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def default_cache_dir() -> Path:
    """Where converted checkpoints go by default: ``$INKSTONE_HOME/cache/chatglm3`` (``./data`` if unset)."""
    from core.config import load_settings

    return load_settings().cache_dir / "chatglm3"


def source_fingerprint(src: Path) -> str:
    """Hex digest of the converter version, ``config.json`` bytes and the size/mtime of weight files."""
    src = Path(src)
    digest = hashlib.sha256(f"inkstone-chatglm3-v{CONVERTER_VERSION}\n".encode())
    digest.update((src / "config.json").read_bytes())
    files = weight_files(src) + [p for p in (src / "tokenizer.model",) if p.is_file()]
    for file in files:
        stat = file.stat()
        digest.update(f"\n{file.name}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def converted_checkpoint_dir(src: Path, cache_dir: Path | None = None) -> Path:
    """The cache directory a conversion of ``src`` lives in: ``<cache_dir>/<src name>-<hash16>``."""
    src = Path(src).resolve()
    return Path(cache_dir or default_cache_dir()) / f"{src.name}-{source_fingerprint(src)[:16]}"


def _stop_ids(src: Path, eos: int) -> list[int]:
    if not (src / "tokenizer.model").is_file():
        return [eos]
    from .tokenizer import ChatGLM3Tokenizer

    return ChatGLM3Tokenizer(src).stop_ids


def _native_shapes(glm_cfg: Any) -> dict[str, tuple[int, ...]]:
    from transformers import GlmForCausalLM

    with torch.device("meta"):
        model = GlmForCausalLM(glm_cfg)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _check_shapes(native: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], src: Path) -> None:
    bad = [f"{k} {tuple(t.shape)} (expected {shapes.get(k)})" for k, t in native.items()
           if shapes.get(k) != tuple(t.shape)]
    if bad:
        raise ModelError(f"ChatGLM3 checkpoint {src} has tensors whose shapes do not match config.json: "
                         f"{'; '.join(bad)}. Fix config.json or re-download the checkpoint")


def native_configs(src: Path) -> tuple[Any, Any]:
    """The ``GlmConfig`` and ``GenerationConfig`` (stop ids) a conversion of ChatGLM3 checkpoint ``src`` writes;
    the config's dtype is the one ``config.json`` declares (a conversion takes it from the weights)."""
    from transformers import GenerationConfig

    cfg = read_chatglm3_config(src)
    glm_cfg = glm_config_from_chatglm3(cfg)
    glm_cfg.architectures = ["GlmForCausalLM"]
    glm_cfg.dtype = _DTYPES.get(str(cfg.get("torch_dtype")), torch.float32)
    eos = glm_cfg.eos_token_id
    generation = GenerationConfig(eos_token_id=_stop_ids(src, eos if isinstance(eos, int) else 2),
                                  pad_token_id=glm_cfg.pad_token_id)
    return glm_cfg, generation


def iter_native_tensors(src: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """The native GLM tensors of ChatGLM3 checkpoint ``src``, one at a time, shard by shard, checked as a
    conversion checks them (names, shapes; ModelError naming the problem). Each original tensor is let go as soon
    as it is converted, so at most one shard is in memory."""
    cfg = read_chatglm3_config(src)
    names = tensor_names(src)
    if names is not None:
        check_tensor_names(names, cfg, src)
    shapes = _native_shapes(glm_config_from_chatglm3(cfg))
    seen: set[str] = set()
    for shard in iter_weight_shards(src):
        seen.update(shard)
        for name in list(shard):
            native = convert_chatglm3_state_dict({name: shard.pop(name)}, cfg)
            _check_shapes(native, shapes, src)
            while native:
                yield native.popitem()
    if names is None:
        check_tensor_names(seen, cfg, src)


def _write_converted(src: Path, out: Path) -> None:
    from safetensors.torch import save_file

    cfg = read_chatglm3_config(src)
    glm_cfg, generation = native_configs(src)
    names = tensor_names(src)
    if names is not None:
        check_tensor_names(names, cfg, src)
    shapes = _native_shapes(glm_cfg)
    files = weight_files(src)
    seen: set[str] = set()
    weight_map: dict[str, str] = {}
    total = 0
    disk_dtype: torch.dtype | None = None
    for i, shard in enumerate(iter_weight_shards(src)):
        seen.update(shard)
        native = convert_chatglm3_state_dict(shard, cfg)
        del shard
        _check_shapes(native, shapes, src)
        if "model.embed_tokens.weight" in native:
            disk_dtype = native["model.embed_tokens.weight"].dtype
        name = f"model-{i + 1:05d}-of-{len(files):05d}.safetensors" if len(files) > 1 else "model.safetensors"
        save_file(native, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(native, name))
        total += sum(t.numel() * t.element_size() for t in native.values())
    if names is None:
        check_tensor_names(seen, cfg, src)
    if len(files) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    if disk_dtype is not None:
        glm_cfg.dtype = disk_dtype
    glm_cfg.save_pretrained(out)
    generation.save_pretrained(out)
    marker = {
        "source": str(src),
        "fingerprint": source_fingerprint(src),
        "converter_version": CONVERTER_VERSION,
        "dtype": str(glm_cfg.dtype).removeprefix("torch."),
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def convert_chatglm3_checkpoint(src: Path, dst: Path) -> Path:
    """Convert ChatGLM3 checkpoint ``src`` into a native GLM directory ``dst`` and return ``dst``.

    Writes into a sibling directory and swaps it in as ``dst`` at the end (``core.storage.dirswap.replace_dir``), so
    ``dst`` is the old conversion or the complete new one. Nothing is done if ``dst`` already holds a
    conversion of ``src`` in its current state (same fingerprint); a conversion of an older state is
    replaced. If another process finishes the same ``dst`` first, that one is kept.

    Raises:
        ModelError: ``src`` is not a loadable ChatGLM3 checkpoint, or ``dst`` exists and is not a
            conversion made by this module.
    """
    src, dst = Path(src).resolve(), Path(dst)
    fingerprint = source_fingerprint(src)
    recover(dst)  # a conversion killed while swapping left the previous one aside
    if dst.exists():
        if not (dst / MARKER).is_file():
            raise ModelError(f"{dst} already exists and is not a converted ChatGLM3 checkpoint; "
                             "remove it or choose another destination")
        if _read_marker(dst).get("fingerprint") == fingerprint:
            return dst
    with replace_dir(dst) as tmp:
        _write_converted(src, tmp)
    return dst


def _read_marker(dst: Path) -> dict[str, Any]:
    try:
        data = json.loads((dst / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _prune_stale(keep: Path, src: Path) -> None:
    """Remove older cache entries converted from the same source directory."""
    for entry in keep.parent.glob(f"{src.name}-*"):
        marker = entry / MARKER
        if entry == keep or not marker.is_file() or is_leftover(entry):  # leftovers belong to ``recover``
            continue
        if _read_marker(entry).get("source") == str(src):
            shutil.rmtree(entry, ignore_errors=True)


def load_chatglm3_model(
    path: Path,
    *,
    dtype: torch.dtype | str | None = None,
    device_map: str | dict[str, Any] | None = None,
    quantization_config: Any = None,
    cache_dir: Path | None = None,
) -> Any:
    """Load ChatGLM3 checkpoint ``path`` as a ``transformers.GlmForCausalLM`` in eval mode.

    The checkpoint is converted once into ``converted_checkpoint_dir(path, cache_dir)`` (default cache:
    :func:`default_cache_dir`), then loaded with ``from_pretrained`` offline. ``dtype`` None keeps the
    dtype the weights have on disk. ``device_map`` and ``quantization_config`` (e.g. a bitsandbytes
    ``BitsAndBytesConfig`` on CUDA) are passed to ``from_pretrained`` unchanged.
    """
    from transformers import GlmForCausalLM

    src = Path(path).resolve()
    read_chatglm3_config(src)
    dst = converted_checkpoint_dir(src, cache_dir)
    if not (dst / MARKER).is_file():
        convert_chatglm3_checkpoint(src, dst)
        _prune_stale(dst, src)
    if dtype is None:
        dtype = _DTYPES.get(_read_marker(dst).get("dtype"), torch.float32)
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    model = GlmForCausalLM.from_pretrained(dst, **kwargs)
    model.eval()
    return model

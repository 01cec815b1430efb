"""Low-bit weights for CPU decoding: the ``cpu_weights`` setting, CPU support with fallback, and the cache.

CPU decoding is memory-bound: every new token reads all weights once, so holding them as 4-bit codes
instead of float32 reads about 6x less (layers in ``core.models.lowbit_layers``; the rest of the model in
bfloat16). A quantized model is cached once as safetensors (portable integer codes, bf16 scales and the
other weights, ``lowbit.json``, config) next to the converted model, or under ``<cache>/lowbit`` for a local
directory, so later starts read a quarter of the float32 bytes and quantize nothing; the CPU-specific
packing is redone at load (fast). Heavy imports happen inside functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.storage.dirswap import recover, replace_dir

CHOICES = ("int4", "int8", "bf16", "fp32")
"""Weights a model is held in on the CPU, fastest first (the fallback order)."""
SETTINGS = ("auto", *CHOICES)
"""Values of the ``cpu_weights`` setting: ``auto`` times the choices on this CPU (``core.models.autoweights``)."""
FORMAT = 4
"""Version of the cache layout (3: int4 repacked from GGUF blocks; 4: the tensors in parts listed in lowbit.json)."""
READABLE = (3, 4)
"""Cache versions that load; another one is rebuilt."""
GROUP_SIZE = 32
"""int4 values per scale/zero pair (same as ``lowbit_layers.GROUP_SIZE``)."""
BYTES_PER_WEIGHT = {"int4": 0.5 + 4 / GROUP_SIZE, "int8": 1.0, "bf16": 2.0, "fp32": 4.0}
"""Bytes per Linear weight (int4: codes + one bf16 scale and zero per group)."""

Say = Callable[[str], None]
Repack = Callable[[Any], dict[str, dict[str, Any]]]
"""Given the float model, the int4 codes of its layers stored as 4-bit blocks (``core.models.gguf_blocks``)."""


def resolve_kind(requested: str) -> tuple[str, str | None]:
    """The weights to use for ``requested`` on this CPU and, when falling back, a notice saying why."""
    from core.models.lowbit_layers import cpu_supports

    start = CHOICES.index(requested)
    for kind in CHOICES[start:]:
        if cpu_supports(kind):
            if kind == requested:
                return kind, None
            return kind, (
                f"This CPU or torch build has no fast {requested} kernel (needs AVX2 or AVX-512 on x86): using "
                f"{kind} weights instead. Set cpu_weights = \"{kind}\" to make that the choice."
            )
    return "fp32", None  # pragma: no cover - fp32 is always supported


def cache_dir_for(model_dir: Path, cache_root: Path, kind: str) -> Path:
    """Where the ``kind`` copy of the model in ``model_dir`` is cached.

    Next to a converted model that lives in the cache; under ``<cache>/lowbit`` (keyed by path, sizes and
    mtimes of the weight files) for a local directory, which is never written to.
    """
    tag = f"{kind}-g{GROUP_SIZE}" if kind == "int4" else kind
    model_dir = model_dir.resolve()
    if model_dir.is_relative_to(cache_root.resolve()):
        return model_dir.with_name(f"{model_dir.name}.{tag}")
    h = hashlib.sha256(str(model_dir).encode())
    for p in sorted(model_dir.iterdir()):
        if p.suffix in (".safetensors", ".bin", ".json", ".model"):
            st = p.stat()
            h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return cache_root / "lowbit" / f"{model_dir.name}-{h.hexdigest()[:16]}.{tag}"


def auto_record_path(model_dir: Path, cache_root: Path) -> Path:
    """Where the ``cpu_weights = "auto"`` choice for the model in ``model_dir`` is saved (beside its packed copies)."""
    return Path(f"{cache_dir_for(model_dir, cache_root, 'auto')}.json")


def save_cache(model: Any, kind: str, portable: dict[str, dict[str, Any]], dest: Path, tokenizer: Any = None,
               extra: dict[str, str] | None = None, repacked: list[str] | None = None) -> None:
    """Write the quantized ``model`` to ``dest`` (safetensors parts + lowbit.json + config), atomically; with a
    ``tokenizer`` and ``extra`` text files when the cache is the model's only copy on disk (a bundled model)."""
    from core.models.safeparts import PartWriter

    with replace_dir(dest) as tmp:  # two processes may pack the same model at once: the first copy in stays
        writer = PartWriter(tmp)
        for name, parts in portable.items():
            for part, tensor in parts.items():
                writer.add(f"{name}.{part}", tensor)
        aliases: dict[str, str] = {}
        seen: dict[tuple[int, int], str] = {}
        for key, tensor in model.state_dict(keep_vars=False).items():
            ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
            if ident in seen:  # tied weights (e.g. an unquantized lm_head sharing the embedding)
                aliases[key] = seen[ident]
                continue
            seen[ident] = key
            writer.add(key, tensor)
        writer.flush()
        finish_cache(tmp, writer, model, kind, sorted(portable), aliases, repacked, tokenizer, extra)


def finish_cache(tmp: Path, writer: Any, model: Any, kind: str, layers: list[str], aliases: dict[str, str],
                 repacked: list[str] | None = None, tokenizer: Any = None, extra: dict[str, str] | None = None
                 ) -> None:
    """Write the config, tokenizer, ``extra`` files and ``lowbit.json`` beside the parts ``writer`` wrote; raise
    the OSError a part's write met (the caller's ``replace_dir`` then discards the folder)."""
    if writer.error is not None:
        raise writer.error
    model.config.save_pretrained(tmp)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    for name, text in (extra or {}).items():
        (tmp / name).write_text(text, encoding="utf-8")
    meta = {"format": FORMAT, "kind": kind, "group_size": GROUP_SIZE, "layers": layers, "aliases": aliases,
            "repacked": sorted(repacked or []), "files": writer.files}
    (tmp / "lowbit.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def load_cache(src: Path, kind: str) -> Any:
    """The quantized model cached in ``src``, or None when there is no valid cache for ``kind``.

    Built without float weights (``core.models.packstream``); reads caches of this format and the one before
    (a single ``model.safetensors``)."""
    try:
        meta = json.loads((src / "lowbit.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("format") not in READABLE or meta.get("kind") != kind or meta.get("group_size") != GROUP_SIZE:
        return None
    from core.models.packstream import load_packed

    return load_packed(src, meta)


def memory_gib(parameters: int, untied_head: int, config: Any) -> dict[str, float]:
    """GiB of weights held for each ``cpu_weights`` choice (int4/int8: bf16 embeddings, an int8 output head)."""
    embed = int(getattr(config, "vocab_size", 0) or 0) * int(getattr(config, "hidden_size", 0) or 0)
    body = max(parameters - embed - untied_head, 0)
    sizes = {kind: body * BYTES_PER_WEIGHT[kind] + embed * 2 + embed * 1.0 for kind in ("int4", "int8")}
    sizes.update(bf16=parameters * 2.0, fp32=parameters * 4.0)
    return {kind: round(sizes[kind] / 1024**3, 2) for kind in CHOICES}


def applies(settings: Any, device: str) -> bool:
    """Whether ``cpu_weights`` decides this load: CPU, dtype auto, no bitsandbytes quantize, no remote code."""
    return (device == "cpu" and settings.quantize is None and settings.dtype == "auto"
            and not settings.trust_remote_code and settings.cpu_weights != "fp32")


def decide(settings: Any, model_dir: Path, model_key: str | None, say: Say,
           shapes: Callable[[], list[tuple[int, int, bool]]] | None = None) -> tuple[str, str | None, Any]:
    """The weights to hold, a fallback notice, and for ``auto`` its ``autoweights.Choice`` (else None).

    ``auto`` reads the choice saved for ``model_dir`` on this CPU, or times the candidates on the Linear
    ``shapes`` (default: the model built from ``model_dir``'s config on the meta device) and saves it.
    """
    if settings.cpu_weights != "auto":
        return (*resolve_kind(settings.cpu_weights), None)
    from core.models import autoweights
    from core.models.lowbit_layers import cpu_supports

    made = autoweights.choose(auto_record_path(model_dir, settings.cache_dir),
                              shapes or (lambda: autoweights.config_shapes(model_dir)), model_key, cpu_supports, say)
    return made.choice, None, made


def load_for_cpu(model_dir: Path, settings: Any, load_float: Callable[[Any], Any], say: Say | None = None,
                 repack: Repack | None = None, model_key: str | None = None,
                 source: Callable[[], Any] | None = None) -> Any:
    """The model in ``model_dir`` with ``settings.cpu_weights`` (or the CPU's fallback), from the cache if any.

    ``load_float(dtype)`` loads the float model (only on a cache miss); ``repack`` gives int4 codes to take as
    they are (a bundled GGUF's 4-bit blocks). ``source()``, where given and not None, is the checkpoint as a
    ``packstream.PackSource``: int4/int8 are then packed tensor by tensor, never holding the float model. The
    weights used are recorded on the model as ``inkstone_cpu_weights``. A broken cache is rebuilt, never fatal.
    """
    import torch

    from core.models.lowbit_layers import to_bf16

    say = say or (lambda _msg: None)
    kind, notice, made = decide(settings, model_dir, model_key, say)
    _tell(notice, say)
    model = None
    if kind in ("fp32", "bf16"):
        model = load_float(torch.float32 if kind == "fp32" else torch.bfloat16)
        if kind == "bf16":
            to_bf16(model)
    else:
        dest = cache_dir_for(model_dir, settings.cache_dir, kind)
        model = _read_cache(dest, kind, say)
        stream = source() if model is None and source is not None and repack is None else None
        if stream is not None:
            model = _pack_stream(stream, kind, dest, say)
        elif model is None:
            model = _pack(load_float(torch.bfloat16), kind, dest, say, repack=repack)
    model.inkstone_cpu_weights, model.inkstone_auto = kind, made
    return model.eval()


def bundled_for_cpu(converted: Path, settings: Any, convert: Callable[[], tuple[Any, Any]],
                    extra: dict[str, str], say: Say | None = None, repack: Repack | None = None,
                    model_key: str | None = None, shapes: Callable[[], list[tuple[int, int, bool]]] | None = None
                    ) -> tuple[Any, Any, bool] | None:
    """Model, tokenizer and whether they came from the cache, for a bundled model with int4/int8 CPU weights.

    Packed straight from the GGUF: the first start quantizes the model ``convert()`` dequantized in memory
    (int4: its own 4-bit blocks taken as they are through ``repack``, the other layers as int8) and caches only
    the packed copy (with the tokenizer and ``extra`` files), never the float32 one it would not use: that skips
    writing ~4 bytes per weight. None when the setting resolves to float weights or a converted float copy
    already exists in ``converted``; ``load_for_cpu`` on that copy applies then.
    """
    from transformers import AutoTokenizer

    say = say or (lambda _msg: None)
    kind, notice, made = decide(settings, converted, model_key, say, shapes)
    if kind not in ("int4", "int8") or (converted / "config.json").is_file():
        return None  # load_for_cpu gives the notice then
    _tell(notice, say)
    dest = cache_dir_for(converted, settings.cache_dir, kind)
    if (dest / "tokenizer_config.json").is_file() and (model := _read_cache(dest, kind, say)) is not None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(dest))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            say(f"The tokenizer cached in {dest} is unreadable ({type(exc).__name__}); converting again.")
        else:
            model.inkstone_cpu_weights, model.inkstone_auto = kind, made
            return model.eval(), tokenizer, True
    model, tokenizer = convert()
    model = _pack(model, kind, dest, say, tokenizer, extra, repack)
    model.inkstone_cpu_weights, model.inkstone_auto = kind, made
    return model.eval(), tokenizer, False


def _tell(notice: str | None, say: Say) -> None:
    if notice:
        logging.getLogger(__name__).warning(notice)  # stays in the log after the loading message is gone
        say(notice)


def _read_cache(dest: Path, kind: str, say: Say) -> Any:
    """The cached ``kind`` model in ``dest``, or None (a broken cache is removed, to be rebuilt)."""
    from safetensors import SafetensorError

    recover(dest)  # a pack killed while swapping left the previous cache aside
    try:
        return load_cache(dest, kind)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError, SafetensorError) as exc:
        say(f"The {kind} cache in {dest} is unreadable ({type(exc).__name__}: {exc}); rebuilding it.")
        shutil.rmtree(dest, ignore_errors=True)
        return None


def _pack_stream(source: Any, kind: str, dest: Path, say: Say) -> Any:
    """``source``'s model (a ``packstream.PackSource``) with ``kind`` Linear layers, packed tensor by tensor and
    cached in ``dest`` (atomically; a cache that cannot be written is a notice, the model still loads)."""
    from core.models.packstream import empty_model, fill
    from core.models.safeparts import PartWriter

    say(f"Packing the weights as {kind} for fast CPU answers, tensor by tensor (first start only)…")
    model, layers = empty_model(source.config), None
    model.generation_config = source.generation_config
    try:
        with replace_dir(dest) as tmp:
            writer = PartWriter(tmp)
            layers = fill(model, source, kind, writer)
            finish_cache(tmp, writer, model, kind, layers, {})
    except OSError as exc:
        say(f"Could not cache the {kind} weights in {dest} ({exc}); the next start packs them again.")
        if layers is None:  # the folder could not even be made: pack in memory only
            model = empty_model(source.config)
            model.generation_config = source.generation_config
            fill(model, source, kind, PartWriter(None))
    model.inkstone_repacked = []
    return model


def _pack(model: Any, kind: str, dest: Path, say: Say, tokenizer: Any = None,
          extra: dict[str, str] | None = None, repack: Repack | None = None) -> Any:
    """Quantize the float ``model`` to ``kind`` in place and cache it in ``dest`` (a failed write is a notice)."""
    from core.models.lowbit_layers import quantize_model

    repacked = repack(model) if repack is not None and kind == "int4" else None
    if repacked is not None:
        say(f"Repacking the model's own 4-bit blocks as int4 ({len(repacked)} layers, the rest int8; first start "
            "only)…")
    else:
        say(f"Packing the weights as {kind} for fast CPU answers (first start only)…")
    portable = quantize_model(model, kind, repacked)
    model.inkstone_repacked = sorted(repacked or [])
    try:
        save_cache(model, kind, portable, dest, tokenizer, extra, model.inkstone_repacked)
    except OSError as exc:
        say(f"Could not cache the {kind} weights in {dest} ({exc}); the next start packs them again.")
    return model

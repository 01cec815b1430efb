"""A persona's PEFT LoRA adapter as a llama.cpp LoRA file (GGUF), converted once and cached by content.

PEFT keeps ``lora_A`` [r, in] and ``lora_B`` [out, r] per linear layer with the scaling ``lora_alpha / r``
(``/ sqrt(r)`` with rsLoRA; per-module ranks and alphas from ``rank_pattern``/``alpha_pattern``). llama.cpp takes
``<gguf tensor>.lora_a`` and ``.lora_b`` with one ``adapter.lora.alpha``; with alpha 0 it applies each pair at the
request's scale, so the PEFT scaling is folded into ``lora_b`` per module and every persona runs at scale 1.

Names follow llama.cpp's converter: ``layers.N.self_attn.{q,k,v,o}_proj`` -> ``blk.N.attn_{q,k,v,output}``,
``layers.N.mlp.{gate,up,down}_proj`` -> ``blk.N.ffn_{gate,up,down}``. For the ``llama`` architecture the GGUF holds
q and k rows permuted for its rotary layout (transformers undoes it when it loads the GGUF); ``lora_b`` of q and k
gets the same permutation. An adapter on anything else (embeddings, ``lm_head``, DoRA, biases) raises
``LoraUnsupported``: that persona's answers then run on the PyTorch engine.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from core.errors import ModelError

_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
          "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


class LoraUnsupported(ModelError):
    """The adapter holds something llama.cpp's LoRA cannot apply (the persona runs on the PyTorch engine)."""


def base_facts(gguf_path: Path) -> dict[str, Any]:
    """The base GGUF's architecture and attention head counts (for the llama q/k permutation)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))

    def value(key: str) -> Any:
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    arch = str(value("general.architecture"))
    return {"arch": arch, "heads": value(f"{arch}.attention.head_count"),
            "kv_heads": value(f"{arch}.attention.head_count_kv")}


def _permute(w: Any, heads: int) -> Any:
    """llama.cpp's row permutation of a q/k weight (pairs of rotary halves interleaved per head)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _scaling(config: dict[str, Any], module: str) -> float:
    rank = int((config.get("rank_pattern") or {}).get(module, config.get("r", 8)))
    alpha = float((config.get("alpha_pattern") or {}).get(module, config.get("lora_alpha", rank)))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def convert(adapter_dir: Path, facts: dict[str, Any], dest: Path) -> Path:
    """Write ``adapter_dir``'s LoRA as a GGUF LoRA file at ``dest`` (written beside, then renamed)."""
    import numpy as np
    from gguf import GGUFWriter
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("use_dora"):
        raise LoraUnsupported("it is a DoRA adapter, which llama.cpp does not apply")
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    pairs: dict[tuple[int, str], dict[str, Any]] = {}
    for key, value in tensors.items():
        match = _KEY.search(key)
        if match is None or match.group(2) not in _NAMES:
            raise LoraUnsupported(f"it adapts {key!r}, which llama.cpp's LoRA cannot apply")
        pairs.setdefault((int(match.group(1)), match.group(2)), {})[match.group(3)] = value.astype(np.float32)
    if not pairs:
        raise LoraUnsupported("it holds no LoRA weights")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    writer = GGUFWriter(str(tmp), facts["arch"])
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 0.0)
    for (layer, module), ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise LoraUnsupported(f"layer {layer} {module} has lora_{next(iter(ab))} without its pair")
        b = ab["B"] * np.float32(_scaling(config, module))
        if facts["arch"] == "llama" and module in ("q_proj", "k_proj"):
            b = _permute(b, int(facts["heads"] if module == "q_proj" else facts["kv_heads"] or facts["heads"]))
        name = f"blk.{layer}.{_NAMES[module]}.weight"
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(ab["A"]))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(dest)
    return dest


def cached(adapter_dir: Path, gguf_path: Path, cache: Path) -> Path:
    """The GGUF LoRA of ``adapter_dir`` for ``gguf_path``, converted once per adapter content (a persona retrained
    in place gets a new file)."""
    digest = hashlib.sha256(gguf_path.name.encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        try:
            digest.update((adapter_dir / name).read_bytes())
        except OSError as exc:
            raise ModelError(f"Cannot read the LoRA adapter file {adapter_dir / name} ({exc.strerror or exc}): "
                             "retrain the persona or remove its lora = true.") from None
    dest = cache / f"{adapter_dir.name}-{digest.hexdigest()[:16]}.gguf"
    if dest.is_file():
        return dest
    from safetensors import SafetensorError

    try:
        return convert(adapter_dir, base_facts(gguf_path), dest)
    except LoraUnsupported:
        raise
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise ModelError(f"The LoRA adapter in {adapter_dir} could not be converted for llama.cpp "
                         f"({type(exc).__name__}: {exc}): retrain the persona, or set engine = \"torch\".") from None

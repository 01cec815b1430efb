"""Read ChatGLM3 weights (``.bin``/``.safetensors``, sharded or not) and rename/split them to GLM names.

Every conversion is local to one tensor (the fused ``query_key_value`` splits into q/k/v, the SwiGLU
``dense_h_to_4h`` is already GLM's ``gate_up_proj`` layout: first half gate, second half up), so a
checkpoint can be converted one shard at a time. RoPE needs no permutation: ChatGLM3 rotates the first half
of each head in interleaved pairs, which is exactly what GLM's ``apply_rotary_pos_emb`` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from core.errors import ModelError

_PREFIX = "transformer."
_IGNORED = re.compile(r"^(transformer\.)?rotary_pos_emb\.inv_freq$")
_TOP = {
    "embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "encoder.final_layernorm.weight": "model.norm.weight",
    "output_layer.weight": "lm_head.weight",
}
_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
_LAYER_PARTS = {
    "input_layernorm.weight": "input_layernorm.weight",
    "post_attention_layernorm.weight": "post_attention_layernorm.weight",
    "self_attention.dense.weight": "self_attn.o_proj.weight",
    "mlp.dense_h_to_4h.weight": "mlp.gate_up_proj.weight",
    "mlp.dense_4h_to_h.weight": "mlp.down_proj.weight",
}
_QKV = "self_attention.query_key_value."


def weight_files(path: Path) -> list[Path]:
    """Return the weight files of ChatGLM3 checkpoint ``path``, safetensors preferred over ``.bin``.

    Accepts ``model.safetensors.index.json`` + shards, ``model.safetensors``,
    ``pytorch_model.bin.index.json`` + shards, or ``pytorch_model.bin``.

    Raises:
        ModelError: no weights, an unreadable index, or shard files named by the index are missing.
    """
    path = Path(path)
    for index_name, single in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        index = path / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                names = sorted(set(weight_map.values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ModelError(f"{index} is not a valid weight index ({exc!r}); re-download it") from None
            files = [path / name for name in names]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise ModelError(f"{index} names shard files that are missing: {', '.join(missing)}; "
                                 "finish the download")
            return files
        if (path / single).is_file():
            return [path / single]
    raise ModelError(
        f"no weights in {path}: expected model.safetensors, model-*.safetensors with "
        "model.safetensors.index.json, pytorch_model.bin, or pytorch_model-*.bin with its index"
    )


def load_weight_file(file: Path) -> dict[str, torch.Tensor]:
    """Load one weight file to CPU (``.bin`` only through ``torch.load(weights_only=True)``)."""
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file), device="cpu")
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decode failure means a bad file
        raise ModelError(f"cannot read weight file {file} ({exc.__class__.__name__}: {exc}); "
                         "re-download it") from None


def tensor_names(path: Path) -> set[str] | None:
    """All tensor names of checkpoint ``path`` if listable without loading the weights, else None."""
    files = weight_files(path)
    index = files[0].parent / ("model.safetensors.index.json" if files[0].suffix == ".safetensors"
                               else "pytorch_model.bin.index.json")
    if index.is_file():
        return set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    if files[0].suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(files[0]), framework="pt") as handle:
                return set(handle.keys())
        except (OSError, SafetensorError) as exc:
            raise ModelError(f"cannot read weight file {files[0]} ({exc.__class__.__name__}: {exc}); "
                             "re-download it") from None
    return None


def iter_weight_shards(path: Path) -> Iterator[dict[str, torch.Tensor]]:
    """Yield the state dict of each weight file of checkpoint ``path`` in turn (one in memory at a time)."""
    for file in weight_files(path):
        yield load_weight_file(file)


def read_chatglm3_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Return the complete original (ChatGLM3-named) state dict of checkpoint ``path``."""
    state: dict[str, torch.Tensor] = {}
    for shard in iter_weight_shards(path):
        state.update(shard)
    return state


def expected_chatglm3_names(cfg: dict[str, Any]) -> set[str]:
    """The tensor names (without the ``transformer.`` prefix) a ChatGLM3 checkpoint with ``cfg`` must have."""
    names = set(_TOP)
    for i in range(int(cfg["num_layers"])):
        names.update(f"encoder.layers.{i}.{part}" for part in _LAYER_PARTS)
        names.add(f"encoder.layers.{i}.{_QKV}weight")
        if cfg.get("add_qkv_bias", False):
            names.add(f"encoder.layers.{i}.{_QKV}bias")
    return names


def _strip(name: str) -> str:
    return name[len(_PREFIX):] if name.startswith(_PREFIX) else name


def check_tensor_names(names: Iterable[str], cfg: dict[str, Any], where: Path) -> None:
    """Raise one :class:`ModelError` listing every missing and unexpected tensor of a checkpoint."""
    present = {_strip(n) for n in names if not _IGNORED.match(n)}
    expected = expected_chatglm3_names(cfg)
    missing = sorted(expected - present, key=_natural)
    unexpected = sorted(present - expected, key=_natural)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors: {', '.join(_PREFIX + n for n in missing)}")
        if unexpected:
            parts.append(f"unexpected tensors: {', '.join(unexpected)}")
        raise ModelError(
            f"ChatGLM3 checkpoint {where} does not match its config.json "
            f"(num_layers={cfg.get('num_layers')}, add_qkv_bias={cfg.get('add_qkv_bias', False)}): "
            + "; ".join(parts) + ". Re-download the checkpoint or fix config.json"
        )


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _split_qkv(t: torch.Tensor, cfg: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("kv_channels") or int(cfg["hidden_size"]) // heads)
    if cfg.get("multi_query_attention", False):
        groups = int(cfg["multi_query_group_num"])
        sizes = [heads * head_dim, groups * head_dim, groups * head_dim]
        if t.shape[0] != sum(sizes):
            raise ModelError(f"query_key_value has {t.shape[0]} rows, expected {sum(sizes)} "
                             f"(heads {heads} + 2 x groups {groups}) x kv_channels {head_dim}: config.json "
                             "does not match the weights")
        return tuple(p.contiguous().clone() for p in torch.split(t, sizes, dim=0))
    # Without multi-query attention ChatGLM lays the fused rows out per head: [q_h, k_h, v_h] for each h.
    if t.shape[0] != 3 * heads * head_dim:
        raise ModelError(f"query_key_value has {t.shape[0]} rows, expected 3 x heads {heads} x "
                         f"kv_channels {head_dim}: config.json does not match the weights")
    per_head = t.reshape(heads, 3, head_dim, *t.shape[1:])
    return tuple(per_head[:, j].reshape(heads * head_dim, *t.shape[1:]).contiguous().clone()
                 for j in range(3))


def convert_chatglm3_state_dict(
    state: dict[str, torch.Tensor], cfg: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Rename/split ChatGLM3 tensors in ``state`` (any subset, e.g. one shard) to GlmForCausalLM names.

    ``rotary_pos_emb.inv_freq`` is dropped; names this mapping does not know are left out (the
    caller checks the full name set with :func:`check_tensor_names`). Dtypes are kept.
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if _IGNORED.match(name):
            continue
        short = _strip(name)
        if short in _TOP:
            out[_TOP[short]] = tensor
            continue
        match = _LAYER.match(short)
        if not match:
            continue
        layer, part = match.groups()
        prefix = f"model.layers.{layer}."
        if part in _LAYER_PARTS:
            out[prefix + _LAYER_PARTS[part]] = tensor
        elif part.startswith(_QKV) and part[len(_QKV):] in ("weight", "bias"):
            kind = part[len(_QKV):]
            for proj, piece in zip(("q_proj", "k_proj", "v_proj"), _split_qkv(tensor, cfg), strict=True):
                out[f"{prefix}self_attn.{proj}.{kind}"] = piece
    return out

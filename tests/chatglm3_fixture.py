"""Where the ChatGLM3-format test checkpoint is, and helpers that keep the ChatGLM3 tests fixture-agnostic.

The checkpoint is ``CHATGLM3_FIXTURE`` (default ``../shared/fixtures/chatglm3-tiny`` next to the repo), whose
reference comes from the original implementation; where it is absent (a user's clone), one is built once per
machine by ``tests/chatglm3_reference.py`` (own SentencePiece model, random weights, reference from the independent
pure-torch forward), so no ChatGLM3 test is skipped. Any ChatGLM3-format checkpoint with a ``reference.json`` /
``reference.safetensors`` (other shapes, ``.bin`` or safetensors, sharded or not, fp32/fp16/bf16) must pass.

Logit bounds are relative to the logits' scale (max |reference logit| of a case), since rounding moves every
logit in proportion to its size (a 6B checkpoint's logits are ~10x the tiny fixture's):

- weights stored in float32: 1e-5 x scale, at least 1e-4 (only the order of fp32 operations differs);
- float16 on disk: 5e-3 x scale (10 mantissa bits: each weight moves by up to 2^-11 relative; 3.4e-3 observed
  on the built checkpoint, 8e-4 on the shared one);
- bfloat16 on disk: 8e-2 x scale (7 mantissa bits; 4.6e-2 observed on the built checkpoint).

Computing in half precision instead of fp32 raises the bound to :data:`COMPUTE_RELATIVE` (fp16: 2.5e-2, as
fp16 arithmetic rounds every activation as well; bf16: 0.1) unless the weights' own
bound is larger. Greedy ids are compared exactly in fp32; in half
precision only while the reference's top-2 margin exceeds twice the bound (a smaller margin is a near-tie that
rounding may legitimately flip, and every later id depends on it).

Run as ``python -m tests.chatglm3_fixture DST [--layers N --hidden N --heads N --groups N --ffn N --seed N]``
to write a ChatGLM3-format checkpoint of other sizes with the fixture's tokenizer and a reference made by the
independent pure-torch forward of ``tests/chatglm3_reference.py`` (see :func:`write_reference_checkpoint`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

SHARED = Path(
    os.environ.get("CHATGLM3_FIXTURE") or Path(__file__).resolve().parents[2] / "shared/fixtures/chatglm3-tiny"
)
"""The fixture whose reference comes from the original implementation, where this clone has one."""


def built_fixture() -> Path:
    """A ChatGLM3-format checkpoint built by ``tests/chatglm3_reference.py`` (cached in the temp dir by a hash of
    that builder's source, torch and sentencepiece versions; written atomically)."""
    import hashlib
    import tempfile
    import uuid

    import sentencepiece
    import torch

    from tests import chatglm3_reference

    source = Path(chatglm3_reference.__file__).read_bytes()
    key = hashlib.sha256(source + f"{torch.__version__} {sentencepiece.__version__}".encode()).hexdigest()[:16]
    dst = Path(tempfile.gettempdir()) / f"inkstone-chatglm3-built-{key}"
    if not (dst / "reference.safetensors").is_file():
        tmp = dst.with_name(f"{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
        chatglm3_reference.build_checkpoint(tmp)
        try:
            tmp.rename(dst)
        except OSError:  # another session finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


HAS_SHARED = (SHARED / "reference.json").is_file()
FIXTURE = SHARED if HAS_SHARED else built_fixture()
"""The checkpoint the ChatGLM3 tests use: the shared one when present, else one built from the own reference."""

# Max |logit - reference| / scale for weights stored in each dtype (computed in fp32); see the module docstring.
DISK_RELATIVE = {"float32": 1e-5, "float16": 5e-3, "bfloat16": 8e-2}
# The same when the forward runs in that dtype instead of fp32 (weights rounded to it included).
COMPUTE_RELATIVE = {"float32": 0.0, "float16": 2.5e-2, "bfloat16": 1e-1}
FLOOR = 1e-4
"""Smallest bound: fp32 summation order alone moves tiny logits by ~1e-6..1e-5."""


def fixture_config(path: Path = FIXTURE) -> dict[str, Any]:
    """The checkpoint's ChatGLM3 ``config.json``."""
    return json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))


def fixture_reference(path: Path = FIXTURE) -> dict[str, Any]:
    """``reference.json`` of the checkpoint, with ``logits`` (key -> tensor) from ``reference.safetensors``."""
    from safetensors.torch import load_file

    data = json.loads((Path(path) / "reference.json").read_text(encoding="utf-8"))
    data["logits"] = load_file(str(Path(path) / "reference.safetensors"))
    return data


def dtype_name(dtype: torch.dtype | str) -> str:
    """``torch.float16`` / ``"float16"`` -> ``"float16"``."""
    return str(dtype).removeprefix("torch.")


@cache
def _disk_dtype(path: str, mtimes: tuple[int, ...]) -> str:
    from core.chatglm3 import read_chatglm3_state_dict

    dtypes = {dtype_name(t.dtype) for t in read_chatglm3_state_dict(Path(path)).values() if t.is_floating_point()}
    # The least precise dtype present decides (a mixed checkpoint is as rounded as its coarsest tensors).
    return max(dtypes, key=lambda d: DISK_RELATIVE.get(d, float("inf")))


def disk_dtype(path: Path = FIXTURE) -> str:
    """Name of the (least precise) floating dtype of the weights of checkpoint ``path`` as stored on disk."""
    from core.chatglm3.weights import weight_files

    files = weight_files(Path(path))
    return _disk_dtype(str(Path(path).resolve()), tuple(f.stat().st_mtime_ns for f in files))


def relative_tolerance(*disk: torch.dtype | str, compute: torch.dtype | str = "float32") -> float:
    """Max |logit - reference| / scale for weights rounded through each of ``disk`` (default: the fixture's dtype
    on disk), with the forward computed in ``compute``."""
    names = [dtype_name(d) for d in disk] or [disk_dtype()]
    return max(*(DISK_RELATIVE[d] for d in names), COMPUTE_RELATIVE[dtype_name(compute)])


def logits_bound(expected: torch.Tensor, relative: float) -> float:
    """The absolute bound for one case's logits: ``relative`` x max |expected|, at least :data:`FLOOR`."""
    return max(FLOOR, relative * float(expected.abs().max()))


def _random_like(source: dict[str, torch.Tensor], cfg: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Random ChatGLM3 weights for ``cfg`` with each tensor's mean/std taken from its counterpart in ``source``
    (same name, layer index wrapped around; projections' std scaled by sqrt(fan-in ratio)), so activations and
    logits keep the scale of the source fixture's."""
    import re

    import torch

    gen = torch.Generator().manual_seed(seed)
    heads, hd = cfg["num_attention_heads"], cfg["kv_channels"]
    hidden, ffn, vocab = cfg["hidden_size"], cfg["ffn_hidden_size"], cfg["padded_vocab_size"]
    groups = cfg["multi_query_group_num"] if cfg.get("multi_query_attention") else heads
    qkv_rows = (heads + 2 * groups) * hd
    shapes = {"embedding.word_embeddings.weight": (vocab, hidden), "encoder.final_layernorm.weight": (hidden,),
              "output_layer.weight": (vocab, hidden)}
    for i in range(cfg["num_layers"]):
        p = f"encoder.layers.{i}."
        shapes |= {p + "input_layernorm.weight": (hidden,), p + "self_attention.query_key_value.weight":
                   (qkv_rows, hidden), p + "self_attention.dense.weight": (hidden, heads * hd),
                   p + "post_attention_layernorm.weight": (hidden,), p + "mlp.dense_h_to_4h.weight": (2 * ffn, hidden),
                   p + "mlp.dense_4h_to_h.weight": (hidden, ffn)}
        if cfg.get("add_qkv_bias"):
            shapes[p + "self_attention.query_key_value.bias"] = (qkv_rows,)
    layers = 1 + max(int(m.group(1)) for k in source if (m := re.search(r"\.layers\.(\d+)\.", k)))
    sd = {}
    for name, shape in shapes.items():
        like = source[re.sub(r"\.layers\.(\d+)\.", lambda m: f".layers.{int(m.group(1)) % layers}.",
                             "transformer." + name)].float()
        std = like.std()
        if len(shape) == 2 and "embedding" not in name:
            std = std * (like.shape[1] / shape[1]) ** 0.5
        sd["transformer." + name] = torch.randn(*shape, generator=gen) * std + like.mean()
    rot = hd // 2
    base = 10000.0 * (cfg.get("rope_ratio") or 1)
    sd["transformer.rotary_pos_emb.inv_freq"] = 1.0 / base ** (torch.arange(0, rot, 2, dtype=torch.float) / rot)
    return sd


def write_reference_checkpoint(dst: Path, *, source: Path = FIXTURE, seed: int = 0,
                               max_new_tokens: int = 16, **config_changes: Any) -> Path:
    """Write a fp32 ChatGLM3-format checkpoint (random weights scaled like ``source``'s) and its reference to ``dst``.

    ``config_changes`` (ChatGLM3 field names, e.g. ``num_layers=3, hidden_size=96``) are applied to the
    config of ``source``, whose tokenizer files are copied. ``reference.json`` keeps ``source``'s cases
    (messages, ``prompt_ids`` of the original tokenizer), ``special_ids``, ``eos_token_id`` and ``encode``
    facts; logits, greedy ids (up to ``max_new_tokens``, stopping after eos/``<|user|>``/``<|observation|>``)
    and ``greedy_text`` come from the independent pure-torch forward ``chatglm3_forward``. Not a test: used to
    build fixtures of other shapes (point ``CHATGLM3_FIXTURE`` at ``dst``).
    """
    import torch
    from safetensors.torch import save_file

    from core.chatglm3 import ChatGLM3Tokenizer, read_chatglm3_state_dict
    from tests.chatglm3_reference import chatglm3_forward

    source, dst = Path(source), Path(dst)
    cfg = fixture_config(source) | config_changes
    if {"hidden_size", "num_attention_heads"} & set(config_changes) and "kv_channels" not in config_changes:
        cfg["kv_channels"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    cfg["torch_dtype"] = "float32"
    sd = _random_like(read_chatglm3_state_dict(source), cfg, seed)
    dst.mkdir(parents=True)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    save_file(sd, str(dst / "model.safetensors"), metadata={"format": "pt"})
    for name in ("tokenizer.model", "tokenizer_config.json", "generation_config.json"):
        if (source / name).is_file():
            shutil.copy(source / name, dst / name)
    src_ref = json.loads((source / "reference.json").read_text(encoding="utf-8"))
    special = src_ref["special_ids"]
    stop = [src_ref["eos_token_id"], special["<|user|>"], special["<|observation|>"]]
    tok = ChatGLM3Tokenizer(dst)
    logits: dict[str, torch.Tensor] = {}
    cases = []
    for i, case in enumerate(src_ref["cases"]):
        ids = list(case["prompt_ids"])
        key = f"logits_{i}"
        with torch.no_grad():
            logits[key] = chatglm3_forward(sd, cfg, ids).contiguous()
            new: list[int] = []
            next_id = int(logits[key][-1].argmax())
            while True:
                new.append(next_id)
                if next_id in stop or len(new) == max_new_tokens:
                    break
                next_id = int(chatglm3_forward(sd, cfg, ids + new)[-1].argmax())
        cases.append({"messages": case["messages"], "prompt_ids": ids, "greedy_new_ids": new,
                      "greedy_text": tok.decode(new), "logits_key": key})
    ref = {"special_ids": special, "eos_token_id": src_ref["eos_token_id"], "cases": cases,
           "encode": src_ref["encode"]}
    (dst / "reference.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1), encoding="utf-8")
    save_file(logits, str(dst / "reference.safetensors"))
    return dst


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=write_reference_checkpoint.__doc__.split("\n")[0])
    parser.add_argument("dst", type=Path)
    parser.add_argument("--source", type=Path, default=FIXTURE)
    parser.add_argument("--seed", type=int, default=0)
    for flag, field in (("layers", "num_layers"), ("hidden", "hidden_size"), ("heads", "num_attention_heads"),
                        ("groups", "multi_query_group_num"), ("ffn", "ffn_hidden_size"), ("seq-length", "seq_length")):
        parser.add_argument(f"--{flag}", type=int, dest=field)
    args = vars(parser.parse_args())
    dst, source, seed = args.pop("dst"), args.pop("source"), args.pop("seed")
    changes = {k: v for k, v in args.items() if v is not None}
    print(write_reference_checkpoint(dst, source=source, seed=seed, **changes))

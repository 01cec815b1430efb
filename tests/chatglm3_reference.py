"""The project's own reference for ChatGLM3 (not a test): an independent pure-torch forward of the original
architecture, the original prompt format written from its description with SentencePiece alone, and a builder
that writes a complete ChatGLM3-format test checkpoint (``tokenizer.model`` trained here, random weights,
``reference.json`` / ``reference.safetensors``) so the ChatGLM3 tests run on any clone, without ``../shared``.

Nothing here uses ``core.chatglm3``: the loader and tokenizer under test are checked against this code.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

SPECIAL_TOKENS = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop", "<|system|>", "<|user|>", "<|assistant|>",
                  "<|observation|>")

CASES: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "你好"}],
    [{"role": "system", "content": "You are a helpful assistant. 请用中文回答。"},
     {"role": "user", "content": "What is LoRA?"}, {"role": "assistant", "content": "LoRA 是一种低秩适配方法。"},
     {"role": "user", "content": "Give me one example, please."}],
    [{"role": "system", "content": "现在你要扮演皇帝身边的女人--甄嬛"}, {"role": "user", "content": "你是谁？"}],
    [{"role": "user", "content": "  leading spaces\nand a newline\tand a tab 😀 12345"},
     {"role": "user", "content": "继续 ... !?"}],
    [{"role": "user", "content": "查询天气"}, {"role": "assistant", "content": "好的"},
     {"role": "observation", "content": '{"temp": 21}'}],
]
"""Chat cases of the reference (the last message is the turn being answered)."""

ENCODE_TEXTS = ["你好，世界", "Hello world", " two  spaces", "emoji 😀 and 数字 2024"]

TOKENIZER_CORPUS = [
    "Hello, how are you today? I am fine, thank you.", "The quick brown fox jumps over the lazy dog.",
    "You are a helpful assistant. Answer briefly and clearly.", "Give me one example, please.",
    "What is LoRA? It is a low-rank adaptation method for large language models.",
    "你好，世界。今天天气很好，我们去公园散步吧。", "请用中文回答。这是一个测试句子，包含数字 12345 和标点！",
    "现在你要扮演皇帝身边的女人。你是谁？继续。查询天气，好的。", "def add(a, b):\n    return a + b\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9, tabs\tand newlines\n.", "leading spaces and a newline and a tab",
]

CONFIG: dict[str, Any] = {
    "_name_or_path": "chatglm3-tiny-built", "model_type": "chatglm", "architectures": ["ChatGLMModel"],
    "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
                 "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
                 "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration"},
    "add_bias_linear": False, "add_qkv_bias": True, "apply_residual_connection_post_layernorm": False,
    "attention_dropout": 0.0, "eos_token_id": 2, "pad_token_id": 0, "ffn_hidden_size": 96, "hidden_size": 64,
    "kv_channels": 16, "layernorm_epsilon": 1e-05, "multi_query_attention": True, "multi_query_group_num": 2,
    "num_attention_heads": 4, "num_layers": 2, "post_layer_norm": True, "pre_seq_len": None, "quantization_bit": 0,
    "rmsnorm": True, "seq_length": 512, "tie_word_embeddings": False, "torch_dtype": "float32",
}
"""A ChatGLM3-6B ``config.json`` shrunk: 2 layers, hidden 64, 4 heads of 16, 2 kv groups (vocab set by the build)."""


def chatglm3_forward(sd: dict[str, torch.Tensor], cfg: dict, ids: list[int]) -> torch.Tensor:
    """Logits [len(ids), vocab] of the original ChatGLM3 model, in fp32, from ChatGLM3-named weights."""

    def w(name: str) -> torch.Tensor:
        return sd["transformer." + name].float()

    heads, hd, eps = cfg["num_attention_heads"], cfg["kv_channels"], cfg["layernorm_epsilon"]
    mqa = cfg.get("multi_query_attention", False)
    groups = cfg["multi_query_group_num"] if mqa else heads
    rot = hd // 2  # RoPE covers the first half of each head
    base = 10000.0 * (cfg.get("rope_ratio") or 1)
    theta = 1.0 / base ** (torch.arange(0, rot, 2, dtype=torch.float) / rot)
    angles = torch.outer(torch.arange(len(ids), dtype=torch.float), theta)[:, None, :]  # [s, 1, rot/2]
    cos, sin = angles.cos(), angles.sin()

    def rms(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rope(x: torch.Tensor) -> torch.Tensor:  # [s, h, hd]; pairs (0,1), (2,3), ... rotate together
        pairs = x[..., :rot].reshape(*x.shape[:-1], rot // 2, 2)
        a, b = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack([a * cos - b * sin, b * cos + a * sin], -1).flatten(-2)
        return torch.cat([rotated, x[..., rot:]], -1)

    s = len(ids)
    causal = torch.full((s, s), float("-inf")).triu(1)
    x = w("embedding.word_embeddings.weight")[torch.tensor(ids)]
    for i in range(cfg["num_layers"]):
        p = f"encoder.layers.{i}."
        h = rms(x, w(p + "input_layernorm.weight"))
        qkv = h @ w(p + "self_attention.query_key_value.weight").T
        if cfg.get("add_qkv_bias"):
            qkv = qkv + w(p + "self_attention.query_key_value.bias")
        if mqa:
            q, k, v = qkv.split([heads * hd, groups * hd, groups * hd], -1)
            q, k, v = q.view(s, heads, hd), k.view(s, groups, hd), v.view(s, groups, hd)
        else:  # per-head layout [q_h, k_h, v_h]
            q, k, v = qkv.view(s, heads, 3 * hd).chunk(3, -1)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(heads // groups, dim=1)  # group g serves heads g*r .. g*r + r - 1
        v = v.repeat_interleave(heads // groups, dim=1)
        att = (torch.einsum("qhd,khd->hqk", q, k) / hd**0.5 + causal).softmax(-1)
        ctx = torch.einsum("hqk,khd->qhd", att, v).reshape(s, heads * hd)
        x = x + ctx @ w(p + "self_attention.dense.weight").T
        h = rms(x, w(p + "post_attention_layernorm.weight"))
        gate, up = (h @ w(p + "mlp.dense_h_to_4h.weight").T).chunk(2, -1)
        x = x + (F.silu(gate) * up) @ w(p + "mlp.dense_4h_to_h.weight").T
    return rms(x, w("encoder.final_layernorm.weight")) @ w("output_layer.weight").T


def reference_prompt_ids(sp: Any, messages: list[dict[str, Any]]) -> list[int]:
    """The original ``build_chat_input``: ``[gMASK] sop``, per message ``<|role|>`` + sp(metadata + "\\n") +
    sp(content) (system tools appended as indented JSON), then ``<|assistant|>``; specials follow the sp vocab."""
    n = sp.vocab_size()
    special = {tok: n + i for i, tok in enumerate(SPECIAL_TOKENS)}
    ids = [special["[gMASK]"], special["sop"]]
    for m in messages:
        content = m["content"]
        if m["role"] == "system" and m.get("tools"):
            content += "\n" + json.dumps(m["tools"], indent=4, ensure_ascii=False)
        ids += [special[f"<|{m['role']}|>"], *sp.encode(f"{m.get('metadata', '')}\n"), *sp.encode(content)]
    return ids + [special["<|assistant|>"]]


def reference_decode(sp: Any, ids: list[int]) -> str:
    """Answer text as the original ``SPTokenizer.decode_tokens`` gives it: runs of ordinary pieces decoded one run
    at a time, a special token (id >= the sp vocab) ending a run and left out; control pieces (``</s>``) dropped."""
    n, text, run = sp.vocab_size(), [], []
    for t in [*ids, n]:
        if t < n:
            run.append(t)
            continue
        text.append(sp.decode(run))
        run = []
    return "".join(text)


def train_tokenizer() -> bytes:
    """A small SentencePiece BPE with byte fallback (unk 0, bos 1, eos 2, like ChatGLM3's), as model bytes."""
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TOKENIZER_CORPUS * 20), model_writer=out, vocab_size=500, model_type="bpe",
        byte_fallback=True, hard_vocab_limit=False, normalization_rule_name="identity",
        remove_extra_whitespaces=False, minloglevel=2, num_threads=1,
    )
    return out.getvalue()


def random_weights(cfg: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ChatGLM3-named weights for ``cfg`` (embeddings ~N(0, 1), projections ~N(0, 0.15-0.3), norms ~1)."""
    gen = torch.Generator().manual_seed(seed)
    heads, hd, hidden, ffn = cfg["num_attention_heads"], cfg["kv_channels"], cfg["hidden_size"], cfg["ffn_hidden_size"]
    groups = cfg["multi_query_group_num"] if cfg.get("multi_query_attention") else heads
    qkv_rows = (heads + 2 * groups) * hd

    def rnd(*shape: int, scale: float = 0.15) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    sd = {
        "transformer.embedding.word_embeddings.weight": rnd(cfg["padded_vocab_size"], hidden, scale=1.0),
        "transformer.encoder.final_layernorm.weight": 1 + rnd(hidden, scale=0.1),
        "transformer.output_layer.weight": rnd(cfg["padded_vocab_size"], hidden, scale=0.3),
        "transformer.rotary_pos_emb.inv_freq": 1.0 / 10000 ** (torch.arange(0, hd // 2, 2).float() / (hd // 2)),
    }
    for i in range(cfg["num_layers"]):
        p = f"transformer.encoder.layers.{i}."
        sd |= {
            p + "input_layernorm.weight": 1 + rnd(hidden, scale=0.1),
            p + "self_attention.query_key_value.weight": rnd(qkv_rows, hidden, scale=0.3),
            p + "self_attention.dense.weight": rnd(hidden, heads * hd),
            p + "post_attention_layernorm.weight": 1 + rnd(hidden, scale=0.1),
            p + "mlp.dense_h_to_4h.weight": rnd(2 * ffn, hidden),
            p + "mlp.dense_4h_to_h.weight": rnd(hidden, ffn),
        }
        if cfg.get("add_qkv_bias"):
            sd[p + "self_attention.query_key_value.bias"] = rnd(qkv_rows, scale=0.3)
    return sd


def greedy(sd: dict[str, torch.Tensor], cfg: dict[str, Any], ids: list[int], stop: list[int],
           max_new_tokens: int = 16) -> list[int]:
    """Greedy new ids from ``chatglm3_forward`` (full recompute per step), ending after a stop id or the limit."""
    new: list[int] = []
    while len(new) < max_new_tokens:
        next_id = int(chatglm3_forward(sd, cfg, ids + new)[-1].argmax())
        new.append(next_id)
        if next_id in stop:
            break
    return new


def build_checkpoint(dst: Path, seed: int = 0) -> Path:
    """Write a complete ChatGLM3-format test checkpoint with its reference to ``dst`` (which must not exist)."""
    import sentencepiece as spm
    from safetensors.torch import save_file

    model_bytes = train_tokenizer()
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    n = sp.vocab_size()
    cfg = dict(CONFIG, padded_vocab_size=(n + len(SPECIAL_TOKENS) + 63) // 64 * 64)
    cfg["vocab_size"] = cfg["padded_vocab_size"]
    sd = random_weights(cfg, seed)
    special = {tok: n + i for i, tok in enumerate(SPECIAL_TOKENS)}
    stop = [sp.eos_id(), special["<|user|>"], special["<|observation|>"]]
    dst.mkdir(parents=True)
    (dst / "tokenizer.model").write_bytes(model_bytes)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (dst / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ChatGLMTokenizer", "auto_map": {
        "AutoTokenizer": ["tokenization_chatglm.ChatGLMTokenizer", None]}}, indent=2), encoding="utf-8")
    save_file(sd, str(dst / "model.safetensors"), metadata={"format": "pt"})
    cases, logits = [], {}
    for i, messages in enumerate(CASES):
        ids = reference_prompt_ids(sp, messages)
        key = f"logits_{i}"
        with torch.no_grad():
            logits[key] = chatglm3_forward(sd, cfg, ids).contiguous()
            new = greedy(sd, cfg, ids, stop)
        text = reference_decode(sp, new)
        cases.append({"messages": messages, "prompt_ids": ids, "greedy_new_ids": new, "greedy_text": text,
                      "logits_key": key})
    ref = {"special_ids": {k: special[k] for k in ("[gMASK]", "sop", "<|system|>", "<|user|>", "<|assistant|>",
                                                   "<|observation|>")},
           "eos_token_id": sp.eos_id(), "cases": cases,
           "encode": [{"text": t, "ids": sp.encode(t)} for t in ENCODE_TEXTS]}
    (dst / "reference.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1), encoding="utf-8")
    save_file(logits, str(dst / "reference.safetensors"))
    return dst

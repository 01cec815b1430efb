"""Map a ChatGLM3 ``config.json`` onto :class:`transformers.GlmConfig`, refusing what GLM cannot express."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from transformers import GlmConfig

# ChatGLM3 fields whose non-default value changes the architecture in a way GlmForCausalLM cannot
# represent: field -> (value that is supported, what the value means).
_UNSUPPORTED: dict[str, tuple[Any, str]] = {
    "add_bias_linear": (False, "biases on the dense/MLP projections"),
    "rmsnorm": (True, "LayerNorm instead of RMSNorm"),
    "post_layer_norm": (True, "no final layer norm"),
    "apply_residual_connection_post_layernorm": (False, "residuals taken after the layer norm"),
}


def _int_field(cfg: dict[str, Any], name: str, default: int | None = None) -> int:
    value = cfg.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelError(
            f"ChatGLM3 config field {name!r} is {value!r}; it must be a positive integer "
            "(fix or re-download config.json)"
        )
    return value


def check_supported(cfg: dict[str, Any]) -> None:
    """Raise :class:`ModelError` naming the first ChatGLM3 config field the GLM mapping cannot represent."""
    for name, (ok, meaning) in _UNSUPPORTED.items():
        if name in cfg and cfg[name] is not None and bool(cfg[name]) != ok:
            raise ModelError(
                f"ChatGLM3 config field {name!r} is {cfg[name]!r} ({meaning}); only {ok!r} can be loaded "
                "on the native GLM architecture: use a standard ChatGLM3 checkpoint"
            )
    if cfg.get("pre_seq_len") is not None:
        raise ModelError(
            f"ChatGLM3 config field 'pre_seq_len' is {cfg['pre_seq_len']!r} (P-tuning v2 prefix); prefix "
            "checkpoints are not supported: set it to null and load the prefix-free base, or merge it first"
        )
    qbit = cfg.get("quantization_bit") or 0
    if qbit != 0:
        raise ModelError(
            f"ChatGLM3 config field 'quantization_bit' is {qbit!r}: ChatGLM's own int4/int8 weights cannot "
            "be loaded; use the full-precision checkpoint and a bitsandbytes quantization setting instead"
        )


def glm_config_from_chatglm3(cfg: dict[str, Any]) -> GlmConfig:
    """Return the :class:`transformers.GlmConfig` equivalent to ChatGLM3 config dict ``cfg``.

    Raises:
        ModelError: a field is missing/invalid or describes an architecture GLM cannot represent.
    """
    from transformers import GlmConfig

    check_supported(cfg)
    heads = _int_field(cfg, "num_attention_heads")
    hidden = _int_field(cfg, "hidden_size")
    head_dim = _int_field(cfg, "kv_channels", hidden // heads if hidden % heads == 0 else None)
    if head_dim % 4:
        raise ModelError(
            f"ChatGLM3 config field 'kv_channels' is {head_dim}; RoPE on half of each head needs a "
            "multiple of 4"
        )
    if cfg.get("multi_query_attention", False):
        kv_heads = _int_field(cfg, "multi_query_group_num")
    else:
        kv_heads = heads
    if heads % kv_heads:
        raise ModelError(
            f"ChatGLM3 config field 'multi_query_group_num' is {kv_heads}; it must divide "
            f"num_attention_heads ({heads})"
        )
    vocab = _int_field(cfg, "padded_vocab_size", cfg.get("vocab_size"))
    rope_ratio = cfg.get("rope_ratio")
    rope_ratio = 1.0 if rope_ratio is None else rope_ratio
    if isinstance(rope_ratio, bool) or not isinstance(rope_ratio, (int, float)) or rope_ratio <= 0:
        raise ModelError(
            f"ChatGLM3 config field 'rope_ratio' is {rope_ratio!r}; it must be a positive number"
        )
    eps = cfg.get("layernorm_epsilon", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0:
        raise ModelError(
            f"ChatGLM3 config field 'layernorm_epsilon' is {eps!r}; it must be a positive number"
        )
    eos = cfg.get("eos_token_id", 2)
    pad = cfg.get("pad_token_id", 0)
    return GlmConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=_int_field(cfg, "ffn_hidden_size"),
        num_hidden_layers=_int_field(cfg, "num_layers"),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        hidden_act="silu",
        attention_dropout=float(cfg.get("attention_dropout") or 0.0),
        max_position_embeddings=_int_field(cfg, "seq_length", 2048),
        rms_norm_eps=float(eps),
        use_cache=True,
        tie_word_embeddings=False,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0 * float(rope_ratio),
            "partial_rotary_factor": 0.5,
        },
        pad_token_id=pad if isinstance(pad, int) and 0 <= pad < vocab else None,
        eos_token_id=eos,
        bos_token_id=None,
        attention_bias=bool(cfg.get("add_qkv_bias", False)),
    )

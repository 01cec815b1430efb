"""Helpers (not tests) that build tiny random-weight native Hugging Face checkpoints for tests, offline.

``make_native_checkpoint(family, dst)`` writes a 2-layer, hidden-64, 4-head model of family ``llama``
(LlamaForCausalLM, Llama-3.1 chat format), ``qwen2`` (Qwen2ForCausalLM, Qwen2.5 ChatML) or ``glm``
(GlmForCausalLM, GLM-4-9B-chat-hf format) plus a real tokenizer: a byte-level BPE trained with the
``tokenizers`` library on a few sentences, the family's special tokens, and a jinja ``chat_template`` in
the family's format, wrapped in ``PreTrainedTokenizerFast``. The result loads with
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` without any hub access.
Outputs are random text; only formats and plumbing are real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORPUS = [
    "Hello, how are you today? I am fine, thank you.",
    "The quick brown fox jumps over the lazy dog.",
    "You are a helpful assistant. Answer briefly and clearly.",
    "What is LoRA? It is a low-rank adaptation method for large language models.",
    "你好，世界。今天天气很好，我们去公园散步吧。",
    "请用中文回答。这是一个测试句子，包含数字 12345 和标点！",
    "def add(a, b):\n    return a + b\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9, emoji 😀 and tabs\tand newlines\n.",
]

QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
    r"""|\s+(?!\S)|\s+"""
)

QWEN2_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. '"
    "'You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] | trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

GLM4_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- for item in messages %}"
    "{%- if item['role'] in ['system', 'user', 'assistant', 'observation'] %}"
    "{{- '<|' + item['role'] + '|>\\n' + item['content'] }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>' }}{%- endif %}"
)

FAMILIES: dict[str, dict[str, Any]] = {
    "qwen2": {
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "template": QWEN2_TEMPLATE,
        "tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        "stop": ["<|im_end|>", "<|endoftext|>"],
    },
    "llama": {
        "specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                     "<|eom_id|>", "<|eot_id|>"],
        "template": LLAMA3_TEMPLATE,
        "tokens": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                   "pad_token": "<|end_of_text|>"},
        "stop": ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
    },
    "glm": {
        "specials": ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>",
                     "<|user|>", "<|assistant|>", "<|observation|>"],
        "template": GLM4_TEMPLATE,
        "tokens": {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
        "stop": ["<|endoftext|>", "<|user|>", "<|observation|>"],
    },
}


def make_tokenizer(family: str) -> Any:
    """Train a small byte-level BPE with ``family``'s special tokens; return a ``PreTrainedTokenizerFast``."""
    return bpe_tokenizer(FAMILIES[family], qwen2_pipeline=family == "qwen2")


def bpe_tokenizer(spec: dict[str, Any], *, qwen2_pipeline: bool) -> Any:
    """A small byte-level BPE trained on ``CORPUS`` with ``spec``'s ``specials``, ``template`` and ``tokens``
    (eos/pad); ``qwen2_pipeline``: Qwen2.5's NFC + split regex before the byte level."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    if qwen2_pipeline:  # Qwen2.5's own pipeline (transformers' Qwen2Tokenizer rebuilds exactly this)
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=spec["specials"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        chat_template=spec["template"],
        additional_special_tokens=[s for s in spec["specials"] if s not in spec["tokens"].values()],
        **spec["tokens"],
    )


def _model_config(family: str, tokenizer: Any) -> Any:
    from transformers import GlmConfig, LlamaConfig, Qwen2Config

    spec = FAMILIES[family]
    stop = [tokenizer.convert_tokens_to_ids(t) for t in spec["stop"]]
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "eos_token_id": stop,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if family == "llama":
        return LlamaConfig(**common, bos_token_id=tokenizer.bos_token_id, rope_parameters={
            "rope_type": "default", "rope_theta": 500000.0}, tie_word_embeddings=False)
    if family == "qwen2":
        return Qwen2Config(**common, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                           tie_word_embeddings=True)
    return GlmConfig(**common, head_dim=16, attention_bias=True, rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5})


def make_native_checkpoint(family: str, dst: Path) -> Path:
    """Write a tiny random ``family`` checkpoint ("llama", "qwen2" or "glm") with tokenizer into ``dst``."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(family)
    config = _model_config(family, tokenizer)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
        bos_token_id=getattr(config, "bos_token_id", None),
    )
    model.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    return dst

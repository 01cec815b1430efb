"""Helpers (not tests) that build tiny random vision-language checkpoints for tests, offline.

``make_vlm_checkpoint(kind, dst)`` writes a directory that ``AutoModelForImageTextToText`` and ``AutoProcessor``
load without any hub access, the way a downloaded Qwen2-VL or LLaVA directory does: a 2-layer, hidden-64 language
model, a 1-2 layer vision tower with few channels, and a processor made of a real image processor (the
architecture's own class, small sizes) and a byte-level BPE tokenizer trained here (``tests.fixtures_native``)
with the architecture's special tokens and a chat template that takes content parts (``{"type": "image"}``).

Kinds: ``qwen2_vl`` (Qwen2VLForConditionalGeneration, ChatML with ``<|vision_start|><|image_pad|><|vision_end|>``,
dynamic resolution: a bigger picture gives more image tokens) and ``llava`` (LlavaForConditionalGeneration: a CLIP
tower on a Llama, a fixed number of ``<image>`` tokens per picture) and ``smolvlm`` (SmolVLMForConditionalGeneration,
Idefics3's architecture: a SigLIP tower, pixel shuffle, a picture cut into tiles) and ``glm4v``
(Glm4vForConditionalGeneration, GLM-4V in its transformers form). Weights are random: only formats are real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fixtures_native import bpe_tokenizer

QWEN2_VL_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

LLAVA_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- message['role'].upper() + ': ' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{{- '<image>\\n' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' %}{{- '</s>' }}{%- endif %}{{- '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'ASSISTANT:' }}{%- endif %}"
)

SMOLVLM_TEMPLATE = (
    "<|im_start|>"
    "{%- for message in messages %}"
    "{{- message['role'] | capitalize }}"
    "{%- if message['content'] is string %}{{- ': ' + message['content'] }}"
    "{%- else %}{%- if message['content'][0]['type'] == 'image' %}{{- ':' }}{%- else %}{{- ': ' }}{%- endif %}"
    "{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{{- '<image>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<end_of_utterance>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant:' }}{%- endif %}"
)

GLM4V_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- for message in messages %}"
    "{{- '<|' + message['role'] + '|>\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{{- '<|begin_of_image|><|image|><|end_of_image|>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\n' }}{%- endif %}"
)

KINDS: dict[str, dict[str, Any]] = {
    "qwen2_vl": {
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                     "<|image_pad|>", "<|video_pad|>"],
        "template": QWEN2_VL_TEMPLATE,
        "tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        "stop": ["<|im_end|>", "<|endoftext|>"],
    },
    "llava": {
        "specials": ["<s>", "</s>", "<unk>", "<image>", "<pad>"],
        "template": LLAVA_TEMPLATE,
        "tokens": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
        "stop": ["</s>"],
    },
    "smolvlm": {
        "specials": ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>",
                     "<global-img>"],
        "template": SMOLVLM_TEMPLATE,
        "tokens": {"eos_token": "<end_of_utterance>", "pad_token": "<|endoftext|>"},
        "stop": ["<end_of_utterance>", "<|endoftext|>"],
    },
    "glm4v": {
        "specials": ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
                     "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|image|>",
                     "<|begin_of_video|>", "<|end_of_video|>", "<|video|>"],
        "template": GLM4V_TEMPLATE,
        "tokens": {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
        "stop": ["<|endoftext|>", "<|user|>", "<|observation|>"],
    },
}


def make_vlm_tokenizer(kind: str) -> Any:
    """A small byte-level BPE with ``kind``'s special tokens and chat template (``PreTrainedTokenizerFast``)."""
    return bpe_tokenizer(KINDS[kind], qwen2_pipeline=True)


def _text(tokenizer: Any, kind: str) -> dict[str, Any]:
    stop = [tokenizer.convert_tokens_to_ids(t) for t in KINDS[kind]["stop"]]
    return {"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
            "eos_token_id": stop, "pad_token_id": tokenizer.pad_token_id}


def _qwen2_vl(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import Qwen2VLConfig, Qwen2VLImageProcessorPil, Qwen2VLProcessor

    ids = tokenizer.convert_tokens_to_ids
    text = _text(tokenizer, "qwen2_vl") | {"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                                                 "mrope_section": [4, 2, 2]},
                                        "initializer_range": 0.2}  # varied logits: answers depend on the picture
    config = Qwen2VLConfig(
        text_config=text,
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "initializer_range": 0.2},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    # Qwen2-VL's own image processor, with a pixel budget small enough for CPU tests (a 1024x768 picture gives at
    # most 96 image tokens); real checkpoints allow up to 12.8 million pixels. Its processor (with a video half that
    # needs torchvision) is written as the files a download has.
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 96)
    return config, {"processor_class": Qwen2VLProcessor.__name__, "image_processor": image_processor,
                    "tokenizer": tokenizer, "chat_template": QWEN2_VL_TEMPLATE}


def _llava(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaProcessor

    text = _text(tokenizer, "llava") | {"model_type": "llama", "bos_token_id": tokenizer.bos_token_id,
                                        "head_dim": 16, "tie_word_embeddings": False}
    vision = {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 56, "patch_size": 14,
              "projection_dim": 32}
    config = LlavaConfig(text_config=text, vision_config=vision, image_token_index=tokenizer.convert_tokens_to_ids(
        "<image>"), image_seq_length=16, vision_feature_layer=-2, vision_feature_select_strategy="default",
        tie_word_embeddings=False)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                               num_additional_image_tokens=1)
    return config, processor


def _smolvlm(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import SmolVLMConfig, SmolVLMImageProcessorPil, SmolVLMProcessor

    text = _text(tokenizer, "smolvlm") | {"model_type": "llama", "head_dim": 16, "tie_word_embeddings": False,
                                          "initializer_range": 0.2}  # varied logits: answers depend on the picture
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 56, "patch_size": 14, "initializer_range": 0.2}
    config = SmolVLMConfig(text_config=text, vision_config=vision, scale_factor=2,
                           image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=False)
    # SmolVLM's own splitting: a picture is resized to 112 px on its longest side and cut into 56 px tiles plus a
    # global view, each 4 image tokens after the pixel shuffle (real checkpoints: 1536 px, 512 px tiles).
    image_processor = SmolVLMImageProcessorPil(size={"longest_edge": 112}, max_image_size={"longest_edge": 56})
    return config, {"processor_class": SmolVLMProcessor.__name__, "image_processor": image_processor,
                    "tokenizer": tokenizer, "chat_template": SMOLVLM_TEMPLATE, "image_seq_len": 4}


def _glm4v(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import Glm4vConfig, Glm4vImageProcessorPil, Glm4vProcessor

    ids = tokenizer.convert_tokens_to_ids
    text = _text(tokenizer, "glm4v") | {"initializer_range": 0.2, "rope_parameters": {
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1], "partial_rotary_factor": 0.5}}
    vision = {"depth": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "out_hidden_size": 64,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "image_size": 56,
              "initializer_range": 0.2}
    config = Glm4vConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image|>"),
                         video_token_id=ids("<|video|>"), image_start_token_id=ids("<|begin_of_image|>"),
                         image_end_token_id=ids("<|end_of_image|>"), video_start_token_id=ids("<|begin_of_video|>"),
                         video_end_token_id=ids("<|end_of_video|>"), tie_word_embeddings=False)
    image_processor = Glm4vImageProcessorPil(size={"shortest_edge": 28 * 28 * 4, "longest_edge": 28 * 28 * 96})
    return config, {"processor_class": Glm4vProcessor.__name__, "image_processor": image_processor,
                    "tokenizer": tokenizer, "chat_template": GLM4V_TEMPLATE}


def make_vlm_checkpoint(kind: str, dst: Path) -> Path:
    """Write a tiny random ``kind`` (a key of ``KINDS``) image-text-to-text checkpoint with its processor."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    tokenizer = make_vlm_tokenizer(kind)
    config, processor = {"qwen2_vl": _qwen2_vl, "llava": _llava, "smolvlm": _smolvlm, "glm4v": _glm4v}[kind](tokenizer)
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config)
    text = config.get_text_config()
    model.generation_config = GenerationConfig(eos_token_id=text.eos_token_id, pad_token_id=text.pad_token_id)
    model.save_pretrained(dst)
    if isinstance(processor, dict):
        processor["image_processor"].save_pretrained(dst)
        processor["tokenizer"].save_pretrained(dst)
        (dst / "chat_template.jinja").write_text(processor["chat_template"], encoding="utf-8")
        options = {k: v for k, v in processor.items() if k not in ("image_processor", "tokenizer", "chat_template")}
        (dst / "processor_config.json").write_text(json.dumps(options), encoding="utf-8")
    else:
        processor.save_pretrained(dst)
    return dst

"""Load ChatGLM3 checkpoints on transformers' native GLM architecture, without ``trust_remote_code``.

A ChatGLM3 download ships Python files that no longer run on current transformers. This package never
executes anything from the checkpoint directory: it maps the config onto :class:`transformers.GlmConfig`,
renames/splits the weights onto :class:`transformers.GlmForCausalLM` (converted once into a cache
directory), and rebuilds the prompt format from the SentencePiece ``tokenizer.model``.

Names are imported lazily so that ``is_chatglm3_checkpoint`` stays cheap (no torch import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "is_chatglm3_checkpoint": "detect",
    "read_chatglm3_config": "detect",
    "glm_config_from_chatglm3": "config",
    "read_chatglm3_state_dict": "weights",
    "convert_chatglm3_state_dict": "weights",
    "convert_chatglm3_checkpoint": "convert",
    "converted_checkpoint_dir": "convert",
    "default_cache_dir": "convert",
    "load_chatglm3_model": "convert",
    "ChatGLM3Tokenizer": "tokenizer",
    "SPECIAL_TOKENS": "tokenizer",
}

__all__ = [
    "ChatGLM3Tokenizer",
    "SPECIAL_TOKENS",
    "convert_chatglm3_checkpoint",
    "convert_chatglm3_state_dict",
    "converted_checkpoint_dir",
    "default_cache_dir",
    "glm_config_from_chatglm3",
    "is_chatglm3_checkpoint",
    "load_chatglm3_model",
    "read_chatglm3_config",
    "read_chatglm3_state_dict",
]

if TYPE_CHECKING:  # pragma: no cover
    from .config import glm_config_from_chatglm3
    from .convert import (
        convert_chatglm3_checkpoint,
        converted_checkpoint_dir,
        default_cache_dir,
        load_chatglm3_model,
    )
    from .detect import is_chatglm3_checkpoint, read_chatglm3_config
    from .tokenizer import SPECIAL_TOKENS, ChatGLM3Tokenizer
    from .weights import convert_chatglm3_state_dict, read_chatglm3_state_dict


def __getattr__(name: str) -> Any:
    """Import a public name from its submodule on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)

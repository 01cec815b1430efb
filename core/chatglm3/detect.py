"""Recognise a ChatGLM3-format checkpoint directory and read its ``config.json`` (stdlib only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import ModelError


def is_chatglm3_checkpoint(path: Path) -> bool:
    """Return True if ``path`` is a directory whose ``config.json`` has ``model_type == "chatglm"``.

    Unreadable or malformed configs count as "not ChatGLM3" (the caller reports its own error).
    """
    cfg_file = Path(path) / "config.json"
    try:
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("model_type") == "chatglm"


def read_chatglm3_config(path: Path) -> dict[str, Any]:
    """Read and return the ChatGLM3 ``config.json`` of checkpoint directory ``path``.

    Raises:
        ModelError: the file is missing, is not JSON, or is not a ChatGLM config.
    """
    cfg_file = Path(path) / "config.json"
    try:
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{cfg_file} does not exist: point the model path at a ChatGLM3 checkpoint directory"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{cfg_file} cannot be read as JSON ({exc}); re-download the checkpoint") from None
    if not isinstance(data, dict) or data.get("model_type") != "chatglm":
        found = data.get("model_type") if isinstance(data, dict) else type(data).__name__
        raise ModelError(
            f"{cfg_file} has model_type {found!r}, expected 'chatglm': this is not a ChatGLM3 checkpoint"
        )
    return data

"""Read a checkpoint directory's ``config.json`` safely and check it before any weights load (a leaf module).

Every problem a user can have with a downloaded model directory (unreadable, not JSON, not an object, no
tokenizer, code that must not run) becomes one ``ModelError`` naming the file and the fix. Nothing here imports
torch or transformers at module level; ``core.models.modelinfo`` and ``core.models.loader`` build on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import ModelError, RemoteCodeRefused

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
    "tokenizer.tiktoken",
)
"""Any one of these (with ``tokenizer_config.json``) lets ``AutoTokenizer`` build a tokenizer offline."""


def read_config(path: Path) -> dict[str, Any]:
    """The ``config.json`` of checkpoint directory ``path`` as a dict; ModelError says what is wrong with it."""
    file = Path(path) / "config.json"
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{file} does not exist: point the model at a Hugging Face model directory.") from None
    except IsADirectoryError:
        raise ModelError(f"{file} is a directory, not a file: re-download the model.") from None
    except OSError as exc:
        raise ModelError(f"Cannot read {file} ({exc.strerror or exc}): check its permissions.") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelError(f"{file} is not text (not UTF-8): the file is corrupt; re-download the model.") from None
    except RecursionError:
        raise ModelError(f"{file} is nested too deeply to be a model config: re-download the model.") from None
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{file} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); the download may be "
            "truncated: re-download the model."
        ) from None
    if not isinstance(data, dict):
        raise ModelError(
            f"{file} holds a JSON {type(data).__name__}, not an object of model settings: re-download the model."
        )
    return data


def context_window_of(config: Any) -> int:
    """The model's context length from its config (object or dict; a vision-language model's from its text
    config); 2048 when it declares none."""
    if isinstance(config, dict) and isinstance(config.get("text_config"), dict):
        config = {**config["text_config"], **config}
    elif not isinstance(config, dict) and hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    for name in ("max_position_embeddings", "seq_length", "n_positions"):
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 2048


def _code_target(auto_map: Any) -> str:
    """The class reference ``auto_map`` gives for a causal LM (``module.Class`` or ``repo--module.Class``)."""
    if not isinstance(auto_map, dict) or not auto_map:
        return ""
    target = auto_map.get("AutoModelForCausalLM") or auto_map.get("AutoModel") or next(iter(auto_map.values()))
    if isinstance(target, list):
        target = next((t for t in target if t), "")
    return target if isinstance(target, str) else ""


def check_remote_code(path: Path, trust_remote_code: bool, config: dict[str, Any] | None = None) -> None:
    """Refuse a checkpoint whose architecture exists only as Python code (in its directory or a remote repo).

    Passes for a ``model_type`` the installed transformers knows, or when ``trust_remote_code`` was given.
    """
    from transformers import CONFIG_MAPPING

    config = read_config(path) if config is None else config
    model_type = config.get("model_type")
    if (isinstance(model_type, str) and model_type in CONFIG_MAPPING) or trust_remote_code:
        return
    target = _code_target(config.get("auto_map"))
    if "--" in target:
        repo, _, ref = target.partition("--")
        raise RemoteCodeRefused(
            f"{path} needs Python code ({ref}) that lives in the remote repository {repo!r}, not in this directory "
            f"(model_type {model_type!r}). Inkstone never downloads or runs remote model code: use a checkpoint in a "
            "format transformers supports natively."
        )
    module = target.rsplit(".", 1)[0]
    if module:
        file = Path(path) / f"{module.replace('.', '/')}.py"
        where = f"({file})" if file.is_file() else f"(auto_map names {module}.py, which is not in the directory)"
        raise RemoteCodeRefused(
            f"{path} needs its own Python code {where}, model_type {model_type!r}, and Inkstone does not run model "
            "code by default. Read that file, then pass --trust-remote-code if you trust it, or use a checkpoint "
            "in a format transformers supports natively."
        )
    raise ModelError(
        f"{path}: model_type {model_type!r} is not supported by the installed transformers and the checkpoint has "
        "no code for it: use a supported model or upgrade transformers."
    )


def check_tokenizer_files(path: Path) -> None:
    """Refuse a Hugging Face directory with no tokenizer files (checked before transformers fails obscurely)."""
    if any((Path(path) / name).is_file() for name in TOKENIZER_FILES):
        return
    raise ModelError(
        f"{path} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)}): copy them from the original "
        "download next to config.json."
    )

"""What a new chat starts with, as saved from the settings page: a persona and generation settings.

Saved in ``<data dir>/new-chat.toml``; the configured defaults (``inkstone.toml``, built-ins) fill in what the
file leaves out. Everything is validated before the file is written, and the file is replaced atomically,
so a refused or interrupted save leaves the previous defaults in place.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.chat.config import ChatConfig
from core.config import GenerationSettings, Settings
from core.errors import ConfigError, StorageError

if TYPE_CHECKING:  # the engine is built above chat; only its type is named here
    from core.engine import Engine

FILE_NAME = "new-chat.toml"
_FIELDS = {f.name: f.type for f in fields(GenerationSettings)}


@dataclass(frozen=True)
class ChatDefaults:
    """The persona (None: none) and generation settings a new chat starts with."""

    generation: GenerationSettings
    persona: str | None = None


def defaults_path(settings: Settings) -> Path:
    """The file new-chat defaults are saved in."""
    return settings.home / FILE_NAME


def _checked(values: dict[str, Any], base: GenerationSettings, source: str) -> GenerationSettings:
    """``base`` updated with ``values``; ConfigError naming ``source`` for an unknown key or a wrong type."""
    for key, value in values.items():
        if key not in _FIELDS:
            raise ConfigError(f"Unknown generation setting {key!r} in {source}: remove it or check its spelling.")
        if _FIELDS[key] in ("str", str):  # a choice such as prompt_lookup: GenerationSettings checks the value
            continue
        wants_int = _FIELDS[key] in ("int", int)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (wants_int and not isinstance(value, int)):
            kind = "a whole number" if wants_int else "a number"
            raise ConfigError(f"Generation setting {key}={value!r} in {source} is not {kind}: set {kind}.")
    return base.with_updates(**values)


def load_chat_defaults(settings: Settings) -> ChatDefaults:
    """The saved new-chat defaults over ``settings.generation``; ConfigError naming the file if it is broken."""
    path = defaults_path(settings)
    if not path.is_file():
        return ChatDefaults(settings.generation)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"New-chat defaults {path} cannot be read ({exc}): fix or delete the file.") from None
    persona = data.get("persona") or None
    if persona is not None and not isinstance(persona, str):
        raise ConfigError(f"persona={persona!r} in {path} is not a persona id: set a string or delete the line.")
    generation = data.get("generation", {})
    if not isinstance(generation, dict):
        raise ConfigError(f"generation in {path} must be a [generation] table: fix or delete the file.")
    return ChatDefaults(_checked(generation, settings.generation, str(path)), persona)


def save_chat_defaults(
    settings: Settings,
    generation: dict[str, Any],
    persona: str | None,
    check_persona: Callable[[str], object] | None = None,
) -> ChatDefaults:
    """Validate, then save the new-chat defaults; ConfigError/NotFoundError before anything is written.

    ``check_persona`` loads the persona to prove it is usable (it raises for a broken or unknown one).
    """
    checked = _checked(generation, settings.generation, "the new-chat defaults")
    persona = persona or None
    if persona is not None and check_persona is not None:
        check_persona(persona)
    lines = ["# Defaults for new chats, saved from Inkstone's settings page.\n"]
    if persona is not None:
        lines.append(f"persona = {json.dumps(persona, ensure_ascii=False)}\n")
    lines.append("\n[generation]\n")
    lines += [f"{key} = {value!r}\n" for key, value in checked.to_dict().items()]
    path = defaults_path(settings)
    temporary = path.with_name(f".{FILE_NAME}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text("".join(lines), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        raise StorageError(f"Could not save the new-chat defaults to {path}: {exc}. Free disk space or check "
                           "the data dir's permissions.") from None  # fmt: skip
    return ChatDefaults(checked, persona)


def draft_config(engine: Engine, persona: str | None = None, overrides: dict[str, Any] | None = None) -> ChatConfig:
    """What a new chat would get now: the saved defaults, with its persona's own defaults on top.

    The UI's new chat and ``python -m core chat`` both start from this. ``persona`` None takes the saved
    default persona (``""``/``none``: no persona, an id: that one); ``overrides`` are explicit generation
    settings (None values ignored). ConfigError/NotFoundError if the defaults file or its persona is broken.
    """
    defaults = load_chat_defaults(engine.settings)
    chosen = (defaults.persona or "") if persona is None else persona
    return engine.service.config(None, persona=chosen, overrides=overrides, defaults=defaults.generation)


def create_chat(engine: Engine, config: ChatConfig) -> str:
    """Store a new session with ``config`` (from ``draft_config``) and return its id."""
    return engine.service.create_session(config).id

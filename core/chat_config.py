"""The one place that decides a chat's persona, system prompt and generation settings.

The engine (new sessions), the chat service (every answer), the CLI (``--persona``, ``--temperature``...) and
the settings page all call ``chat_config``; nothing else merges settings dicts. Precedence, lowest first:
the app's defaults, then the persona's ``[generation]`` defaults (new sessions only), then what the session
stored, then explicit overrides. The system prompt is the persona's, else the one stored with the session.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.backends.base import AdapterSpec
from core.config import GenerationSettings
from core.errors import ConfigError
from core.history import Session
from core.personas import Persona

PersonaLoader = Callable[[str], Persona]


@dataclass(frozen=True)
class ChatConfig:
    """What one chat answers with; ``stored`` is the settings dict to keep with the session."""

    persona: Persona | None
    system_prompt: str | None
    settings: GenerationSettings
    stored: dict[str, Any]
    """The session's settings dict after this config: generation settings plus keys such as ``system_prompt``."""

    @property
    def persona_id(self) -> str | None:
        """The persona's id, or None without one."""
        return self.persona.id if self.persona else None

    @property
    def adapter(self) -> AdapterSpec | None:
        """The LoRA adapter to apply for answers (None: the base model)."""
        if self.persona is None or not self.persona.lora:
            return None
        return AdapterSpec(self.persona.id, self.persona.path)

    @property
    def system_source(self) -> str:
        """Where the system prompt comes from, for error messages."""
        if self.persona is not None and self.persona.system_prompt:
            return f"persona {self.persona.id!r}"
        return "this chat's stored system_prompt"


def load_checked_persona(persona_id: str, personas: PersonaLoader | None, model_id: str) -> Persona:
    """Load a persona and check that its adapter (if any) was made for ``model_id``; ConfigError if not."""
    if personas is None:
        raise ConfigError(f"Persona {persona_id!r} is asked for but no personas are set up: use `none`.")
    persona = personas(persona_id)
    if persona.lora and not persona.fits_model(model_id):
        raise ConfigError(
            f"Persona {persona.id!r} has a LoRA adapter trained for {persona.base_model!r}, but the loaded model "
            f"is {model_id!r}: load {persona.base_model!r} or pick another persona for this chat."
        )
    return persona


def chat_config(
    *,
    defaults: GenerationSettings,
    model_id: str,
    personas: PersonaLoader | None = None,
    session: Session | None = None,
    persona: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> ChatConfig:
    """Decide persona, system prompt and generation settings of a chat (``session`` None: a new one).

    ``persona`` None keeps the session's persona; ``""`` or ``"none"`` means no persona; an id picks that
    one. ``overrides`` are generation settings given explicitly (None values are ignored). Raises
    ConfigError / NotFoundError for a broken or unknown persona and ConfigError for a bad setting; nothing
    is stored here.
    """
    if persona is None:
        persona_id = session.persona if session is not None else None
    else:
        persona_id = None if persona.strip() in ("", "none") else persona.strip()
    chosen = load_checked_persona(persona_id, personas, model_id) if persona_id else None
    stored = dict(session.settings) if session is not None else {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if session is not None:  # overrides first: a flag can repair a bad stored value instead of meeting its error
        settings = GenerationSettings.from_dict({**stored, **given})
    else:
        settings = defaults.with_updates(**(chosen.generation if chosen else {})).with_updates(**given)
    system = (chosen.system_prompt if chosen else "") or stored.get("system_prompt") or None
    if system is not None and not isinstance(system, str):
        raise ConfigError(f"The chat's stored system_prompt {system!r} is not text: set it again as text.")
    return ChatConfig(chosen, system, settings, {**stored, **settings.to_dict()})


LOOKUP_QUOTE_CHARS = 500
"""A system or last user message at least this long gives an answer text to copy (retrieved sources, a quote)."""
_CODE = re.compile(r"^```|^(?: {4}|\t)[ \t]*\S.*\n(?: {4}|\t)[ \t]*\S", re.MULTILINE)
"""A fenced code block, or two indented lines in a row."""


def prompt_lookup_tokens(
    settings: GenerationSettings, messages: Sequence[dict[str, str]], device: str = "cpu"
) -> int | None:
    """Tokens prompt-lookup decoding drafts per step for this prompt, or None for plain decoding.

    ``on`` and ``off`` decide alone. ``auto`` turns it on only where ``bench/lookup.py`` measured it faster:
    greedy answers (temperature 0; sampled ones were not faster) on a CPU (not measured on CUDA), for a prompt
    with text the answer may copy: code anywhere in the prompt (an edit of a function quoted now or in an
    earlier answer) or a system or last user message of at least ``LOOKUP_QUOTE_CHARS`` characters (retrieved
    sources, a quoted document). Open questions stay plain (prompt lookup made them ~25% slower).
    """
    if settings.prompt_lookup == "off":
        return None
    if settings.prompt_lookup == "auto" and (
            device != "cpu" or settings.temperature > 0 or not _has_text_to_copy(messages)):
        return None
    return settings.prompt_lookup_tokens


def _has_text_to_copy(messages: Sequence[dict[str, str]]) -> bool:
    if any(_CODE.search(str(m.get("content") or "")) for m in messages):
        return True
    users = [m for m in messages if m.get("role") == "user"]
    quoted = [m for m in messages if m.get("role") == "system"] + users[-1:]
    return any(len(str(m.get("content") or "")) >= LOOKUP_QUOTE_CHARS for m in quoted)

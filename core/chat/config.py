"""The one place that decides a chat's persona, system prompt and generation settings.

The engine (new sessions), the chat service (every answer), the CLI (``--persona``, ``--temperature``...) and
the settings page all call ``chat_config``; nothing else merges settings dicts. Precedence, lowest first:
the app's defaults, then the persona's ``[generation]`` defaults (new sessions only), then what the session
stored, then explicit overrides. The system prompt is the persona's, else the one stored with the session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.backends.base import AdapterSpec
from core.config import GenerationSettings
from core.errors import ConfigError
from core.history.store import Session
from core.personas.store import Persona

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

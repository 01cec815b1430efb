"""Backends: one file each (``fake``, ``transformers_backend``), one protocol (``base.Backend``)."""

from __future__ import annotations

from core.backends.base import Backend
from core.config import Settings
from core.models.loader import Progress
from core.models.registry import ModelProfile


def create_backend(profile: ModelProfile, settings: Settings, progress: Progress | None = None) -> Backend:
    """Build the backend for a resolved profile (loading its weights, which may take a while)."""
    if profile.source == "fake":
        from core.backends.fake import FakeBackend

        return FakeBackend(delay_s=0.2 if profile.id == "fake-slow" else 0.0, model_id=profile.id)
    from core.backends.transformers_backend import TransformersBackend
    from core.models.loader import load_model

    return TransformersBackend(load_model(profile, settings, progress))

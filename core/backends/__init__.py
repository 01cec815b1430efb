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

        return FakeBackend()
    from core.backends.transformers_backend import TransformersBackend
    from core.models.loader import load_model

    return TransformersBackend(load_model(profile, settings, progress))

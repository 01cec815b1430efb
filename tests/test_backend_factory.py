"""Backend dispatch: a model profile names its backend and options; the factory table builds it (no id checks)."""

from __future__ import annotations

import pytest

from core.backends import FACTORIES, create_backend
from core.backends.fake import FakeBackend
from core.config import Settings
from core.errors import ModelError
from core.models.registry import ModelProfile, resolve


def test_profiles_name_their_backend_and_options() -> None:
    slow = create_backend(resolve("fake-slow"), Settings())
    fast = create_backend(resolve("fake"), Settings())
    assert isinstance(slow, FakeBackend) and slow.delay_s == 0.2 and slow.model_id == "fake-slow"
    assert isinstance(fast, FakeBackend) and fast.delay_s == 0.0
    custom = ModelProfile(id="my-slow", title="t", source="fake", backend="fake", backend_options=(("delay_s", 0.5),))
    assert create_backend(custom, Settings()).delay_s == 0.5  # options come from the profile, not its id
    assert resolve("smollm2-135m").backend == "transformers" and "transformers" in FACTORIES


def test_unknown_backend_is_a_clear_error() -> None:
    profile = ModelProfile(id="x", title="x", source="remote", backend="carrier-pigeon")
    with pytest.raises(ModelError, match=rf"backend 'carrier-pigeon'.*use one of {', '.join(sorted(FACTORIES))}\."):
        create_backend(profile, Settings())

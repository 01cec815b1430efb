"""Shared test setup: offline Hugging Face flags, a temp data dir per test, and the ``cuda`` marker skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``cuda`` when torch sees no GPU."""
    if not any(item.get_closest_marker("cuda") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir, also exported as INKSTONE_HOME; no inkstone.toml is picked up."""
    data = tmp_path / "data"
    monkeypatch.setenv("INKSTONE_HOME", str(data))
    monkeypatch.setenv("INKSTONE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("INKSTONE_MODEL", raising=False)
    return data

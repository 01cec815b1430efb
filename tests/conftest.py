"""Shared test setup: offline Hugging Face flags, the PyTorch engine unless a test asks for llama.cpp, a temp data
dir per test, and the ``cuda`` marker skip."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.history.store import HistoryStore

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# The suite's tests of the PyTorch path keep it where llama.cpp is built (the `engine` default reads this, also in
# the CLI and server processes tests start); tests/test_llamacpp_*.py run the same user flows on llama.cpp.
os.environ.setdefault("INKSTONE_ENGINE", "torch")

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


@pytest.fixture(scope="session", autouse=True)
def shared_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One ONNX export of the e5-small embedder per run (about half a minute), shared by every data dir and by
    CLI subprocesses through INKSTONE_ONNX_CACHE."""
    from tests.model_cache import shared_root

    os.environ.setdefault("INKSTONE_ONNX_CACHE", str(shared_root(tmp_path_factory.getbasetemp()) / "e5-onnx"))


@pytest.fixture(scope="session")
def smollm2_cached(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., None]:
    """``smollm2_cached(home, *kinds)``: put the bundled SmolLM2, converted once per run, into the data dir ``home``
    (kinds ``int8``, ``int4``, ``float``; see ``tests/model_cache.py``)."""
    from tests.model_cache import seed, shared_root

    root = shared_root(tmp_path_factory.getbasetemp())
    return lambda home, *kinds: seed(root, Path(home), *kinds)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir, also exported as INKSTONE_HOME; no inkstone.toml is picked up."""
    data = tmp_path / "data"
    monkeypatch.setenv("INKSTONE_HOME", str(data))
    monkeypatch.setenv("INKSTONE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("INKSTONE_MODEL", raising=False)
    return data


@pytest.fixture
def app_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``home`` with the ``fake`` model and no Streamlit engine cached from another test (before or after)."""
    import streamlit as st

    monkeypatch.setenv("INKSTONE_MODEL", "fake")
    st.cache_resource.clear()
    yield home
    st.cache_resource.clear()


@pytest.fixture
def app_store(app_home: Path) -> Iterator[HistoryStore]:
    """The history database the app under test uses, opened by the test next to the app's own connection."""
    db = HistoryStore.open(app_home / "inkstone.db")
    yield db
    db.close()

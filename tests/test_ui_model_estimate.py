"""The Model & settings page shows the memory estimate (bf16, 8-bit, 4-bit) of a real local checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.models.modelinfo import inspect_directory
from tests.fixtures_native import make_native_checkpoint

APP = Path(__file__).resolve().parents[1] / "app.py"


def test_settings_page_shows_estimate_of_loaded_directory(home: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = make_native_checkpoint("llama", tmp_path / "tiny-llama")
    monkeypatch.setenv("INKSTONE_MODEL", str(model_dir))
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        at.switch_page("ui/settings_page.py").run()
        assert not at.exception, at.exception
        text = " ".join(md.value for md in at.main.markdown)
        gib = inspect_directory(model_dir).memory_gib
        assert f"bf16 {gib['bf16']} GiB · 8-bit {gib['8bit']} GiB · 4-bit {gib['4bit']} GiB" in text
        info = at.session_state["inkstone_engine"].backend.info()  # what was really loaded (cpu_weights decides)
        assert f"**Device:** cpu ({info.dtype}" in text and info.device == "cpu"
    finally:
        st.cache_resource.clear()

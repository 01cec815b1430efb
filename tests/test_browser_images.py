"""A picture attached in a real browser (Playwright, ``streamlit run app.py`` on the text-only ``fake`` model): the
chat input's file upload reaches the chat view, the model's refusal is shown naming models that take pictures,
nothing is stored, and the chat goes on. Skipped like ``test_browser`` without playwright or Chromium."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from core.history.store import HistoryStore
from tests.test_browser import CHROMIUM, browser_tab, free_port, running_app, send, sync_api

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary (apt-get install chromium)")


def test_an_attached_picture_is_refused_by_a_text_only_model(tmp_path: Path) -> None:
    home = tmp_path / "data"
    env = {**os.environ, "INKSTONE_HOME": str(home), "INKSTONE_MODEL": "fake",
           "INKSTONE_CONFIG": str(tmp_path / "absent.toml"), "HF_HUB_OFFLINE": "1"}  # fmt: skip
    picture = tmp_path / "red.png"
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buffer, "PNG")
    picture.write_bytes(buffer.getvalue())
    with running_app(env, free_port()) as url, browser_tab() as page:
        page.goto(url)
        page.get_by_test_id("stChatInputTextArea").wait_for()
        page.get_by_test_id("stChatInput").locator("input[type=file]").set_input_files(str(picture))
        sync_api.expect(page.get_by_text("red.png")).to_be_visible()  # the attachment shows in the box
        send(page, "what is this?")
        sync_api.expect(page.get_by_test_id("stAlertContentError")).to_contain_text("cannot see pictures")
        store = HistoryStore.open(home / "inkstone.db")
        assert store.list_sessions() == []
        store.close()
        assert not any((home / "images").rglob("*.png")) if (home / "images").exists() else True
        send(page, "hello then")
        sync_api.expect(page.get_by_test_id("stChatMessage").last).to_contain_text("You said: hello then")

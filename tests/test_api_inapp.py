"""``api_in_app``: ``streamlit run app.py`` also serves the API on the app's loaded engine (AppTest + real HTTP),
and follows the model the user switches to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from core.api.inapp import InAppApi
from core.api.server import free_port

APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture
def port(app_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    port = free_port()
    config = app_home.parent / "inkstone.toml"
    config.write_text(f"api_in_app = true\napi_port = {port}\n", encoding="utf-8")
    monkeypatch.setenv("INKSTONE_CONFIG", str(config))
    yield port
    for api in list(InAppApi.instances):
        api.stop()


def test_app_serves_its_engine_and_follows_a_model_switch(port: int) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    base = f"http://127.0.0.1:{port}"
    assert [m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]][0] == "fake"
    reply = httpx.post(f"{base}/v1/chat/completions", timeout=30, json={
        "model": "fake", "messages": [{"role": "user", "content": "hello app"}], "inkstone_session": "new"}).json()
    assert reply["choices"][0]["message"]["content"] == "You said: hello app"

    at.switch_page("ui/settings_page.py").run()
    at.main.selectbox[0].set_value("fake-slow")
    next(b for b in at.main.button if b.label == "Load model").click().run()
    assert not at.exception, at.exception
    assert httpx.get(f"{base}/health").json()["model"] == "fake-slow"

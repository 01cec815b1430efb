"""The Gradio page in a real browser: ``python -m core serve --ui gradio`` (``fake-slow`` model, ``minilm`` embedder,
real Chroma folder) driven by Playwright, then the same chat opened in the Streamlit app on the same data dir.

One walk through what a user does: ask in Chinese and in English, stop an answer mid-way (stored as ``stopped``),
switch persona (its avatar and name sign the next answer), upload a file into a knowledge base, turn RAG on and get
an answer with its source, reload (the chat is reopened and listed), and open that chat in Streamlit. Also: the API
answers from the same process while the page is up. Skipped without playwright or chromium (see
``tests/test_browser.py``, whose helpers this reuses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.history.store import HistoryStore, Message, Session
from tests.test_browser import (
    CHROMIUM,
    ROOT,
    TIMEOUT_MS,
    browser_tab,
    free_port,
    running_app,
    sync_api,
    wait_healthy,
)  # fmt: skip

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary (apt-get install chromium)")

FACT = "Mount Korvath is a dormant volcano. Its last eruption happened in the year 1822 and buried Selm in ash."


@pytest.fixture
def gradio_app(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``serve --ui gradio`` on a free port with a fresh data dir; yields its URL and environment."""
    config = tmp_path / "inkstone.toml"
    config.write_text('embedder = "minilm"\n', encoding="utf-8")
    env = {**os.environ, "INKSTONE_HOME": str(tmp_path / "data"), "INKSTONE_MODEL": "fake-slow",
           "INKSTONE_CONFIG": str(config), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    env.pop("INKSTONE_CHROMA_URL", None)
    port = free_port()
    command = [sys.executable, "-m", "core", "serve", "--ui", "gradio", "--port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, 90, health="/health", name="serve")
        yield url, env
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def send(page: sync_api.Page, text: str) -> None:
    box = page.locator("#inkstone-message textarea")
    box.fill(text)
    box.press("Enter")


def stored(env: dict[str, str]) -> dict[str, tuple[Session, list[Message]]]:
    """The sessions of the data dir and their messages, by title."""
    store = HistoryStore.open(Path(env["INKSTONE_HOME"]) / "inkstone.db")
    try:
        return {s.title: (s, store.messages(s.id)) for s in store.list_sessions()}
    finally:
        store.close()


def ask_api(url: str, text: str) -> str:
    """One OpenAI chat completion (stored as a session of its own: ``inkstone_session`` "new")."""
    body = {"model": "fake-slow", "messages": [{"role": "user", "content": text}], "inkstone_session": "new"}
    request = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["choices"][0]["message"]["content"]


def test_a_chat_on_the_gradio_page_continues_in_streamlit(gradio_app: tuple[str, dict[str, str]],
                                                          tmp_path: Path) -> None:  # fmt: skip
    url, env = gradio_app
    with browser_tab() as tab:
        requested: list[str] = []
        tab.on("request", lambda request: requested.append(request.url))
        tab.goto(url)
        chat = tab.locator("#inkstone-chat")
        send(tab, "你好，砚台")
        sync_api.expect(chat).to_contain_text("You said: 你好，砚台")
        sync_api.expect(chat).to_contain_text("tokens/s")  # the decode speed under the answer
        sync_api.expect(tab.locator("#inkstone-sessions")).to_contain_text("你好，砚台")  # listed, titled

        words = " ".join(f"w{i}" for i in range(40))  # 0.2 s a word: ~8 s
        send(tab, words)
        sync_api.expect(chat).to_contain_text("You said: w0 w1")
        api = ThreadPoolExecutor(1).submit(ask_api, url, "api too")  # the same process, the same line
        tab.get_by_role("button", name="Stop").click()
        sync_api.expect(chat).to_contain_text("⏹ stopped")
        assert api.result(timeout=60) == "You said: api too"  # its turn came once the page's answer stopped
        chats = stored(env)
        assert sorted(chats) == ["api too", "你好，砚台"]
        session, messages = chats["你好，砚台"]
        assert [(m.role, m.status) for m in messages] == [("user", "complete"), ("assistant", "complete"),
                                                          ("user", "complete"), ("assistant", "stopped")]
        assert messages[-1].content.startswith("You said: w0") and "w39" not in messages[-1].content

        persona = tab.get_by_label("Persona")
        persona.click()
        tab.get_by_role("option", name="✒️ Concise helper · 简洁助手").click()
        sync_api.expect(tab.locator("#inkstone-notice")).to_contain_text("writes the next answer")
        send(tab, "who are you")
        sync_api.expect(chat).to_contain_text("✒️ Concise helper · 简洁助手")
        sync_api.expect(chat).to_contain_text("You said: who are you")

        doc = tmp_path / "volcano.txt"
        doc.write_text(FACT, encoding="utf-8")
        tab.get_by_text("Knowledge: upload files").click()
        kb = tab.get_by_label("Knowledge base", exact=True)
        kb.fill("火山 notes")
        kb.press("Enter")
        tab.locator("input[type=file]").set_input_files(str(doc))
        tab.get_by_role("button", name="Upload into the knowledge base").click()
        sync_api.expect(tab.get_by_text("1 added")).to_be_visible(timeout=4 * TIMEOUT_MS)  # loads the embedder
        tab.get_by_label("Answer from my documents").check()
        send(tab, "When did Mount Korvath last erupt?")
        sync_api.expect(chat).to_contain_text("Question: When did Mount Korvath last erupt?", timeout=2 * TIMEOUT_MS)
        sync_api.expect(chat).to_contain_text("Sources: [1] volcano.txt")
        sync_api.expect(chat).to_contain_text("1822")  # the cited passage under the answer

        tab.reload()  # the open chat comes back from the browser's storage, and the list has it
        sync_api.expect(chat).to_contain_text("Sources: [1] volcano.txt")
        sync_api.expect(chat).to_contain_text("You said: 你好，砚台")
        sync_api.expect(tab.locator("#inkstone-sessions")).to_contain_text("你好，砚台")
        elsewhere = [u for u in requested if urlsplit(u).scheme in ("http", "https", "ws", "wss")
                     and urlsplit(u).hostname != "127.0.0.1"]  # fmt: skip
        assert elsewhere == []  # no font, script or analytics from the internet

    session, messages = stored(env)["你好，砚台"]
    answer = messages[-1]
    assert (answer.status, answer.persona_name) == ("complete", "Concise helper · 简洁助手")
    assert answer.sources[0]["source"] == "volcano.txt"
    with running_app(env, free_port()) as streamlit_url, browser_tab() as tab:
        tab.goto(f"{streamlit_url}/?session={session.id}")
        page = tab.locator("body")
        for text in ("Question: When did Mount Korvath last erupt?", "Sources: [1] volcano.txt", "You said: 你好，砚台",
                     "Concise helper · 简洁助手", "stopped"):
            sync_api.expect(page).to_contain_text(text)

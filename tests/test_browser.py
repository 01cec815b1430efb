"""The live app in a real browser: ``streamlit run app.py`` on the ``fake-slow`` model, driven by Playwright.

This is the one place the real Stop path runs end to end: the Stop button's click makes Streamlit rerun
the script while ``st.write_stream`` is writing, and the partial answer must end up in the history as
``stopped``. Needs the ``playwright`` Python package and a Chromium (Debian: ``apt-get install chromium``);
skipped with the reason when either is missing.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.history.store import HistoryStore

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs the playwright package (pip install playwright)"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary (apt-get install chromium)")

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, seconds: float = 60, health: str = "/_stcore/health",
                 name: str = "streamlit") -> None:  # fmt: skip
    """Wait until ``server`` answers 200 at ``url + health``; RuntimeError with its output if it exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{name} exited with {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}{health}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{name} did not answer at {url} within {seconds} s")


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The app served on a free port with a fresh data dir; yields its URL and the history file."""
    home, port = tmp_path / "data", free_port()
    env = {
        **os.environ,
        "INKSTONE_HOME": str(home),
        "INKSTONE_MODEL": "fake-slow",
        "INKSTONE_CONFIG": str(tmp_path / "absent.toml"),
        "HF_HUB_OFFLINE": "1",
    }
    with running_app(env, port) as url:
        yield url, home / "inkstone.db"


@contextmanager
def running_app(env: dict[str, str], port: int) -> Iterator[str]:
    """``streamlit run app.py`` on 127.0.0.1:``port`` with ``env``; yields its URL once healthy, stops it after."""
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]  # fmt: skip
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def browser_tab() -> Iterator[sync_api.Page]:
    """A new page in headless Debian Chromium, with the suite's timeouts."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        tab = browser.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        sync_api.expect.set_options(timeout=TIMEOUT_MS)  # a loaded CI machine can be slow to draw a rerun
        yield tab
        browser.close()


@pytest.fixture
def page(live_app: tuple[str, Path]) -> Iterator[sync_api.Page]:
    with browser_tab() as tab:
        yield tab


def send(page: sync_api.Page, text: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")


def test_stop_keeps_the_partial_answer(live_app: tuple[str, Path], page: sync_api.Page) -> None:
    url, db_path = live_app
    page.goto(url)
    words = " ".join(f"w{i}" for i in range(30))  # the echo answer streams at 0.2 s a word: ~6 s
    send(page, words)
    answer = page.get_by_test_id("stChatMessage").nth(1)
    sync_api.expect(answer).to_contain_text("You said: w0 w1")
    answer.get_by_role("button", name="Stop").click()  # ours, not the Stop of Streamlit's header
    sync_api.expect(answer.get_by_test_id("stCaptionContainer")).to_contain_text("stopped")
    sync_api.expect(page.get_by_test_id("stMain").get_by_role("button", name="Stop")).to_have_count(0)
    store = HistoryStore.open(db_path)
    try:
        [session] = store.list_sessions()
        user, reply = store.messages(session.id)
        assert (user.content, user.status) == (words, "complete")
        assert reply.status == "stopped"
        assert reply.content.startswith("You said: w0 w1") and len(reply.content) < len(f"You said: {words}")
    finally:
        store.close()
    assert f"session={session.id}" in page.url


def test_an_answer_is_never_drawn_twice(live_app: tuple[str, Path], page: sync_api.Page) -> None:
    """The streamed copy must give way to the stored one in place, not sit beside it while the rerun draws."""
    url, _db_path = live_app
    page.goto(url)
    for text in ("hello twice", "and again"):
        send(page, text)
        answer = page.get_by_text(f"You said: {text}")
        seen: list[int] = []
        deadline = time.monotonic() + 6  # the echo answer, its rerun and the Regenerate row are drawn by then
        while time.monotonic() < deadline:
            seen.append(answer.count())
        assert max(seen) == 1 and seen[-1] == 1, f"{text!r} was on screen {max(seen)} times at once"


def test_answer_and_history_survive_a_reload(live_app: tuple[str, Path], page: sync_api.Page) -> None:
    url, db_path = live_app
    page.goto(url)
    send(page, "hello browser")
    sync_api.expect(page.get_by_text("You said: hello browser")).to_be_visible()
    sync_api.expect(page.get_by_text("tokens/s")).to_be_visible()
    page.wait_for_url("**session=*")
    page.reload()
    sync_api.expect(page.get_by_text("You said: hello browser")).to_be_visible()
    sync_api.expect(
        page.get_by_test_id("stSidebar").get_by_role("button", name="hello browser")
    ).to_be_visible()
    page.get_by_role("link", name="Model & settings").click()
    sync_api.expect(page.get_by_text("Loaded model:")).to_be_visible()
    page.get_by_role("link", name="Chat").click()
    sync_api.expect(page.get_by_text("You said: hello browser")).to_be_visible()  # the session stayed open


def test_the_tab_names_the_app_and_the_open_chat(live_app: tuple[str, Path], page: sync_api.Page) -> None:
    url, _db_path = live_app
    page.goto(url)
    sync_api.expect(page).to_have_title("New chat · Inkstone")
    icon = page.locator("link[rel~='icon']").first.get_attribute("href") or ""
    assert icon.startswith("data:image/svg+xml;base64,")  # Inkstone's own icon, not an emoji a font may lack
    assert "<title>Inkstone</title>" in base64.b64decode(icon.split(",", 1)[1]).decode()
    sync_api.expect(page.get_by_test_id("stSidebar").get_by_role("img").first).to_be_visible()  # the logo
    send(page, "hello title")
    sync_api.expect(page.get_by_text("You said: hello title")).to_be_visible()
    sync_api.expect(page).to_have_title("hello title · Inkstone")
    page.get_by_role("link", name="Model & settings").click()
    sync_api.expect(page).to_have_title("Model & settings · Inkstone")


def test_a_second_tab_waits_in_line_and_can_cancel(live_app: tuple[str, Path], page: sync_api.Page) -> None:
    url, db_path = live_app
    first = page
    first.goto(url)
    words = " ".join(f"w{i}" for i in range(60))  # ~12 s at 0.2 s a word: time for a second tab to open
    send(first, words)
    sync_api.expect(first.get_by_text("You said: w0 w1")).to_be_visible()
    second = first.context.browser.new_page()  # another browser tab: its own Streamlit session, the same model
    second.goto(url)
    send(second, "second tab")
    sync_api.expect(second.get_by_text("Waiting for another answer to finish (1 ahead)…")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    second.get_by_role("button", name="Cancel").click()
    sync_api.expect(second.get_by_text("You stopped waiting: your message is kept.")).to_be_visible()
    sync_api.expect(second.get_by_text("Waiting for another answer")).to_have_count(0)
    # .last: while the finished answer reruns, the streamed copy and the stored one can both be on the page
    sync_api.expect(first.get_by_text(f"You said: {words}").last).to_be_visible(timeout=TIMEOUT_MS)  # it went on
    store = HistoryStore.open(db_path)
    try:
        deadline = time.monotonic() + 30  # the last word is on screen a moment before the answer is stored complete
        while True:
            by_first_message = {store.messages(s.id)[0].content: store.messages(s.id) for s in store.list_sessions()}
            if by_first_message[words][-1].status != "streaming" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [(m.role, m.status) for m in by_first_message["second tab"]] == [("user", "complete")]
        assert [m.status for m in by_first_message[words]] == ["complete", "complete"]
    finally:
        store.close()


def test_a_waiting_tab_answers_once_the_model_is_free(live_app: tuple[str, Path], page: sync_api.Page) -> None:
    url, _db_path = live_app
    page.goto(url)
    send(page, " ".join(f"w{i}" for i in range(60)))  # ~12 s
    sync_api.expect(page.get_by_text("You said: w0 w1")).to_be_visible()
    second = page.context.browser.new_page()
    second.goto(url)
    send(second, "after you")
    sync_api.expect(second.get_by_text("Waiting for another answer to finish (1 ahead)…")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    sync_api.expect(second.get_by_text("You said: after you")).to_be_visible(timeout=TIMEOUT_MS)
    sync_api.expect(second.get_by_text("Waiting for another answer")).to_have_count(0)

"""Branches in a real browser (issue 20's "Done when"): ``streamlit run app.py`` on the ``fake`` echo model, driven
by Playwright. Edit the first question of a three-turn chat, get the new answer, switch back with ``‹ 1/2`` to the
old continuation, regenerate twice and switch among the three answers, reload the page and restart the app and
find all of it, then fork the chat. Skipped without playwright or chromium (see ``tests/test_browser.py``, whose
server helpers this reuses)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.history.store import HistoryStore
from tests.test_browser import CHROMIUM, browser_tab, free_port, running_app, send, sync_api

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary (apt-get install chromium)")
expect = sync_api.expect


def bubble(page: sync_api.Page, n: int) -> sync_api.Locator:
    return page.get_by_test_id("stChatMessage").nth(n)


def switch(page: sync_api.Page, n: int, arrow: str, shows: str) -> None:
    """Click ``arrow`` (‹ or ›) of message ``n`` until the message shows version ``shows`` (e.g. "1/2"). A click
    that lands while Streamlit is still rerunning can be dropped (seen once, on a loaded machine); a user clicks
    again, and so does the test, up to three times."""
    for attempt in range(3):
        button = bubble(page, n).get_by_role("button", name=arrow)
        sync_api.expect(button).to_have_count(1, timeout=30_000)  # while rerunning, old and new controls can coexist
        button.click()
        try:
            sync_api.expect(bubble(page, n)).to_contain_text(shows, timeout=10_000)
            return
        except AssertionError:
            if attempt == 2:
                raise


def test_edit_switch_regenerate_reload_restart_fork(tmp_path: Path) -> None:
    home = tmp_path / "data"
    env = {**os.environ, "INKSTONE_HOME": str(home), "INKSTONE_MODEL": "fake",
           "INKSTONE_CONFIG": str(tmp_path / "absent.toml"), "HF_HUB_OFFLINE": "1"}  # fmt: skip
    port = free_port()
    with running_app(env, port) as url, browser_tab() as page:
        page.goto(url)
        for text in ("one", "two", "three"):
            send(page, text)
            expect(page.get_by_text(f"You said: {text}")).to_be_visible()
        page.wait_for_url("**session=*")
        session_url = page.url

        bubble(page, 0).get_by_role("button", name="Edit", exact=True).click()
        page.get_by_label("Edit your message").fill("uno")
        page.get_by_role("button", name="Send edit").click()
        expect(page.get_by_text("You said: uno")).to_be_visible()
        expect(page.get_by_text("You said: three")).to_have_count(0)
        expect(bubble(page, 0)).to_contain_text("2/2")

        switch(page, 0, "‹", "1/2")  # back to the old branch, whole continuation
        expect(page.get_by_text("You said: three")).to_be_visible()
        expect(page.get_by_text("You said: uno")).to_have_count(0)
        switch(page, 0, "›", "2/2")
        expect(page.get_by_text("You said: uno")).to_be_visible()

        for versions in ("2/2", "3/3"):
            page.get_by_role("button", name="Regenerate").click()
            expect(bubble(page, 1)).to_contain_text(versions)
        switch(page, 1, "‹", "2/3")
        switch(page, 1, "‹", "1/3")

        page.reload()
        expect(bubble(page, 1)).to_contain_text("1/3")
        expect(bubble(page, 0)).to_contain_text("2/2")

    store = HistoryStore.open(home / "inkstone.db")
    try:
        [session] = store.list_sessions()
        path = store.messages(session.id)
        assert [m.content for m in path] == ["uno", "You said: uno"]
        assert path[-1].id == store.children(session.id)[path[0].id][0]  # the first of the three answers
        assert store.message_count(session.id) == 10
    finally:
        store.close()

    with running_app(env, free_port()) as url, browser_tab() as page:  # the app restarted
        page.goto(url + "/?" + session_url.split("?", 1)[1])
        expect(bubble(page, 1)).to_contain_text("1/3")
        switch(page, 0, "‹", "1/2")
        expect(page.get_by_text("You said: three")).to_be_visible()
        bubble(page, 3).get_by_role("button", name="Fork").click()  # new chat from the second answer
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_role("button", name="one (fork)")).to_be_visible()
        expect(page.get_by_text("You said: two")).to_be_visible()
        expect(page.get_by_text("You said: three")).to_have_count(0)
        assert page.url != session_url


def test_latex_and_thinking_render_while_streaming_as_when_stored(tmp_path: Path) -> None:
    home = tmp_path / "data"
    env = {**os.environ, "INKSTONE_HOME": str(home), "INKSTONE_MODEL": "fake-slow",
           "INKSTONE_CONFIG": str(tmp_path / "absent.toml"), "HF_HUB_OFFLINE": "1"}  # fmt: skip
    with running_app(env, free_port()) as url, browser_tab() as page:
        page.goto(url)
        # The echo answer: "You said: plan</think> \( x^2 \) w0 ..." – a thinking block whose opening tag was in
        # the prompt (as Qwen3's template does), then inline LaTeX; 0.2 s a word.
        send(page, "plan</think> \\( x^2 \\) " + " ".join(f"w{i}" for i in range(25)))
        answer = bubble(page, 1)
        expect(answer.get_by_text("w2", exact=False)).to_be_visible()
        assert answer.get_by_role("button", name="Stop").count() == 1  # still streaming
        expect(answer.get_by_test_id("stExpander")).to_contain_text("Thought")
        expect(answer.locator(".katex").first).to_be_visible()
        assert "</think>" not in answer.inner_text() and "\\(" not in answer.inner_text()
        expect(answer.get_by_test_id("stCaptionContainer").first).to_contain_text("tokens", timeout=30_000)
        expect(answer.get_by_test_id("stExpander")).to_contain_text("Thought")  # stored: drawn the same way
        expect(answer.locator(".katex").first).to_be_visible()
        assert "</think>" not in answer.inner_text()

"""The Gradio page's handlers on a real engine (fake scripted backend, real SQLite), without a browser: a turn
streams and is stored, Stop ends generation in the backend (not only the page's loop), a tab waiting behind
another answer is told its place and can give up its wait keeping its message, and answers are drawn with their
persona, sources and figures. The browser walk is ``tests/test_browser_gradio.py``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import gradio as gr
import pytest

from core.backends.fake import FakeBackend
from core.config import load_settings
from core.engine import Engine, build_engine
from core.errors import InputError
from core.history.store import Message
from gradio_ui import view
from gradio_ui.page import CANCELLED, ChatPage
from gradio_ui.turns import Turns

WORDS = " ".join(f"w{i}" for i in range(40))


@pytest.fixture
def engine(home: Path) -> Engine:
    backend = FakeBackend(delay_s=0.05)
    return build_engine(load_settings({"model": "fake"}), backend=backend)


def tab(name: str) -> gr.Request:
    return gr.Request(session_hash=name)


def send(page: ChatPage, text: str, session_id: str | None, request: gr.Request) -> list[tuple]:
    return list(page.send(text, session_id, "", False, [], "", 0.7, 0.9, 512, 1.0, request))


def test_a_new_chat_streams_and_is_stored(engine: Engine) -> None:
    page = ChatPage(lambda: engine)
    steps = send(page, "你好 world", None, tab("a"))
    session_id, chat, box, notice, _listed = steps[-1]
    assert (box, notice) == ("", "")
    assert chat[0] == {"role": "user", "content": "你好 world"}
    assert chat[1]["content"].startswith("You said: 你好 world") and "tokens/s" in chat[1]["content"]
    assert any("▌" in str(step[1]) for step in steps[1:-1])  # drawn as it streamed
    [message_user, answer] = engine.store.messages(session_id)
    assert engine.store.get_session(session_id).title == "你好 world" and answer.status == "complete"


def test_stop_ends_generation_and_keeps_the_answer_as_stopped(engine: Engine) -> None:
    page = ChatPage(lambda: engine)
    session_id = send(page, "hi", None, tab("a"))[-1][0]
    steps = page.send(WORDS, session_id, "", False, [], "", 0.7, 0.9, 512, 1.0, tab("a"))
    for step in steps:
        if "w3" in str(step[1]):
            page.stop(tab("a"))  # what the Stop button calls, from another request
            break
    final = list(steps)[-1]
    answer = engine.store.messages(session_id)[-1]
    assert answer.status == "stopped" and "w39" not in answer.content
    assert "⏹ stopped" in final[1][-1]["content"]
    assert engine.backend.busy is False and not page.turns.active("a")


def test_a_second_tab_waits_its_turn_and_can_give_up_keeping_its_message(engine: Engine) -> None:
    page = ChatPage(lambda: engine)
    first = threading.Thread(target=send, args=(page, WORDS, None, tab("a")))
    first.start()
    deadline = time.monotonic() + 30
    while not engine.backend.busy and time.monotonic() < deadline:  # tab a holds the model before tab b asks
        time.sleep(0.01)
    steps = page.send("me too", None, "", False, [], "", 0.7, 0.9, 512, 1.0, tab("b"))
    for step in steps:
        if view.waiting_text(1) in str(step[1]):
            page.stop(tab("b"))
            break
    final = list(steps)[-1]
    first.join(30)
    assert final[3] == CANCELLED
    by_title = {s.title: engine.store.messages(s.id) for s in engine.store.list_sessions()}
    assert [(m.role, m.status) for m in by_title["me too"]] == [("user", "complete")]
    assert [m.status for m in by_title[WORDS[:39] + "…"]] == ["complete", "complete"]


def test_one_answer_at_a_time_per_tab() -> None:
    turns = Turns()
    stop = turns.begin("a")
    with pytest.raises(InputError, match="still being written"):
        turns.begin("a")
    assert turns.stop("a") and stop.is_set()
    turns.end("a", stop)
    assert not turns.stop("a") and not turns.active("a")


def test_an_answer_is_drawn_with_persona_sources_and_figures() -> None:
    answer = Message("m2", "s", "assistant", "Selm was buried in 1822 [1].", "stopped", "t", 10, 7, 250.0, 12.5,
                     [{"n": 1, "source": "volcano.txt", "page": 2, "text": "It erupted in 1822."}], None,
                     "concise", "Concise helper", "✒️")  # fmt: skip
    [shown] = view.chat_messages([answer])
    content = shown["content"]
    assert content.startswith("✒️ **Concise helper**\n\nSelm was buried in 1822 [1].")
    assert "Sources: [1] volcano.txt, p. 2" in content and "It erupted in 1822." in content
    assert "⏹ stopped · 7 tokens · 12.5 tokens/s · first token 0.25 s" in content
    plain = Message("m1", "s", "assistant", "Hello.", "complete", "t")
    assert view.chat_messages([plain, answer])[1]["content"].startswith("*Persona switched to Concise helper*\n\n✒️")
    assert view.chat_messages([answer, plain])[1]["content"].startswith("*Persona switched off*\n\nHello.")
    failed = Message("m3", "s", "assistant", "", "error", "t", error="CUDA out of memory: lower max tokens.")
    assert "⚠️ CUDA out of memory" in view.chat_messages([failed])[0]["content"]


def test_rename_delete_and_search_go_to_the_store(engine: Engine) -> None:
    page = ChatPage(lambda: engine)
    session_id = send(page, "lighthouse keeper", None, tab("a"))[-1][0]
    listed, notice = page.rename(session_id, "  Pellworm  ", "")
    assert notice == "Renamed." and listed["choices"] == [("Pellworm", session_id)]
    assert page.session_list(None, "keeper")["choices"] == [("Pellworm", session_id)]
    assert page.session_list(None, "nothing-like-this")["choices"] == []
    assert page.rename(session_id, "   ", "")[1].startswith("⚠️ A session title cannot be empty")
    shown = page.delete(session_id, tab("a"))
    assert shown[0] is None and shown[-3] == "Chat deleted." and engine.store.list_sessions() == []


def test_an_image_avatar_is_served_from_the_persona_directory(tmp_path: Path) -> None:
    image = tmp_path / "owl.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    expected = f'<img src="/gradio_api/file={image}" alt="" width="24" height="24"> **Owl**'
    assert view.signature("Owl", str(image)) == expected
    assert view.signature("Owl", str(tmp_path / "gone.png")) == "**Owl**"  # deleted since: the name alone
    assert view.signature("Owl", ":material/face:") == "**Owl**" and view.signature(None, "🦉") == ""


def test_the_page_asks_for_the_key_off_loopback_and_refuses_to_start_without_one(capsys: pytest.CaptureFixture,
                                                                                 home: Path) -> None:  # fmt: skip
    from core.cli.serve import main
    from gradio_ui.server import key_check

    assert main(["--ui", "gradio", "--host", "0.0.0.0", "--model", "fake"]) == 1
    assert "Refusing to serve on 0.0.0.0 without an API key" in capsys.readouterr().err
    assert main(["--no-api", "--model", "fake"]) == 1
    assert "--no-api serves only a chat page: add --ui gradio" in capsys.readouterr().err
    check = key_check("s3cret")
    assert check("anyone", "s3cret") and not check("anyone", "wrong") and not check("s3cret", "")
    assert key_check(None) is None  # loopback without a key: no login


def test_with_a_key_the_page_asks_for_it_and_the_api_still_wants_it(engine: Engine) -> None:
    """The page mounted on the API's app, as ``serve --ui gradio --api-key`` does: a login (the key as password)
    guards the page; the API keeps its bearer check."""
    from fastapi.testclient import TestClient

    from core.api.app import create_app
    from gradio_ui.server import mount

    app = create_app(lambda: engine, api_key="k3y")
    mount(app, lambda: engine, api_key="k3y")
    with TestClient(app) as client:
        assert client.get("/config").status_code == 401
        assert client.post("/login", data={"username": "me", "password": "wrong"}).status_code == 400
        assert client.post("/login", data={"username": "me", "password": "k3y"}).status_code == 200
        assert client.get("/config").json()["title"] == "Inkstone"  # logged in: the page's config
        assert client.get("/v1/models").status_code == 401  # the login cookie is not the API key
        assert client.get("/v1/models", headers={"Authorization": "Bearer k3y"}).json()["data"][0]["id"] == "fake"


def test_regenerate_replaces_the_last_answer(home: Path) -> None:
    engine = build_engine(load_settings({"model": "fake"}), backend=FakeBackend(["first try", "second try"]))
    page = ChatPage(lambda: engine)
    session_id = send(page, "tell me", None, tab("a"))[-1][0]
    steps = list(page.regenerate(session_id, "", tab("a")))
    assert "first try" not in str(steps[0][1])  # the answer being replaced is not drawn while the new one streams
    assert [m.content for m in engine.store.messages(session_id)] == ["tell me", "second try"]
    assert "second try" in steps[-1][1][-1]["content"]
    assert list(page.regenerate(None, "", tab("a")))[-1][3] == "Nothing to regenerate: send a message first."


def test_editing_a_message_answers_the_edit_and_keeps_the_old_branch(engine: Engine) -> None:
    page = ChatPage(lambda: engine)
    session_id = send(page, "first question", None, tab("a"))[-1][0]
    send(page, "second question", session_id, tab("a"))
    edited = gr.EditData(None, {"index": 2, "value": "second, edited", "previous_value": "second question"})
    final = list(page.edit(session_id, "", edited, tab("a")))[-1]
    assert [m["content"].split("\n")[0] for m in final[1]] == [
        "first question", "You said: first question", "second, edited", "You said: second, edited"]
    path = engine.store.messages(session_id)
    assert [m.content for m in path if m.role == "user"] == ["first question", "second, edited"]
    assert "second question" in [m.content for m in engine.store.all_messages(session_id)]  # the old branch stays
    answer_edit = gr.EditData(None, {"index": 1, "value": "no", "previous_value": "You said: first question"})
    refused = list(page.edit(session_id, "", answer_edit, tab("a")))[-1]
    assert "Only your own messages" in refused[3] and engine.store.messages(session_id) == path


def test_an_answer_shows_its_tool_calls_folded(home: Path) -> None:
    """A chat with the calculator on (turned on in the Streamlit chat view) answers here through the same loop;
    each call is drawn folded above the answer, while streaming and from the history."""
    from core.tools.chat import set_chosen_tools

    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "23 * 47"}}</tool_call>'
    engine = build_engine(load_settings({"model": "fake"}), backend=FakeBackend([call, "It is 1081."]))
    session_id = engine.new_session()
    set_chosen_tools(engine.store, session_id, ["calculator"], engine.settings)
    page = ChatPage(lambda: engine)
    steps = send(page, "What is 23 * 47?", session_id, tab("a"))
    answer = steps[-1][1][1]["content"]
    assert answer.startswith("<details><summary>🛠️ calculator(&quot;expression&quot;: &quot;23 * 47&quot;) · ")
    assert "```\n1081\n```\n\n</details>" in answer and answer.index("</details>") < answer.index("It is 1081.")
    assert any("<details>" in str(step[1]) and "▌" in str(step[1]) for step in steps[1:-1])  # while streaming
    shown = page.show(session_id)
    assert any("</details>" in str(part) for part in shown)  # after a reload, from the stored steps

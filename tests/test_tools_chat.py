"""Tools per chat through the chat service (the path the chat view, the Gradio page and ``chat`` without ``--tools``
share): the choice is stored in the session's settings, an answer runs the bounded tool loop and stores its calls,
Stop ends the loop with the calls so far kept, and a tool that cannot be offered (an MCP server gone or broken, no
knowledge base) is named in a notice while the rest still work."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from core.backends.fake import FakeBackend
from core.chat.service import Done, ToolsOn, ToolUsed
from core.config import load_settings
from core.engine import Engine, build_engine, open_store
from core.errors import InputError
from core.tools.chat import chosen_tools, set_chosen_tools
from core.tools.history import load_steps

CALC = '<tool_call>{"name": "calculator", "arguments": {"expression": "23 * 47"}}</tool_call>'
DEMO = str(Path(__file__).parent / "data" / "mcp_demo_server.py")


def engine_with(tmp_path: Path, replies: list[str], mcp: dict | None = None, delay_s: float = 0.0) -> Engine:
    settings = load_settings({"model": "fake", "home": str(tmp_path / "data"), "mcp_servers": mcp or {}},
                             config_file=tmp_path / "absent.toml")
    return build_engine(settings, backend=FakeBackend(replies, delay_s=delay_s))


def test_an_answer_runs_the_tool_loop_and_stores_its_calls(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, [CALC, "It is 1081."])
    sid = engine.new_session()
    assert chosen_tools(engine.store.get_session(sid)) == []
    assert set_chosen_tools(engine.store, sid, ["datetime", "calculator"], engine.settings) == \
        ["calculator", "datetime"]
    events = list(engine.service.send(sid, "What is 23 * 47?"))
    on = next(e for e in events if isinstance(e, ToolsOn))
    assert on.names == ["calculator", "current_datetime"] and on.max_steps == 5 and on.notice is None
    [used] = [e.step for e in events if isinstance(e, ToolUsed)]
    assert (used.name, used.result, used.error) == ("calculator", "1081", False)
    done = events[-1]
    assert isinstance(done, Done) and done.stats.text == "It is 1081." and done.stats.tool_steps == 1
    engine.store.close()
    store = open_store(engine.settings)  # a restart
    answer = store.messages(sid)[-1]
    assert answer.content == "It is 1081." and [s.result for s in load_steps(store, answer.id)] == ["1081"]
    fork = store.fork_session(answer.id)  # a fork keeps the calls with its copy of the answer
    copy = store.messages(fork.id)[-1]
    assert copy.id != answer.id and [s.result for s in load_steps(store, copy.id)] == ["1081"]
    assert chosen_tools(fork) == ["calculator", "datetime"]  # and the chat's tool choice
    with pytest.raises(InputError, match="Unknown tool.*'shell'"):
        set_chosen_tools(store, sid, ["shell"], engine.settings)
    store.close()


def test_stop_mid_loop_keeps_the_calls_made_so_far(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, [CALC, "This answer is long and will be stopped before it ends"], delay_s=0.02)
    sid = engine.new_session()
    set_chosen_tools(engine.store, sid, ["calculator"], engine.settings)
    stop = threading.Event()
    events = engine.service.send(sid, "What is 23 * 47?", stop)
    for event in events:
        if isinstance(event, ToolUsed):
            stop.set()  # the user presses Stop while the model reads the result
    answer = engine.store.messages(sid)[-1]
    assert answer.status == "stopped" and [s.name for s in load_steps(engine.store, answer.id)] == ["calculator"]
    # the chat view's Stop: the script reruns and the event iterator is closed mid-answer
    events = engine.service.send(sid, "Again?")
    for event in events:
        if isinstance(event, ToolUsed):
            events.close()
            break
    answer = engine.store.messages(sid)[-1]
    assert answer.status == "stopped" and len(load_steps(engine.store, answer.id)) == 1
    assert "The answer" not in answer.content
    engine.store.close()


def test_what_cannot_be_offered_is_named_and_the_rest_still_work(tmp_path: Path) -> None:
    broken = {"broken": {"command": ["/nonexistent/mcp-server"], "timeout_s": 10}}
    engine = engine_with(tmp_path, [CALC, "1081."], mcp=broken)
    sid = engine.new_session()
    set_chosen_tools(engine.store, sid, ["calculator", "kb", "mcp:broken"], engine.settings)
    events = list(engine.service.send(sid, "What is 23 * 47?"))
    on = next(e for e in events if isinstance(e, ToolsOn))
    assert on.names == ["calculator"]
    assert "no knowledge base" in on.notice and "'broken' could not be started" in on.notice
    assert isinstance(events[-1], Done) and events[-1].stats.text == "1081."
    engine.store.close()
    gone = engine_with(tmp_path, ["plain."])  # the server was removed from inkstone.toml since
    on = next(e for e in gone.service.send(sid, "hi") if isinstance(e, ToolsOn))
    assert "no longer listed" in on.notice
    gone.store.close()


def test_an_mcp_servers_tools_are_called_from_a_chat(tmp_path: Path) -> None:
    call = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 40}}</tool_call>'
    engine = engine_with(tmp_path, [call, "42."], mcp={"demo": {"command": [sys.executable, DEMO], "timeout_s": 60}})
    sid = engine.new_session()
    set_chosen_tools(engine.store, sid, ["mcp:demo"], engine.settings)
    events = list(engine.service.send(sid, "2 + 40?"))
    [used] = [e.step for e in events if isinstance(e, ToolUsed)]
    assert (used.name, used.result) == ("add", "42") and events[-1].stats.text == "42."
    engine.store.close()


def test_chat_in_the_terminal_shows_the_calls_of_a_chat_with_tools_on(tmp_path: Path, capsys) -> None:
    """A chat whose tools were turned on in the chat view answers with them in ``python -m core chat`` too."""
    from core.cli.chat import answer

    engine = engine_with(tmp_path, [CALC, "It is 1081."])
    sid = engine.new_session()
    set_chosen_tools(engine.store, sid, ["calculator"], engine.settings)
    result = answer(engine, sid, "What is 23 * 47?")
    captured = capsys.readouterr()
    assert captured.out.strip() == "It is 1081." and result["tool_calls"][0]["result"] == "1081"
    assert '[tool calculator({"expression": "23 * 47"}) -> \'1081\' in ' in captured.err
    engine.store.close()


def test_text_before_a_call_and_the_answer_after_it_stay_apart(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, ["Let me compute. " + CALC, "It is 1081."])
    sid = engine.new_session()
    set_chosen_tools(engine.store, sid, ["calculator"], engine.settings)
    list(engine.service.send(sid, "What is 23 * 47?"))
    assert engine.store.messages(sid)[-1].content == "Let me compute. \n\nIt is 1081."
    engine.store.close()

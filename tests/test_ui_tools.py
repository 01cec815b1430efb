"""Tools in the chat view (AppTest on the scripted ``fake`` model): the user turns the calculator on for a chat, the
model's call runs through the chat service's tool loop and shows folded under the answer (tool, arguments, result,
time) before the answer made from it; the choice and the step come back after a restart; the limit is shown and a
loop that reaches it says it stopped; an MCP server that fails leaves the chat usable with a notice."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from core.history.store import HistoryStore
from core.tools.history import load_steps
from tests.test_ui_export import downloads, import_file, offered  # noqa: F401 - offered is a fixture

APP = Path(__file__).resolve().parents[1] / "app.py"
CALC = '<tool_call>{"name": "calculator", "arguments": {"expression": "23 * 47"}}</tool_call>'


def start(session: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    if session is not None:
        at.query_params["session"] = session
    at.run()
    assert not at.exception, at.exception
    return at


def script(at: AppTest, replies: list[str]) -> None:
    """What the scripted model answers next (the app's one engine, shared by every tab)."""
    at.session_state["inkstone_engine"].backend.inner.script(replies)


def send(at: AppTest, text: str) -> AppTest:
    at.chat_input[0].set_value(text).run()
    assert not at.exception, at.exception
    return at


def steps(at: AppTest) -> list:
    """The folded tool calls drawn in the chat's answers."""
    return [e for m in at.chat_message if m.name == "assistant" for e in m.expander]


def answers(at: AppTest) -> list[str]:
    return [" ".join(md.value for md in m.markdown) for m in at.chat_message if m.name == "assistant"]


def test_a_calculator_call_is_folded_under_the_answer_and_survives_a_restart(app_store: HistoryStore) -> None:
    at = start()
    picker = at.multiselect(key="tools-new")
    assert picker.options == ["Calculator", "Date and time", "Search my knowledge bases"]  # nothing is on
    assert "At most 5 tool calls per answer" in " ".join(c.value for c in at.caption)
    picker.set_value(["calculator"]).run()
    script(at, [CALC, "23 * 47 = 1081."])
    send(at, "What is 23 * 47?")
    [session] = app_store.list_sessions()
    assert session.settings["tools"] == ["calculator"]  # stored with the chat
    [step] = steps(at)
    assert step.label.startswith('calculator(expression="23 * 47") · ') and step.label.endswith(" s")
    assert '"expression": "23 * 47"' in step.code[0].value and step.code[1].value == "1081"
    assert answers(at) == ["23 * 47 = 1081."]
    answer = app_store.messages(session.id)[-1]
    assert [(s.name, s.arguments, s.result) for s in load_steps(app_store, answer.id)] == \
        [("calculator", {"expression": "23 * 47"}, "1081")]

    st.cache_resource.clear()  # a restart: a new engine on the same data dir
    again = start(session.id)
    assert [e.label for e in steps(again)] == [step.label]
    assert steps(again)[0].code[1].value == "1081" and answers(again) == ["23 * 47 = 1081."]
    assert again.multiselect(key=f"tools-{session.id}").value == ["calculator"]


def test_a_model_that_calls_forever_is_stopped_and_says_so(app_store: HistoryStore) -> None:
    at = start()
    at.multiselect(key="tools-new").set_value(["calculator"]).run()
    script(at, [CALC.replace("23", str(n)) for n in range(8)] + ["I stop here."])
    send(at, "Count forever")
    assert len(steps(at)) == 5
    assert any("Stopped after 5 tool calls" in c.value for c in at.caption)


def test_tools_off_answers_as_before(app_store: HistoryStore) -> None:
    at = start()
    script(at, [CALC])
    send(at, "hello")
    [session] = app_store.list_sessions()
    assert not steps(at) and "tool_call" in app_store.messages(session.id)[-1].content  # just text: nothing ran


def test_the_settings_page_lists_each_mcp_server_with_its_tools_or_its_error(
        app_store: HistoryStore, tmp_path: Path, monkeypatch) -> None:
    import json
    import sys

    demo = str(Path(__file__).parent / "data" / "mcp_demo_server.py")
    config = tmp_path / "inkstone.toml"
    config.write_text(f"[mcp_servers.demo]\ncommand = {json.dumps([sys.executable, demo])}\ntimeout_s = 60\n"
                      '[mcp_servers.broken]\ncommand = ["/nonexistent/mcp-server"]\ntimeout_s = 10\n')
    monkeypatch.setenv("INKSTONE_CONFIG", str(config))
    at = start()
    assert at.multiselect(key="tools-new").options[-2:] == ["MCP: demo", "MCP: broken"]  # each off until turned on
    at.switch_page("ui/settings_page.py").run()
    assert not at.exception, at.exception
    text = " ".join(md.value for md in at.main.markdown)
    assert "**demo**" in text and "- `add` — Add two integers." in text and "`shout` — Upper-case text." in text
    assert "**broken**" in text
    [error] = at.main.error
    assert "MCP server 'broken' could not be started" in error.value and "inkstone.toml" in error.value


def test_export_then_import_brings_the_steps_back_under_the_answer(
        app_store: HistoryStore, offered: dict[str, bytes]) -> None:  # noqa: F811 - the fixture imported above
    import json

    at = start()
    at.multiselect(key="tools-new").set_value(["calculator"]).run()
    script(at, [CALC, "23 * 47 = 1081."])
    send(at, "What is 23 * 47?")
    files = downloads(at, offered)
    data = json.loads(files["Export JSON"])
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert data["messages"][1]["tool_calls"][0]["function"] == {"name": "calculator",
                                                               "arguments": '{"expression": "23 * 47"}'}
    assert data["messages"][2]["content"] == "1081"
    assert "Tool call: `calculator`" in files["Export Markdown"]
    [original] = app_store.list_sessions()

    other = start()  # another tab imports the file
    import_file(other, "sums.json", files["Export JSON"].encode("utf-8"))
    assert other.query_params["session"] != original.id
    [step] = steps(other)
    assert step.label.startswith('calculator(expression="23 * 47")') and step.code[1].value == "1081"
    assert answers(other) == ["23 * 47 = 1081."]


def test_a_server_gone_from_the_config_is_named_and_the_chat_still_answers(
        app_store: HistoryStore, tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "inkstone.toml"
    config.write_text('[mcp_servers.files]\ncommand = ["/nonexistent/mcp-server"]\ntimeout_s = 5\n')
    monkeypatch.setenv("INKSTONE_CONFIG", str(config))
    at = start()
    at.multiselect(key="tools-new").set_value(["calculator", "mcp:files"]).run()
    script(at, [CALC, "1081."])
    send(at, "What is 23 * 47?")
    assert answers(at) == ["1081."] and len(steps(at)) == 1  # the calculator still works
    [warning] = at.warning
    assert "MCP server 'files' could not be started" in warning.value and "left out" in warning.value
    at.run()
    assert not at.warning  # told once

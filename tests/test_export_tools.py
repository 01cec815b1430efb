"""Tool calls in exports: the JSON's ``messages`` carry them as OpenAI writes them (an assistant message with
``tool_calls``, the ``role: "tool"`` result, then the answer), the ``tree`` carries them on the answer as
``tool_steps``, Markdown shows them readably, and importing either form restores them with the answer. Exports
without tools import as before; a result that answers no call is refused, naming it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import InputError
from core.history.export import session_from_json, session_to_json, session_to_markdown
from core.history.steps import save_steps, steps_of
from core.history.store import HistoryStore, Session

STEP = {"name": "calculator", "arguments": {"expression": "23 * 47"}, "result": "1081", "seconds": 0.0123,
        "error": False, "call_id": "call_abc"}
FAILED = {"name": "search_knowledge", "arguments": {"query": "京都"}, "result": "Error: Chroma is down",
          "seconds": 1.5, "error": True, "call_id": ""}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    db = HistoryStore.open(tmp_path / "inkstone.db")
    yield db
    db.close()


@pytest.fixture
def chat(store: HistoryStore) -> Session:
    session = store.create_session(model="fake", title="Sums", settings={"tools": ["calculator", "kb"]})
    store.add_message(session.id, "user", "What is 23 * 47?")
    answer = store.add_message(session.id, "assistant", "23 * 47 = 1081.")
    save_steps(store, answer.id, [STEP, FAILED])
    return store.get_session(session.id)


def exported(store: HistoryStore, chat: Session) -> dict:
    tree = store.all_messages(chat.id)
    data = session_to_json(chat, store.messages(chat.id), tree=tree, steps=steps_of(store, [m.id for m in tree]))
    return json.loads(json.dumps(data))  # what a file holds


def test_the_json_carries_the_calls_as_openai_writes_them(store: HistoryStore, chat: Session) -> None:
    data = exported(store, chat)
    answer_id = store.messages(chat.id)[-1].id
    second = f"call_{answer_id[-12:]}_1"  # a step stored without an id gets a stable one
    assert data["messages"] == [
        {"role": "user", "content": "What is 23 * 47?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_abc", "type": "function", "function": {
            "name": "calculator", "arguments": '{"expression": "23 * 47"}'}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "1081", "name": "calculator", "seconds": 0.012},
        {"role": "assistant", "content": "", "tool_calls": [{"id": second, "type": "function", "function": {
            "name": "search_knowledge", "arguments": '{"query": "京都"}'}}]},
        {"role": "tool", "tool_call_id": second, "content": "Error: Chroma is down", "name": "search_knowledge",
         "seconds": 1.5, "tool_error": True},
        {"role": "assistant", "content": "23 * 47 = 1081."},
    ]
    answer = data["tree"][-1]
    assert [s["id"] for s in answer["tool_steps"]] == ["call_abc", second]
    assert answer["tool_steps"][0] == {"id": "call_abc", "name": "calculator", "arguments": {"expression": "23 * 47"},
                                       "result": "1081", "seconds": 0.012, "error": False}
    assert data["settings"]["tools"] == ["calculator", "kb"]  # the chat's tool choice goes along


def test_markdown_shows_the_calls_readably(store: HistoryStore, chat: Session) -> None:
    text = session_to_markdown(chat, store.messages(chat.id), steps=steps_of(store, [m.id for m in
                                                                                    store.messages(chat.id)]))
    assert '- Tool call: `calculator` with `{"expression": "23 * 47"}` (0.01 s)\n\n  ```\n  1081\n  ```' in text
    assert '`search_knowledge` with `{"query": "京都"}` (1.50 s, failed)' in text
    assert text.index("Tool call: `calculator`") < text.index("23 * 47 = 1081.")


@pytest.mark.parametrize("form", ["tree", "messages only"])
def test_import_restores_the_calls_with_the_answer(store: HistoryStore, chat: Session, form: str) -> None:
    data = exported(store, chat)
    if form == "messages only":
        del data["tree"], data["current"]
    copy = session_from_json(store, data)
    messages = store.messages(copy.id)
    assert [(m.role, m.content) for m in messages] == [("user", "What is 23 * 47?"), ("assistant", "23 * 47 = 1081.")]
    steps = steps_of(store, [messages[-1].id])[messages[-1].id]
    assert [(s["name"], s["arguments"], s["result"], s["error"]) for s in steps] == [
        ("calculator", {"expression": "23 * 47"}, "1081", False),
        ("search_knowledge", {"query": "京都"}, "Error: Chroma is down", True)]
    assert steps[0]["call_id"] == "call_abc" and steps[1]["seconds"] == 1.5
    assert exported(store, copy)["messages"][1:5] == data["messages"][1:5]  # and out again, the same
    assert copy.settings["tools"] == ["calculator", "kb"]


def test_a_document_from_an_openai_client_imports(store: HistoryStore) -> None:
    """Content null on the calling message, arguments as a JSON string, calls with no answer after them."""
    data = {"model": "gpt", "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "weather", "arguments": '{"city": "Kyoto"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c2", "type": "function", "function": {
            "name": "weather", "arguments": "{}"}}]},
    ]}
    copy = session_from_json(store, data)
    messages = store.messages(copy.id)
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "Weather?", "complete"), ("assistant", "Sunny.", "complete"), ("user", "And tomorrow?", "complete"),
        ("assistant", "", "stopped")]  # the unanswered call is kept on an empty answer
    steps = steps_of(store, [m.id for m in messages])
    assert steps[messages[1].id][0]["result"] == "sunny" and steps[messages[3].id][0]["result"] == ""


def test_an_export_without_tools_still_imports(store: HistoryStore) -> None:
    copy = session_from_json(store, {"model": "m", "messages": [{"role": "user", "content": "hi"},
                                                                {"role": "assistant", "content": "hello"}]})
    messages = store.messages(copy.id)
    assert [m.content for m in messages] == ["hi", "hello"] and steps_of(store, [m.id for m in messages]) == {}


def test_bad_tool_messages_are_refused_naming_each_and_nothing_is_stored(store: HistoryStore) -> None:
    data = {"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "nope", "content": "x"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "calc", "arguments": "{not json"}}, {"function": "calc"}]},
        {"role": "assistant", "content": "ok"},
    ], "tree": [{"id": "a", "parent_id": None, "role": "assistant", "content": "x", "tool_steps": [{"name": 1}]}]}
    with pytest.raises(InputError) as caught:
        session_from_json(store, data)
    message = str(caught.value)
    assert "messages[1].tool_call_id 'nope' answers no earlier tool call" in message
    assert "messages[2].tool_calls[0].function.arguments is not valid JSON" in message
    assert "messages[2].tool_calls[1] is not" in message
    assert 'tree[0].tool_steps[0] is not an object with "name" and "result" strings' in message
    assert store.list_sessions() == []

"""Importing a session restores its RAG switch and knowledge bases: ``core.history.export.import_session`` and
``python -m core sessions import FILE`` on a temp data dir. Knowledge bases that exist here (by name) are
restored, missing ones are left out with a notice naming them, RAG stays off when none is left, a bad
``rag``/``knowledge_bases`` is refused with nothing stored, and an export -> import roundtrip keeps the choice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.cli.sessions import main
from core.errors import InputError
from core.history.export import import_session, session_to_json
from core.history.store import HistoryStore
from core.kb.rows import KnowledgeRows, SessionKnowledge


@pytest.fixture
def store(home: Path) -> Iterator[HistoryStore]:
    db = HistoryStore.open(home / "inkstone.db")
    yield db
    db.close()


@pytest.fixture
def rows(store: HistoryStore) -> Iterator[KnowledgeRows]:
    """The same database's knowledge tables, with knowledge bases 产品手册 and recipes."""
    db = KnowledgeRows.open(Path(store.path))
    db.add_kb("产品手册", "c-1", "minilm", 384, 500, 50)
    db.add_kb("recipes", "c-2", "minilm", 384, 500, 50)
    yield db
    db.close()


def document(**extra: object) -> dict:
    messages = [{"role": "user", "content": "多少钱？"}, {"role": "assistant", "content": "十元。"}]
    return {"model": "m", "title": "价格", "messages": messages, **extra}


def stored(rows: KnowledgeRows, session_id: str) -> tuple[bool, list[str]]:
    """The session's RAG switch and knowledge-base names as stored."""
    value = rows.session_knowledge(session_id)
    return value.rag, [rows.kb_by_id(i).name for i in value.kb_ids]


def test_existing_knowledge_bases_are_restored_and_missing_ones_named(store, rows) -> None:
    result = import_session(store, rows, document(rag=True, knowledge_bases=["recipes", "Old notes", "产品手册"]))
    assert stored(rows, result.session.id) == (True, ["recipes", "产品手册"])
    assert (result.rag, result.knowledge_bases, result.missing) == (True, ["recipes", "产品手册"], ["Old notes"])
    assert result.notice == (
        "Knowledge base 'Old notes' of the imported chat does not exist here: left out; it searches 'recipes', "
        "'产品手册'."
    )
    assert [m.content for m in store.messages(result.session.id)] == ["多少钱？", "十元。"]


def test_rag_stays_off_when_none_of_its_knowledge_bases_exists(store, rows) -> None:
    result = import_session(store, rows, document(rag=True, knowledge_bases=["Old notes", "手册"]))
    assert stored(rows, result.session.id) == (False, []) and not result.rag
    assert "'Old notes', '手册'" in result.notice and "RAG is off for it" in result.notice


def test_rag_off_keeps_the_chosen_knowledge_bases_and_a_plain_document_sets_nothing(store, rows) -> None:
    off = import_session(store, rows, document(rag=False, knowledge_bases=["产品手册"]))
    assert stored(rows, off.session.id) == (False, ["产品手册"]) and off.notice is None
    plain = import_session(store, rows, document())  # an export from before RAG, or plain OpenAI messages
    assert rows.session_knowledge(plain.session.id) == SessionKnowledge() and plain.notice is None


def test_bad_rag_fields_are_refused_and_nothing_is_stored(store, rows) -> None:
    with pytest.raises(InputError) as error:
        import_session(store, rows, document(rag="yes", knowledge_bases="产品手册"))
    assert '"rag" is not true or false' in str(error.value)
    assert '"knowledge_bases" is not a list of names' in str(error.value)
    assert store.list_sessions() == []


def test_cli_roundtrip_keeps_the_choice(home: Path, store, rows, tmp_path: Path, capsys) -> None:
    chat = store.create_session(model="m", title="Soup")
    store.add_message(chat.id, "user", "How long do I simmer it?")
    rows.set_session_knowledge(chat.id, SessionKnowledge(True, (rows.kb_by_name("recipes").id,)))
    target = tmp_path / "soup.json"
    assert main(["export", chat.id, "--format", "json", "-o", str(target), "--home", str(home)]) == 0
    capsys.readouterr()

    assert main(["import", str(target), "--home", str(home)]) == 0
    out, err = capsys.readouterr()
    copy = next(s for s in store.list_sessions() if s.id != chat.id)
    assert out == f"Imported “Soup” as session {copy.id} (1 message; RAG on (recipes)).\n" and err == ""
    assert stored(rows, copy.id) == (True, ["recipes"])

    data = json.loads(target.read_text(encoding="utf-8"))
    target.write_text(json.dumps({**data, "knowledge_bases": ["recipes", "Gone"]}), encoding="utf-8")
    assert main(["import", str(target), "--json", "--home", str(home)]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["rag"], summary["knowledge_bases"], summary["missing_knowledge_bases"]) == (
        True, ["recipes"], ["Gone"])  # fmt: skip
    assert "'Gone'" in err and "does not exist here" in err


def test_cli_import_of_a_bad_file_fails_naming_it(home: Path, store, tmp_path: Path, capsys) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # nested past Python's recursion limit
    for name, content in (("absent.json", None), ("broken.json", b"{not json"), ("latin1.json", b"\xe9t\xe9"),
                          ("deep.json", deep)):
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        assert main(["import", str(path), "--home", str(home)]) == 1
        out, err = capsys.readouterr()
        assert out == "" and f"Cannot import {str(path)!r}" in err and "sessions export" in err
    assert store.list_sessions() == []


def test_export_of_the_app_reimports(store, rows) -> None:
    """What the app and the CLI export (``session_to_json`` with the RAG keys) imports with the choice intact."""
    chat = store.create_session(model="m")
    store.add_message(chat.id, "user", "hi")
    data = session_to_json(store.get_session(chat.id), store.messages(chat.id), rag=True,
                           knowledge_bases=["产品手册"])  # fmt: skip
    result = import_session(store, rows, json.loads(json.dumps(data)))
    assert stored(rows, result.session.id) == (True, ["产品手册"])

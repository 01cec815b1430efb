"""Conversations as trees (issue 20) on the real SQLite store and chat service with the scripted backend: the
m007 migration of a database made by the previous schema, paths, siblings, switching, forks, deleting a branch,
edits and regenerated answers kept as siblings, the prompt / exports / search / stats following the current path,
forged parent ids refused (store, import), and a kill -9 during an edited answer losing nothing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from core.backends.fake import FakeBackend
from core.chat.service import ChatService, Done, Started
from core.errors import InputError, NotFoundError
from core.history.export import session_from_json, session_to_json, session_to_markdown
from core.history.stats import answer_figures
from core.history.store import HistoryStore
from core.storage import migrations

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore.open(tmp_path / "inkstone.db")
    yield s
    s.close()


def texts(messages: list) -> list[str]:
    return [m.content for m in messages]


def chat(store: HistoryStore, backend: FakeBackend | None = None) -> tuple[ChatService, str]:
    """A service with the echo backend and a three-turn chat."""
    service = ChatService(store, backend or FakeBackend())
    sid = store.create_session(model="fake").id
    for question in ("one", "two", "three"):
        list(service.send(sid, question))
    return service, sid


def test_m006_database_becomes_one_path_losing_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = Database(sqlite3.connect(path))
    assert migrations.migrate(old, until="m006_message_persona")[-1] == "m006_message_persona"
    stamp = "2025-01-01T00:00:00.000000+00:00"
    for sid, title, persona in (("s1", "Old chat", "poet"), ("s2", "Other chat", None), ("s3", "Empty", None)):
        old.execute("INSERT INTO sessions (id, title, title_auto, model, persona, settings, created_at, updated_at) "
                    "VALUES (?, ?, 0, 'fake', ?, '{\"temperature\": 0.3}', ?, ?)", [sid, title, persona, stamp, stamp])
    rows = [  # id, session, role, content, status, sources, error, persona
        ("a1", "s1", "user", "first question", "complete", "[]", None, None),
        ("a2", "s1", "assistant", "stopped answer", "stopped", "[]", None, "poet"),
        ("a3", "s1", "user", "second question", "complete", "[]", None, None),
        ("a4", "s1", "assistant", "failed answer", "error", "[]", "CUDA out of memory", "poet"),
        ("a5", "s1", "user", "third question", "complete", "[]", None, None),
        ("a6", "s1", "assistant", "cited answer [1]", "complete", '[{"file": "a.pdf", "page": 3}]', None, None),
        ("b1", "s2", "user", "elsewhere", "complete", "[]", None, None),
    ]
    for mid, sid, role, content, status, sources, error, persona in rows:
        old.execute(
            "INSERT INTO messages (id, session_id, role, content, status, created_at, sources, error, prompt_tokens, "
            "persona_id, persona_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 12, ?, ?)",
            [mid, sid, role, content, status, stamp, sources, error, persona, persona and "Poet"],
        )
    old.execute("INSERT INTO session_knowledge (session_id, rag, kb_ids, updated_at) VALUES ('s1', 1, '[\"kb1\"]', ?)",
                [stamp])
    old.conn.commit()
    old.close()

    store = HistoryStore.open(path)
    assert "m007_message_tree" in migrations.applied_migrations(store.db)
    path1 = store.messages("s1")
    assert [m.id for m in path1] == ["a1", "a2", "a3", "a4", "a5", "a6"]
    assert [m.parent_id for m in path1] == [None, "a1", "a2", "a3", "a4", "a5"]
    assert [(m.status, m.error) for m in path1][1:4:2] == [("stopped", None), ("error", "CUDA out of memory")]
    assert path1[-1].sources == [{"file": "a.pdf", "page": 3}] and path1[1].persona_name == "Poet"
    assert store.get_session("s1").current_leaf == "a6" and store.get_session("s1").settings == {"temperature": 0.3}
    assert texts(store.messages("s2")) == ["elsewhere"] and store.messages("s3") == []
    assert store.db.execute("SELECT rag, kb_ids FROM session_knowledge").fetchall() == [(1, '["kb1"]')]
    assert [h.message_id for h in store.search_messages("cited")] == ["a6"]
    # The migrated chat goes on where it was: a new message follows its last one.
    assert store.add_message("s1", "user", "fourth").parent_id == "a6"
    store.db.execute("UPDATE sessions SET current_leaf = NULL WHERE id = 's1'")  # a leaf lost by another tool
    assert texts(store.messages("s1"))[-2:] == ["cited answer [1]", "fourth"]  # the newest path, nothing hidden
    store.close()


def test_edit_of_the_first_question_keeps_the_old_branch(store: HistoryStore) -> None:
    backend = FakeBackend()
    service, sid = chat(store, backend)
    first = store.messages(sid)[0]
    events = list(service.edit(sid, first.id, "uno"))
    assert isinstance(events[0], Started) and isinstance(events[-1], Done)
    assert texts(store.messages(sid)) == ["uno", "You said: uno"]
    assert backend.prompts[-1] == [{"role": "user", "content": "uno"}]  # the model sees only the new branch
    roots = store.children(sid)[None]
    assert len(roots) == 2 and roots[0] == first.id
    store.switch_branch(sid, first.id)  # ‹ 1/2 ›: the old question with its whole continuation
    assert texts(store.messages(sid)) == ["one", "You said: one", "two", "You said: two", "three", "You said: three"]
    # Edit a middle question: the prompt holds the path above it, not the other branch.
    second = store.messages(sid)[2]
    list(service.edit(sid, second.id, "dos"))
    assert texts(store.messages(sid)) == ["one", "You said: one", "dos", "You said: dos"]
    assert [m["content"] for m in backend.prompts[-1]] == ["one", "You said: one", "dos"]
    list(service.send(sid, "tres"))  # a follow-up continues the current path
    assert [m["content"] for m in backend.prompts[-1]][-3:] == ["dos", "You said: dos", "tres"]
    assert store.message_count(sid) == 12


def test_edit_refuses_answers_other_chats_deleted_and_streaming(store: HistoryStore) -> None:
    service, sid = chat(store)
    answer = store.messages(sid)[1]
    with pytest.raises(InputError, match="only your own messages"):
        service.edit(sid, answer.id, "x")
    _, other = chat(store)
    with pytest.raises(InputError, match="another chat"):
        service.edit(sid, store.messages(other)[0].id, "x")
    gone = store.messages(sid)[4]
    store.delete_branch(gone.id)
    with pytest.raises(NotFoundError, match="deleted"):
        service.edit(sid, gone.id, "x")
    with pytest.raises(InputError, match="empty"):
        service.edit(sid, store.messages(sid)[0].id, "  ")
    events = service.send(sid, "streaming now")
    next(events), next(events)
    before = store.message_count(sid)
    with pytest.raises(InputError, match="still being written"):
        service.edit(sid, store.messages(sid)[0].id, "x")
    list(events)
    assert store.message_count(sid) == before


def test_regenerate_keeps_every_answer_with_its_own_figures(store: HistoryStore) -> None:
    service = ChatService(store, FakeBackend(["first answer", "second answer here", "third"]))
    sid = store.create_session(model="fake").id
    list(service.send(sid, "question"))
    list(service.regenerate(sid))
    list(service.regenerate(sid))
    question = store.messages(sid)[0]
    answers = store.children(sid)[question.id]
    assert len(answers) == 3
    assert texts(store.messages(sid)) == ["question", "third"]
    store.switch_branch(sid, answers[0])
    assert texts(store.messages(sid)) == ["question", "first answer"]
    assert [store.get_message(a).completion_tokens for a in answers] == [2, 3, 1]
    # Regenerating an earlier answer keeps the later turns on the old branch.
    list(service.send(sid, "follow up"))
    list(service.regenerate(sid, message_id=answers[0]))
    assert texts(store.messages(sid)) == ["question", "second answer here"]  # the scripts go round
    assert len(store.children(sid)[question.id]) == 4
    store.switch_branch(sid, answers[0])
    assert texts(store.messages(sid)) == ["question", "first answer", "follow up", "first answer"]


def test_switch_fork_and_delete_branch(store: HistoryStore) -> None:
    service, sid = chat(store)
    store.db.execute("INSERT INTO session_knowledge (session_id, rag, kb_ids, updated_at) VALUES (?, 1, '[]', 'x')",
                     [sid])
    store.update_session(sid, persona="poet", settings={"temperature": 0.1})
    path = store.messages(sid)
    fork = store.fork_session(path[3].id)
    assert texts(store.messages(fork.id)) == ["one", "You said: one", "two", "You said: two"]
    assert fork.id != sid and "(fork)" in fork.title
    assert (fork.persona, fork.settings) == ("poet", {"temperature": 0.1})
    assert store.db.execute("SELECT rag FROM session_knowledge WHERE session_id = ?", [fork.id]).fetchone() == (1,)
    assert texts(store.messages(sid)) == texts(path)  # the original is untouched
    for session_id in (sid, fork.id):
        store.update_session(session_id, persona="")  # no personas set up in this test to answer with
    list(service.send(fork.id, "four"))
    assert store.message_count(sid) == 6

    list(service.edit(sid, path[2].id, "deux"))
    new_branch = store.messages(sid)[2]
    with pytest.raises(InputError, match="another session"):
        store.switch_branch(fork.id, path[2].id)  # a message of another chat is not a branch of this one
    assert store.delete_branch(new_branch.id) == 2  # the edit and its answer; the rest of the tree stays
    assert texts(store.messages(sid)) == texts(path)
    assert store.delete_branch(path[2].id) == 4
    assert texts(store.messages(sid)) == ["one", "You said: one"]
    with pytest.raises(NotFoundError, match="deleted"):
        store.delete_branch(path[2].id)


def test_forged_parents_are_refused(store: HistoryStore) -> None:
    _, a = chat(store)
    _, b = chat(store)
    with pytest.raises(InputError, match="another session"):
        store.add_message(a, "user", "x", parent_id=store.messages(b)[0].id)
    with pytest.raises(NotFoundError):
        store.add_message(a, "user", "x", parent_id="not-an-id")
    assert store.message_count(a) == 6

    data = session_to_json(store.get_session(a), store.messages(a), tree=store.all_messages(a))
    outside = json.loads(json.dumps(data))
    outside["tree"][2]["parent_id"] = store.messages(b)[0].id
    cycle = json.loads(json.dumps(data))
    cycle["tree"][0]["parent_id"] = cycle["tree"][1]["id"]
    twice = json.loads(json.dumps(data))
    twice["tree"][3]["id"] = twice["tree"][2]["id"]
    sessions = len(store.list_sessions())
    for bad, problem in ((outside, "not a message of this chat"), (cycle, "cycle"), (twice, "used twice")):
        with pytest.raises(InputError, match=problem):
            session_from_json(store, bad)
    assert len(store.list_sessions()) == sessions


def test_export_and_import_keep_the_tree_and_the_current_path(store: HistoryStore) -> None:
    service, sid = chat(store)
    first = store.messages(sid)[0]
    list(service.edit(sid, first.id, "uno"))
    list(service.regenerate(sid))
    store.mark_good(store.messages(sid)[-1].id)
    data = json.loads(json.dumps(session_to_json(store.get_session(sid), store.messages(sid),
                                                 tree=store.all_messages(sid))))  # fmt: skip
    assert [m["content"] for m in data["messages"]] == ["uno", "You said: uno"]  # OpenAI readers see the path
    assert len(data["tree"]) == 9 and data["current"] == store.messages(sid)[-1].id
    md = session_to_markdown(store.get_session(sid), store.messages(sid))
    assert "uno" in md and "three" not in md
    copy = session_from_json(store, data)
    assert texts(store.messages(copy.id)) == ["uno", "You said: uno"] and store.messages(copy.id)[-1].good
    children = store.children(copy.id)
    assert len(children[None]) == 2 and store.message_count(copy.id) == 9
    store.switch_branch(copy.id, children[None][0])
    assert texts(store.messages(copy.id))[-1] == "You said: three"
    edit = store.messages(sid)[0]
    assert len(store.children(sid)[edit.id]) == 2  # two answers to the edit, both exported


def test_search_finds_any_branch_and_stats_follow_the_current_path(store: HistoryStore, tmp_path: Path) -> None:
    service, sid = chat(store)
    old = store.messages(sid)[0]
    list(service.edit(sid, old.id, "uno"))
    hits = store.search_messages("three")
    assert len(hits) == 2 and {h.session_id for h in hits} == {sid}  # "three" and its answer, on the old branch
    assert [s.id for s in store.search_sessions("three")] == [sid]
    store.switch_branch(sid, hits[-1].message_id)  # opening a hit opens the chat on its branch
    assert texts(store.messages(sid))[-1] == "You said: three"
    assert len(answer_figures(tmp_path / "inkstone.db")) == 3
    store.switch_branch(sid, store.children(sid)[None][1])
    assert len(answer_figures(tmp_path / "inkstone.db")) == 1


def test_kill_9_during_an_edited_answer_keeps_both_branches_and_the_partial_answer(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    script = textwrap.dedent(
        f"""
        import os
        from core.backends.fake import FakeBackend
        from core.chat.service import ChatService, Token
        from core.history.store import HistoryStore
        store = HistoryStore.open({str(db)!r})
        sid = store.create_session(model="fake").id
        print(sid, flush=True)
        list(ChatService(store, FakeBackend(["first answer"])).send(sid, "first question"))
        service = ChatService(store, FakeBackend([" ".join(f"w{{i}}" for i in range(100))], delay_s=0.05))
        n = 0
        for event in service.edit(sid, store.messages(sid)[0].id, "edited question"):
            if isinstance(event, Token):
                n += 1
                if n == 20:
                    os._exit(9)  # no cleanup at all, like kill -9
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    sid = proc.stdout.split()[0]
    store = HistoryStore.open(db)  # any open settles the answer of the killed process
    try:
        edit, partial = store.messages(sid)
        assert edit.content == "edited question" and partial.status == "stopped"
        assert partial.content.startswith("w0 w1 w2")
        old = store.children(sid)[None][0]
        store.switch_branch(sid, old)
        assert texts(store.messages(sid)) == ["first question", "first answer"]
    finally:
        store.close()


def test_an_api_exchange_follows_the_current_path(store: HistoryStore) -> None:
    from types import SimpleNamespace

    from core.api.record import start_exchange

    service, sid = chat(store)
    first = store.messages(sid)[0]
    list(service.edit(sid, first.id, "uno"))
    store.switch_branch(sid, first.id)  # the old branch is the one open
    engine = SimpleNamespace(store=store, backend=FakeBackend(), service=service)
    record = start_exchange(engine, SimpleNamespace(session=sid, user_text="from the API", persona=None))
    record.add("api answer")
    record.save(record.end())
    assert texts(store.messages(sid))[-3:] == ["You said: three", "from the API", "api answer"]


def test_answers_marked_good_export_as_training_data_core_train_reads(store: HistoryStore, tmp_path: Path) -> None:
    from core.history.training_data import training_jsonl
    from core.training.data import load_data

    service, sid = chat(store)
    with pytest.raises(InputError, match="marked as good"):
        training_jsonl(store, session_id=sid)
    path = store.messages(sid)
    with pytest.raises(InputError, match="Only answers"):
        store.mark_good(path[0].id)
    store.mark_good(path[3].id)
    store.mark_good(path[5].id)
    store.mark_good(path[5].id, False)
    signed = store.add_message(sid, "user", "poem?")
    poem = store.add_message(sid, "assistant", "Roses are red.", persona=("poet", "Poet", None))
    store.mark_good(poem.id)
    assert signed.id == poem.parent_id and store.get_message(poem.id).good
    data = tmp_path / "good.jsonl"
    data.write_text(training_jsonl(store, session_id=sid), encoding="utf-8")
    report = load_data(data, system="You are helpful.")
    assert [(e.context[-1]["content"], e.answer) for e in report.examples] == [
        ("two", "You said: two"), ("poem?", "Roses are red.")]
    assert report.examples[0].context[0] == {"role": "system", "content": "You are helpful."}
    by_persona = training_jsonl(store, persona_id="poet")
    assert by_persona.count("\n") == 1 and "Roses are red." in by_persona

"""Chats with RAG on: the numbered context reaches the prompt (with the question, beside a persona's system
prompt, in Chinese for a Chinese question, trimmed before history), ``Sources`` comes before the tokens and is stored
with the answer, "nothing found" is said by the app in the asker's language before the model's general answer, a
Chroma server that is down leaves the chat working (and says so), ``python -m core chat --kb`` turns RAG on, and the
real ChatGLM3 and smollm2 paths take it."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from core.backends.fake import FakeBackend
from core.chat.prompt import build_prompt, fit_sources, with_context
from core.chat.rag_prompt import rag_question
from core.chat.service import Done, Sources, Started, Token
from core.cli import main
from core.config import load_settings
from core.engine import Engine, build_engine

EMBEDDER = "minilm"
FACT = "Mount Korvath is a dormant volcano. Its last eruption happened in the year 1822 and buried Selm in ash."


def engine_with_kb(home: Path, tmp_path: Path, backend: FakeBackend | None = None, **settings: object) -> Engine:
    doc = tmp_path / "volcano.txt"
    doc.write_text(FACT, encoding="utf-8")
    (tmp_path / "tea.txt").write_text("The Lunwick tea garden harvests its first flush in April.", encoding="utf-8")
    engine = build_engine(load_settings({"model": "fake", **settings}), backend=backend or FakeBackend())
    report = engine.knowledge.ingest("facts", [doc, tmp_path / "tea.txt"], embedder=EMBEDDER)
    assert report.count("added") == 2
    return engine


def test_sources_reach_the_prompt_the_events_and_the_stored_answer(home: Path, tmp_path: Path) -> None:
    backend = FakeBackend(["The last eruption was in 1822."])
    engine = engine_with_kb(home, tmp_path, backend)
    sid = engine.new_session()
    engine.knowledge.set_session_knowledge(sid, True, ["facts"])
    events = list(engine.service.send(sid, "When did the volcano last erupt?"))
    kinds = [type(e) for e in events]
    assert kinds.index(Sources) < kinds.index(Token) and isinstance(events[0], Started)
    [sources] = [e for e in events if isinstance(e, Sources)]
    assert sources.notice is None
    assert sources.items[0]["n"] == 1 and sources.items[0]["source"] == "volcano.txt"
    assert set(sources.items[0]) == {"n", "source", "page", "date", "score", "text", "query", "ocr"}
    assert sources.items[0]["ocr"] is False  # typed text, not read from a picture
    assert sources.items[0]["query"] == "When did the volcano last erupt?"  # what was searched for
    assert sources.items[0]["date"] == date.today().isoformat()  # no date in the text: the file's date
    [asked] = backend.prompts[-1]  # no system prompt: passages and instructions come with the question
    assert asked["role"] == "user" and f"Passages:\n{FACT}\n(volcano.txt)" in asked["content"]  # one date
    assert asked["content"].startswith("Answer the question using the passages") and "[1]" not in asked["content"]
    assert asked["content"].endswith("\n\nQuestion: When did the volcano last erupt?")
    assert engine.store.messages(sid)[-2].content == "When did the volcano last erupt?"  # stored as asked
    stored = engine.store.messages(sid)[-1]
    assert stored.sources == [{**sources.items[0], "citation": "verified"}, *sources.items[1:]]  # 1822 is in [1]
    assert stored.content == "The last eruption was in 1822 [1]."  # cited by the app: the model wrote no [n]
    assert isinstance(events[-1], Done)

    engine.knowledge.set_session_knowledge(sid, False)  # off again: no context, no Sources event
    events = list(engine.service.send(sid, "And the tea?"))
    assert not any(isinstance(e, Sources) for e in events)
    assert all(m["role"] != "system" for m in backend.prompts[-1])
    assert engine.store.messages(sid)[-1].sources == []
    assert engine.knowledge.session_knowledge(sid)[1][0].name == "facts"  # the choice of kb is kept


def test_nothing_found_is_said_first_by_the_app_in_the_askers_language(home: Path, tmp_path: Path) -> None:
    backend = FakeBackend(["1815年。", "It is Canberra."])
    engine = build_engine(load_settings({"model": "fake"}), backend=backend)
    engine.knowledge.create("空的知识库", EMBEDDER)
    sid = engine.new_session()
    engine.knowledge.set_session_knowledge(sid, True, ["空的知识库"])
    events = list(engine.service.send(sid, "火山最后一次喷发是哪一年？"))
    assert [e.items for e in events if isinstance(e, Sources)] == [[]]
    assert backend.prompts[-1] == [{"role": "user", "content": "火山最后一次喷发是哪一年？"}]  # no instructions
    answer = engine.store.messages(sid)[-1]
    assert answer.status == "complete" and answer.sources == []
    assert answer.content == "文档中没有提到这个问题。以下回答来自模型的一般知识，不是来自你的文档：\n\n1815年。"
    assert [e.text for e in events if isinstance(e, Token)][0].startswith("文档中没有提到这个问题。")
    list(engine.service.send(sid, "What is the capital of Australia?"))
    assert engine.store.messages(sid)[-1].content == (
        "The documents do not mention this. From general knowledge, not from your documents:\n\nIt is Canberra.")


def test_persona_system_prompt_and_context_both_reach_the_prompt(home: Path, tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    (adapters / "guide").mkdir(parents=True)
    (adapters / "guide" / "persona.toml").write_text('name = "Guide"\nsystem_prompt = "You are a mountain guide."\n')
    backend = FakeBackend()
    engine = engine_with_kb(home, tmp_path, backend, adapters=str(adapters))
    sid = engine.new_session(persona="guide")
    engine.knowledge.set_session_knowledge(sid, True, ["facts"])
    list(engine.service.send(sid, "volcano eruption year"))
    system, asked = backend.prompts[-1]
    assert system == {"role": "system", "content": "You are a mountain guide."}
    assert f"{FACT}\n(volcano.txt)" in asked["content"] and asked["content"].endswith("volcano eruption year")


def test_a_chroma_server_that_is_down_leaves_the_chat_working(home: Path, tmp_path: Path) -> None:
    engine = engine_with_kb(home, tmp_path)
    sid = engine.new_session()
    engine.knowledge.set_session_knowledge(sid, True, ["facts"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = FakeBackend(["fine"])
    down = build_engine(load_settings({"model": "fake", "chroma_url": f"http://127.0.0.1:{port}"}), backend=backend)
    events = list(down.service.send(sid, "When did the volcano erupt?"))
    [sources] = [e for e in events if isinstance(e, Sources)]
    assert sources.items == [] and sources.notice.startswith("Answering without the knowledge bases:")
    assert f"127.0.0.1:{port}" in sources.notice
    assert isinstance(events[-1], Done) and down.store.messages(sid)[-1].content == "fine"


def test_context_is_trimmed_before_history() -> None:
    def words(messages: list[dict]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    history = [("user", "old question " * 50), ("assistant", "old answer " * 50), ("user", "new question")]
    sources = [{"n": i, "source": f"f{i}.txt", "page": None, "text": "chunk " * 55} for i in range(1, 5)]
    budget = dict(count_tokens=words, context_window=400, max_new_tokens=100)
    kept = fit_sources(history, sources, **budget, system="Be brief.")
    assert [s["n"] for s in kept] == [1, 2]  # within 60% of the 300-token budget: the best two
    plan = build_prompt(history, **budget, max_turns=10, system=with_context("Be brief.", kept, "new question"))
    assert plan.prompt_tokens <= 300 and plan.omitted_turns == 1  # history gets what is left
    tight = fit_sources(history, sources[:1], count_tokens=words, context_window=200, max_new_tokens=60)
    assert len(tight) == 1 and tight[0]["text"].endswith("…")  # the best one, shortened to fit
    assert fit_sources(history, None, **budget) is None and fit_sources(history, [], **budget) == []


def test_cli_chat_kb_turns_rag_on(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    engine_with_kb(home, tmp_path).knowledge.close()
    monkeypatch.setenv("INKSTONE_MODEL", "fake")
    assert main(["chat", "--kb", "nope", "hello"]) == 1
    err = capsys.readouterr().err
    assert "No knowledge base named 'nope'" in err and "'facts'" in err
    assert main(["sessions", "list", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []

    assert main(["chat", "--kb", "facts", "--json", "When did the volcano last erupt?"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.splitlines()[-1])
    assert summary["sources"][0]["source"] == "volcano.txt" and summary["sources"][0]["n"] == 1
    assert set(summary["sources"][0]) == {"n", "source", "page", "date", "score", "text", "query", "ocr", "citation"}
    assert summary["sources"][0]["citation"] == "verified"  # the fake model echoes the passage: the app cites it
    assert "  [1] volcano.txt" in out
    engine = build_engine(load_settings({"model": "fake"}))
    rag, kbs = engine.knowledge.session_knowledge(summary["session_id"])
    assert rag and [kb.name for kb in kbs] == ["facts"]
    assert engine.store.messages(summary["session_id"])[-1].sources == summary["sources"]


@pytest.mark.slow
def test_chatglm3_prompt_format_takes_the_context(home: Path, tmp_path: Path) -> None:
    from tests.chatglm3_fixture import FIXTURE

    engine = engine_with_kb(home, tmp_path)
    engine = build_engine(load_settings({"model": str(FIXTURE), "temperature": 0, "max_new_tokens": 4}))
    sid = engine.new_session()
    engine.knowledge.set_session_knowledge(sid, True, ["facts"])
    question = "When did the volcano last erupt?"
    events = list(engine.service.send(sid, question))
    [sources] = [e.items for e in events if isinstance(e, Sources)]
    expected = [{"role": "user", "content": rag_question(sources, question)}]
    assert events[0].prompt_tokens == engine.backend.count_prompt_tokens(expected)
    assert events[0].prompt_tokens > engine.backend.count_prompt_tokens([{"role": "user", "content": question}])
    assert isinstance(events[-1], Done) and engine.store.messages(sid)[-1].sources == sources


@pytest.mark.slow
def test_smollm2_answers_with_sources(home: Path, tmp_path: Path, smollm2_cached: Callable[..., None]) -> None:
    smollm2_cached(home, "int8")  # converted once per run (tests/model_cache.py)
    engine = engine_with_kb(home, tmp_path)
    engine = build_engine(load_settings({"model": "smollm2-135m", "temperature": 0, "max_new_tokens": 24}))
    sid = engine.new_session()
    engine.knowledge.set_session_knowledge(sid, True, ["facts"])
    events = list(engine.service.send(sid, "In which year did Mount Korvath last erupt?"))
    done = events[-1]
    assert isinstance(done, Done) and done.stats.text.strip()
    stored = engine.store.messages(sid)[-1]
    assert stored.sources[0]["source"] == "volcano.txt" and "1822" in stored.sources[0]["text"]
    assert replace(done.stats).prompt_tokens > 60  # the context block went into the prompt


def test_regenerate_retrieves_again_and_stores_the_new_sources(home: Path, tmp_path: Path) -> None:
    engine = engine_with_kb(home, tmp_path, FakeBackend(["first [1]", "second [1]"]))
    sid = engine.new_session()
    engine.knowledge.set_session_knowledge(sid, True, ["facts"])
    list(engine.service.send(sid, "When is the first flush of the tea garden?"))
    events = list(engine.service.regenerate(sid))
    [sources] = [e.items for e in events if isinstance(e, Sources)]
    answer = engine.store.messages(sid)[-1]
    assert answer.content == "second [1]" and answer.sources == sources
    assert sources[0]["source"] == "tea.txt"


def test_a_follow_up_question_finds_the_subject_of_the_previous_turn(home: Path, tmp_path: Path) -> None:
    docs = {
        "kettle.txt": "The Aurora X2 kettle boils a litre of water in two minutes and costs 49 euros.",
        "prices.txt": "Price list policy: every price in our shop is shown in euros and includes VAT.",
        "tea.txt": "The Lunwick tea garden harvests its first flush in April.",
    }
    for name, text in docs.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    backend = FakeBackend(["It is a fast kettle [1].", "49 euros [1]."])
    engine = build_engine(load_settings({"model": "fake", "rag_top_k": 1}), backend=backend)
    assert engine.knowledge.ingest("shop", [tmp_path / n for n in docs], embedder=EMBEDDER).count("added") == 3
    sid = engine.new_session()
    engine.knowledge.set_session_knowledge(sid, True, ["shop"])
    list(engine.service.send(sid, "Tell me about the Aurora X2 kettle."))
    assert engine.store.messages(sid)[-1].sources[0]["source"] == "kettle.txt"
    # Alone, "its price" is about the price list; the conversation is about the kettle.
    assert engine.knowledge.retrieve(engine.store.get_session(sid), "And what about its price?")[0]["source"] == (
        "prices.txt")  # fmt: skip
    events = list(engine.service.send(sid, "And what about its price?"))
    [sources] = [e.items for e in events if isinstance(e, Sources)]
    assert [s["source"] for s in sources] == ["kettle.txt"]
    assert "costs 49 euros" in backend.prompts[-1][-1]["content"]
    assert engine.store.messages(sid)[-1].sources == [{**sources[0], "citation": "verified"}]  # 49 euros is in [1]
    assert sources[0]["query"] == "Aurora X2 kettle And what about its price?"  # what was searched for


def test_citations_are_checked_when_the_answer_is_stored(home: Path, tmp_path: Path) -> None:
    backend = FakeBackend(["Mount Korvath last erupted in 1822 [1]. It erupted again in 1907 [1]."])
    engine = engine_with_kb(home, tmp_path, backend)
    sid = engine.new_session()
    engine.knowledge.set_session_knowledge(sid, True, ["facts"])
    done = list(engine.service.send(sid, "When did the volcano last erupt?"))[-1]
    stored = engine.store.messages(sid)[-1]
    assert stored.sources[0]["source"] == "volcano.txt" and stored.sources[0]["citation"] == "unverified"  # 1907
    assert isinstance(done, Done) and done.stats.sources == stored.sources
    from core.history.export import source_label

    assert source_label(stored.sources[0], 1).endswith("volcano.txt (unverified)")  # the chat view's sources line


def test_a_wrong_citation_is_repointed_in_the_stored_answer() -> None:
    from knowledge.citations import check_sources

    sources = [{"n": 1, "source": "tea.txt", "text": "The Lunwick tea garden harvests its first flush in April."},
               {"n": 2, "source": "volcano.txt", "text": FACT}]  # fmt: skip
    text, marked = check_sources("Korvath last erupted in 1822 [1].", sources)
    assert text == "Korvath last erupted in 1822 [2]."
    assert "citation" not in marked[0] and marked[1]["citation"] == "verified"
    text, marked = check_sources("蒙特火山在1822年喷发，掩埋了塞尔姆[2]。", sources)
    assert text.endswith("[2]。") and marked[1]["citation"] == "verified"

"""The chat page's branches (issue 20) with Streamlit's AppTest on the ``fake`` model: ``‹ n/m ›`` switches versions
and shows that branch's continuation, Edit answers the edit as a new branch, Regenerate keeps the old answer, Fork
opens a copy, Delete branch asks first; and what models write is drawn: ``\\( \\)`` / ``\\[ \\]`` LaTeX as
``$`` math, a ``<think>`` block folded in an expander."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.history.store import HistoryStore
from ui.markup import latex_to_markdown, split_thinking

APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture
def store(app_store: HistoryStore) -> HistoryStore:
    return app_store


def start(session: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.query_params["session"] = session
    at.run()
    assert not at.exception, at.exception
    return at


def bubbles(at: AppTest) -> list[str]:
    return [" ".join(md.value for md in m.markdown) for m in at.chat_message]


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def three_turns(store: HistoryStore) -> str:
    sid = store.create_session(model="fake").id
    for q in ("one", "two", "three"):
        store.add_message(sid, "user", q)
        store.add_message(sid, "assistant", f"You said: {q}")
    return sid


def test_edit_switch_regenerate_fork_and_delete_branch(store: HistoryStore) -> None:
    sid = three_turns(store)
    first = store.messages(sid)[0]
    at = click(start(sid), f"edit-{first.id}")
    at.text_area(key=f"edit-text-{first.id}").set_value("uno")
    click(at, f"edit-send-{first.id}")
    assert bubbles(at) == ["uno", "You said: uno"]
    edited = store.messages(sid)[0]
    assert [c.value for c in at.caption if "/" in c.value and len(c.value) <= 5] == ["2/2"]

    click(at, f"prev-{edited.id}")  # ‹ 1/2: the old question with its whole continuation
    assert bubbles(at) == ["one", "You said: one", "two", "You said: two", "three", "You said: three"]
    click(at, f"next-{first.id}")
    assert bubbles(at) == ["uno", "You said: uno"]

    next(b for b in at.main.button if b.label == "Regenerate").click().run()
    answers = store.children(sid)[edited.id]
    assert len(answers) == 2 and bubbles(at) == ["uno", "You said: uno"]
    click(at, f"prev-{answers[1]}")
    assert store.messages(sid)[-1].id == answers[0]

    click(at, f"delete-{answers[0]}")
    assert any("Delete this version" in w.value for w in at.warning)
    assert len(store.children(sid)[edited.id]) == 2  # nothing deleted before Yes
    click(at, f"delete-yes-{answers[0]}")
    assert store.children(sid)[edited.id] == [answers[1]] and store.message_count(sid) == 8

    click(at, f"fork-{edited.id}")
    fork = at.query_params["session"][0] if isinstance(at.query_params["session"], list) else at.query_params["session"]
    assert fork != sid and [m.content for m in store.messages(fork)] == ["uno"]
    assert store.message_count(sid) == 8  # the original is untouched


def test_a_branch_deleted_in_another_tab_gives_a_notice(store: HistoryStore) -> None:
    sid = three_turns(store)
    first = store.messages(sid)[0]
    store.add_message(sid, "user", "uno", parent_id=None)
    at = start(sid)
    store.delete_branch(first.id)  # meanwhile, in another tab
    click(at, f"prev-{store.messages(sid)[0].id}")
    assert any("deleted" in e.value for e in at.error)
    assert bubbles(at) == ["uno"]


def test_latex_and_thinking_are_rendered(store: HistoryStore) -> None:
    sid = store.create_session(model="fake").id
    store.add_message(sid, "user", "area?")
    store.add_message(sid, "assistant", "<think>pi r squared</think>It is \\(\\pi r^2\\), so \\[ A = \\pi r^2 \\]")
    at = start(sid)
    assert at.expander[0].label == "Thought" and at.expander[0].markdown[0].value == "pi r squared"
    answer = at.chat_message[1].markdown[-1].value
    assert "$\\pi r^2$" in answer and "$$\nA = \\pi r^2\n$$" in answer and "think" not in answer


def test_markup_functions() -> None:
    assert latex_to_markdown("x \\( a+b \\) y `\\(code\\)`\n```\n\\[z\\]\n```") == (
        "x $a+b$ y `\\(code\\)`\n```\n\\[z\\]\n```"
    )
    assert split_thinking("<think>hm").thinking == "hm" and not split_thinking("<think>hm").thinking_done
    assert split_thinking("reason</think>\n\nAnswer").answer == "Answer"  # the opening tag was in the prompt
    assert split_thinking("plain <think> in text").thinking is None


def test_search_opens_the_chat_on_the_branch_that_matched(store: HistoryStore) -> None:
    sid = three_turns(store)
    store.add_message(sid, "user", "uno", parent_id=None)  # the edit is current; "three" is on the old branch
    other = store.create_session(model="fake").id
    store.add_message(other, "user", "unrelated")
    at = start(other)
    at.text_input(key="inkstone_search").set_value("three").run()
    click(at, f"open-{sid}")
    assert bubbles(at)[-1] == "You said: three"


def test_good_marks_an_answer_and_offers_training_data(store: HistoryStore) -> None:
    sid = three_turns(store)
    answer = store.messages(sid)[1]
    at = start(sid)
    assert not [b for b in at.get("download_button") if "training" in str(b.proto.label)]
    click(at, f"good-{answer.id}")
    assert store.get_message(answer.id).good
    assert [b for b in at.get("download_button") if "training" in str(b.proto.label)]


def test_an_edit_that_cannot_be_sent_keeps_its_box_and_says_why(store: HistoryStore) -> None:
    sid = three_turns(store)
    first = store.messages(sid)[0]
    at = click(start(sid), f"edit-{first.id}")
    at.text_area(key=f"edit-text-{first.id}").set_value("   ")
    click(at, f"edit-send-{first.id}")
    assert any("empty" in e.value for e in at.error)
    assert at.text_area(key=f"edit-text-{first.id}").value == "   "  # the box stays open
    at.text_area(key=f"edit-text-{first.id}").set_value("uno")
    store.delete_branch(first.id)  # meanwhile, in another tab
    click(at, f"edit-send-{first.id}")
    assert any("deleted" in e.value for e in at.error)
    assert store.message_count(sid) == 0

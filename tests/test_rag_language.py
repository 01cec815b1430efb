"""The RAG context in the asker's language, and only relevant passages numbered in it.

Checks ``core.chat.prompt.context_block`` (Chinese instructions, labels and closing reminder for a Chinese question;
English ones asking for the question's language otherwise) and ``core.kb.chats.relevant`` (hits far below the best
stay out of the numbered context, the rest renumbered from [1]).
"""

from __future__ import annotations

from core.chat.prompt import context_block, question_language
from core.kb.chats import relevant
from core.kb.naming import QueryHit

SOURCES = [{"n": 1, "source": "notice.html", "page": 3, "date": "2025-07-01", "text": "地面车位月租300元。"},
           {"n": 2, "source": "water.pdf", "page": None, "text": "Water costs 3.5 yuan per tonne."}]  # fmt: skip


def test_a_chinese_question_gets_chinese_instructions_before_and_after_the_passages() -> None:
    block = context_block(SOURCES, "兰亭花园地面车位月租多少？")
    assert block is not None
    first, *_, last = block.split("\n\n")
    assert first.startswith("请只根据") and "请用中文回答" in first
    assert last.startswith("请根据以上资料用中文回答")
    assert "[1] notice.html, 第 3 页, 日期 2025-07-01\n地面车位月租300元。" in block
    assert "Answer" not in block and "dated" not in block
    assert context_block([], "停车费多少？").startswith("已在用户的文档中检索")  # nothing found, said in Chinese


def test_an_english_question_asks_for_the_language_of_the_question() -> None:
    block = context_block(SOURCES, "How much is the monthly parking fee?")
    assert block is not None
    assert block.startswith("Answer using only") and "language of the user's question" in block
    assert block.endswith("in the language of the question, citing them like [1].")
    assert "[1] notice.html, p. 3, dated 2025-07-01" in block
    assert question_language("Orbit K2 电水壶的功率？") == "zh" and question_language("BW-170 price?") == "en"


def hit(rank: int, score: float, source: str) -> QueryHit:
    return QueryHit(rank, score, source, None, f"text of {source}", "kb")


def test_passages_far_below_the_best_stay_out_of_the_numbered_context() -> None:
    kept = relevant([hit(1, 0.9, "a.md"), hit(2, 0.6, "b.md"), hit(3, 0.3, "c.md"), hit(4, 0.2, "d.md")])
    assert [(h.rank, h.source) for h in kept] == [(1, "a.md"), (2, "b.md")]
    assert [h.source for h in relevant([hit(1, 0.37, "x"), hit(2, 0.2, "y")])] == ["x", "y"]  # close: both stay
    assert relevant([]) == []

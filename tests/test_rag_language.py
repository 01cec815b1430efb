"""The RAG context in the asker's language, and only relevant passages numbered in it.

Checks ``core.chat.prompt.context_block`` (Chinese instructions, labels and closing reminder for a Chinese question;
English ones asking for the question's language otherwise), ``core.chat.rag_prompt`` (the question's message as the
model reads it: instructions in its language, each passage's text with the file on a line after it), the app's own
citations (``knowledge.citations.attach_citations``) and ``core.kb.chats.relevant`` (hits far below the best stay out
of the numbered context, the rest renumbered from [1]).
"""

from __future__ import annotations

from dataclasses import replace

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


def test_a_chinese_question_reads_chinese_instructions_with_plain_passages() -> None:
    from core.chat.rag_prompt import rag_question, with_passages

    asked = rag_question(SOURCES, "兰亭花园地面车位月租多少？")
    assert asked.startswith("请根据下面用户文档中的资料回答问题。") and "请用中文回答" in asked
    assert "资料：\n地面车位月租300元。\n(notice.html，第 3 页)\n\nWater costs 3.5 yuan" in asked  # one date: no choice
    dated = rag_question([SOURCES[0], {**SOURCES[1], "date": "2024-03-01"}], "兰亭花园地面车位月租多少？")
    assert "(notice.html，第 3 页，2025-07-01)" in dated and "(water.pdf，2024-03-01)" in dated  # two dates
    assert "[1]" not in asked and "[2]" not in asked  # nothing label-like for the model to copy as its answer
    assert asked.endswith("问题：兰亭花园地面车位月租多少？") and "Answer" not in asked
    english = rag_question(SOURCES, "How much is the monthly parking fee?")
    assert english.startswith("Answer the question using") and "Answer in English." in english
    assert "\n\nQuestion: How much is the monthly parking fee?" in english and "问题" not in english
    history = [("user", "停车场在哪？"), ("assistant", "在北门。"), ("user", "月租多少？")]
    assert with_passages(history, SOURCES)[:2] == history[:2]  # only the question being answered carries them
    assert with_passages(history, SOURCES)[2][1] == rag_question(SOURCES, "月租多少？")
    assert with_passages(history, []) == history and with_passages(history, None) == history


def test_the_app_cites_a_sentence_that_one_passage_supports() -> None:
    from knowledge.citations import attach_citations, check_sources

    passages = {1: "Water costs 3.5 yuan per tonne.", 2: "地面车位月租300元，地下车位450元。"}
    cited = attach_citations("地面车位每月300元。水价是每吨3.5元。", passages)
    assert cited == "地面车位每月300元 [2]。水价是每吨3.5元 [1]。"
    assert attach_citations("It costs 999 yuan. Hello!", passages) == "It costs 999 yuan. Hello!"  # nothing holds 999
    text, marked = check_sources("Water is 3.5 yuan a tonne.", SOURCES)
    assert text == "Water is 3.5 yuan a tonne [2]." and marked[1]["citation"] == "verified"
    assert "citation" not in marked[0]
    assert check_sources("Parking is 300 [2].", SOURCES)[0] == "Parking is 300 [1]."  # a wrong [n] is re-pointed


def test_only_the_version_the_question_is_about_stays_in_the_context() -> None:
    from core.kb.chats import one_version

    old = QueryHit(1, 0.9, "expense_policy_2023.md", None, "Hotels up to 140 euros.", "kb", "2023-03-01")
    new = QueryHit(2, 0.8, "expense_policy_2025_revision.md", None, "Hotels up to 165 euros.", "kb", "2025-01-01")
    other = QueryHit(3, 0.5, "handbook.md", None, "Annual leave.", "kb", "2025-06-01")
    kept = one_version([old, new, other], "What is the hotel limit now?")
    assert [(h.rank, h.source) for h in kept] == [(1, "expense_policy_2025_revision.md"), (2, "handbook.md")]
    asked_old = one_version([old, new, other], "What was the hotel limit in the 2023 policy?")
    assert [h.source for h in asked_old] == ["expense_policy_2023.md", "handbook.md"]
    assert one_version([old, other], "hotel limit?") == [old, replace(other, rank=2)]  # one version: kept


def test_a_question_over_passages_in_the_other_language_is_reminded_of_its_own() -> None:
    from core.chat.rag_prompt import rag_question

    english_page = [{"n": 1, "source": "spec.docx", "text": "The Orbit K2 kettle is rated at 2200 watts."}]
    chinese_page = [{"n": 1, "source": "notice.html", "text": "地面车位月租300元，地下车位月租450元。"}]
    asked = rag_question(english_page, "Orbit K2 电水壶的功率是多少瓦？")
    assert asked.endswith("问题：Orbit K2 电水壶的功率是多少瓦？\n（请用中文回答，把资料中的英文内容译成中文。）")
    assert rag_question(chinese_page, "地下车位月租多少？").endswith("问题：地下车位月租多少？")  # same language
    assert rag_question(chinese_page, "How much is underground parking?").endswith("\n(Answer in English.)")
    assert rag_question(english_page, "How strong is the Orbit K2?").endswith("Question: How strong is the Orbit K2?")

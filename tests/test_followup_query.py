"""The search query of a follow-up question: the subject of earlier turns borrowed only when the question lacks one.

Checks ``core.chat.followup`` on English and Chinese conversations: pronoun and short follow-ups borrow the earlier
question's key terms (through a chain of follow-ups), questions that name their own subject are searched alone (a
change of topic does not drag the old subject along).
"""

from __future__ import annotations

from core.chat.followup import key_terms, names_own_subject, standalone_query
from core.chat.service import retrieval_query


def ask(*questions: str) -> str:
    """The search query after these user turns (with answers between them, which the rule ignores)."""
    history: list[tuple[str, str]] = []
    for q in questions:
        history += [("user", q), ("assistant", "Something about it [1].")]
    return standalone_query(history[:-1])


def test_an_english_pronoun_follow_up_borrows_the_subject() -> None:
    assert ask("Tell me about the BW-170 kettle", "How much does it cost?") == "BW-170 kettle\nHow much does it cost?"
    assert ask("Who designed Harrow Point Lighthouse?", "When was it first lit?").startswith(
        "designed Harrow Point Lighthouse\n")  # fmt: skip
    assert ask("What does the Larkspur 2025 policy say about hotels?", "And what about meals?") == (
        "Larkspur 2025 policy hotels\nAnd what about meals?")  # fmt: skip


def test_a_chinese_follow_up_borrows_the_subject() -> None:
    assert ask("介绍一下老街面馆", "几点开门？") == "老街面馆\n几点开门？"
    assert ask("兰亭花园的地面车位月租多少？", "那摩托车位呢？").startswith("兰亭花园")
    assert ask("青岚茶园在哪里？", "它是哪一年建的？").startswith("青岚茶园\n")


def test_a_chain_of_follow_ups_keeps_the_first_subject() -> None:
    query = ask("Tell me about the BW-170 kettle", "How much does it cost?", "And what is its capacity?")
    assert query.startswith("BW-170 kettle") and query.endswith("And what is its capacity?")
    assert ask("海風博物館在哪裡？", "门票多少钱？", "学生票呢？").startswith("海風博物館")


def test_a_question_with_its_own_subject_is_searched_alone() -> None:
    assert ask("Tell me about the BW-170 kettle", "When did Wren Street Bakery open?") == (
        "When did Wren Street Bakery open?")  # fmt: skip
    assert ask("Tell me about the BW-170 kettle", "How tall is the Eiffel Tower?") == "How tall is the Eiffel Tower?"
    assert ask("兰亭花园的地面车位月租多少？", "星河物流的餐费补助每天多少？") == "星河物流的餐费补助每天多少？"
    assert ask("江城大学图书馆几点开门？", "高血压患者应该注意什么？") == "高血压患者应该注意什么？"
    assert ask("Tell me about it", "Orbit K2 电水壶的功率是多少瓦？") == "Orbit K2 电水壶的功率是多少瓦？"


def test_the_rule_pieces_and_the_service_entry_point() -> None:
    assert names_own_subject("What is the boiling point of nitrogen?")
    assert not names_own_subject("How tall is it?") and not names_own_subject("几点开门？")
    assert key_terms("What is the BW-130 kettle like?") == "BW-130 kettle"
    assert retrieval_query([]) == "" and ask("How tall is it?") == "How tall is it?"  # nothing to borrow from
    assert retrieval_query([("user", "Tell me about the BW-170"), ("user", "Its price?")]) == "BW-170\nIts price?"

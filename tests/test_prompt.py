"""History trimming: the turn cap and the token budget keep the newest turns; an oversized message is refused."""

import pytest

from core.chat.prompt import build_prompt
from core.errors import InputError


def words(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"].split()) + 1 for m in messages)


def history(turns: int) -> list[tuple[str, str]]:
    rows = []
    for i in range(turns):
        rows += [("user", f"question {i}"), ("assistant", f"answer {i} a b c")]
    return rows + [("user", "latest question")]


def test_turn_cap_keeps_newest_and_counts_omitted() -> None:
    plan = build_prompt(history(12), count_tokens=words, context_window=10_000, max_new_tokens=100, max_turns=10)
    contents = [m["content"] for m in plan.messages]
    assert contents[0] == "question 3" and contents[-1] == "latest question"
    assert plan.omitted_turns == 3
    assert len([m for m in plan.messages if m["role"] == "user"]) == 10


def test_token_budget_trims_before_turn_cap() -> None:
    # each old turn costs 3 + 6 = 9 tokens; the latest question 3; budget 40 - 10 = 30 -> 3 old turns fit
    plan = build_prompt(history(12), count_tokens=words, context_window=40, max_new_tokens=10, max_turns=10)
    assert plan.prompt_tokens <= 30
    assert [m["content"] for m in plan.messages][0] == "question 9"
    assert plan.omitted_turns == 9


def test_system_prompt_always_first_and_counted() -> None:
    plan = build_prompt(
        history(2), count_tokens=words, context_window=10_000, max_new_tokens=10, max_turns=10, system="be brief"
    )
    assert plan.messages[0] == {"role": "system", "content": "be brief"}
    assert plan.prompt_tokens == words(plan.messages)


def test_message_larger_than_budget_is_refused_with_its_size() -> None:
    huge = [("user", "word " * 500)]
    with pytest.raises(InputError, match=r"needs 501 tokens.*context window of 300.*leaves 200"):
        build_prompt(huge, count_tokens=words, context_window=300, max_new_tokens=100, max_turns=10)


def test_max_new_tokens_as_large_as_the_window_is_named() -> None:
    with pytest.raises(InputError, match=r"max_new_tokens 5000 leaves no room.*context window of 4096.*1024"):
        build_prompt([("user", "hi")], count_tokens=words, context_window=4096, max_new_tokens=5000, max_turns=10)

"""Prompt building: system prompt + as much recent history as fits, newest kept.

Two limits apply: at most ``max_turns`` turns (the question being answered counts as one), and never more
tokens than the context window minus ``max_new_tokens``. Stored history is never touched; only the prompt
is trimmed, and the caller learns how many earlier turns were left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.errors import InputError

ChatMessages = list[dict[str, str]]


@dataclass(frozen=True)
class PromptPlan:
    """The messages to send and what was left out."""

    messages: ChatMessages
    prompt_tokens: int
    omitted_turns: int


def group_turns(history: Sequence[tuple[str, str]]) -> list[ChatMessages]:
    """Split (role, content) pairs into turns, each a user message and the answers that followed it."""
    turns: list[ChatMessages] = []
    for role, content in history:
        if role == "user" or not turns:
            turns.append([])
        turns[-1].append({"role": role, "content": content})
    return turns


def build_prompt(
    history: Sequence[tuple[str, str]],
    *,
    count_tokens: Callable[[ChatMessages], int],
    context_window: int,
    max_new_tokens: int,
    max_turns: int,
    system: str | None = None,
    system_source: str = "this chat",
) -> PromptPlan:
    """Fit the newest turns of ``history`` (ending with the user message being answered) into the budget.

    Raises InputError when even the last user message alone does not fit, naming its size, the limit and
    the real cause: the message, or the system prompt (``system_source`` says whose, e.g. a persona's).
    """
    budget = context_window - max_new_tokens
    if budget <= 0:
        raise InputError(
            f"max_new_tokens {max_new_tokens} leaves no room for the prompt in this model's context window of "
            f"{context_window} tokens: lower max_new_tokens (for example to {max(1, context_window // 4)})."
        )
    head: ChatMessages = [{"role": "system", "content": system}] if system else []
    turns = group_turns(history)
    if not turns:
        raise InputError("There is no user message to answer: type a message first.")
    kept: list[ChatMessages] = [turns[-1]]
    tokens = count_tokens(head + turns[-1])
    if tokens > budget:
        limit = f"this model's context window of {context_window} minus max_new_tokens {max_new_tokens} leaves {budget}"
        system_tokens = count_tokens(head) if head else 0
        if system_tokens and system_tokens >= tokens - system_tokens:
            raise InputError(
                f"The system prompt of {system_source} needs {system_tokens} tokens (the message "
                f"{tokens - system_tokens} more), but {limit}: shorten that system prompt, pick another persona, "
                "or lower max_new_tokens."
            )
        also = f" (of which the system prompt of {system_source} takes {system_tokens})" if system_tokens else ""
        raise InputError(
            f"The message needs {tokens} tokens of prompt{also}, but {limit}: shorten the message or lower "
            "max_new_tokens."
        )
    for turn in reversed(turns[:-1]):
        if len(kept) >= max_turns:
            break
        candidate = [turn, *kept]
        candidate_tokens = count_tokens(head + [m for t in candidate for m in t])
        if candidate_tokens > budget:
            break
        kept, tokens = candidate, candidate_tokens
    messages = head + [m for t in kept for m in t]
    return PromptPlan(messages=messages, prompt_tokens=tokens, omitted_turns=len(turns) - len(kept))


def context_block(sources: Sequence[dict]) -> str | None:
    """The numbered context the answer may cite as [n] (None without sources): one entry per source dict,
    labelled with its ``file`` (or ``source``/``title``) and ``page`` when present, then its ``text``."""
    if not sources:
        return None
    lines = ["Answer using these numbered sources where they help, and cite them as [n]:"]
    for number, source in enumerate(sources, start=1):
        name = next((str(source[k]) for k in ("file", "source", "document", "title") if source.get(k)), "")
        page = source.get("page")
        where = name + (f", p. {page}" if page not in (None, "") else "")
        lines.append(f"[{number}] {where}\n{source.get('text', '')}".rstrip() if where else
                     f"[{number}] {source.get('text', '')}")
    return "\n\n".join(lines)

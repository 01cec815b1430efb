"""Prompt building: system prompt (+ the numbered context of a RAG chat) + as much recent history as fits.

Two limits apply: at most ``max_turns`` turns (the question being answered counts as one), and never more
tokens than the context window minus ``max_new_tokens``. Stored history is never touched; only the prompt
is trimmed, and the caller learns how many earlier turns were left out.

History items are ``(role, content)``, or ``(role, content, images)`` for a user message with pictures
(``core.images.ImageInput``): its prompt message then carries ``"images"``, and trimming counts them as the backend
does (``count_prompt_tokens``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import InputError

ChatMessages = list[dict[str, Any]]
HistoryItem = tuple[str, str] | tuple[str, str, Sequence[Any]]
"""``(role, content)`` or ``(role, content, images)`` (pictures of a user message: ``core.images.ImageInput``)."""


@dataclass(frozen=True)
class PromptPlan:
    """The messages to send and what was left out."""

    messages: ChatMessages
    prompt_tokens: int
    omitted_turns: int


def group_turns(history: Sequence[HistoryItem]) -> list[ChatMessages]:
    """Split history items into turns, each a user message and the answers that followed it."""
    turns: list[ChatMessages] = []
    for role, content, *images in history:
        if role == "user" or not turns:
            turns.append([])
        message: dict[str, Any] = {"role": role, "content": content}
        if images and images[0]:
            message["images"] = list(images[0])
        turns[-1].append(message)
    return turns


def build_prompt(
    history: Sequence[HistoryItem],
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


CONTEXT_SHARE = 0.6
"""Most of the prompt budget the numbered context may take; the history gets what is left."""

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_GUIDE = {
    "en": (
        "Answer using only the numbered passages from the user's documents below, and cite the passages you use "
        "like [1]. If they do not contain the answer, say that the documents do not contain it; do not invent an "
        "answer. Answer in the language of the user's question.",
        "The user's documents were searched for this question and no relevant passage was found. If the question "
        "needs facts from the documents, say that the documents do not contain them; do not invent an answer. "
        "Answer in the language of the user's question.",
        "Answer the user's question from these passages in the language of the question, citing them like [1].",
    ),
    "zh": (
        "请只根据下面用户文档中带编号的资料回答，并像 [1] 这样标注所引用资料的编号。"
        "如果资料中没有答案，请说明文档中没有相关内容，不要编造答案。请用中文回答。",
        "已在用户的文档中检索这个问题，但没有找到相关内容。"
        "如果问题需要文档中的信息，请说明文档中没有相关内容，不要编造答案。请用中文回答。",
        "请根据以上资料用中文回答用户的问题，并像 [1] 这样标注引用的资料编号。",
    ),
}
"""Per question language: the instructions before the passages, the reply when none was found, and a reminder
after the passages (a small model follows the language of the last thing it read: English passages under a Chinese
question otherwise pull it into English, and the reverse). The reminder has no example sentence (the bundled 0.5B
model answered with it: "The price is 10 euros [2].") and does not say "square brackets after the fact" (it then
answered with passage labels, "[1] 2026-12-04"): measured with bench/rag_answer.py."""
_WHERE = {"en": ("p. {}", "dated {}", "OCR: may hold misread characters"),
          "zh": ("第 {} 页", "日期 {}", "OCR 识别，可能有错字")}  # fmt: skip


def question_language(question: str) -> str:
    """``zh`` for a question with Chinese (or other CJK) characters, else ``en``: the language of the RAG
    instructions and the language the answer is asked for."""
    return "zh" if _CJK.search(question or "") else "en"


def context_block(sources: Sequence[dict] | None, question: str = "") -> str | None:
    """The numbered context the answer may cite as [n]: None without RAG (``sources`` None); with RAG on and
    nothing found, the instruction to say the documents do not contain the answer rather than invent one.

    Each source dict gives ``n`` (else its position), ``source`` (or ``file``/``title``), ``page`` and ``text``.
    The instructions are in the question's language (Chinese when it has Chinese characters, else English, which
    also asks for an answer in the question's language), before and after the passages.
    """
    if sources is None:
        return None
    lang = question_language(question)
    found, nothing, reminder = _GUIDE[lang]
    page_fmt, date_fmt, ocr_note = _WHERE[lang]
    if not sources:
        return nothing
    lines = [found]
    for number, source in enumerate(sources, start=1):
        name = next((str(source[k]) for k in ("source", "file", "document", "title") if source.get(k)), "")
        page = source.get("page")
        where = name + (", " + page_fmt.format(page) if page not in (None, "") else "")
        where += f" ({ocr_note})" if source.get("ocr") else ""
        where += ", " + date_fmt.format(source["date"]) if source.get("date") else ""  # the model picks the newer
        label = f"[{source.get('n', number)}]" + (f" {where}" if where else "")
        lines.append(f"{label}\n{source.get('text', '')}".rstrip())
    lines.append(reminder)
    return "\n\n".join(lines)


def with_context(system: str | None, sources: Sequence[dict] | None, question: str) -> str | None:
    """The system message: the persona's (or chat's) system prompt, then the context block."""
    return "\n\n".join(part for part in (system, context_block(sources, question)) if part) or None


def fit_sources(
    history: Sequence[HistoryItem],
    sources: list[dict] | None,
    *,
    count_tokens: Callable[[ChatMessages], int],
    context_window: int,
    max_new_tokens: int,
    system: str | None = None,
    layout: Callable[[str | None, list[dict] | None, ChatMessages], ChatMessages] | None = None,
) -> list[dict] | None:
    """The best-ranked sources whose context block fits beside the system prompt and the question.

    Context is trimmed before any history is: the block may take up to ``CONTEXT_SHARE`` of the prompt
    budget (never more than what the system prompt and the question leave); sources that do not fit are
    left out from the lowest-ranked up (and are then neither shown nor stored). If not even the best one
    fits whole, its text is shortened. History then gets what remains (``build_prompt``). ``layout(system, kept,
    last_turn)`` gives the messages the model reads (default: the context block in the system message).
    """
    if not sources:
        return sources
    turns = group_turns(history)
    last = turns[-1] if turns else []
    question = next((m["content"] for m in reversed(last) if m["role"] == "user"), "")
    budget = context_window - max_new_tokens

    def tokens(kept: list[dict] | None) -> int:
        if layout is not None:
            return count_tokens(layout(system, kept, last))
        head = with_context(system, kept, question)
        return count_tokens(([{"role": "system", "content": head}] if head else []) + last)

    limit = min(budget, tokens(None) + int(budget * CONTEXT_SHARE))
    kept: list[dict] = []
    for source in sources:
        if tokens([*kept, source]) > limit:
            break
        kept.append(source)
    if not kept:
        text = str(sources[0].get("text", ""))
        while len(text) > 80 and not kept:
            text = text[: len(text) // 2]
            candidate = {**sources[0], "text": text + "…"}
            if tokens([candidate]) <= limit:
                kept.append(candidate)
    return kept

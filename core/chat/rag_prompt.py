"""The prompt of a RAG answer: the passages and the instructions go into the question's own message.

A chat with RAG on sends the model its system prompt as it is, the history, and, as the last user message, the
instructions, the passages (best first) and then the question, all in the question's language
(``question_language``: Chinese for a question with Chinese characters, else English). The stored question is never
changed; only the prompt is. Each passage is its text, then where it comes from (file, page, date) on a short line in
parentheses. The model is not shown passage numbers nor asked to cite: the app cites for it, adding ``[n]`` to each
sentence of the answer whose numbers, names and terms passage n holds (``knowledge.citations.attach_citations``), and
checks any ``[n]`` the model writes anyway.

When nothing relevant was found, the model gets the plain chat prompt (no instructions it would ignore) and the app
itself opens the answer with ``not_found_line``: the user asked for an answer from the documents and learns first
that they hold none, then reads the model's general answer under that line.

Measured with bench/rag_answer.py (README, Knowledge bases): the bundled 0.5B model copied passage labels such as
"[1] lanting_parking_notice.html, 日期 2025-07" as its answer when they opened the passage in the system prompt;
with the passages in the question's message as "[1] text" and asked to cite like [1], it answered "[1]" alone; and
it answered unrelated questions from its own knowledge while told to say the documents lack the answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.chat.prompt import HistoryItem, question_language

_GUIDE = {
    "en": ("Answer the question using the passages from the user's documents below. If two passages disagree, use "
           "the newer one. Answer in English.",
           "Passages:", "Question:"),
    "zh": ("请根据下面用户文档中的资料回答问题。如果两份资料内容不一致，以日期较新的为准。请用中文回答。",
           "资料：", "问题："),
}  # fmt: skip
"""Per question language: the instructions, the heading of the passages, the heading of the question."""
_WHERE = {"en": ("p. {}", "{}", "OCR, may hold misread characters"),
          "zh": ("第 {} 页", "{}", "OCR 识别，可能有错字")}  # fmt: skip
_NOT_FOUND = {
    "en": "The documents do not mention this. From general knowledge, not from your documents:",
    "zh": "文档中没有提到这个问题。以下回答来自模型的一般知识，不是来自你的文档：",
}


def not_found_line(question: str) -> str:
    """The line the app opens an answer with when RAG is on and no passage was found, in the question's language."""
    return _NOT_FOUND[question_language(question)]


def passage_block(sources: Sequence[dict], lang: str) -> str:
    """The passages, best first, each its text and then ``(file, page, date)`` on a line of its own."""
    page_fmt, date_fmt, ocr_note = _WHERE[lang]
    parts = []
    for source in sources:
        name = next((str(source[k]) for k in ("source", "file", "document", "title") if source.get(k)), "")
        where = [name] if name else []
        if source.get("page") not in (None, ""):
            where.append(page_fmt.format(source["page"]))
        if source.get("date"):
            where.append(date_fmt.format(source["date"]))  # the model picks the newer version
        if source.get("ocr"):
            where.append(ocr_note)
        sep = "，" if lang == "zh" else ", "
        text = str(source.get("text", "")).strip()
        parts.append(text + (f"\n({sep.join(where)})" if where else ""))
    return "\n\n".join(parts)


def rag_question(sources: Sequence[dict], question: str) -> str:
    """The last user message the model reads in a RAG chat with passages: instructions, passages, question."""
    lang = question_language(question)
    guide, heading, asked = _GUIDE[lang]
    return f"{guide}\n\n{heading}\n{passage_block(sources, lang)}\n\n{asked}{' ' if lang == 'en' else ''}{question}"


def with_passages(history: Sequence[HistoryItem], sources: Sequence[dict] | None) -> list[HistoryItem]:
    """``history`` as the model reads it: with passages, its last user message becomes ``rag_question`` (pictures
    kept); without (RAG off, or nothing found), unchanged."""
    items = list(history)
    if not sources:
        return items
    for i in range(len(items) - 1, -1, -1):
        role, content, *images = items[i]
        if role == "user":
            items[i] = (role, rag_question(sources, content), *images)  # type: ignore[assignment]
            break
    return items

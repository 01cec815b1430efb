"""The prompt of a RAG answer: the passages and the instructions go into the question's own message.

A chat with RAG on sends the model its system prompt as it is, the history, and, as the last user message, the
instructions, the passages (best first) and then the question, all in the question's language
(``question_language``: Chinese for a question with Chinese characters, else English). The stored question is never
changed; only the prompt is. Each passage is its text, then where it comes from (file, page, date) on a short line in
parentheses. The model is not shown passage numbers nor asked to cite: the app cites for it, adding ``[n]`` to each
sentence of the answer whose numbers, names and terms passage n holds (``knowledge.citations.attach_citations``), and
checks any ``[n]`` the model writes anyway. What the model reads is made easy to copy from: a table passage shows
only the rows the question names (``core.chat.rag_tables``) and Chinese numerals are shown in digits
(``with_digits``); the passages the user sees are unchanged. A "(file, date)" line the model copies into its answer
anyway is taken out of the finished answer (``without_where_lines``, called where citations are checked).

When nothing relevant was found, the model gets the plain chat prompt (no instructions it would ignore) and the app
itself opens the answer with ``not_found_line``: the user asked for an answer from the documents and learns first
that they hold none, then reads the model's general answer under that line.

Measured with bench/rag_answer.py (README, Knowledge bases): the bundled 0.5B model copied passage labels such as
"[1] lanting_parking_notice.html, 日期 2025-07" as its answer when they opened the passage in the system prompt;
with the passages in the question's message as "[1] text" and asked to cite like [1], it answered "[1]" alone; and
it answered unrelated questions from its own knowledge while told to say the documents lack the answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.chat.prompt import HistoryItem, question_language
from core.chat.rag_tables import focused

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


def where_parts(source: dict, lang: str, dated: bool = True) -> list[str]:
    """Where a passage comes from, as the model reads it under the passage: file, page, date (unless ``dated`` is
    false), OCR note."""
    page_fmt, date_fmt, ocr_note = _WHERE[lang]
    name = next((str(source[k]) for k in ("source", "file", "document", "title") if source.get(k)), "")
    where = [name] if name else []
    if source.get("page") not in (None, ""):
        where.append(page_fmt.format(source["page"]))
    if source.get("date") and dated:
        where.append(date_fmt.format(source["date"]))  # the model picks the newer version
    if source.get("ocr"):
        where.append(ocr_note)
    return where


_MEASURE = "天年元米岁人个种本次周只户名座根项层台辆件份张位家条吨斤亩倍個隻戶種歲張條輛層項"
_DIGIT = "一二两兩三四五六七八九十"
_CN_NUMERAL = re.compile(rf"[零〇{_DIGIT}百千万萬亿億]{{2,}}|[{_DIGIT}](?=[{_MEASURE}])")


_SIMPLIFIED = str.maketrans("兩萬億", "两万亿")


def with_digits(text: str) -> str:
    """``text`` with its Chinese numerals written in digits: runs of two characters or more (一百五十元 -> 150元,
    两万只 -> 20000只, 二零二五年 -> 2025年) and one before a measure word (十天 -> 10天). The 0.5B model read
    一百五十元 as "85 yuan" and 十天 as "3 days" in English answers, 三百元 as "3元" in a Chinese one; it copies
    digits."""
    from knowledge.citations import chinese_number

    def digits(match: re.Match[str]) -> str:
        value = chinese_number(match.group().translate(_SIMPLIFIED))
        return match.group() if value is None or match.group()[0] in "万萬亿億" else str(value)

    return _CN_NUMERAL.sub(digits, text)


def passage_block(sources: Sequence[dict], lang: str, question: str = "") -> str:
    """The passages, best first, each its text (Chinese numerals in digits) and then ``(file, page, date)`` on a
    line of its own (the date only where the passages' dates differ); a table passage shows only the rows
    ``question`` names, when it names one
    (``core.chat.rag_tables``)."""
    parts = []
    sep = "，" if lang == "zh" else ", "
    # Dates tell versions apart; where every passage has the same one there is nothing to choose, and the 0.5B
    # model answered a Chinese question with the date alone, "(2026-12-04)".
    dated = len({str(s.get("date")) for s in sources if s.get("date")}) > 1
    for source, text in zip(sources, focused(sources, question, lang), strict=True):
        if text:
            where = where_parts(source, lang, dated)
            parts.append(with_digits(text) + (f"\n({sep.join(where)})" if where else ""))
    return "\n\n".join(parts)


_BRACKETED = re.compile(r"[ \t]*[(（]([^()（）\n]{1,200})[)）]")


def without_where_lines(answer: str, sources: Sequence[dict]) -> str:
    """``answer`` without the "(file, page, date)" lines of ``sources`` it copied (whole or in part, on a line of
    their own or after a sentence): the 0.5B model answered "(2026-12-04)" alone, the date under a passage. Other
    brackets stay. An answer that was nothing but such lines is returned as it is (nothing else to show)."""
    known = {part.strip() for s in sources for lang in _WHERE for part in where_parts(s, lang)}

    def drop(match: re.Match[str]) -> str:
        said = [p.strip() for p in re.split(r"[,，]", match.group(1))]
        return "" if all(p in known for p in said) else match.group(0)

    cleaned = re.sub(r"\n{3,}", "\n\n", _BRACKETED.sub(drop, answer)).strip()
    return cleaned if cleaned else answer


_REMIND = {"en": "\n(Answer in English.)", "zh": "\n（请用中文回答，把资料中的英文内容译成中文。）"}
"""After the question, when the passages are in the other language: the 0.5B model answered Chinese questions
about English pages with the English figure it copied ("2200 watts [1]")."""


def _passages_language(sources: Sequence[dict]) -> str:
    """ "zh" when the passages' text is mostly Chinese characters, else "en"."""
    text = "".join(str(s.get("text", "")) for s in sources)
    cjk = len(re.findall(r"[\u3400-\u9fff]", text))
    return "zh" if cjk > len(re.findall(r"[A-Za-z]", text)) / 4 else "en"


def rag_question(sources: Sequence[dict], question: str) -> str:
    """The last user message the model reads in a RAG chat with passages: instructions, passages, question."""
    lang = question_language(question)
    guide, heading, asked = _GUIDE[lang]
    block = passage_block(sources, lang, question)
    prompt = f"{guide}\n\n{heading}\n{block}\n\n{asked}{' ' if lang == 'en' else ''}{question}"
    if lang != _passages_language(sources):
        prompt += _REMIND[lang]
    return prompt


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

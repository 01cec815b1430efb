"""Citation checking: does passage [n] hold what the answer's sentence citing [n] says?

An answer cites the numbered passages of its context as ``[n]``. For each sentence with citations, the claims that
can be checked are taken from it: numbers (digits, decimals, thousands separators, Chinese numerals such as 一百五十
or 两万, 3万), names (capitalised words and model codes such as BW-170 that do not open the sentence) and Chinese
terms (nouns and proper names cut by jieba). A citation holds when passage n holds every claim (a number by value,
a name case-insensitively, a Chinese term whole or by at least half of its characters, so that simplified and
traditional spellings of one name still meet). A citation that does not hold is re-pointed to the first passage
that holds every claim, else marked unverified. Sentences without checkable claims are left unchecked.

A small model seldom writes ``[n]`` itself, so before the check the app cites for it (``attach_citations``): a
sentence without a mark whose claims are all held by a passage gets that passage's number (the best-ranked one
holding them) before its end mark; such a citation is verified by construction, and one no passage supports is
never added.

Pure functions over strings: no model, no store.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

_MARK = re.compile(r"[\[【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]】]")
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_DIGITS = re.compile(r"\d+(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_MULTIPLIED = re.compile(r"(\d+(?:\.\d+)?)\s*([万亿])")
_CN_NUMERAL = re.compile(r"[零〇一二两三四五六七八九十百千万亿]{2,}")
_NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:[-'’][A-Za-z0-9]+)*\b|\b[A-Za-z]+-\d[\w-]*")
_CN_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNIT = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
_NOT_NAMES = {"I", "A", "An", "The", "This", "That", "These", "Those", "It", "Its", "In", "On", "At", "For", "To",
              "According", "Based", "As", "Yes", "No", "However", "Also", "And", "But", "So", "If", "There", "They",
              "We", "You", "Passage", "Passages", "Source", "Sources", "Document", "Documents", "Answer",
              "Note"}  # fmt: skip
_NOT_TERMS = {"资料", "文档", "文件", "信息", "内容", "问题", "答案", "段落", "原文", "根据", "来源", "编号", "情况",
              "方面", "时候", "部分", "用户", "以上", "以下"}  # fmt: skip
_TERM_TAGS = ("n", "nr", "ns", "nt", "nz", "nrt", "nrfg", "vn")


@dataclass(frozen=True)
class Citation:
    """One ``[n]`` of an answer, checked against the passages."""

    sentence: str
    cited: int
    """The number the answer wrote."""
    status: str
    """``verified`` (passage ``cited`` holds the claims), ``repointed`` (``points_to`` does instead), ``unverified``
    (no passage holds them all), ``unchecked`` (the sentence has no number, name or term to check)."""
    points_to: int | None = None
    """The passage the citation points to after checking (None when unverified or unchecked)."""
    missing: tuple[str, ...] = ()
    """The claims passage ``cited`` lacks."""


@dataclass(frozen=True)
class CheckedAnswer:
    """An answer after its citations were checked: the text with re-pointed numbers, and every citation."""

    text: str
    citations: list[Citation] = field(default_factory=list)

    def status_of(self, n: int) -> str | None:
        """How passage ``n`` fares as a citation of the checked text: ``verified`` when every citation now pointing
        to it holds, ``unverified`` when one does not, ``unchecked`` when its citations had nothing to check, None
        when the text does not cite it."""
        mine = [c for c in self.citations if (c.points_to if c.status in ("verified", "repointed") else c.cited) == n]
        if not mine:
            return None
        if any(c.status == "unverified" for c in mine):
            return "unverified"
        return "verified" if any(c.status in ("verified", "repointed") for c in mine) else "unchecked"


def chinese_number(text: str) -> int | None:
    """The value of a Chinese numeral (一百五十 -> 150, 两万 -> 20000, 二零二五 -> 2025), None when it is not one."""
    if any(c in _CN_UNIT or c in _CN_BIG for c in text):
        total, section, digit = 0, 0, None
        for char in text:
            if char in _CN_DIGIT:
                digit = _CN_DIGIT[char]
            elif char in _CN_UNIT:
                section += (1 if digit is None else digit) * _CN_UNIT[char]
                digit = None
            elif char in _CN_BIG:
                total += (section + (digit or 0)) * _CN_BIG[char]
                section, digit = 0, None
            else:
                return None
        return total + section + (digit or 0)
    if all(c in _CN_DIGIT for c in text):
        return int("".join(str(_CN_DIGIT[c]) for c in text))
    return None


def numbers(text: str, *, with_parts: bool = False) -> set[Decimal]:
    """The numeric values written in ``text`` (digits and Chinese numerals); ``with_parts`` also keeps the digits
    before 万/亿 as written (a passage's "3万" holds both 30000 and 3)."""
    values: set[Decimal] = set()
    for match in _MULTIPLIED.finditer(text):
        values.add(_decimal(match.group(1)) * (_CN_BIG[match.group(2)]))
    multiplied = {m.start(1) for m in _MULTIPLIED.finditer(text)}
    for match in _DIGITS.finditer(text):
        if match.start() not in multiplied or with_parts:
            values.add(_decimal(match.group()))
    for match in _CN_NUMERAL.finditer(text):
        value = chinese_number(match.group())
        if value is not None:
            values.add(Decimal(value))
    return {v.normalize() for v in values}


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return Decimal(0)


def claims(sentence: str) -> tuple[set[Decimal], set[str], set[str]]:
    """What a sentence asserts that a passage can be checked for: (numbers, names, Chinese terms)."""
    text = _MARK.sub(" ", sentence)
    text = re.sub(r"^\s*(?:[-*•]|\d+[.)、])\s+", "", text)  # a list marker is not a claim
    opening = re.match(r"[\s\"'“‘(]*([A-Za-z][\w'’-]*)", text)
    first = opening.group(1) if opening else ""  # capitalised because it opens the sentence, not a name
    names = latin_names(text)
    if first in names and not any(c.isdigit() for c in first):
        names.discard(first)
    return numbers(text), names, _terms(text)


def latin_names(text: str) -> set[str]:
    """Capitalised words and model codes of ``text`` (Larkspur, BW-140, K2), common sentence openers left out; a
    word that is capitalised because it opens an English sentence is still among them (``claims`` drops it)."""
    return {m.group() for m in _NAME.finditer(text) if m.group() not in _NOT_NAMES}


def _terms(text: str, tags: tuple[str, ...] = _TERM_TAGS) -> set[str]:
    """Chinese nouns and proper names of ``text`` (jieba's part-of-speech ``tags``), numerals left out."""
    runs = _CJK_RUN.findall(text)
    if not runs:
        return set()
    from jieba import posseg

    from knowledge.retrieval import init_tokenizer

    init_tokenizer()  # jieba's dictionary, loaded quietly once
    terms: set[str] = set()
    for run in runs:
        for pair in posseg.cut(run):
            word, tag = pair.word, pair.flag
            if tag in tags and len(word) >= 2 and word not in _NOT_TERMS and not _CN_NUMERAL.fullmatch(word):
                terms.add(word)
    return terms


def chinese_names(text: str) -> set[str]:
    """The Chinese proper names of ``text``: people, places, organisations (青禾, 成都 of 青禾咨询成都分公司)."""
    return _terms(text, ("nr", "ns", "nt", "nz", "nrt", "nrfg"))


def missing_claims(sentence_claims: tuple[set[Decimal], set[str], set[str]], passage: str) -> tuple[str, ...] | None:
    """The claims ``passage`` does not hold (empty: it holds them all); None when none of them can be checked
    against it. Across languages only what can be written the same way is checked: Chinese terms against passages
    with Chinese text, Latin-letter names against passages that are not mostly Chinese (an English answer about a
    Chinese passage is checked by its numbers, which Chinese numerals match)."""
    nums, names, terms = sentence_claims
    cjk = sum(len(run) for run in _CJK_RUN.findall(passage))
    latin = len(re.findall(r"[A-Za-z]", passage))
    if not cjk:
        terms = set()
    if cjk > latin:
        names = {n for n in names if n.lower() in passage.lower() or any(c.isdigit() for c in n)}
    if not (nums or names or terms):
        return None
    have = numbers(passage, with_parts=True)
    lowered = passage.lower()
    missing = [f"{n:f}" for n in sorted(nums) if n not in have]
    missing += [name for name in sorted(names) if name.lower() not in lowered]
    missing += [t for t in sorted(terms) if t not in passage and sum(c in passage for c in t) * 2 < len(t)]
    return tuple(missing)


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences (English and Chinese end marks, line breaks), citation marks kept with the
    sentence they close."""
    parts = re.split(r"(?<=[。！？!?；;\n])|(?<=[.])(?=\s)|(?<=\])(?=\s*[A-Z])", text)
    merged: list[str] = []
    for part in parts:
        if merged and _MARK.search(part) and not re.search(r"\w", _MARK.sub("", part)):
            merged[-1] += part  # "... 89 euros. [1]": the mark belongs to the sentence before it
        elif part:
            merged.append(part)
    return merged


def check_citations(answer: str, passages: Mapping[int, str]) -> CheckedAnswer:
    """Check every ``[n]`` of ``answer`` against ``passages`` ({n: passage text}); see the module docstring.
    Returns the text with re-pointed citations (``[2]`` -> ``[1]``) and each citation's outcome."""
    out: list[str] = []
    citations: list[Citation] = []
    for sentence in sentences(answer):
        marks = list(_MARK.finditer(sentence))
        if not marks:
            out.append(sentence)
            continue
        said = claims(sentence)
        checkable = any(said)
        cited = [int(n) for m in marks for n in re.split(r"\s*[,，、]\s*", m.group(1))]
        moves: dict[int, int] = {}
        for n in dict.fromkeys(cited):
            lacks = missing_claims(said, passages[n]) if n in passages else ("[no such passage]",)
            if not checkable or lacks is None:
                citations.append(Citation(sentence.strip(), n, "unchecked"))
                continue
            if not lacks:
                citations.append(Citation(sentence.strip(), n, "verified", n))
                continue
            holding = next((m for m in sorted(passages) if missing_claims(said, passages[m]) == ()), None)
            if holding is not None and holding not in cited:
                moves[n] = holding
                citations.append(Citation(sentence.strip(), n, "repointed", holding, lacks))
            else:
                citations.append(Citation(sentence.strip(), n, "unverified", None, lacks))
        if moves:
            sentence = _MARK.sub(functools.partial(_renumber, moves=moves), sentence)
        out.append(sentence)
    return CheckedAnswer("".join(out), citations)


def attach_citations(answer: str, passages: Mapping[int, str]) -> str:
    """``answer`` with ``[n]`` added to each sentence that has none and whose numbers, names and Chinese terms are
    all in passage n (the first such n of ``passages``, which are best first); other sentences are left as they
    are."""
    out: list[str] = []
    for sentence in sentences(answer):
        said = claims(sentence) if not _MARK.search(sentence) else (set(), set(), set())
        holding = next((n for n in passages if missing_claims(said, passages[n]) == ()), None) if any(said) else None
        if holding is None:
            out.append(sentence)
            continue
        end = re.search(r"[\s.。!?！？;；:：]*$", sentence)
        cut = end.start() if end else len(sentence)
        out.append(f"{sentence[:cut]} [{holding}]{sentence[cut:]}")
    return "".join(out)


def _renumber(mark: re.Match[str], moves: dict[int, int]) -> str:
    numbers_in = [int(n) for n in re.split(r"\s*[,，、]\s*", mark.group(1))]
    return "[" + ", ".join(str(moves.get(n, n)) for n in numbers_in) + "]"


def check_sources(answer: str, sources: list[dict]) -> tuple[str, list[dict]]:
    """``check_citations`` over an answer's numbered source dicts (``n`` and ``text`` each), after
    ``attach_citations``: the answer with added and re-pointed citations, and copies of the sources with
    ``citation`` set on each one whose citations were checked
    (``verified`` or ``unverified``; absent: not cited, or cited by sentences with nothing to check)."""
    passages = {int(s.get("n", i)): str(s.get("text", "")) for i, s in enumerate(sources, start=1)}
    checked = check_citations(attach_citations(answer, passages), passages)
    marked = []
    for i, source in enumerate(sources, start=1):
        status = checked.status_of(int(source.get("n", i)))
        marked.append({**source, "citation": status} if status in ("verified", "unverified") else dict(source))
    return checked.text, marked

"""Standalone search queries for follow-up questions ("How much does it cost?" after "Tell me about the BW-170").

A chat searches its knowledge bases with the question alone when the question names its own subject, and with the
key terms of the user turns before it put in front when it does not (a pronoun, "and what about...", a short
question with no name, model number or figure of its own; in Chinese a pronoun, a closing 呢, or a short question).
Earlier turns are walked back until one that names its subject (at most ``FOLLOWUP_TURNS``), so a chain of
follow-ups keeps the subject of its first question. A rule, not a model rewrite: the bundled model takes seconds per
rewrite on a CPU; measured on tests/data/rag_hard with ``bench/rag_eval.py --hard`` (README, Knowledge bases).
"""

from __future__ import annotations

import re

FOLLOWUP_TURNS = 3
"""Earlier user turns a follow-up may borrow its subject from."""
QUERY_CHARS = 1000
"""At most this much borrowed text goes into the search (the question itself always goes in whole)."""

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z]+-?\d[\w-]*|[A-Za-z][A-Za-z'’]*(?:-[A-Za-z]+)*|\d[\w.,-]*")
_EN_ANAPHORA = {"it", "its", "it's", "they", "them", "their", "theirs", "this", "that", "these", "those", "he",
                "him", "his", "she", "her", "there", "one", "ones", "same", "else"}  # fmt: skip
_EN_OPENERS = ("and ", "what about", "how about", "also", "but ", "so ", "then ")
_EN_STOP = {"a", "an", "the", "is", "are", "was", "were", "be", "do", "does", "did", "what", "which", "who", "whom",
            "whose", "when", "where", "why", "how", "much", "many", "tell", "me", "about", "of", "in", "on", "at",
            "to", "for", "by", "with", "and", "or", "can", "could", "would", "should", "will", "i", "you", "we",
            "please", "like", "say", "says", "give", "show", "know", "any", "some", "there", "this", "that", "it",
            "its", "has", "have", "had", "from", "as", "long", "big", "tall", "old"}  # fmt: skip
_ZH_ANAPHORA = ("它", "他们", "她", "他", "这", "那", "其", "该", "此", "上述", "前者", "后者", "這", "該")
_ZH_QUESTION = re.compile(
    r"请问|请|介绍一下|介紹一下|介绍|介紹|一下|告诉我|告訴我|怎么样|怎麼樣|怎么|怎麼|怎样|怎樣|如何|多少|几点|幾點|几|幾|"
    r"什么|什麼|哪里|哪裡|哪儿|哪|吗|嗎|呢|吧|啊|是|的|了|有|在|和|与|與|要|能|可以|会|會|都|还|還|又|也"
)
_PUNCT = re.compile(r"[\s?？!！。，,、；;：:“”\"'‘’（）()《》]+")
_ZH_SHORT = 6
"""A Chinese question with at most this many characters besides question words and particles borrows a subject."""
_EN_SHORT = 6
"""An English question of at most this many words, none of them a name or a figure, borrows a subject."""


def names_own_subject(question: str) -> bool:
    """Whether ``question`` can be searched alone: it names what it asks about (no pronoun standing for an earlier
    subject, not a bare "and what about X?", not a short question without a name or figure of its own)."""
    text = " ".join(question.split())
    if not text:
        return False
    if _CJK.search(text):
        if text.rstrip("?？ ").endswith(("呢", "呢?")) or any(text.startswith(a) for a in _ZH_ANAPHORA):
            return False
        if any(a in text for a in ("它", "这个", "這個", "那个", "那個", "这家", "那家", "这里", "那里")):
            return False
        core = _PUNCT.sub("", _ZH_QUESTION.sub("", text))
        latin = re.findall(r"[A-Za-z]{2,}|\d", core)  # a Latin name or a figure in a Chinese question
        return bool(latin) or len(core) > _ZH_SHORT
    words = _WORD.findall(text)
    lowered = [w.lower() for w in words]
    own_name = any(w[0].isupper() and w != "I" for w in words[1:]) or any(any(c.isdigit() for c in w) for w in words)
    if own_name:
        return True
    if text.lower().startswith(_EN_OPENERS) or any(w in _EN_ANAPHORA for w in lowered):
        return False
    return len(words) > _EN_SHORT


def key_terms(question: str) -> str:
    """What an earlier question says its subject is: its words without question words and particles."""
    text = " ".join(question.split())
    if _CJK.search(text):
        return _PUNCT.sub(" ", _ZH_QUESTION.sub(" ", text)).strip()
    return " ".join(w for w in _WORD.findall(text) if w.lower() not in _EN_STOP)


def standalone_query(history: list[tuple[str, str]]) -> str:
    """The text the knowledge bases are searched with for the last user message of ``history`` (role, text pairs):
    the question itself when it names its subject, else the key terms of the user turns before it (back to the one
    that names its subject) in front of it."""
    asked = [" ".join(text.split()) for role, text in history if role == "user"]
    if not asked:
        return ""
    question = asked[-1]
    if names_own_subject(question):
        return question
    borrowed: list[str] = []
    for earlier in reversed(asked[:-1][-FOLLOWUP_TURNS:]):
        borrowed.insert(0, key_terms(earlier))
        if names_own_subject(earlier):
            break
    subject = " ".join(t for t in borrowed if t)[-QUERY_CHARS:]
    return f"{subject}\n{question}" if subject.strip() else question

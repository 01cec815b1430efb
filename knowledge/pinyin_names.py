"""Chinese names written in pinyin: an English question about "the Laojie noodle shop" or "Yunxi Forest Park" finds
the Chinese passages that write 老街 or 云溪.

An English question and the Chinese passage that answers it meet at a low cosine with the default embedder
(e5-small: 0.72-0.80, where unrelated English passages reach 0.84), and a place or person is the part it carries
worst: a pinyin name is a rare string to the embedder, and its Chinese characters mean something else ("old
street", "cloud stream"). Most cross-language misses of the evaluation set were such questions. Pinyin is a
spelling, not a translation, so it can be matched exactly: every Chinese word of a knowledge base's keyword index
(jieba's words, ``knowledge.retrieval``) is spelled in toneless pinyin once (pypinyin, offline), and each capitalized
word of an English question, or a run of two or three of them ("Yun Xi"), is looked up in that spelling table.
A match names the Chinese words to search for; the passages that hold one count as relevant whatever their cosine
(``KnowledgeLibrary.search``), ranked with the others by the fused lists.

Lower-case words are not looked up: many English words spell pinyin too ("change", "panda"), while names in
questions are capitalized.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

_CAPITALIZED = re.compile(r"\b[A-Z][a-z]+(?:-[A-Za-z]+)?\b")
_HAN = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{2,6}$")
MAX_NAMES = 64
"""Names looked up per question (a pasted page of text is not a list of names)."""
MAX_SPELLINGS = 8
"""Readings kept per word (its usual one first, then others of characters with several)."""


def query_names(question: str) -> list[str]:
    """Lower-case spellings to look up: each capitalized word of ``question`` and each run of two or three
    neighbouring ones joined ("Yun Xi" -> "yunxi"); apostrophes and hyphens are dropped ("Xi'an" -> "xian")."""
    words = [(m.start(), m.end(), m.group().replace("-", "").lower()) for m in _CAPITALIZED.finditer(
        question.replace("'", "").replace("’", ""))]
    names: list[str] = [w for _, _, w in words]
    for size in (2, 3):
        for run in zip(*(words[i:] for i in range(size)), strict=False):
            if all(run[i + 1][0] - run[i][1] == 1 for i in range(size - 1)):  # one space between them
                names.append("".join(w for _, _, w in run))
    return list(dict.fromkeys(n for n in names if len(n) >= 4))[:MAX_NAMES]


def spellings(word: str) -> list[str]:
    """Toneless pinyin spellings of a Chinese ``word`` (usual reading first; ü as "u" and "v")."""
    from pypinyin import Style, lazy_pinyin, pinyin

    usual = "".join(lazy_pinyin(word, style=Style.NORMAL, errors="ignore"))
    readings = pinyin(word, style=Style.NORMAL, heteronym=True, errors="ignore")
    found = [usual]
    for combo in itertools.islice(itertools.product(*readings), MAX_SPELLINGS):
        found.append("".join(combo))
    out: list[str] = []
    for spelling in found:
        for variant in (spelling, spelling.replace("ü", "u").replace("v", "u")):
            if variant and variant not in out:
                out.append(variant)
    return out


class PinyinTable:
    """Spelling -> the Chinese words of a vocabulary spelled that way (words of 2-6 Han characters)."""

    def __init__(self, vocabulary: Iterable[str]) -> None:
        self._by_spelling: dict[str, list[str]] = {}
        for word in vocabulary:
            if _HAN.match(word):
                for spelling in spellings(word):
                    self._by_spelling.setdefault(spelling, []).append(word)

    def words(self, names: Iterable[str]) -> list[str]:
        """The Chinese words spelled like any of ``names`` (lower-case, from ``query_names``)."""
        return list(dict.fromkeys(w for name in names for w in self._by_spelling.get(name, ())))

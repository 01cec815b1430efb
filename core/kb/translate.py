"""The loaded chat model as the translator of questions across languages (``knowledge.crosslingual``).

An English question over Chinese passages (or the reverse) is also searched with its translation. The translation
is one short greedy answer of the loaded model, in its own turn of the model's queue, with a one-example prompt
that asks for the translation only (without the example the bundled 0.5B model answers the question instead).
Used only with the ``rag_translate`` setting (off: with the bundled model it did not help, README, Knowledge
bases; figures from ``bench/rag_eval.py --translate``: hit@4 and the seconds a translation adds to a question).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from core.backends.base import Backend, TextDelta
from core.config import GenerationSettings
from core.errors import InkstoneError

NAMES = {"en": "English", "zh": "Simplified Chinese"}
EXAMPLES = {
    "zh": ("How many rooms does the Grand Hotel have?", "大酒店有多少个房间？"),
    "en": ("大酒店有多少个房间？", "How many rooms does the Grand Hotel have?"),
}
SETTINGS = GenerationSettings(temperature=0, max_new_tokens=64, repetition_penalty=1.0, prompt_lookup="off")


def translation_messages(question: str, target: str) -> list[dict[str, str]]:
    """The prompt that asks for ``question`` in ``target`` ("en" or "zh") and nothing else."""
    example, translated = EXAMPLES[target]
    system = f"Translate the question into {NAMES[target]}. Do not answer it. Write only the translation."
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": example},
        {"role": "assistant", "content": translated},
        {"role": "user", "content": question},
    ]


def model_translator(backend: Backend) -> Callable[[str, str], str | None]:
    """A ``knowledge.crosslingual.Translate`` that asks ``backend``; None when generation fails."""

    def translate(question: str, target: str) -> str | None:
        if target not in NAMES:
            return None
        parts: list[str] = []
        try:
            for event in backend.stream(translation_messages(question, target), SETTINGS, threading.Event()):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
        except InkstoneError:
            return None
        text = "".join(parts).strip()
        return text.splitlines()[0].strip() if text else None

    return translate

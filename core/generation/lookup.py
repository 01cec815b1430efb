"""When prompt-lookup decoding runs: ``prompt_lookup_tokens`` decides, per answer, from the generation settings and
the prompt (used by the transformers backend's ``generate`` path and by the continuous batch, which hands such
answers to that path).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.config import GenerationSettings

LOOKUP_QUOTE_CHARS = 500
"""A system or last user message at least this long gives an answer text to copy (retrieved sources, a quote)."""
_CODE = re.compile(r"^```|^(?: {4}|\t)[ \t]*\S.*\n(?: {4}|\t)[ \t]*\S", re.MULTILINE)
"""A fenced code block, or two indented lines in a row."""


def prompt_lookup_tokens(
    settings: GenerationSettings, messages: Sequence[dict[str, str]], device: str = "cpu"
) -> int | None:
    """Tokens prompt-lookup decoding drafts per step for this prompt, or None for plain decoding.

    ``on`` and ``off`` decide alone. ``auto`` turns it on only where ``bench/lookup.py`` measured it faster:
    greedy answers (temperature 0; sampled ones were not faster) on a CPU (not measured on CUDA), for a prompt
    with text the answer may copy: code anywhere in the prompt (an edit of a function quoted now or in an
    earlier answer) or a system or last user message of at least ``LOOKUP_QUOTE_CHARS`` characters (retrieved
    sources, a quoted document). Open questions stay plain (prompt lookup made them ~25% slower).
    """
    if settings.prompt_lookup == "off":
        return None
    if settings.prompt_lookup == "auto" and (
            device != "cpu" or settings.temperature > 0 or not _has_text_to_copy(messages)):
        return None
    return settings.prompt_lookup_tokens


def _has_text_to_copy(messages: Sequence[dict[str, str]]) -> bool:
    if any(_CODE.search(str(m.get("content") or "")) for m in messages):
        return True
    users = [m for m in messages if m.get("role") == "user"]
    quoted = [m for m in messages if m.get("role") == "system"] + users[-1:]
    return any(len(str(m.get("content") or "")) >= LOOKUP_QUOTE_CHARS for m in quoted)

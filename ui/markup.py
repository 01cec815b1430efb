"""What models write, drawn the same way while it streams and once it is stored: LaTeX in ``\\( … \\)`` and
``\\[ … \\]`` (what Qwen and ChatGLM3 emit) becomes the ``$…$`` / ``$$…$$`` Streamlit's Markdown renders, code is
left exactly as written (Streamlit gives code blocks their copy button), and a thinking block
(``<think>…</think>`` of reasoning models) folds into an expander instead of showing as text.

``split_thinking`` and ``latex_to_markdown`` are plain text functions (tested without a browser); ``show_text``
draws one answer's text and ``write_rendered`` is the writer the chat page streams with, redrawing the text so
far with ``show_text``, so the streamed answer looks like the stored one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import streamlit as st

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
REDRAW_EVERY_S = 0.05
"""While streaming, the text is redrawn at most this often (each redraw renders the whole answer so far)."""

_CODE = re.compile(r"(```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]+`)", re.DOTALL)
_INLINE = re.compile(r"\\\((.+?)\\\)", re.DOTALL)
_DISPLAY = re.compile(r"\\\[(.+?)\\\]", re.DOTALL)


@dataclass(frozen=True)
class Parts:
    """An answer's text split into its thinking and the answer proper."""

    thinking: str | None
    """The text inside the thinking block (None: the answer has none)."""
    thinking_done: bool
    """False while the block is still open (the model is still thinking)."""
    answer: str


def split_thinking(text: str) -> Parts:
    """The thinking block of ``text`` (``<think>…</think>``, or text ending in ``</think>`` whose opening tag was
    in the prompt, as Qwen3's template does) and the rest; an unclosed block is thinking still going on."""
    start, end = text.find(THINK_OPEN), text.find(THINK_CLOSE)
    if start != -1 and text[:start].strip() == "":
        body_start = start + len(THINK_OPEN)
        end = text.find(THINK_CLOSE, body_start)
        if end == -1:
            return Parts(text[body_start:].strip(), False, "")
        return Parts(text[body_start:end].strip(), True, text[end + len(THINK_CLOSE) :].lstrip())
    if start == -1 and end != -1:
        return Parts(text[:end].strip(), True, text[end + len(THINK_CLOSE) :].lstrip())
    return Parts(None, True, text)


def _math(segment: str) -> str:
    segment = _DISPLAY.sub(lambda m: f"\n$$\n{m.group(1).strip()}\n$$\n", segment)
    return _INLINE.sub(lambda m: f"${m.group(1).strip()}$", segment)


def latex_to_markdown(text: str) -> str:
    """``\\( x \\)`` -> ``$x$`` and ``\\[ x \\]`` -> a ``$$`` block, outside code spans and fences only."""
    if "\\(" not in text and "\\[" not in text:
        return text
    pieces = _CODE.split(text)
    return "".join(piece if i % 2 else _math(piece) for i, piece in enumerate(pieces))


def show_text(text: str) -> None:
    """Draw one answer's text: its thinking folded in an expander, then the answer with LaTeX rendered."""
    parts = split_thinking(text)
    if parts.thinking is not None:
        label = "Thought" if parts.thinking_done else "Thinking…"
        with st.expander(label, icon=":material/psychology:", expanded=False):
            st.markdown(latex_to_markdown(parts.thinking) or "…")
    if parts.answer:
        st.markdown(latex_to_markdown(parts.answer))


def write_rendered(pieces: Iterable[str]) -> str:
    """Stream ``pieces`` into one place on the page, redrawn as ``show_text`` draws the stored answer; returns
    the whole text (a drop-in for ``st.write_stream``)."""
    place = st.empty()
    text, drawn, last = "", "", 0.0
    for piece in pieces:
        text += piece
        if time.monotonic() - last >= REDRAW_EVERY_S:
            with place.container():
                show_text(text)
            drawn, last = text, time.monotonic()
    if text != drawn:
        with place.container():
            show_text(text)
    return text

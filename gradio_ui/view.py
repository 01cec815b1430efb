"""How core data is drawn on the Gradio page, without Gradio: chat messages, the session list, captions.

An answer is shown with the avatar and name of the persona that wrote it (as stored with it), its tool calls (each
folded in a ``<details>`` block: tool, arguments, result, time), its text, the sources it could cite
(``[n] file, p. X``, from the stored answer) and its figures line (status, tokens, decode tokens/s, time to first
token).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from core.history.export import figures_line, source_label
from core.history.store import Message, Session

SNIPPET_CHARS = 200
FILE_ROUTE = "/gradio_api/file="
"""Gradio's route for files under its allowed paths (the page is mounted at ``/``)."""


def caption(message: Message) -> str:
    """The figures line under an answer: status mark, tokens, decoding tokens/s, time to first token."""
    return figures_line(message, stopped="⏹ stopped")


def avatar_text(avatar: str | None) -> str:
    """An emoji avatar as text, an image file in the persona's directory as a small ``<img>`` (served from the
    adapters directory, the page's only allowed path); ``:material/...:`` icons and missing files draw nothing."""
    if not avatar or avatar.startswith(":"):
        return ""
    if Path(avatar).is_absolute():
        if not Path(avatar).is_file():
            return ""
        return f'<img src="{FILE_ROUTE}{quote(avatar)}" alt="" width="24" height="24">'
    return avatar


def signature(name: str | None, avatar: str | None) -> str:
    """The line naming who wrote an answer (``🦊 **Fox**``), or ``""`` without a persona."""
    if not name:
        return ""
    mark = avatar_text(avatar)
    return f"{mark} **{name}**".strip()


def sources_text(sources: list[dict[str, Any]]) -> str:
    """``Sources: [1] a.txt · [2] b.pdf, p. 3`` and the passages, or ``""`` without sources."""
    if not sources:
        return ""
    labels = [source_label(s, s.get("n", i)) for i, s in enumerate(sources, start=1)]
    lines = ["Sources: " + " · ".join(labels)]
    for label, source in zip(labels, sources, strict=True):
        flat = " ".join(str(source.get("text") or "").split())
        if flat:
            cut = flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"
            lines.append(f"> {label}: {cut}")
    return "\n".join(lines)


def steps_markdown(steps: list[dict[str, Any]]) -> str:
    """An answer's tool calls (``core.history.steps`` dicts), each folded: ``tool(arguments) · time``, then the
    arguments and the result."""
    blocks = []
    for step in steps:
        args = json.dumps(step["arguments"], ensure_ascii=False)
        mark = "⚠️" if step.get("error") else "🛠️"
        summary = html.escape(f"{step['name']}({args[1:-1]}) · {float(step.get('seconds') or 0):.2f} s")
        result = str(step["result"])
        fence = "````" if "```" in result else "```"
        blocks.append(f"<details><summary>{mark} {summary}</summary>\n\n```json\n{args}\n```\n\n{fence}\n{result}\n"
                      f"{fence}\n\n</details>")
    return "\n".join(blocks)


def answer_markdown(text: str, *, name: str | None = None, avatar: str | None = None,
                    sources: list[dict[str, Any]] | None = None, figures: str = "",
                    error: str | None = None, steps: list[dict[str, Any]] | None = None) -> str:  # fmt: skip
    """One answer's Markdown: signature, tool calls, text, error, sources, figures (each part only when present)."""
    parts = [p for p in (signature(name, avatar), steps_markdown(steps or []), text) if p]
    if error:
        parts.append(f"⚠️ {error}")
    if sources:
        parts.append(sources_text(sources))
    if figures:
        parts.append(f"*{figures}*")
    return "\n\n".join(parts)


def chat_messages(history: list[Message], steps: dict[str, list[dict[str, Any]]] | None = None,
                  ) -> list[dict[str, str]]:  # fmt: skip
    """Stored messages as Gradio chatbot messages (``{"role", "content"}``), answers with their extras (their tool
    calls from ``steps``, ``core.history.steps.steps_of``)."""
    shown: list[dict[str, str]] = []
    previous: Message | None = None
    for message in history:
        if message.role == "user":
            shown.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            error = (message.error or "Generation failed.") if message.status == "error" else None
            content = answer_markdown(message.content, name=message.persona_name, avatar=message.persona_avatar,
                                      sources=message.sources, figures=caption(message), error=error,
                                      steps=(steps or {}).get(message.id))  # fmt: skip
            if previous is not None and previous.persona_id != message.persona_id:
                switched = f"Persona switched to {message.persona_name}" if message.persona_id else \
                    "Persona switched off"
                content = f"*{switched}*\n\n{content}"
            previous = message
            shown.append({"role": "assistant", "content": content})
    return shown


def session_choices(sessions: list[Session], counts: dict[str, int], current: str | None) -> list[tuple[str, str]]:
    """The session list's ``(title, id)`` pairs: chats with messages, and the open one even when empty."""
    return [(s.title, s.id) for s in sessions if counts.get(s.id, 0) > 0 or s.id == current]


def waiting_text(ahead: int) -> str:
    """The line shown while other answers (other tabs', the API's) are ahead of this one."""
    return f"Waiting for another answer to finish ({ahead} ahead)…"

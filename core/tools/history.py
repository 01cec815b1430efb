"""Tool calls in history: the steps of an answer are stored beside its message (table ``tool_steps``, migration
``m008_tool_calls``) and read back after a restart, in order. Uses the store's own connection and write lock."""

from __future__ import annotations

import json
from typing import Any

from core.tools.loop import ToolStep


def save_steps(store: Any, message_id: str, steps: list[ToolStep]) -> None:
    """Store ``steps`` as the tool calls of answer ``message_id`` (replacing any stored before)."""
    with store._write() as db:  # noqa: SLF001 - the store's one write path (lock, retries of pending writes)
        db.execute("DELETE FROM tool_steps WHERE message_id = ?", [message_id])
        for position, step in enumerate(steps):
            db.execute("INSERT INTO tool_steps (message_id, position, call_id, name, arguments, result, seconds, "
                       "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [message_id, position, step.call_id, step.name, json.dumps(step.arguments, ensure_ascii=False),
                        step.result, step.seconds, int(step.error)])


def load_steps(store: Any, message_id: str) -> list[ToolStep]:
    """The stored tool calls of answer ``message_id``, in order (empty when it made none)."""
    with store._read() as db:  # noqa: SLF001
        rows = list(db.query("SELECT call_id, name, arguments, result, seconds, error FROM tool_steps "
                             "WHERE message_id = ? ORDER BY position", [message_id]))
    return [ToolStep(r["name"], json.loads(r["arguments"]), r["result"], r["seconds"] or 0.0, bool(r["error"]),
                     r["call_id"]) for r in rows]

"""The tool calls of stored answers (table ``tool_steps``, migration ``m008_tool_calls``), as plain dicts.

A step is ``{"name", "arguments" (dict), "result", "seconds", "error" (bool), "call_id"}``, the shape of
``core.tools.loop.ToolStep.to_dict()``; ``core.tools.history`` turns them into ``ToolStep``s. Kept here, beside the
messages, so export and import (``core.history.export``) carry them without reaching up into ``core.tools``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from core.history.store import HistoryStore

Step = dict[str, Any]


def save_steps(store: HistoryStore, message_id: str, steps: Iterable[Step]) -> None:
    """Store ``steps`` as the tool calls of answer ``message_id``, in order (replacing any stored before)."""
    with store._write() as db:  # noqa: SLF001 - the store's one write path (lock, retries of pending writes)
        db.execute("DELETE FROM tool_steps WHERE message_id = ?", [message_id])
        for position, step in enumerate(steps):
            db.execute("INSERT INTO tool_steps (message_id, position, call_id, name, arguments, result, seconds, "
                       "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [message_id, position, str(step.get("call_id") or ""), step["name"],
                        json.dumps(step.get("arguments") or {}, ensure_ascii=False), str(step.get("result") or ""),
                        float(step.get("seconds") or 0.0), int(bool(step.get("error")))])


def steps_of(store: HistoryStore, message_ids: Iterable[str]) -> dict[str, list[Step]]:
    """The stored tool calls of each of ``message_ids`` that made any, in order (one query)."""
    ids = list(dict.fromkeys(message_ids))
    found: dict[str, list[Step]] = {}
    for start in range(0, len(ids), 500):  # SQLite's limit on parameters per statement
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        with store._read() as db:  # noqa: SLF001
            rows = list(db.query("SELECT message_id, call_id, name, arguments, result, seconds, error FROM tool_steps "
                                 f"WHERE message_id IN ({marks}) ORDER BY message_id, position", chunk))
        for r in rows:
            found.setdefault(r["message_id"], []).append({
                "name": r["name"], "arguments": _arguments(r["arguments"]), "result": r["result"],
                "seconds": r["seconds"] or 0.0, "error": bool(r["error"]), "call_id": r["call_id"]})
    return found


def _arguments(raw: str) -> dict[str, Any]:
    """Stored arguments JSON as a dict (a row written by hand that is not an object is kept under ``value``)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return {"value": raw}
    return value if isinstance(value, dict) else {"value": value}

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


# Export and import (see ``core.history.export``) ------------------------------------------------------------------


def call_id(step: Step, message_id: str, position: int) -> str:
    """The step's call id, or a stable one made from the answer's id for a step stored without one."""
    return str(step.get("call_id") or f"call_{message_id[-12:]}_{position}")


def openai_messages(message_id: str, steps: list[Step]) -> list[dict[str, Any]]:
    """The messages OpenAI puts before the answer that used ``steps``: per call an assistant message with
    ``tool_calls`` (arguments as a JSON string) and the ``role: "tool"`` message with its result (``name``, ``seconds``
    and ``tool_error`` are Inkstone's extras, which OpenAI-shaped readers ignore)."""
    out: list[dict[str, Any]] = []
    for position, step in enumerate(steps):
        cid = call_id(step, message_id, position)
        out.append({"role": "assistant", "content": "", "tool_calls": [{
            "id": cid, "type": "function",
            "function": {"name": step["name"], "arguments": json.dumps(step["arguments"], ensure_ascii=False)}}]})
        result: dict[str, Any] = {"role": "tool", "tool_call_id": cid, "content": step["result"],
                                  "name": step["name"], "seconds": round(float(step.get("seconds") or 0.0), 3)}
        if step.get("error"):
            result["tool_error"] = True
        out.append(result)
    return out


def tree_steps(message_id: str, steps: list[Step]) -> list[dict[str, Any]]:
    """An answer's calls in the export's ``tree`` (``"tool_steps"``): id, name, arguments (an object), result,
    seconds and error."""
    return [{"id": call_id(s, message_id, i), "name": s["name"], "arguments": s["arguments"], "result": s["result"],
             "seconds": round(float(s.get("seconds") or 0.0), 3), "error": bool(s.get("error"))}
            for i, s in enumerate(steps)]


def is_call_item(item: Any) -> bool:
    """Whether an exported message is part of a tool call (an assistant message with ``tool_calls`` or a
    ``role: "tool"`` result) rather than a message of its own."""
    return isinstance(item, dict) and (item.get("role") == "tool" or (
        item.get("role") == "assistant" and item.get("tool_calls") is not None))


def _arguments_problem(arguments: Any) -> str | None:
    if isinstance(arguments, dict):
        return None
    if isinstance(arguments, str):
        try:
            return None if isinstance(json.loads(arguments or "{}"), dict) else "is not a JSON object"
        except ValueError:
            return "is not valid JSON"
    return "is not a JSON string or object"


def call_item_problems(item: dict[str, Any], where: str, known: set[str]) -> list[str]:
    """What is wrong with one tool-call message of an export; ``known`` collects the call ids seen so far (a result
    must answer an earlier call)."""
    problems = []
    if item["role"] == "tool":
        if not isinstance(item.get("tool_call_id"), str) or item["tool_call_id"] not in known:
            problems.append(f"{where}.tool_call_id {item.get('tool_call_id')!r} answers no earlier tool call")
        if not isinstance(item.get("content"), str):
            problems.append(f"{where}.content (the tool's result) is missing or not a string")
        return problems
    if item.get("content") is not None and not isinstance(item["content"], str):
        problems.append(f"{where}.content is not a string")
    calls = item["tool_calls"]
    if not isinstance(calls, list):
        return [*problems, f"{where}.tool_calls is not a list"]
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(call.get("id"), str) or not isinstance(fn.get("name"), str):
            problems.append(f'{where}.tool_calls[{j}] is not {{"id", "type": "function", "function": {{"name", '
                            '"arguments"}}}')
            continue
        if (bad := _arguments_problem(fn.get("arguments"))) is not None:
            problems.append(f"{where}.tool_calls[{j}].function.arguments {bad}")
        known.add(call["id"])
    return problems


def tree_steps_problems(value: Any, where: str) -> list[str]:
    """What is wrong with a tree item's ``"tool_steps"``."""
    if not isinstance(value, list):
        return [f"{where}.tool_steps is not a list"]
    problems = []
    for j, step in enumerate(value):
        if not (isinstance(step, dict) and isinstance(step.get("name"), str) and isinstance(step.get("result"), str)):
            problems.append(f'{where}.tool_steps[{j}] is not an object with "name" and "result" strings')
        elif (bad := _arguments_problem(step.get("arguments", {}))) is not None:
            problems.append(f"{where}.tool_steps[{j}].arguments {bad}")
    return problems


def _dict_arguments(arguments: Any) -> dict[str, Any]:
    return arguments if isinstance(arguments, dict) else json.loads(arguments or "{}")


def from_tree(value: list[dict[str, Any]]) -> list[Step]:
    """Steps of a checked tree item's ``"tool_steps"``."""
    return [{"name": s["name"], "arguments": _dict_arguments(s.get("arguments", {})), "result": s["result"],
             "seconds": float(s["seconds"]) if isinstance(s.get("seconds"), int | float) else 0.0,
             "error": bool(s.get("error")), "call_id": str(s.get("id") or "")} for s in value]


def from_messages(items: list[dict[str, Any]]) -> list[Step]:
    """Steps of checked tool-call messages (calls, then the results that answer them, in order)."""
    calls: dict[str, Step] = {}
    for item in items:
        if item["role"] == "assistant":
            for call in item["tool_calls"]:
                calls[call["id"]] = {"name": call["function"]["name"],
                                     "arguments": _dict_arguments(call["function"].get("arguments")),
                                     "result": "", "seconds": 0.0, "error": False, "call_id": call["id"]}
        elif item["tool_call_id"] in calls:
            seconds = item.get("seconds")
            calls[item["tool_call_id"]].update(result=item["content"], error=bool(item.get("tool_error")),
                                               seconds=float(seconds) if isinstance(seconds, int | float) else 0.0)
    return list(calls.values())

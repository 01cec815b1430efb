"""Tool calls in history as ``ToolStep``s: the steps of an answer are stored beside its message (table ``tool_steps``,
migration ``m008_tool_calls``, written by ``core.history.steps``) and read back after a restart, in order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.history import steps as stored
from core.tools.loop import ToolStep


def save_steps(store: Any, message_id: str, steps: list[ToolStep]) -> None:
    """Store ``steps`` as the tool calls of answer ``message_id`` (replacing any stored before)."""
    stored.save_steps(store, message_id, [s.to_dict() for s in steps])


def load_steps(store: Any, message_id: str) -> list[ToolStep]:
    """The stored tool calls of answer ``message_id``, in order (empty when it made none)."""
    return steps_by_answer(store, [message_id]).get(message_id, [])


def steps_by_answer(store: Any, message_ids: Iterable[str]) -> dict[str, list[ToolStep]]:
    """The stored tool calls of each answer among ``message_ids`` that made any (one query for all)."""
    return {mid: [ToolStep(**step) for step in steps] for mid, steps in stored.steps_of(store, message_ids).items()}

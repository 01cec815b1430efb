"""The tool-call loop of a chat turn: generate, parse calls with the model's format, run each tool (timed, its
result capped), feed the results back, and generate again, until the model answers in text or the step limit is
reached (then the answer says so). Only tools the user turned on run; an unknown tool or a failing one becomes a
readable result the model sees, never an exception. A call that repeats an earlier one exactly (same tool, same
arguments: small models loop on their own result) is answered with the earlier result, and the next round offers
no tools, so the model answers from what it has."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from core.backends.base import Finished, TextDelta
from core.config import GenerationSettings
from core.tools.builtin import Tool, ToolError
from core.tools.formats import ToolFormat, tool_format
from core.tools.spec import ToolCall
from core.tools.stream import ToolStream

MAX_STEPS = 5
"""Tool calls one turn may make before the loop stops (shown to the user)."""
MAX_RESULT_CHARS = 8_000
"""A tool result longer than this is cut (with a note) before the model sees it."""


@dataclass
class ToolStep:
    """One call and its result, as the chat view folds it and history stores it."""

    name: str
    arguments: dict[str, Any]
    result: str
    seconds: float
    error: bool = False
    call_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class LoopResult:
    """The final answer text, the steps, why it ended and the last generation's figures."""

    text: str = ""
    steps: list[ToolStep] = field(default_factory=list)
    finish_reason: str = "stop"
    finished: Finished | None = None
    limit_hit: bool = False


def run_tool(tools: dict[str, Tool], call: ToolCall) -> ToolStep:
    """Run one call of a turned-on tool (an unknown tool, bad arguments or a failure become its result)."""
    started = time.perf_counter()
    tool = tools.get(call.name)
    error = True
    if tool is None:
        result = f"Error: there is no tool named {call.name!r}; available: {', '.join(tools)}."
    else:
        try:
            result, error = tool.run(call.arguments), False
        except ToolError as exc:
            result = f"Error: {exc}"
        except Exception as exc:  # noqa: BLE001 - a tool's failure is reported to the model, never a crash
            result = f"Error: the tool failed ({type(exc).__name__}: {exc})."
    if len(result) > MAX_RESULT_CHARS:
        result = result[:MAX_RESULT_CHARS] + f"\n[cut: the result had {len(result):,} characters]"
    return ToolStep(call.name, call.arguments, result, time.perf_counter() - started, error, call.id)


def tool_turn(backend: Any, messages: list[dict[str, Any]], settings: GenerationSettings, tools: list[Tool],
              stop: threading.Event, *, max_steps: int = MAX_STEPS, adapter: Any = None,
              ) -> Iterator[str | ToolStep | LoopResult]:
    """Answer ``messages`` with ``tools`` on: text pieces and ``ToolStep``s as they happen, then one ``LoopResult``."""
    fmt: ToolFormat = tool_format(backend.codec)
    by_name = {t.spec.name: t for t in tools}
    specs = [t.spec for t in tools]
    conversation = list(messages)
    result = LoopResult()
    done: dict[str, ToolStep] = {}  # each distinct call's step (tool name + arguments)
    repeated = False
    while True:
        allowed = len(result.steps) < max_steps and not repeated
        prompt = fmt.render(conversation, specs if allowed else [])
        stream = ToolStream(fmt, specs) if allowed else None
        text: list[str] = []
        for event in backend.stream(prompt, settings, stop, adapter):
            if isinstance(event, TextDelta):
                piece = stream.feed(event.text) if stream else event.text
                if piece:
                    text.append(piece)
                    yield piece
            elif isinstance(event, Finished):
                result.finished = event
        calls: list[ToolCall] = []
        if stream is not None:
            rest, calls = stream.finish()
            if rest:
                text.append(rest)
                yield rest
        if not calls or stop.is_set():
            result.text += "".join(text)
            result.finish_reason = result.finished.reason if result.finished else "error"
            result.limit_hit = len(result.steps) >= max_steps
            yield result
            return
        conversation.append({"role": "assistant", "content": "".join(text), "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]})
        for call in calls:
            key = f"{call.name}:{json.dumps(call.arguments, sort_keys=True, ensure_ascii=False)}"
            earlier = done.get(key)
            repeated = repeated or earlier is not None
            step = run_tool(by_name, call) if earlier is None else ToolStep(
                call.name, call.arguments, earlier.result, 0.0, earlier.error, call.id)
            done.setdefault(key, step)
            result.steps.append(step)
            yield step
            conversation.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                                 "content": step.result})
        result.text += "".join(text)


def steps_json(steps: list[ToolStep]) -> str:
    """The steps as a JSON list (what history stores)."""
    return json.dumps([s.to_dict() for s in steps], ensure_ascii=False)

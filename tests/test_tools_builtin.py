"""Built-in tools and the tool loop: the calculator parses arithmetic safely (never Python), the clock answers in a
time zone, the loop runs calls of turned-on tools and stops at its limit, and ``chat --tools`` stores the calls with
the answer so they come back after the store is reopened (migration ``m008_tool_calls``)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.backends.fake import FakeBackend
from core.config import GenerationSettings, load_settings
from core.engine import build_engine
from core.errors import InputError
from core.tools.builtin import ToolError, calculate, calculator, clock
from core.tools.loop import LoopResult, ToolStep, tool_turn


@pytest.mark.parametrize(("expression", "value"), [
    ("23 * 47", 1081), ("(15 + 27) / 6", 7), ("2 ** 10", 1024), ("3 × 4 ÷ 2", 6), ("（1 + 2）^2", 9),
    ("sqrt(16) + abs(-2)", 6), ("7 % 3", 1), ("-1.5 * 2", -3), ("round(pi, 2)", 3.14),
])
def test_the_calculator_computes(expression: str, value: float) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize(("expression", "says"), [
    ("__import__('os').system('echo hi')", "not allowed"), ("open('/etc/passwd')", "not allowed"),
    ("(1).__class__", "not allowed"), ("9 ** 9 ** 9", "too large"), ("1 / 0", "Division by zero"),
    ("1 +", "not an arithmetic expression"), ("1" * 600, "at most 500"), ("True + 1", "not allowed"),
])
def test_the_calculator_refuses_what_is_not_arithmetic(expression: str, says: str) -> None:
    with pytest.raises(ToolError, match=says):
        calculate(expression)


def test_the_clock_answers_in_a_time_zone() -> None:
    tool = clock(lambda: datetime(2026, 12, 4, 9, 0, tzinfo=UTC))
    assert tool.run({"timezone": "Asia/Shanghai"}) == "2026-12-04 17:00:00 CST (Friday)"
    with pytest.raises(ToolError, match="Unknown time zone"):
        tool.run({"timezone": "Mars/Olympus"})


def turn(replies: list[str], max_steps: int = 5) -> tuple[list[Any], FakeBackend]:
    backend = FakeBackend(replies)
    items = list(tool_turn(backend, [{"role": "user", "content": "What is 23 * 47?"}], GenerationSettings(),
                           [calculator()], threading.Event(), max_steps=max_steps))
    return items, backend


CALC = '<tool_call>{"name": "calculator", "arguments": {"expression": "23 * 47"}}</tool_call>'


def test_the_loop_runs_the_call_and_answers_from_its_result() -> None:
    items, backend = turn([CALC, "23 * 47 = 1081."])
    steps = [i for i in items if isinstance(i, ToolStep)]
    result = items[-1]
    assert isinstance(result, LoopResult) and result.text == "23 * 47 = 1081." and not result.limit_hit
    assert [(s.name, s.arguments, s.result, s.error) for s in steps] == \
        [("calculator", {"expression": "23 * 47"}, "1081", False)]
    assert "<tool_response>\n1081\n</tool_response>" in backend.prompts[-1][-1]["content"]


def calc(expression: str) -> str:
    return f'<tool_call>{{"name": "calculator", "arguments": {{"expression": "{expression}"}}}}</tool_call>'


def test_a_model_that_calls_forever_is_stopped_at_the_limit() -> None:
    items, backend = turn([calc(f"{n} * 47") for n in range(10)], max_steps=3)
    result = items[-1]
    assert len(result.steps) == 3 and result.limit_hit and len(backend.prompts) == 4
    assert "You can call tools" not in backend.prompts[-1][0]["content"]  # the last round offers no tools


def test_an_unknown_tool_is_a_readable_result_not_a_crash() -> None:
    items, _ = turn(['<tool_call>{"name": "calculator", "arguments": {"expression": "os.system(1)"}}</tool_call>',
                     "Sorry."])
    step = next(i for i in items if isinstance(i, ToolStep))
    assert step.error and step.result.startswith("Error:") and items[-1].text == "Sorry."


def test_chat_tools_stores_the_calls_and_they_survive_a_restart(tmp_path: Path) -> None:
    from core.cli.chat import Target, build_parser
    from core.cli.tools import answer_with_tools, pick_tools
    from core.engine import open_store
    from core.tools.history import load_steps

    settings = load_settings({"model": "fake", "home": str(tmp_path)}, config_file=tmp_path / "absent.toml")
    engine = build_engine(settings, backend=FakeBackend([CALC, "It is 1081."]))
    args = build_parser().parse_args(["--tools", "calculator", "What is 23 * 47?"])
    tools = pick_tools(engine, args.tools, None)
    target = Target(engine, args)
    result = answer_with_tools(engine, target, target.for_message(args.message), args.message, tools, max_steps=5)
    assert result["reply"] == "It is 1081." and result["tool_calls"][0]["result"] == "1081"
    json.dumps(result)  # the --json object
    engine.store.close()
    reopened = open_store(settings)
    answer = reopened.messages(result["session_id"])[-1]
    assert answer.content == "It is 1081."
    assert [(s.name, s.result) for s in load_steps(reopened, answer.id)] == [("calculator", "1081")]
    with pytest.raises(InputError, match="--kb"):
        pick_tools(engine, "kb", None)
    with pytest.raises(InputError, match="Unknown tool"):
        pick_tools(engine, "shell", None)


def test_a_repeated_call_gets_the_earlier_result_and_the_model_answers_without_tools() -> None:
    items, backend = turn([CALC, CALC, "It is 1081."])
    steps = [i for i in items if isinstance(i, ToolStep)]
    assert [s.result for s in steps] == ["1081", "1081"] and items[-1].text == "It is 1081."
    assert not items[-1].limit_hit and len(backend.prompts) == 3
    assert "You can call tools" not in backend.prompts[-1][0]["content"]  # the round after the repeat offers none

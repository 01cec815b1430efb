"""Built-in tools a chat can turn on: a calculator that parses arithmetic (``ast``, a whitelist of nodes, bounded
powers; nothing is evaluated as Python), the date and time, and a search of the chat's knowledge bases (the model
decides when to look things up). Each tool is a ``Tool``: its spec and a function of the parsed arguments that
returns text or raises ``ToolError`` with a message the model (and the user) can read."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.tools.spec import ToolSpec

MAX_EXPRESSION = 500
MAX_EXPONENT = 10_000


class ToolError(Exception):
    """A tool could not do what was asked; the message goes back to the model as the tool's result."""


@dataclass(frozen=True)
class Tool:
    """A callable tool: its spec (what the model sees) and what runs."""

    spec: ToolSpec
    run: Callable[[dict[str, Any]], str]
    source: str = "built-in"
    """Where it comes from: ``built-in`` or ``mcp:<server>``."""


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "log": math.log, "log10": math.log10, "exp": math.exp, "floor": math.floor, "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_SPELLINGS = {"×": "*", "÷": "/", "^": "**", "（": "(", "）": ")", "，": ",", "−": "-"}


def calculate(expression: str) -> float | int:
    """The value of an arithmetic ``expression`` (numbers, + - * / // % ** ^, parentheses, sqrt/abs/round/sin/cos/
    tan/log/log10/exp/floor/ceil, pi, e); ``ToolError`` for anything else."""
    if not isinstance(expression, str) or not expression.strip():
        raise ToolError("Give an arithmetic expression such as 12 * (3 + 4).")
    if len(expression) > MAX_EXPRESSION:
        raise ToolError(f"The expression is {len(expression)} characters long; at most {MAX_EXPRESSION}.")
    text = expression
    for spelled, op in _SPELLINGS.items():
        text = text.replace(spelled, op)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ToolError(f"{expression!r} is not an arithmetic expression.") from None
    try:
        value = _value(tree.body)
    except ZeroDivisionError:
        raise ToolError("Division by zero.") from None
    except (OverflowError, ValueError) as exc:
        raise ToolError(f"The result cannot be computed: {exc}.") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or abs(left) > 1e6 and abs(right) > 100):
            raise ToolError("That power is too large to compute.")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS \
            and not node.keywords and len(node.args) <= 2:
        return _FUNCTIONS[node.func.id](*[_value(a) for a in node.args])
    raise ToolError(f"{ast.unparse(node)!r} is not allowed: use numbers, + - * / ** %, parentheses and "
                    f"{', '.join(_FUNCTIONS)}.")


def calculator() -> Tool:
    """The calculator tool."""
    spec = ToolSpec("calculator", "Evaluate an arithmetic expression exactly (use it for any calculation).", {
        "type": "object", "properties": {"expression": {"type": "string", "description": "e.g. (15 + 27) / 6"}},
        "required": ["expression"]})
    return Tool(spec, lambda args: str(calculate(args.get("expression", ""))))


def clock(now: Callable[[], datetime] | None = None) -> Tool:
    """The date-and-time tool (``now`` for tests); an IANA ``timezone`` argument is optional."""

    def run(args: dict[str, Any]) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        zone = args.get("timezone")
        current = (now or (lambda: datetime.now().astimezone()))()
        if zone:
            try:
                current = current.astimezone(ZoneInfo(str(zone)))
            except (ZoneInfoNotFoundError, ValueError):
                raise ToolError(f"Unknown time zone {zone!r}: use an IANA name such as Asia/Shanghai.") from None
        return current.strftime("%Y-%m-%d %H:%M:%S %Z (%A)")

    spec = ToolSpec("current_datetime", "The current date, time and weekday.", {
        "type": "object", "properties": {"timezone": {"type": "string", "description": "IANA name, optional"}}})
    return Tool(spec, run)


def knowledge_search(search: Callable[[str], list[Any]], names: list[str]) -> Tool:
    """A search of the knowledge bases ``names``: ``search(query)`` returns ``QueryHit``s."""

    def run(args: dict[str, Any]) -> str:
        query = str(args.get("query") or "").strip()
        if not query:
            raise ToolError("Give a search query.")
        hits = search(query)
        if not hits:
            return "No passages found."
        return "\n\n".join(f"[{h.rank}] {h.where}\n{h.text}"
                           for h in hits)

    spec = ToolSpec("search_knowledge", f"Search the user's documents ({', '.join(names)}) for passages about a "
                    "question; cite them as [n].", {"type": "object", "properties": {
                        "query": {"type": "string", "description": "what to look up"}}, "required": ["query"]})
    return Tool(spec, run)


BUILTIN_NAMES = ("calculator", "datetime", "kb")

PLAIN_TOOLS: dict[str, Callable[[], Tool]] = {"calculator": calculator, "datetime": clock}
"""The built-ins that need nothing from the chat (``kb`` needs its knowledge bases), by the name users pick them."""
"""What ``--tools`` and the chat's settings accept."""

"""Tool specs and tool calls in OpenAI's shape, checked once: names, JSON schemas (valid and not huge), ids.

``check_tools`` turns the request's ``tools`` (or legacy ``functions``) into ``ToolSpec``s and raises ``InputError``
naming the bad tool and the fix; ``ToolCall`` is one parsed call (arguments as a dict, sent as a JSON string).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from core.errors import InputError

MAX_TOOLS = 128
MAX_SCHEMA_CHARS = 32_000
"""One tool's parameters schema, as JSON, may not be longer (a huge schema fills the prompt and the grammar)."""
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: name, description and a JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: dict(EMPTY_PARAMETERS))

    def function(self) -> dict[str, Any]:
        """``{"name", "description", "parameters"}`` (what chat templates and ChatGLM3 read)."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def openai(self) -> dict[str, Any]:
        """``{"type": "function", "function": {...}}``."""
        return {"type": "function", "function": self.function()}


@dataclass(frozen=True)
class ToolCall:
    """One call the model made: its id, the tool's name and the arguments."""

    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        """The arguments as OpenAI sends them: a JSON string."""
        return json.dumps(self.arguments, ensure_ascii=False)

    def openai(self) -> dict[str, Any]:
        """``{"id", "type": "function", "function": {"name", "arguments"}}``."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments_json}}


def new_call_id() -> str:
    """A fresh tool call id (``call_`` and 24 hex digits)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def check_schema(schema: Any, where: str) -> dict[str, Any]:
    """``schema`` if it is a valid, not huge JSON schema object; ``InputError`` naming ``where`` otherwise."""
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        raise InputError(f"{where} must be a JSON schema object, got {type(schema).__name__}: send an object such "
                         'as {"type": "object", "properties": {...}}.')
    try:
        size = len(json.dumps(schema, ensure_ascii=False))
    except (RecursionError, ValueError, TypeError):
        raise InputError(f"{where} cannot be read as JSON (nested too deeply?): send a flatter schema.") from None
    if size > MAX_SCHEMA_CHARS:
        raise InputError(f"{where} is too large ({size:,} characters of JSON, at most {MAX_SCHEMA_CHARS:,}): "
                         "send a smaller schema.")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise InputError(f"{where} is not a valid JSON schema: {exc.message}. Fix the schema.") from None
    except RecursionError:
        raise InputError(f"{where} is nested too deeply: send a flatter schema.") from None
    return schema


def check_tools(functions: list[dict[str, Any]], param: str = "tools") -> list[ToolSpec]:
    """Specs of the offered functions (each ``{"name", "description", "parameters"}``); ``InputError`` on a bad
    name, a duplicate, a bad schema or too many tools."""
    if len(functions) > MAX_TOOLS:
        raise InputError(f"{param} has {len(functions)} tools, at most {MAX_TOOLS} are accepted: offer fewer.")
    specs: list[ToolSpec] = []
    for i, fn in enumerate(functions):
        name = fn.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise InputError(f"{param}[{i}] has the name {name!r}: a tool name is 1 to 64 letters, digits, _ or -.")
        if any(s.name == name for s in specs):
            raise InputError(f"{param}[{i}]: the tool name {name!r} is offered twice; give each tool its own name.")
        params = fn.get("parameters")
        params = dict(EMPTY_PARAMETERS) if params is None else check_schema(params, f"{param}[{i}] ({name}) "
                                                                                    "parameters")
        specs.append(ToolSpec(name, str(fn.get("description") or ""), params))
    return specs

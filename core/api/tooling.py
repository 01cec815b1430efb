"""The request's tools and structured-output fields, checked once: ``tools``/``functions``, ``tool_choice``/
``function_call``, ``parallel_tool_calls``, ``response_format``, and the conversation's assistant ``tool_calls`` and
``tool`` messages (each ``tool_call_id`` must answer an earlier call). Every problem is an ``ApiError`` 400 that names
the field and the fix; nothing here runs the model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from core.api.errors import ApiError
from core.api.schemas import ChatCompletionRequest, NamedFunction, NamedToolChoice
from core.errors import InputError
from core.generation.constrain import Grammar
from core.tools.formats import ToolFormat
from core.tools.spec import ToolSpec, check_schema, check_tools

MAX_TOOL_RESULT_CHARS = 1_000_000
"""A ``tool`` message longer than this is refused before it is tokenized (it could not fit any context anyway)."""


@dataclass(frozen=True)
class ToolRequest:
    """What the request asks of tools: the offered specs, the choice, parallel calls, the legacy shape, and the
    JSON schema an answer must match (``response_format``)."""

    tools: list[ToolSpec] = field(default_factory=list)
    choice: str = "auto"
    """``none``, ``auto``, ``required``, or the name of the one tool to call."""
    parallel: bool = True
    legacy: bool = False
    """Asked with ``functions``: answered with ``function_call`` and ``finish_reason: "function_call"``."""
    json_mode: bool = False
    schema: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        """True when tools are offered and may be called."""
        return bool(self.tools) and self.choice != "none"

    @property
    def forced(self) -> bool:
        """True when the answer must be a call (``required`` or a named tool)."""
        return self.active and self.choice != "auto"

    def grammar(self, fmt: ToolFormat, codec: Any = None) -> Grammar | None:
        """The grammar that guarantees the asked shape, or None when the answer is free."""
        if self.forced:
            if not fmt.constrainable:
                raise ApiError(400, f"tool_choice {self.choice!r} needs constrained decoding, which this model's "
                               f"tool format ({fmt.name}) does not support yet: use tool_choice 'auto'.",
                               code="unsupported_value", param="tool_choice")
            tools = self.tools if self.choice == "required" else [t for t in self.tools if t.name == self.choice]
            try:
                return fmt.grammar(tools, self.parallel and self.choice == "required", codec)
            except InputError as exc:
                raise ApiError(400, str(exc), code="invalid_value", param="tool_choice") from None
        if self.json_mode:
            try:
                return fmt.json_grammar(self.schema)
            except InputError as exc:
                raise ApiError(400, str(exc), code="invalid_value", param="response_format") from None
        return None


def tool_request(req: ChatCompletionRequest) -> ToolRequest:
    """The checked tools fields of ``req``."""
    legacy = bool(req.functions) and not req.tools
    functions = [t.function.model_dump(exclude_none=True) for t in req.tools or []] if not legacy else \
        [f.model_dump(exclude_none=True) for f in req.functions or []]
    param = "functions" if legacy else "tools"
    try:
        specs = check_tools(functions, param)
    except InputError as exc:
        raise ApiError(400, str(exc), code="invalid_value", param=param) from None
    choice_field = req.function_call if legacy else req.tool_choice
    choice = _choice(choice_field, specs, "function_call" if legacy else "tool_choice")
    json_mode, schema = False, None
    fmt = req.response_format
    if fmt is not None and fmt.type != "text":
        json_mode = True
        if fmt.type == "json_schema":
            if fmt.json_schema is None or fmt.json_schema.schema_ is None:
                raise ApiError(400, "response_format json_schema needs `json_schema.schema`: send the JSON schema "
                               "the answer must match.", code="invalid_value", param="response_format")
            try:
                schema = check_schema(fmt.json_schema.schema_, "response_format.json_schema.schema")
            except InputError as exc:
                raise ApiError(400, str(exc), code="invalid_value", param="response_format") from None
    return ToolRequest(specs, choice, req.parallel_tool_calls is not False, legacy, json_mode, schema)


def _choice(value: str | NamedToolChoice | NamedFunction | None, specs: list[ToolSpec], param: str) -> str:
    if value is None:
        return "auto"
    if isinstance(value, str):
        if value == "required" and not specs:
            raise ApiError(400, f"{param} 'required' needs tools: offer at least one in `tools`.",
                           code="invalid_value", param=param)
        return value
    name = value.function.name if isinstance(value, NamedToolChoice) else value.name
    if name not in {s.name for s in specs}:
        offered = ", ".join(s.name for s in specs) or "none"
        raise ApiError(400, f"{param} names the tool {name!r}, which is not offered (offered: {offered}): name one "
                       "of the tools sent in the request.", code="invalid_value", param=param)
    return name


def conversation(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    """The messages as dicts: ``developer`` as ``system``, assistant calls with their arguments as objects, ``tool``
    (and legacy ``function``) results checked against the calls before them."""
    out: list[dict[str, Any]] = []
    calls: dict[str, str] = {}  # call id -> tool name
    legacy_names: list[str] = []
    for i, m in enumerate(req.messages):
        role = "system" if m.role == "developer" else m.role
        if role == "assistant" and (m.tool_calls or m.function_call):
            raw = m.tool_calls or []
            items = [(c.id, c.function.name, c.function.arguments) for c in raw]
            if m.function_call:
                legacy_names.append(m.function_call.name)
                items.append((f"call_legacy_{i}", m.function_call.name, m.function_call.arguments))
            tool_calls = []
            for j, (cid, name, arguments) in enumerate(items):
                try:
                    args = json.loads(arguments or "{}")
                except (ValueError, RecursionError):
                    args = None
                if not isinstance(args, dict):
                    raise ApiError(400, f"messages[{i}].tool_calls[{j}].function.arguments is not a JSON object "
                                   f"({arguments[:80]!r}): send the arguments as a JSON object string.",
                                   code="invalid_value", param=f"messages.{i}.tool_calls")
                calls[cid] = name
                tool_calls.append({"id": cid, "type": "function", "function": {"name": name, "arguments": args}})
            out.append({"role": "assistant", "content": m.text(), "tool_calls": tool_calls})
            continue
        if role in ("tool", "function"):
            text = m.text()
            if len(text) > MAX_TOOL_RESULT_CHARS:
                raise ApiError(400, f"messages[{i}] is a tool result of {len(text):,} characters, more than "
                               f"{MAX_TOOL_RESULT_CHARS:,}: shorten the result before sending it.",
                               code="context_length_exceeded", param=f"messages.{i}.content")
            if role == "tool":
                if m.tool_call_id not in calls:
                    known = ", ".join(calls) or "none"
                    raise ApiError(400, f"messages[{i}] has tool_call_id {m.tool_call_id!r}, which answers no tool "
                                   f"call of an earlier assistant message (known ids: {known}): send the id of the "
                                   "call it answers.", code="invalid_value", param=f"messages.{i}.tool_call_id")
                name = calls[m.tool_call_id]
            else:
                name = m.name or (legacy_names[-1] if legacy_names else "")
            out.append({"role": "tool", "content": text, "tool_call_id": m.tool_call_id or "", "name": name})
            continue
        out.append({"role": role, "content": m.text()})
    return out


def has_tool_turns(messages: list[dict[str, Any]]) -> bool:
    """True when the conversation holds calls or results (it then needs a tool format to render)."""
    return any(m["role"] == "tool" or m.get("tool_calls") for m in messages)

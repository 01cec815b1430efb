"""Each model family's tool-call format: how offered tools, earlier calls and their results are rendered into the
prompt, how a call is recognised in the answer (parsed, never evaluated), and the grammar that forces one.

- ``hermes``: the chat template's own ``tools`` support with ``<tool_call>{json}</tool_call>`` blocks (Qwen2.5 and
  other Hermes-style templates); results go back as ``role: tool`` messages the template renders.
- ``llama3``: a template with ``tools`` support that expects a bare JSON object ``{"name", "parameters"}``
  (Llama-3.1).
- ``chatglm3``: ChatGLM3's own format in our codec: the tools in the system message, a call as the function name
  (the assistant turn's metadata) then a ``tool_call(key=value, ...)`` block, results as ``<|observation|>``.
- ``json``: the fallback for a template without tools: the tools and the ``<tool_call>`` convention are written
  into the system message, results go back as user messages in ``<tool_response>`` blocks.

``parse`` returns None when the text is not a well-formed call of an offered tool: the caller then keeps it as
text (``finish_reason: "stop"``).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from core.errors import InputError
from core.generation.constrain import Grammar, lark_json
from core.tools.spec import ToolCall, ToolSpec, new_call_id

Messages = list[dict[str, Any]]
TOOLS_KEY = "tools"
"""Key of the message that carries the offered tools to the codec (``HFChatCodec`` passes them to the template)."""

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_CLOSED_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
FALLBACK_SYSTEM = (
    "You can call tools. To call one, answer with only a block <tool_call>{{\"name\": <tool name>, \"arguments\": "
    "<arguments object>}}</tool_call> (one block per call); each result comes back in a <tool_response> block, "
    "then answer the user. The tools:\n{tools}"
)
GLM3_SYSTEM = "Answer the following questions as best as you can. You have access to the following tools:"


class ToolFormat:
    """How one model family renders tools and calls (see the module docstring); subclasses set ``name``."""

    name = "base"
    opener = "<tool_call>"
    """Text that starts a call in the answer (the stream holds it back once seen)."""
    constrainable = True

    def render(self, messages: Messages, tools: list[ToolSpec]) -> Messages:
        """The prompt messages for ``messages`` (OpenAI-shaped: assistant ``tool_calls``, ``role: tool``)."""
        raise NotImplementedError

    def parse(self, text: str, tools: list[ToolSpec]) -> tuple[str, list[ToolCall]] | None:
        """The text outside the calls and the calls, or None when there is no well-formed call of an offered tool."""
        names = {t.name for t in tools}
        blocks = _BLOCK.findall(text)
        if not blocks:
            return _bare_calls(text, names)
        calls = []
        for block in blocks:
            call = _json_call(block, names, "arguments")
            if call is None:
                return None
            calls.append(call)
        return _BLOCK.sub("", text).strip(), calls

    def repeat_at(self, text: str) -> int | None:
        """Where ``text`` (an answer's calls so far) starts writing its last complete call a second time in a row
        (same name, same arguments), or None: a small model under a grammar that allows several calls may repeat
        one until ``max_tokens``; the caller ends the answer there and keeps the calls before."""
        blocks = list(_CLOSED_BLOCK.finditer(text))
        if len(blocks) < 2 or _loads(blocks[-1].group(1)) is None:
            return None
        if _loads(blocks[-1].group(1)) != _loads(blocks[-2].group(1)):
            return None
        return blocks[-1].start()

    def complete_part(self, text: str) -> str | None:
        """``text`` up to the end of its last complete call block, or None without one (the rest of an answer that
        ran out of tokens inside a later call)."""
        end = text.rfind("</tool_call>")
        return text[: end + len("</tool_call>")] if end >= 0 else None

    def json_grammar(self, schema: dict[str, Any] | None) -> Grammar:
        """The grammar of a ``response_format`` answer: any JSON object (``schema`` None) or one matching
        ``schema``."""
        return Grammar.json_schema(schema)

    def call_start(self, text: str, at_start: bool, names: frozenset[str] = frozenset()) -> int | None:
        """Where a call starts in ``text`` (None: none yet); ``at_start`` when nothing was emitted before it (an
        answer that opens with a JSON object or a code fence may be a bare call, as small models write them)."""
        i = text.find(self.opener)
        if i >= 0:
            return i
        return 0 if at_start and text.lstrip().startswith(("{", "```")) else None

    def hold(self, text: str, at_start: bool) -> int:
        """Characters at the end of ``text`` to hold back because a call might start there."""
        if at_start and "```".startswith(text.strip()):
            return len(text)
        for n in range(min(len(self.opener) - 1, len(text)), 0, -1):
            if self.opener.startswith(text[-n:]):
                return n
        return 0

    def grammar(self, tools: list[ToolSpec], parallel: bool, codec: Any = None) -> Grammar:
        """A grammar that allows only calls of ``tools`` (one, or several when ``parallel``); the tags are the
        tokenizer's own tokens where it has them (Qwen2.5's ``<tool_call>``), else text."""
        body = lark_json(_call_schema(tools, "arguments"))
        calls = 'call ("\\n" call)*' if parallel else "call"
        start, end = _tag(codec, "<tool_call>"), _tag(codec, "</tool_call>")
        return Grammar.lark(f'start: {calls}\ncall: {start} "\\n" body "\\n" {end}\nbody: {body}\n', "tools")


class HermesFormat(ToolFormat):
    """The template's own tools (Qwen2.5): ``<tool_call>`` blocks out, ``role: tool`` messages in."""

    name = "hermes"

    def render(self, messages: Messages, tools: list[ToolSpec]) -> Messages:
        """Tools to the template; calls with their arguments as objects (what templates expect)."""
        out = [_native(m) for m in messages]
        if tools and out:
            out[0] = {**out[0], TOOLS_KEY: [t.openai() for t in tools]}
        return out


class Llama3Format(HermesFormat):
    """The template's own tools with a bare JSON call ``{"name": ..., "parameters": {...}}`` (Llama-3.1)."""

    name = "llama3"
    opener = "{"

    def parse(self, text: str, tools: list[ToolSpec]) -> tuple[str, list[ToolCall]] | None:
        """One JSON object (optionally after ``<|python_tag|>``), or several separated by ``;``."""
        body = text.strip().removeprefix("<|python_tag|>").strip()
        if not body.startswith("{"):
            return None
        calls = []
        for part in [p for p in body.split(";") if p.strip()] if ";" in body else [body]:
            call = _json_call(part, {t.name for t in tools}, "parameters")
            if call is None:
                return None
            calls.append(call)
        return "", calls

    def call_start(self, text: str, at_start: bool, names: frozenset[str] = frozenset()) -> int | None:
        """A call only opens the answer."""
        stripped = text.lstrip()
        return len(text) - len(stripped) if at_start and stripped.startswith(("{", "<|python_tag|>")) else None

    def hold(self, text: str, at_start: bool) -> int:
        """Hold leading whitespace until the first character shows."""
        return len(text) if at_start and not text.strip() else 0

    def grammar(self, tools: list[ToolSpec], parallel: bool, codec: Any = None) -> Grammar:
        """One bare JSON call."""
        return Grammar.lark(f"start: {lark_json(_call_schema(tools, 'parameters'))}\n", "tools")


class JsonFallbackFormat(ToolFormat):
    """For a template without tools: the convention is written into the system message."""

    name = "json"

    def render(self, messages: Messages, tools: list[ToolSpec]) -> Messages:
        """A system message with the tools; calls as ``<tool_call>`` text; results as user messages."""
        out: Messages = []
        for m in messages:
            if m["role"] == "assistant" and m.get("tool_calls"):
                blocks = "\n".join(f"<tool_call>\n{_call_json(c, 'arguments')}\n</tool_call>" for c in m["tool_calls"])
                out.append({"role": "assistant", "content": "\n".join(x for x in (m.get("content"), blocks) if x)})
            elif m["role"] == "tool":
                out.append({"role": "user", "content": f"<tool_response>\n{m['content']}\n</tool_response>"})
            else:
                out.append({"role": m["role"], "content": m.get("content") or ""})
        if tools:
            lines = "\n".join(json.dumps(t.function(), ensure_ascii=False) for t in tools)
            note = FALLBACK_SYSTEM.format(tools=lines)
            if out and out[0]["role"] == "system":
                out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{note}"}
            else:
                out.insert(0, {"role": "system", "content": note})
        return _merge_users(out)


class ChatGLM3Format(ToolFormat):
    """ChatGLM3: the function name as the turn's metadata, then ``tool_call(...)``; results as observations."""

    name = "chatglm3"
    opener = ""

    def render(self, messages: Messages, tools: list[ToolSpec]) -> Messages:
        """Tools in the system message (the codec appends them as JSON), calls as name + block, observations."""
        out: Messages = []
        for m in messages:
            if m["role"] == "assistant" and m.get("tool_calls"):
                if m.get("content"):
                    out.append({"role": "assistant", "content": m["content"]})
                for c in m["tool_calls"]:
                    args = ", ".join(f"{k}={v!r}" for k, v in _arguments(c).items())
                    out.append({"role": "assistant", "metadata": c["function"]["name"],
                                "content": f"```python\ntool_call({args})\n```"})
            elif m["role"] == "tool":
                out.append({"role": "observation", "content": m["content"]})
            else:
                out.append({"role": m["role"], "content": m.get("content") or ""})
        if tools:
            system = {"role": "system", "content": GLM3_SYSTEM, TOOLS_KEY: [t.function() for t in tools]}
            if out and out[0]["role"] == "system":
                system["content"] = f"{out[0]['content']}\n{GLM3_SYSTEM}"
                out[0] = system
            else:
                out.insert(0, system)
        return out

    def parse(self, text: str, tools: list[ToolSpec]) -> tuple[str, list[ToolCall]] | None:
        """``name\\n```python\\ntool_call(a=1, b="x")\\n```` parsed with ``ast`` (literals only, never run)."""
        name, _, rest = text.strip().partition("\n")
        name = name.strip()
        if name not in {t.name for t in tools}:
            return None
        found = re.search(r"tool_call\((.*)\)", rest, re.S)
        if found is None:
            return None
        try:
            node = ast.parse(f"f({found.group(1)})", mode="eval").body
            assert isinstance(node, ast.Call) and not node.args
            args = {kw.arg: ast.literal_eval(_JsonNames().visit(kw.value)) for kw in node.keywords if kw.arg}
            if len(args) != len(node.keywords):
                return None
        except (SyntaxError, ValueError, TypeError, AssertionError, MemoryError, RecursionError):
            return None
        return "", [ToolCall(new_call_id(), name, args)]

    def call_start(self, text: str, at_start: bool, names: frozenset[str] = frozenset()) -> int | None:
        """A call opens the answer: its first line is the name of an offered tool (``names``)."""
        return 0 if at_start and "\n" in text.lstrip() and text.strip().partition("\n")[0].strip() in names else None

    def hold(self, text: str, at_start: bool) -> int:
        """Hold the first line until it is complete (it may be a tool's name)."""
        return len(text) if at_start and "\n" not in text.lstrip() and len(text) < 80 else 0

    def grammar(self, tools: list[ToolSpec], parallel: bool, codec: Any = None) -> Grammar:  # noqa: ARG002
        """One call (ChatGLM3 makes one per turn): an offered tool's name, a line break, then ``tool_call(...)`` with
        the arguments as keywords in the schema's order, each value JSON (which Python reads too; ``parse`` takes
        ``true``/``false``/``null``). A space may open the answer and the block, as SentencePiece writes them."""
        rules = []
        for j, tool in enumerate(tools):
            rules.append(f't{j}: {json.dumps(tool.name)} "\\n" " "? "```python\\ntool_call(" t{j}a0 ")\\n```"')
            rules += _glm3_arguments(tool, f"t{j}")
        calls = " | ".join(f"t{j}" for j in range(len(tools)))
        return Grammar.lark(f'start: " "? ({calls})\n' + "\n".join(rules) + "\n", "tools")

    def complete_part(self, text: str) -> str | None:
        """``text`` up to the end of its last complete call block, or None without one (the rest of an answer that
        ran out of tokens inside a later call)."""
        end = text.rfind("</tool_call>")
        return text[: end + len("</tool_call>")] if end >= 0 else None

    def json_grammar(self, schema: dict[str, Any] | None) -> Grammar:
        """The JSON answer after the line break that ends ChatGLM3's (empty) metadata line, as the model writes it
        (the API strips the whitespace before the JSON)."""
        body = lark_json(schema if schema is not None else {"type": "object"})
        return Grammar.lark(f'start: " "? "\\n"? " "? body\nbody: {body}\n', "response_format")


class _JsonNames(ast.NodeTransformer):
    """``true``, ``false`` and ``null`` (JSON, as a grammar writes values) as Python constants; other names stay
    names, which ``ast.literal_eval`` refuses."""

    def visit_Name(self, node: ast.Name) -> ast.AST:  # noqa: N802 (the visitor's naming)
        value = {"true": True, "false": False, "null": None}
        return ast.Constant(value[node.id]) if node.id in value else node


def _glm3_arguments(tool: ToolSpec, prefix: str) -> list[str]:
    """Lark rules for ``tool``'s keyword arguments: rule ``{prefix}a0`` is the whole list. With declared
    ``properties``, each in order (``required`` ones always, others optional); without, any ``name=value`` pairs.
    ``InputError`` for a property name a Python keyword argument cannot have."""
    import keyword

    props = tool.parameters.get("properties")
    if not isinstance(props, dict) or not props:
        if isinstance(props, dict):  # declared without properties: no arguments
            return [f'{prefix}a0: ""']
        return [f'{prefix}a0: ({prefix}kv (", " {prefix}kv)*)?',
                f'{prefix}kv: /[A-Za-z_][A-Za-z0-9_]*/ "=" {lark_json({})}']
    names = list(props)
    for name in names:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise InputError(f"The tool {tool.name!r} has the argument {name!r}, which ChatGLM3's call format "
                             "(tool_call(name=value)) cannot write: rename it to a Python identifier, or use "
                             "tool_choice 'auto'.")
    required = set(tool.parameters.get("required") or [])
    rules = [f"{prefix}v{i}: {lark_json(props[name] if isinstance(props[name], dict) else {})}"
             for i, name in enumerate(names)]
    n = len(names)
    for i, name in enumerate(names):  # a{i}: the list from argument i on, none written yet; r{i}: after one was
        arg = f'"{name}=" {prefix}v{i}'
        rest = f" {prefix}r{i + 1}" if i + 1 < n else ""
        later = f"{prefix}a{i + 1}" if i + 1 < n else '""'
        rules.append(f"{prefix}a{i}: {arg}{rest}" + ("" if name in required else f" | {later}"))
        if i > 0:
            pair = f'", " {arg}' if name in required else f'(", " {arg})?'
            rules.append(f"{prefix}r{i}: {pair}{rest}")
    return rules


def _tag(codec: Any, tag: str) -> str:
    """``tag`` in a Lark grammar: the token by id (``<[id]>``) where the tokenizer has it as one added token,
    else the quoted text."""
    tokenizer = getattr(codec, "tokenizer", None)
    added = getattr(tokenizer, "added_tokens_encoder", None) or {}
    return f"<[{added[tag]}]>" if tag in added else json.dumps(tag)


def tool_format(codec: Any) -> ToolFormat:
    """The format for a model's codec (None: a remote or scripted model, which gets the JSON fallback)."""
    from core.models.codec import ChatGLM3Codec

    if isinstance(codec, ChatGLM3Codec):
        return ChatGLM3Format()
    template = getattr(getattr(codec, "tokenizer", None), "chat_template", None)
    if isinstance(template, str) and _uses_tools(template):
        return HermesFormat() if "<tool_call>" in template else Llama3Format()
    return JsonFallbackFormat()


def _uses_tools(template: str) -> bool:
    """Whether a jinja chat template reads a ``tools`` variable."""
    import jinja2
    from jinja2 import meta

    try:
        return TOOLS_KEY in meta.find_undeclared_variables(jinja2.Environment().parse(template))
    except jinja2.TemplateError:
        return False


def _arguments(call: dict[str, Any]) -> dict[str, Any]:
    args = call["function"].get("arguments")
    return args if isinstance(args, dict) else json.loads(args or "{}")


def _call_json(call: dict[str, Any], key: str) -> str:
    return json.dumps({"name": call["function"]["name"], key: _arguments(call)}, ensure_ascii=False)


def _native(m: dict[str, Any]) -> dict[str, Any]:
    """A message for a template with tools: call arguments as objects, content never None."""
    out = {"role": m["role"], "content": m.get("content") or ""}
    if m.get("tool_calls"):
        out["tool_calls"] = [{"id": c.get("id"), "type": "function",
                              "function": {"name": c["function"]["name"], "arguments": _arguments(c)}}
                             for c in m["tool_calls"]]
    for key in ("tool_call_id", "name", "images"):  # images: a user message's pictures (vision-language models)
        if m.get(key):
            out[key] = m[key]
    return out


def _merge_users(messages: Messages) -> Messages:
    """Adjacent user messages joined (tool results in a row), for templates that insist on alternation."""
    out: Messages = []
    for m in messages:
        if out and m["role"] == "user" and out[-1]["role"] == "user":
            out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n{m['content']}"}
        else:
            out.append(m)
    return out


def _loads(text: str) -> Any:
    """``text`` as JSON, or None when it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _json_call(block: str, names: set[str], key: str) -> ToolCall | None:
    """A call from one JSON object ``{"name": ..., key: {...}}`` naming an offered tool, else None."""
    try:
        data = json.loads(block)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("name") not in names:
        return None
    args = data.get(key, data.get("arguments", data.get("parameters", {})))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(new_call_id(), data["name"], args)


def _bare_calls(text: str, names: set[str]) -> tuple[str, list[ToolCall]] | None:
    """Calls written without tags: the whole answer is one JSON object ``{"name", "arguments"}`` of an offered tool
    (or a list of them), optionally in a code fence; else None."""
    body = re.sub(r"^```[a-z]*\s*|\s*```$", "", text.strip())
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    items = data if isinstance(data, list) else [data]
    calls = [_json_call(json.dumps(item), names, "arguments") for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return "", [c for c in calls if c is not None]


def _call_schema(tools: list[ToolSpec], key: str) -> dict[str, Any]:
    """The JSON schema of one call of any of ``tools`` (the name first, then the arguments)."""
    options = [{"type": "object", "properties": {"name": {"const": t.name}, key: t.parameters},
                "required": ["name", key], "additionalProperties": False} for t in tools]
    return options[0] if len(options) == 1 else {"anyOf": options}

"""``chat --tools calculator,datetime,kb,mcp:NAME``: one chat turn with tools on (``mcp:NAME``: the tools of a server
listed in inkstone.toml). Each call is shown folded on stderr (tool,
arguments, result, time), the answer streams to stdout, and the user message, the answer and its tool calls are
stored in the session (the calls in ``tool_steps``, so they come back after a restart)."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO

from core.errors import InputError
from core.history.recorder import AnswerRecorder
from core.tools.builtin import BUILTIN_NAMES, PLAIN_TOOLS, Tool, ToolError, knowledge_search
from core.tools.history import save_steps
from core.tools.loop import LoopResult, ToolStep, tool_turn
from core.tools.mcp_client import server_tools, servers

PREVIEW = 200


def pick_tools(engine: Any, names: str, kb: str | None) -> list[Tool]:
    """The built-in tools named in ``names`` (comma list); ``kb`` needs ``--kb``. InputError names the fix."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    configured = {s.name: s for s in servers(engine.settings.mcp_servers)}
    unknown = [n for n in wanted if n not in BUILTIN_NAMES and n.removeprefix("mcp:") not in configured]
    if unknown or not wanted:
        listed = ", ".join([*BUILTIN_NAMES, *(f"mcp:{n}" for n in configured)])
        raise InputError(f"Unknown tool(s) {', '.join(unknown) or '(none given)'}: --tools takes a comma list of "
                         f"{listed} (MCP servers are listed in inkstone.toml as [mcp_servers.NAME]).")
    tools: list[Tool] = []
    for name in wanted:
        if name.startswith("mcp:"):
            try:
                tools += server_tools(configured[name[4:]])
            except ToolError as exc:
                raise InputError(str(exc)) from None
        elif name in PLAIN_TOOLS:
            tools.append(PLAIN_TOOLS[name]())
        else:
            if not kb or engine.knowledge is None:
                raise InputError("The kb tool searches knowledge bases: name them with --kb NAME[,NAME...].")
            kbs = engine.knowledge.resolve(kb)
            tools.append(knowledge_search(lambda q, kbs=kbs: engine.knowledge.query(kbs, q, k=4),
                                          [k.name for k in kbs]))
    return tools


def show_step(step: ToolStep, err: TextIO) -> None:
    """A folded step on ``err``: tool(arguments) -> result (time)."""
    args = json.dumps(step.arguments, ensure_ascii=False)
    result = step.result if len(step.result) <= PREVIEW else step.result[:PREVIEW] + "…"
    mark = "failed" if step.error else "->"
    err.write(f"[tool {step.name}({args}) {mark} {result!r} in {step.seconds:.2f} s]\n")


def answer_with_tools(engine: Any, target: Any, session_id: str, text: str, tools: list[Tool], *,
                      max_steps: int, out: TextIO | None = None) -> dict[str, Any]:
    """Answer ``text`` in ``session_id`` with ``tools``; return the ``--json`` object (with ``tool_calls``)."""
    out, err = out or sys.stdout, sys.stderr
    store, config = engine.store, target.config
    history = [{"role": m.role, "content": m.content} for m in store.messages(session_id)
               if m.role in ("user", "assistant") and m.status == "complete" and m.content]
    system = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
    messages = [*system, *history, {"role": "user", "content": text}]
    session = store.get_session(session_id)
    store.add_message(session_id, "user", text)
    record = AnswerRecorder.start(store, session, engine.backend.model_id, config.persona)
    stop = threading.Event()
    done = LoopResult()
    try:
        for item in tool_turn(engine.backend, messages, config.settings, tools, stop, max_steps=max_steps,
                              adapter=config.adapter):
            if isinstance(item, str):
                record.add(item)
                out.write(item)
                out.flush()
            elif isinstance(item, ToolStep):
                show_step(item, err)
            else:
                done = item
    except KeyboardInterrupt:
        stop.set()
    if done.finished is not None:
        record.finish(done.finished)
    answer = record.end()
    record.save(answer)
    save_steps(store, record.answer_id, done.steps)
    if done.limit_hit:
        err.write(f"[tool-call limit of {max_steps} reached: the model answered without more tools]\n")
    out.write("\n")
    return {"session_id": session_id, "reply": answer.text, "status": answer.status,
            "finish_reason": answer.reason, "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens, "tokens_per_s": answer.tokens_per_s,
            "tool_calls": [s.to_dict() for s in done.steps], "tool_limit_hit": done.limit_hit}

"""The tools a chat turned on, stored with the chat and built for each answer.

The choice is a list of names in the session's settings JSON (``"tools"``): ``calculator``, ``datetime``, ``kb``
(a search of the chat's knowledge bases: the ones picked for it, else all) and ``mcp:<server>`` (the tools of a
server listed in ``inkstone.toml``). Nothing is on until the user turns it on; a server is started only when a chat
that turned it on is answered. ``ChatTools`` is the chat service's tool seam: it turns a session into the tools its
answer may call, plus a notice for what could not be offered (an MCP server that failed, a server no longer
configured, no knowledge base to search).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.config import Settings
from core.errors import ConfigError, InputError
from core.history.store import HistoryStore, Session
from core.tools.builtin import PLAIN_TOOLS, Tool, ToolError, knowledge_search
from core.tools.loop import MAX_STEPS
from core.tools.mcp_client import McpServer, server_tools, servers

SETTINGS_KEY = "tools"
"""Key of the tool choice in a session's settings JSON."""
BUILTIN_LABELS = {"calculator": "Calculator", "datetime": "Date and time", "kb": "Search my knowledge bases"}
STEPS_KEY = "max_tool_steps"
"""Key of the chat's tool-call limit per answer (default ``MAX_STEPS``)."""


def chosen_tools(session: Session | None) -> list[str]:
    """The tool names a chat turned on (empty: none, also for a new chat or a damaged stored value)."""
    value = (session.settings or {}).get(SETTINGS_KEY) if session is not None else None
    return [n for n in value if isinstance(n, str)] if isinstance(value, list) else []


def max_steps(session: Session | None) -> int:
    """Tool calls one answer of this chat may make before the loop stops."""
    value = (session.settings or {}).get(STEPS_KEY) if session is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 50 else MAX_STEPS


def tool_choices(settings: Settings) -> dict[str, str]:
    """Every tool name a chat can turn on, with its label: the built-ins, then one per configured MCP server."""
    try:
        configured = servers(settings.mcp_servers)
    except ConfigError:
        configured = []  # the settings page shows the error; chats keep their built-ins
    return {**BUILTIN_LABELS, **{f"mcp:{s.name}": f"MCP: {s.name}" for s in configured}}


def set_chosen_tools(store: HistoryStore, session_id: str, names: list[str], settings: Settings) -> list[str]:
    """Store ``names`` as the chat's tools (kept in the order offered); InputError names an unknown one."""
    choices = tool_choices(settings)
    unknown = [n for n in names if n not in choices]
    if unknown:
        raise InputError(f"Unknown tool(s) {', '.join(map(repr, unknown))}: choose among {', '.join(choices)} "
                         "(MCP servers are listed in inkstone.toml as [mcp_servers.NAME]).")
    picked = [n for n in choices if n in names]
    session = store.get_session(session_id)
    store.update_session(session_id, settings={**session.settings, SETTINGS_KEY: picked})
    return picked


@dataclass(frozen=True)
class ChatTools:
    """What an answer of a chat may call (see ``ChatTools.for_session``)."""

    tools: list[Tool]
    max_steps: int = MAX_STEPS
    notice: str | None = None
    """What was turned on but could not be offered, and why (None: everything)."""


KbSearch = Callable[[Session], tuple[Callable[[str], list[Any]], list[str]] | None]
"""Given a chat, its knowledge-base search (query -> hits) and the names searched; None when there is none."""


def chat_tools(session: Session, settings: Settings, kb_search: KbSearch | None) -> ChatTools | None:
    """The tools of ``session``'s answer (None: the chat turned none on). An MCP server that cannot be listed is
    left out and named in the notice; the other tools stay."""
    names = chosen_tools(session)
    if not names:
        return None
    notices: list[str] = []
    try:
        configured = {s.name: s for s in servers(settings.mcp_servers)}
    except ConfigError as exc:
        configured, notices = {}, [str(exc)]
    tools: list[Tool] = []
    for name in names:
        if name in PLAIN_TOOLS:
            tools.append(PLAIN_TOOLS[name]())
        elif name == "kb":
            found = kb_search(session) if kb_search is not None else None
            if found is None:
                notices.append("Knowledge-base search is on but there is no knowledge base: create one on the "
                               "Knowledge page.")
            else:
                tools.append(knowledge_search(*found))
        elif name.startswith("mcp:"):
            tools += _server(configured.get(name[4:]), name[4:], notices)
    return ChatTools(tools, max_steps(session), " ".join(notices) or None)


def _server(server: McpServer | None, name: str, notices: list[str]) -> list[Tool]:
    if server is None:
        notices.append(f"MCP server {name!r} is no longer listed in inkstone.toml: its tools were left out.")
        return []
    try:
        return server_tools(server)
    except ToolError as exc:
        notices.append(f"{exc} Its tools were left out of this answer.")
        return []

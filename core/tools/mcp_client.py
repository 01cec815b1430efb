"""Tools of MCP servers the user lists in ``inkstone.toml`` (``[mcp_servers.<name>]``: ``command = [...]`` for a stdio
server, or ``url`` for a streamable-HTTP one; ``timeout_s``, ``env``), through the ``mcp`` SDK.

Nothing runs that the user did not configure. Each listing or call connects, does its one request within
``timeout_s`` and disconnects (a stdio server process lives only for that request), so a server that does not
start, hangs or returns garbage costs one clear ``ToolError`` and never the session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError
from core.tools.builtin import Tool, ToolError
from core.tools.spec import NAME, ToolSpec, check_schema

DEFAULT_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class McpServer:
    """One configured server."""

    name: str
    command: tuple[str, ...] = ()
    url: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    env: dict[str, str] = field(default_factory=dict)


def servers(table: dict[str, dict[str, Any]]) -> list[McpServer]:
    """The servers of ``Settings.mcp_servers``; ``ConfigError`` names the bad table and the fix."""
    out = []
    for name, conf in table.items():
        command, url = conf.get("command"), conf.get("url")
        if isinstance(command, str):
            command = [command, *[str(a) for a in conf.get("args") or []]]
        if (command is None) == (url is None) or (command is not None and not (
                isinstance(command, list) and command and all(isinstance(c, str) for c in command))):
            raise ConfigError(f"[mcp_servers.{name}] needs either command = [\"program\", \"arg\", ...] (a stdio "
                              "server) or url = \"http://...\" (a streamable-HTTP server).")
        timeout = conf.get("timeout_s", DEFAULT_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600:
            raise ConfigError(f"[mcp_servers.{name}] timeout_s={timeout!r}: use seconds between 1 and 600.")
        out.append(McpServer(name, tuple(command or ()), url, float(timeout),
                             {str(k): str(v) for k, v in (conf.get("env") or {}).items()}))
    return out


async def _with_session(server: McpServer, work: Any) -> Any:
    import anyio
    from mcp.client.session import ClientSession

    with anyio.fail_after(server.timeout_s):
        if server.url:
            from mcp.client.streamable_http import streamable_http_client

            async with streamable_http_client(server.url) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await session.initialize()
                    return await work(session)
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=server.command[0], args=list(server.command[1:]), env=server.env or None)
        with open("/dev/null", "w") as quiet:  # noqa: PTH123 - the server's stderr is not the user's terminal
            async with stdio_client(params, errlog=quiet) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await work(session)


def _run(server: McpServer, work: Any, doing: str) -> Any:
    """Run ``work(session)`` against ``server``; every failure becomes a ``ToolError`` naming the server."""
    import anyio

    try:
        return anyio.run(_with_session, server, work)
    except TimeoutError:
        raise ToolError(f"MCP server {server.name!r} did not answer within {server.timeout_s:g} s ({doing}): check "
                        "that it runs, or raise timeout_s.") from None
    except OSError as exc:
        raise ToolError(f"MCP server {server.name!r} could not be started or reached ({exc}): check its command "
                        "or url in inkstone.toml.") from None
    except ToolError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken server (garbage, protocol errors) must not end the chat
        detail = str(exc) or type(exc).__name__
        raise ToolError(f"MCP server {server.name!r} failed ({doing}): {detail[:300]}") from None


def list_tools(server: McpServer) -> list[ToolSpec]:
    """The tools ``server`` offers (bad names or schemas are skipped); ``ToolError`` when it cannot be listed."""

    async def work(session: Any) -> Any:
        return await session.list_tools()

    listed = _run(server, work, "listing its tools")
    specs = []
    for tool in getattr(listed, "tools", None) or []:
        name = getattr(tool, "name", "")
        if not isinstance(name, str) or not NAME.match(name):
            continue
        try:
            schema = check_schema(getattr(tool, "input_schema", None) or getattr(tool, "inputSchema", None)
                                  or {"type": "object", "properties": {}}, f"{server.name}.{name}")
        except Exception:  # noqa: BLE001 - a tool with a broken schema is left out, the others stay usable
            continue
        specs.append(ToolSpec(name, str(getattr(tool, "description", "") or ""), schema))
    return specs


def call_tool(server: McpServer, name: str, arguments: dict[str, Any]) -> str:
    """The text of ``server``'s tool ``name`` run with ``arguments``; ``ToolError`` on failure or a tool error."""

    async def work(session: Any) -> Any:
        return await session.call_tool(name, arguments)

    result = _run(server, work, f"calling {name}")
    parts = []
    for item in getattr(result, "content", None) or []:
        text = getattr(item, "text", None)
        parts.append(text if isinstance(text, str) else json.dumps(getattr(item, "model_dump", dict)(),
                                                                     ensure_ascii=False, default=str))
    text = "\n".join(parts)
    if getattr(result, "is_error", False) or getattr(result, "isError", False):
        raise ToolError(f"{name} on MCP server {server.name!r} reported an error: {text[:500]}")
    return text


def server_tools(server: McpServer, enabled: set[str] | None = None) -> list[Tool]:
    """``server``'s tools as ``Tool``s (only those in ``enabled`` when given)."""
    return [Tool(spec, lambda args, n=spec.name: call_tool(server, n, args), f"mcp:{server.name}")
            for spec in list_tools(server) if enabled is None or spec.name in enabled]


def list_all(configured: list[McpServer]) -> dict[str, list[ToolSpec] | ToolError]:
    """Each server's tools, or the ``ToolError`` saying why they cannot be listed; the servers are asked at the same
    time, so the wait is the slowest one's (at most its ``timeout_s``), not their sum."""
    from concurrent.futures import ThreadPoolExecutor

    def one(server: McpServer) -> list[ToolSpec] | ToolError:
        try:
            return list_tools(server)
        except ToolError as exc:
            return exc

    if not configured:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(configured))) as pool:
        return dict(zip([s.name for s in configured], pool.map(one, configured), strict=True))

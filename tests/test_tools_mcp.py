"""MCP servers from ``inkstone.toml`` through the ``mcp`` SDK: a real stdio server's tools are listed and called
(also through ``chat --tools mcp:NAME``'s picker), and a server that does not start, hangs or prints garbage gives one
clear error within its timeout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.tools.builtin import ToolError
from core.tools.mcp_client import McpServer, call_tool, list_tools, server_tools, servers

DEMO = str(Path(__file__).parent / "data" / "mcp_demo_server.py")


def test_a_stdio_server_is_listed_and_called() -> None:
    demo = servers({"demo": {"command": [sys.executable, DEMO], "timeout_s": 60}})[0]
    tools = {t.spec.name: t for t in server_tools(demo)}
    assert tools["add"].spec.parameters["required"] == ["a", "b"] and tools["add"].source == "mcp:demo"
    assert tools["add"].run({"a": 2, "b": 40}) == "42"
    with pytest.raises(ToolError, match="reported an error"):
        call_tool(demo, "add", {"a": "x"})


@pytest.mark.parametrize(("server", "says"), [
    (McpServer("missing", ("/nonexistent/mcp-server",), timeout_s=10), "could not be started"),
    (McpServer("hangs", (sys.executable, "-c", "import time; time.sleep(60)"), timeout_s=2),
     "did not answer within 2 s"),
    (McpServer("garbage", (sys.executable, "-c", "print('not json'); import time; time.sleep(60)"), timeout_s=2),
     "did not answer"),
])
def test_a_broken_server_is_one_clear_error(server: McpServer, says: str) -> None:
    with pytest.raises(ToolError, match=says):
        list_tools(server)


def test_the_config_tables_are_checked() -> None:
    with pytest.raises(ConfigError, match="either command"):
        servers({"x": {}})
    with pytest.raises(ConfigError, match="timeout_s"):
        servers({"x": {"command": ["a"], "timeout_s": -1}})
    assert servers({"x": {"command": "prog", "args": ["--stdio"]}})[0].command == ("prog", "--stdio")

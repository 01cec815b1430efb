"""The settings page's list of MCP servers (``[mcp_servers.NAME]`` in ``inkstone.toml``): each with its tools (name and
description) or the clear error when it does not start, hangs or answers garbage. Only configured servers are
started, once per visit of this tab (``Check again`` asks them anew); a chat turns a server's tools on in its Tools
picker."""

from __future__ import annotations

import streamlit as st

from core.engine import Engine
from core.errors import ConfigError
from core.tools.mcp_client import McpServer, list_all, servers

_LISTED = "inkstone_mcp_listing"


def _where(server: McpServer) -> str:
    return server.url or " ".join(server.command)


def render(engine: Engine) -> None:
    """The section: a line per server and its tools, or how to configure one."""
    st.subheader("Tool servers (MCP)")
    try:
        configured = servers(engine.settings.mcp_servers)
    except ConfigError as exc:
        st.error(str(exc))
        return
    if not configured:
        st.caption('No MCP servers are configured. List one in inkstone.toml as [mcp_servers.NAME] with command = '
                   '["program", "arg"] (stdio) or url = "http://…" (streamable HTTP); a chat can then turn its tools '
                   "on in the Tools picker.")
        return
    key = repr(configured)
    listed = st.session_state.get(_LISTED)
    if listed is None or listed[0] != key:
        with st.spinner("Asking the MCP servers for their tools…"):
            listed = st.session_state[_LISTED] = (key, list_all(configured))
    st.caption("Tools of these servers are off in every chat until turned on in its Tools picker.")
    for server in configured:
        found = listed[1][server.name]
        st.markdown(f"**{server.name}** · `{_where(server)}`")
        if isinstance(found, Exception):
            st.error(str(found))
        elif not found:
            st.caption("It offers no tools.")
        else:
            st.markdown("\n".join(f"- `{t.name}` — {t.description or '(no description)'}" for t in found))
    if st.button("Check again", icon=":material/refresh:", help="Start the servers again and list their tools"):
        st.session_state.pop(_LISTED, None)
        st.rerun()

"""Tools the model can call: specs and calls (``spec``), each model family's tool-call format with safe parsing and
the grammar that forces a call (``formats``), streaming text that may turn into a call (``stream``), built-in tools
(``builtin``: calculator, date and time, knowledge-base search), MCP servers (``mcp_client``) and the call loop
of a chat turn (``loop``)."""

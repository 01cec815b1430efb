"""A tiny MCP server (stdio) for the tests: add two integers, upper-case text."""

from mcp.server.mcpserver import MCPServer
app = MCPServer("demo")

@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b

@app.tool()
def shout(text: str) -> str:
    """Upper-case text."""
    return text.upper()

if __name__ == "__main__":
    app.run()

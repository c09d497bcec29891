"""The MCP server's defaults, here so ``inkwire --help`` shows them without loading it."""

DEFAULT_SERVER = "http://127.0.0.1:3042"  # the inkwire server `inkwire mcp` talks to
IDLE_TIMEOUT = 600.0  # seconds without a tool call before an agent's diagram client closes

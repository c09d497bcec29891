"""AI agents in live diagrams: the element model (pure), the MCP server built on it, its tools."""

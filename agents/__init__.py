"""AI agents in live diagrams: the element model (pure) and the MCP server built on it."""

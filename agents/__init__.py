"""AI agents as collaborators: the MCP server and what its tools do."""

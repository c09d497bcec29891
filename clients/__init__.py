"""Python clients of inkwire servers; they import nothing from the server packages."""

from clients.diagram import DiagramClient, DiagramConnectionError

__all__ = ["DiagramClient", "DiagramConnectionError"]

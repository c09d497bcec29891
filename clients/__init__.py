"""Python clients of inkwire servers; they import nothing from the server packages."""

from clients.diagram import DiagramClient, DiagramConnectionError
from clients.relay import Event, Gap, RelayClient, RelayConnectionError, RelayError

__all__ = [
    "DiagramClient",
    "DiagramConnectionError",
    "Event",
    "Gap",
    "RelayClient",
    "RelayConnectionError",
    "RelayError",
]

"""Event relays: one engine driven by per-service catalogs.

``async with relays.serve(catalog, host=..., port=...) as relay:`` runs one
inside the caller's loop; :class:`relays.app.RelayApp` is the ASGI app to
mount elsewhere.
"""

from relays.app import RelayApp, RelaySettings
from relays.hub import HubSettings
from relays.protocol import RelayUnavailable
from relays.serve import Relay, serve

__all__ = ["HubSettings", "Relay", "RelayApp", "RelaySettings", "RelayUnavailable", "serve"]

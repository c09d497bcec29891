"""Event relays: one engine driven by per-service catalogs.

``async with relays.serve(catalog, host=..., port=...) as relay:`` runs one
inside the caller's loop; :class:`relays.app.RelayApp` is the ASGI app to
mount elsewhere.
"""

from typing import TYPE_CHECKING

from relays.protocol import RelayUnavailable
from relays.serve import Relay, serve

if TYPE_CHECKING:
    from relays.app import RelayApp, RelaySettings
    from relays.hub import HubSettings

__all__ = ["HubSettings", "Relay", "RelayApp", "RelaySettings", "RelayUnavailable", "serve"]


def __getattr__(name: str) -> object:
    """``RelayApp``, ``RelaySettings`` and ``HubSettings`` load the server (hypercorn,
    JWT, metrics) when first asked for, not with the package: ``inkwire`` reads the
    catalogs to build its parser, and a command that runs no relay should not pay for one."""
    if name in ("RelayApp", "RelaySettings"):
        from relays import app

        return getattr(app, name)
    if name == "HubSettings":
        from relays.hub import HubSettings

        return HubSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The service catalogs, one module each (Python, not YAML: no parser to depend on,
and mypy and the catalog's own checks see every typo at import)."""

from relays.catalog import Catalog
from relays.catalogs import (
    akosha,
    crackerjack,
    dhruva,
    excalidraw,
    fastblocks,
    mahavishnu,
    session_buddy,
)

# The six services that embed a relay, in port order, then collab's diagram events.
SERVICES: tuple[Catalog, ...] = (
    fastblocks.catalog,
    crackerjack.catalog,
    mahavishnu.catalog,
    akosha.catalog,
    dhruva.catalog,
    session_buddy.catalog,
)
ALL: tuple[Catalog, ...] = (*SERVICES, excalidraw.catalog)
BY_NAME: dict[str, Catalog] = {c.service: c for c in ALL}

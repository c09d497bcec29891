"""Token auth for the collab server: the relays' HS256 tokens, over diagram channels.

The tokens, their checking and their expiry come from :mod:`net.tokens`;
this module only says what they mean here. A token's ``channels`` patterns are
matched against ``diagram:{id}``, the excalidraw catalog's channel of that
diagram, so one token opens a diagram in the editor, in the REST API and
on ``/events`` alike; ``publish`` says whether its holder may edit.

Off unless a secret is configured (``Config.auth_secret``, ``inkwire serve
--auth-secret`` or ``$INKWIRE_COLLAB_SECRET``: a variable of its own, so a
relay's secret in the environment does not turn auth on here). Then:

- ``WS /yjs/{diagram}`` needs a token (``?token=``, which the stock
  y-websocket client sends through its ``params`` option, or
  ``Authorization: Bearer``): missing or bad closes with 4001, one that does
  not cover the diagram with 4403. Without ``publish`` the connection is
  read-only: it syncs and shares awareness, its document updates are refused
  (:meth:`collab.room.Room.apply_update`). It is closed with 4001 when the
  token's ``exp`` passes.
- ``/api/...`` answers 401 without a valid token, 403 for a diagram the token
  does not cover or an edit without ``publish``; the list holds only the
  diagrams the token covers (see :mod:`collab.api`).
- ``WS /events`` (and ``POST /events/publish``) checks the same secret: it is
  the mounted relay's ``RelaySettings.auth_secret``.

Health, metrics and the web app's pages and assets stay open.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from relays.scope import ANY_VALUE

if TYPE_CHECKING:  # only annotations: `inkwire` reads SECRET_ENV without loading JWT
    from net.tokens import Grant

SECRET_ENV = "INKWIRE_COLLAB_SECRET"
FORBIDDEN = 4403  # the close code of a token that does not cover the diagram


def diagram_channel(diagram: str) -> str:
    """The channel a token must cover to open ``diagram``."""
    return f"diagram:{diagram}"


def covers_every_diagram(grant: Grant) -> bool:
    """Whether ``grant`` opens any diagram at all (``*``, ``diagram:*``)."""
    return grant.allows(diagram_channel(ANY_VALUE))


def secret_from_env() -> str | None:
    return os.environ.get(SECRET_ENV) or None

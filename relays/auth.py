"""Relay auth: what a token (:mod:`net.tokens`) lets a relay client do.

A token says which channels a client may follow and whether it may publish.
Claims, as the relays read them:

- ``sub``: who it is (logged, echoed in the ``auth`` response);
- ``channels``: channel patterns (``fnmatch``: ``adapter:*``, ``*``) the
  holder may subscribe to and emit on; missing means none;
- ``publish``: may use ``POST /publish`` (still only on its channels);
- ``exp`` (optional): checked by PyJWT when the token is presented, and by
  the connection holding it after that (see :mod:`relays.connection`): an
  expired token ends it with 4001.

Channels bound requests as well as subscriptions: see :mod:`relays.scope`.

Auth is off unless a secret is configured (``RelaySettings.auth_secret``,
``inkwire relay --auth-secret`` or ``INKWIRE_RELAY_SECRET``); then every
connection is :data:`net.tokens.OPEN` and the welcome says ``authenticated: false``.
"""

from __future__ import annotations

import os

from net.tokens import make_token

# make_token stays importable from here: the README mints tokens with it
__all__ = ["SECRET_ENV", "make_token", "secret_from_env"]

SECRET_ENV = "INKWIRE_RELAY_SECRET"


def secret_from_env() -> str | None:
    return os.environ.get(SECRET_ENV) or None

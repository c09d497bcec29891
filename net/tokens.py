"""Bearer tokens: HS256 JWTs naming the channels their holder may use, and if it may publish.

Why JWTs and not a token list: the services that hand out tokens (a web app,
a CI job) can mint them with the shared secret without the server knowing
each one, and a token carries its own scope and expiry. Claims:

- ``sub``: who it is (logged, echoed back to the client);
- ``channels``: channel patterns (``fnmatch``: ``adapter:*``, ``diagram:*``,
  ``*``) the holder may use; missing means none;
- ``publish``: may write, not only read;
- ``exp`` (optional): checked by PyJWT when the token is presented, and by
  the connection holding it after that (:func:`wait_expired`): an expired
  token ends it with :data:`UNAUTHORIZED`.

What a channel names and what publishing allows is each server's own
business (:mod:`relays.auth`, :mod:`collab.auth`); this module only mints,
reads and checks tokens. When auth is off a server grants :data:`OPEN`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qs

import anyio

# PyJWT (and the cryptography it loads) is imported by the two functions that sign and
# verify: `inkwire` reads the auth modules' constants at every start, without auth.
ALGORITHM = "HS256"
UNAUTHORIZED = 4001  # the close code of a failed authentication


class AuthError(Exception):
    """A token is missing, malformed, expired or not signed with our secret."""


@dataclass(frozen=True)
class Grant:
    """What one authenticated client may do."""

    sub: str | None
    channels: tuple[str, ...]
    publish: bool
    authenticated: bool = True
    expires: float | None = None  # the token's ``exp`` (Unix time), if it has one

    def allows(self, channel: str) -> bool:
        channels = self.channels
        # "*" (OPEN's, every connection's with auth off) matches anything: no pattern
        # matching per join, subscribe or published event
        return "*" in channels or any(fnmatchcase(channel, pattern) for pattern in channels)

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (time.time() if now is None else now) >= self.expires

    def describe(self) -> dict[str, Any]:
        return {
            "authenticated": self.authenticated,
            "sub": self.sub,
            "channels": list(self.channels),
            "publish": self.publish,
            "expires": self.expires,
        }


# everything allowed: the grant of every connection when auth is off
OPEN = Grant(sub=None, channels=("*",), publish=True, authenticated=False)


class Authenticator:
    """Checks tokens against one secret."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("an empty auth secret would accept forged tokens")
        self.secret = secret

    def check(self, token: object) -> Grant:
        if not isinstance(token, str) or not token:
            raise AuthError("no token")
        import jwt

        try:
            claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM])
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token ({type(exc).__name__})") from None
        channels = claims.get("channels", [])
        if isinstance(channels, str):
            channels = [channels]
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise AuthError("invalid token (channels must be a list of patterns)")
        sub = claims.get("sub")
        exp = claims.get("exp")  # PyJWT has checked it is a time (int() of it) in the future
        return Grant(
            sub=sub if isinstance(sub, str) else None,
            channels=tuple(channels),
            publish=claims.get("publish") is True,
            expires=float(exp) if exp is not None else None,
        )


async def wait_expired(grant: Grant, replaced: anyio.Event | None = None) -> bool:
    """Sleep until ``grant`` expires (True), or until ``replaced`` is set first (False).

    A grant without ``exp`` never expires: this waits for ``replaced``, or
    forever. The wait is measured on the monotonic clock but the expiry is
    wall-clock time, so it re-checks :meth:`Grant.expired` after sleeping.
    """
    while not grant.expired():
        delay = math.inf if grant.expires is None else grant.expires - time.time()
        with anyio.move_on_after(delay):
            if replaced is None:
                await anyio.sleep_forever()
            else:
                await replaced.wait()
            return False
    return True


def make_token(
    secret: str,
    *,
    sub: str = "client",
    channels: Iterable[str] = ("*",),
    publish: bool = False,
    ttl: float | None = None,
) -> str:
    """Mint a token (for services, tests and operators holding the secret)."""
    claims: dict[str, Any] = {"sub": sub, "channels": list(channels), "publish": publish}
    if ttl is not None:
        claims["exp"] = int(time.time() + ttl)
    import jwt

    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def token_from_scope(scope: Mapping[str, Any]) -> str | None:
    """The token an ASGI request carries: ``Authorization: Bearer``, else ``?token=``."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            header: str = value.decode("latin-1")
            kind, _, token = header.partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    tokens = query.get("token")
    return str(tokens[0]) if tokens else None

"""Sharing links: tokens the server mints for one diagram, to edit or only view.

``POST /api/diagrams/{id}/share`` with ``{"access": "edit" | "view",
"expires_in": SECONDS}`` answers ``{"token", "path", "access", "expires"}``;
``path`` is ``/d/{id}?token=...``, the link to send.

Who may share: whoever may edit the diagram (a token covering
``diagram:{id}`` with ``publish``). Viewers may not: a view-only link must
not be a way to mint an edit link, nor even more view links the owner of
the diagram did not hand out. A minted link never reaches further than the
access it came from: it covers exactly ``diagram:{id}``, and it expires no
later than the sharer's own token (so revoking access by letting a token
expire revokes the links it made). An edit link's holder may share in turn,
under the same rules.

Without auth there is nothing to mint: anyone who has the plain link can
edit, and the route answers 409 saying so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from collab.auth import diagram_channel
from net.tokens import Grant, make_token

ACCESS = ("edit", "view")
MIN_EXPIRY = 60  # s: a link that expires before it is sent helps nobody
MAX_EXPIRY = 30 * 24 * 3600  # s: a sharing link is not a permanent credential
DEFAULT_EXPIRY = 7 * 24 * 3600


class ShareRefused(Exception):
    """A request to share that is malformed (400) or cannot be met (409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ShareRequest:
    access: str
    expires_in: int

    @classmethod
    def parse(cls, body: Any) -> ShareRequest:
        """The request from the JSON body, or :class:`ShareRefused` (400) saying what is wrong."""
        usage = (
            'body must be {"access": "edit" or "view", '
            f'"expires_in"?: {MIN_EXPIRY} to {MAX_EXPIRY} seconds}}'
        )
        if not isinstance(body, dict) or set(body) - {"access", "expires_in"}:
            raise ShareRefused(400, usage)
        access = body.get("access")
        expires_in = body.get("expires_in", DEFAULT_EXPIRY)
        if access not in ACCESS:
            raise ShareRefused(400, usage)
        if not isinstance(expires_in, int) or isinstance(expires_in, bool):
            raise ShareRefused(400, usage)
        if not MIN_EXPIRY <= expires_in <= MAX_EXPIRY:
            raise ShareRefused(400, usage)
        return cls(access, expires_in)


def mint_link(secret: str, grant: Grant, diagram: str, request: ShareRequest) -> dict[str, Any]:
    """A link for ``diagram``, for a ``grant`` that may edit it (the caller checked)."""
    now = time.time()
    wanted = now + request.expires_in
    expires = wanted if grant.expires is None else min(wanted, grant.expires)
    if expires - now < 1:
        raise ShareRefused(409, "your own access expires now: nothing left to share")
    token = make_token(
        secret,
        sub=f"link from {grant.sub or 'an editor'}",
        channels=[diagram_channel(diagram)],
        publish=request.access == "edit",
        ttl=expires - now,
    )
    return {
        "diagram": diagram,
        "access": request.access,
        "token": token,
        "path": f"/d/{quote(diagram)}?token={token}",
        "expires": int(expires),  # the token's exp, to the second
        "capped": expires < wanted,  # by the sharer's own expiry
    }

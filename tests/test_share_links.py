"""Sharing links (``POST /api/diagrams/{id}/share``, :mod:`collab.share`), over real HTTP.

An in-process server with auth; the minted tokens are then used as a
browser would use them: on the API and on ``/yjs``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest

from clients import DiagramClient
from collab.app import CollabApp
from collab.config import Config
from collab.share import DEFAULT_EXPIRY, MAX_EXPIRY
from relays.auth import make_token
from tests.conftest import RunningServer, running

pytestmark = pytest.mark.anyio

SECRET = "share-test-secret-long-enough-for-hs256-0123456789"
EDITOR = make_token(SECRET, sub="alice", channels=["diagram:plans"], publish=True)
VIEWER = make_token(SECRET, sub="bob", channels=["diagram:plans"], publish=False)


async def share(server: RunningServer, token: str | None, body: Any, diagram: str = "plans") -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.post(
            f"{server.http_url}/api/diagrams/{diagram}/share", json=body, headers=headers
        )


async def call(method: str, url: str, **options: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.request(method, url, **options)


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"])
    return decoded


async def test_an_editor_mints_view_and_edit_links_for_that_diagram_only() -> None:
    app = CollabApp(config=Config(grace_period=0.1, auth_secret=SECRET))
    async with running(app) as server:
        view = await share(server, EDITOR, {"access": "view", "expires_in": 3600})
        assert view.status_code == 200, view.text
        body = view.json()
        assert body["access"] == "view" and body["capped"] is False
        assert body["path"] == f"/d/plans?token={body['token']}"
        minted = claims(body["token"])
        assert minted["channels"] == ["diagram:plans"] and minted["publish"] is False
        assert abs(minted["exp"] - (time.time() + 3600)) < 5
        assert minted["exp"] == body["expires"]

        edit = (await share(server, EDITOR, {"access": "edit"})).json()
        assert claims(edit["token"])["publish"] is True
        assert abs(claims(edit["token"])["exp"] - (time.time() + DEFAULT_EXPIRY)) < 5

        # the view link reads but may not edit; the edit link edits; neither opens another
        url = f"{server.http_url}/api/diagrams"
        read = {"authorization": f"Bearer {body['token']}"}
        write = {"authorization": f"Bearer {edit['token']}"}
        lock = {"locked": True}
        assert (await call("POST", f"{url}/plans/lock", json=lock, headers=read)).status_code == 403
        assert (
            await call("POST", f"{url}/plans/lock", json=lock, headers=write)
        ).status_code == 200
        assert (await call("GET", f"{url}/other", headers=write)).status_code == 403
        async with DiagramClient(
            f"ws://127.0.0.1:{server.port}/yjs", "plans", token=edit["token"]
        ) as client:
            assert client.status == "connected"


async def test_viewers_and_strangers_may_not_share_and_links_never_outlive_the_sharer() -> None:
    app = CollabApp(config=Config(grace_period=0.1, auth_secret=SECRET))
    async with running(app) as server:
        assert (await share(server, VIEWER, {"access": "view"})).status_code == 403
        assert (await share(server, None, {"access": "view"})).status_code == 401
        elsewhere = await share(server, EDITOR, {"access": "view"}, diagram="other")
        assert elsewhere.status_code == 403

        brief = make_token(SECRET, sub="carol", channels=["diagram:*"], publish=True, ttl=120)
        capped = (await share(server, brief, {"access": "edit", "expires_in": MAX_EXPIRY})).json()
        assert capped["capped"] is True
        assert claims(capped["token"])["exp"] <= claims(brief)["exp"]
        # an edit link may share on, still within the same bounds
        again = (await share(server, capped["token"], {"access": "view"})).json()
        assert claims(again["token"])["exp"] <= claims(brief)["exp"]
        assert claims(again["token"])["channels"] == ["diagram:plans"]


@pytest.mark.parametrize(
    "body",
    [
        "view",
        [],
        {},
        {"access": "admin"},
        {"access": "view", "expires_in": 10},
        {"access": "view", "expires_in": MAX_EXPIRY + 1},
        {"access": "view", "expires_in": "3600"},
        {"access": "view", "expires_in": True},
        {"access": "view", "forever": True},
    ],
)
async def test_a_malformed_share_request_is_refused_saying_what_is_expected(body: Any) -> None:
    app = CollabApp(config=Config(grace_period=0.1, auth_secret=SECRET))
    async with running(app) as server:
        response = await share(server, EDITOR, body)
        assert response.status_code == 400
        assert '"access": "edit" or "view"' in response.json()["error"]


async def test_without_auth_there_is_nothing_to_mint() -> None:
    async with running(CollabApp(config=Config(grace_period=0.1))) as server:
        response = await share(server, None, {"access": "view"})
        assert response.status_code == 409
        assert "without auth" in response.json()["error"]
        assert (await call("GET", f"{server.http_url}/api/diagrams/plans/share")).status_code == 405

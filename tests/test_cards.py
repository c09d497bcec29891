"""The landing page's cards: thumbnails (storage.thumbnail), titles, the trash (storage.cards)
and their API routes, over real HTTP against an in-process server on a real SQLite file."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab.app import CollabApp
from collab.config import Config
from storage import cards
from storage.databases import Database
from storage.thumbnail import SHAPES, render
from tests.databases import Backend
from tests.test_diagram_list import edit

BOX = {"id": "r", "type": "rectangle", "x": 10, "y": 20, "width": 100, "height": 50}


def test_a_thumbnail_draws_the_live_shapes_fitted_and_skips_junk() -> None:
    svg = render(
        [
            {**BOX, "strokeColor": "#e03131", "backgroundColor": "#ffc9c9"},
            {"id": "e", "type": "ellipse", "x": 200, "y": 20, "width": 40, "height": 40},
            {
                "id": "t",
                "type": "text",
                "x": 0,
                "y": 100,
                "width": 200,
                "height": 25,
                "text": "<script>",
            },
            {"id": "l", "type": "arrow", "x": 0, "y": 0, "points": [[0, 0], [50, 60], "bad"]},
            {
                "id": "gone",
                "type": "diamond",
                "x": 900,
                "y": 900,
                "width": 9,
                "height": 9,
                "isDeleted": True,
            },
            {"id": "nan", "type": "rectangle", "x": "10", "y": 0, "width": 1, "height": 1},
            {
                "id": "evil",
                "type": "rectangle",
                "x": 0,
                "y": 0,
                "width": 1,
                "height": 1,
                "strokeColor": 'red" onload="alert(1)',
            },
        ]
    )
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" width="320" height="200"')
    assert '<rect x="10" y="20" width="100" height="50" stroke="#e03131" fill="#ffc9c9"' in svg
    assert "<ellipse" in svg and "<polyline" in svg
    assert "&lt;script&gt;" in svg and "<script" not in svg
    assert "onload" not in svg  # a colour that is no colour is not used
    assert 'viewBox="-10 -10 260 ' in svg  # fitted to the live elements, deleted ones left out


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.lists(st.one_of(st.floats(), st.text(max_size=2)), max_size=3), max_size=3),
)


@given(
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from([*sorted(SHAPES), "junk"])},
            optional={
                key: JUNK
                for key in (
                    "x",
                    "y",
                    "width",
                    "height",
                    "angle",
                    "points",
                    "text",
                    "fontSize",
                    "strokeColor",
                    "strokeWidth",
                )
            },
        ),
        max_size=5,
    )
)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_whatever_peers_wrote_a_checkpoint_still_renders(elements: list[dict[str, Any]]) -> None:
    svg = render(elements)  # a checkpoint must never fail on a malformed element
    assert svg.startswith("<svg") and svg.endswith("</svg>")


def test_an_empty_diagram_has_a_blank_thumbnail() -> None:
    svg = render([])
    assert 'viewBox="0 0 320 200"' in svg and svg.endswith("</svg>")


@pytest.fixture
def store(backend: Backend) -> Database:
    """A store of each kind (SQLite, PostgreSQL) with two diagrams, edited by Ada and Bo."""
    store = backend.open()
    edit(store, "plan", lambda elements: elements.__setitem__("r", {**BOX, "index": "a0"}), "Ada")
    edit(store, "notes", lambda elements: elements.__setitem__("n", {**BOX, "id": "n"}), "Bo")
    return store


@pytest.mark.anyio
async def test_cards_rename_search_delete_and_restore_over_the_api(
    store: Database, make_server: Any
) -> None:
    assert store.checkpoint("plan") is not None  # a checkpoint renders the thumbnail
    assert isinstance(store, cards.CardStore)
    app = CollabApp(store=store, config=Config(grace_period=0.5))
    async with make_server(app=app) as server, httpx.AsyncClient(base_url=server.http_url) as http:

        async def listing(**params: Any) -> dict[str, dict[str, Any]]:
            reply = await http.get("/api/diagrams", params=params)
            assert reply.status_code == 200, reply.text
            return {d["id"]: d for d in reply.json()}

        found = await listing()
        assert found["plan"]["author"] == "Ada" and found["notes"]["author"] == "Bo"
        assert found["plan"]["thumbnail_seq"] == 1 and found["plan"]["people"] == []
        assert found["plan"]["title"] is None and found["plan"]["deleted"] is None

        thumbnail = await http.get("/api/diagrams/plan/thumbnail")
        assert thumbnail.status_code == 200
        assert thumbnail.headers["content-type"] == "image/svg+xml"
        assert "sandbox" in thumbnail.headers["content-security-policy"]
        assert '<rect x="10" y="20" width="100" height="50"' in thumbnail.text
        assert (await http.get("/api/diagrams/ghost/thumbnail")).status_code == 404

        renamed = await http.post("/api/diagrams/plan/rename", json={"title": "  Q3\\n plan "})
        assert renamed.json() == {"diagram": "plan", "title": "Q3\\n plan"}
        renamed = await http.post("/api/diagrams/plan/rename", json={"title": "Q3   roadmap\t"})
        assert renamed.json()["title"] == "Q3 roadmap"
        assert set(await listing(search="ROADMAP")) == {"plan"}  # by title, any case
        assert set(await listing(search="not")) == {"notes"}  # by id
        for body in ({}, {"title": 3}, {"title": "x" * 201}, {"title": "a", "more": 1}, []):
            bad = await http.post("/api/diagrams/plan/rename", json=body)
            assert bad.status_code == 400 and "error" in bad.json()
        assert (
            await http.post("/api/diagrams/ghost/rename", json={"title": "x"})
        ).status_code == 404

        deleted = await http.delete("/api/diagrams/plan")
        assert deleted.status_code == 200 and deleted.json()["kept_days"] == cards.TRASH_DAYS
        assert set(await listing()) == {"notes"}
        trash = await listing(trash=1)
        assert set(trash) == {"plan"} and trash["plan"]["deleted"] is not None
        assert (await http.get("/api/diagrams?trash=yes")).status_code == 400
        assert (await http.post("/api/diagrams/plan/undelete")).status_code == 200
        assert set(await listing()) == {"plan", "notes"} and await listing(trash=1) == {}
        assert (await http.delete("/api/diagrams/ghost")).status_code == 404


@pytest.mark.anyio
async def test_the_trash_forgets_what_it_held_too_long(store: Database, make_server: Any) -> None:
    assert isinstance(store, cards.CardStore)
    store.set_deleted("notes", time.time() - (cards.TRASH_DAYS + 1) * 86400)
    store.set_deleted("plan", time.time() - 86400)
    app = CollabApp(store=store, config=Config(grace_period=0.5))
    async with make_server(app=app) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        trash = (await http.get("/api/diagrams", params={"trash": 1})).json()
        assert [d["id"] for d in trash] == ["plan"]
    assert store.last_seq("notes") is None and store.state_at("notes") is None


@pytest.mark.anyio
async def test_without_sqlite_the_trash_is_empty_and_search_goes_by_id(make_server: Any) -> None:
    from tests.yclient import peer, wait_until

    app = CollabApp(config=Config(grace_period=5))
    async with make_server(app=app) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        for name in ("alpha", "beta"):
            async with peer(f"{server.yjs_url}/{name}", 3) as p:
                await p.send_set("x", {**BOX, "id": "x"})
                await wait_until(lambda name=name: name in app.store.diagrams())  # type: ignore[attr-defined]
        found = (await http.get("/api/diagrams", params={"search": "ALP"})).json()
        assert [d["id"] for d in found] == ["alpha"]
        assert (await http.get("/api/diagrams", params={"trash": 1})).json() == []
        assert (await http.get("/api/diagrams/alpha/thumbnail")).status_code == 501

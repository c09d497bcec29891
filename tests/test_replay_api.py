"""Replay through the REST API: export, history, at, restore, import, files.

Real in-process servers on a real SQLite file; live clients are bare
y-websocket peers, so what they see is what the wire carried.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from pycrdt import Map

from collab.app import CollabApp
from collab.config import Config
from tests.databases import Backend
from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def element(eid: str, index: str, **extra: Any) -> dict[str, Any]:
    return {"id": eid, "type": "rectangle", "x": 0, "y": 0, "index": index, "version": 1, **extra}


def live_ids(p: Any) -> set[str]:
    return {k for k, v in p.snapshot().items() if not v.get("isDeleted")}


@pytest.fixture
def app(backend: Backend) -> CollabApp:
    return CollabApp(store=backend.open(), config=Config(grace_period=0.5))


async def draw(url: str, name: str) -> None:
    """Three versions: add a, b; add c; change a and delete b."""
    async with peer(f"{url}/{name}", 11) as p:
        await p.set_awareness({"user": {"name": "ada", "color": "#f00"}})
        await anyio.sleep(0.05)
        with p.doc.transaction():
            p.set("a", element("a", "a2"))
            p.set("b", element("b", "a1"))
        await p.flush()
        await anyio.sleep(0.05)
        await p.send_set("c", element("c", "a3"))
        await anyio.sleep(0.05)
        with p.doc.transaction():
            p.set("a", element("a", "a2", x=50, version=2))
            p.set("b", element("b", "a1", isDeleted=True, version=2))
        await p.flush()
        await anyio.sleep(0.1)


async def test_export_history_and_at(make_server: Any, app: CollabApp) -> None:
    async with make_server(app=app) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        await draw(server.yjs_url, "plan")
        listing = (await http.get("/api/diagrams")).json()
        assert [(d["id"], d["elements"]) for d in listing] == [("plan", 2)]
        assert listing[0]["size"] > 0 and listing[0]["last_edit"].endswith("+00:00")

        doc = (await http.get("/api/diagrams/plan")).json()
        assert doc["type"] == "excalidraw" and doc["version"] == 2 and doc["source"] == "inkwire"
        assert [e["id"] for e in doc["elements"]] == ["a", "c"]  # z-order by index, b deleted
        assert doc["elements"][0]["x"] == 50 and isinstance(doc["elements"][0]["x"], int)
        assert doc["files"] == {} and isinstance(doc["appState"], dict)

        history = (await http.get("/api/diagrams/plan/history")).json()
        versions = history["versions"]
        assert [v["seq"] for v in versions] == [3, 2, 1]  # newest first
        assert (versions[2]["added"], versions[1]["added"]) == (["a", "b"], ["c"])
        assert (versions[0]["changed"], versions[0]["removed"]) == (["a"], ["b"])
        assert {v["origin"] for v in versions} == {"ada"}  # the user named in its presence
        assert datetime.fromisoformat(versions[0]["time"]).tzinfo is not None

        page = (await http.get("/api/diagrams/plan/history?limit=2")).json()
        assert [v["seq"] for v in page["versions"]] == [3, 2] and page["next_before"] == 2
        older = (await http.get("/api/diagrams/plan/history?limit=2&before=2")).json()
        assert [v["seq"] for v in older["versions"]] == [1] and older["next_before"] is None

        first = (await http.get("/api/diagrams/plan?at=1")).json()
        assert [e["id"] for e in first["elements"]] == ["b", "a"]
        moment = versions[1]["time"]  # the second version's commit time
        second = (await http.get("/api/diagrams/plan", params={"at": moment})).json()
        assert [e["id"] for e in second["elements"]] == ["b", "a", "c"]
        assert (await http.get("/api/diagrams/plan?at=99")).status_code == 404
        assert (await http.get("/api/diagrams/plan?at=yesterday")).status_code == 400
        early = datetime(2000, 1, 1, tzinfo=UTC).isoformat()
        assert (await http.get("/api/diagrams/plan", params={"at": early})).status_code == 404
        assert (await http.get("/api/diagrams/nope/history")).status_code == 404


async def test_restore_is_a_forward_edit_live_clients_see(make_server: Any, app: CollabApp) -> None:
    async with make_server(app=app) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        await draw(server.yjs_url, "plan")
        async with peer(f"{server.yjs_url}/plan", 22) as watcher:
            assert live_ids(watcher) == {"a", "c"}
            reply = await http.post("/api/diagrams/plan/restore", json={"at": 1})
            assert reply.status_code == 200, reply.text
            await wait_until(lambda: live_ids(watcher) == {"a", "b"}, 5)
            a = watcher.snapshot()["a"]
            assert a["x"] == 0 and a["version"] > 2  # old content, newer version
            assert watcher.snapshot()["c"]["isDeleted"] is True
        history = (await http.get("/api/diagrams/plan/history")).json()["versions"]
        assert [v["seq"] for v in history] == [4, 3, 2, 1]  # later history kept
        assert history[0]["added"] == ["b"] and history[0]["removed"] == ["c"]
        assert history[0]["origin"] == "restore"
        third = (await http.get("/api/diagrams/plan?at=3")).json()
        assert [e["id"] for e in third["elements"]] == ["a", "c"]
        bad = await http.post("/api/diagrams/plan/restore", json={"at": "nonsense"})
        assert bad.status_code == 400 and "error" in bad.json()


async def test_import_valid_and_invalid(make_server: Any, app: CollabApp) -> None:
    async with make_server(app=app) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        await draw(server.yjs_url, "plan")
        before = (await http.get("/api/diagrams/plan")).json()
        for body, reason in [
            (b"{not json", "not JSON"),
            (b'{"type": "something", "elements": []}', "not an .excalidraw file"),
            (b'{"type": "excalidraw", "elements": [{"id": "x"}]}', "no string 'type'"),
            (b'{"type": "excalidraw", "elements": {}}', "must be a list"),
        ]:
            reply = await http.post("/api/diagrams/plan/import", content=body)
            assert reply.status_code == 400 and reason in reply.json()["error"]
        assert (await http.get("/api/diagrams/plan")).json() == before  # nothing changed

        dataurl = "data:image/png;base64," + base64.b64encode(PNG).decode()
        scene = {
            "type": "excalidraw",
            "version": 2,
            "elements": [
                {"id": "top", "type": "text", "x": 1, "y": 2},
                {"id": "img", "type": "image", "x": 0, "y": 0, "fileId": "f1"},
            ],
            "appState": {"viewBackgroundColor": "#ffeedd", "zoom": {"value": 2}},
            "files": {"f1": {"id": "f1", "mimeType": "image/png", "dataURL": dataurl}},
        }
        async with peer(f"{server.yjs_url}/plan", 33) as watcher:
            reply = await http.post("/api/diagrams/plan/import", content=json.dumps(scene))
            assert reply.status_code == 200, reply.text
            await wait_until(lambda: live_ids(watcher) == {"top", "img"}, 5)
        doc = (await http.get("/api/diagrams/plan")).json()
        assert [e["id"] for e in doc["elements"]] == ["top", "img"]  # file order kept
        assert doc["appState"] == {"viewBackgroundColor": "#ffeedd"}
        assert doc["files"]["f1"]["dataURL"] == dataurl


async def test_files_roundtrip_limits_and_metadata(make_server: Any, backend: Backend) -> None:
    app = CollabApp(store=backend.open(), config=Config(grace_period=0.5, max_file_bytes=1000))
    async with make_server(app=app) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        async with peer(f"{server.yjs_url}/pics", 44) as watcher:
            put = await http.put(
                "/api/diagrams/pics/files/f1", content=PNG, headers={"content-type": "image/png"}
            )
            assert put.status_code == 201, put.text
            files = watcher.doc.get("files", type=Map)
            await wait_until(lambda: "f1" in files, 5)
            info = dict(files["f1"])
            assert set(info) == {"mimeType", "created", "size", "sha256"}  # no bytes, no base64
            assert info["size"] == len(PNG) and info["mimeType"] == "image/png"
        got = await http.get("/api/diagrams/pics/files/f1")
        assert got.content == PNG and got.headers["content-type"] == "image/png"
        assert "sandbox" in got.headers["content-security-policy"]  # an SVG runs nothing
        assert got.headers["x-content-type-options"] == "nosniff"

        big = await http.put(
            "/api/diagrams/pics/files/f2",
            content=b"x" * 2000,
            headers={"content-type": "image/png"},
        )
        assert big.status_code == 413 and "limit" in big.json()["error"]
        text = await http.put(
            "/api/diagrams/pics/files/f3", content=b"hi", headers={"content-type": "text/html"}
        )
        assert text.status_code == 415 and "text/html" in text.json()["error"]
        svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
        bad = await http.put(
            "/api/diagrams/pics/files/f4", content=svg, headers={"content-type": "image/svg+xml"}
        )
        assert bad.status_code == 415 and "script" in bad.json()["error"]
        onload = b'<svg xmlns="http://www.w3.org/2000/svg" onload="x()"></svg>'
        bad = await http.put(
            "/api/diagrams/pics/files/f5", content=onload, headers={"content-type": "image/svg+xml"}
        )
        assert bad.status_code == 415
        ok_svg = b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>'
        good = await http.put(
            "/api/diagrams/pics/files/f6", content=ok_svg, headers={"content-type": "image/svg+xml"}
        )
        assert good.status_code == 201
        for missing in ("f2", "f3", "f4", "f5", "nothing"):
            assert (await http.get(f"/api/diagrams/pics/files/{missing}")).status_code == 404


async def test_memory_store_answers_501_for_history(collab_server: Any) -> None:
    async with httpx.AsyncClient(base_url=collab_server.http_url) as http:
        async with peer(f"{collab_server.yjs_url}/mem", 5) as p:
            await p.send_set("a", element("a", "a0"))
            await anyio.sleep(0.1)
            assert [e["id"] for e in (await http.get("/api/diagrams/mem")).json()["elements"]] == [
                "a"
            ]
        reply = await http.get("/api/diagrams/mem/history")
        assert reply.status_code == 501 and "SQLite" in reply.json()["error"]
        assert (await http.get("/api/diagrams")).json()[0]["id"] == "mem"
        assert (await http.get("/api/nothing")).status_code == 404
        assert (await http.delete("/api/diagrams")).status_code == 405

"""How ``inkwire serve`` serves the web app's files (plain HTTP, no browser).

These run against a small fake build in a temporary folder, so they hold on
machines without Node; the real build is exercised by tests/test_web_app.py.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from collab.app import CollabApp
from collab.config import Config
from tests.conftest import running

INDEX = b"<!doctype html><title>inkwire</title><div id=root></div>"
BUNDLE = b"console.log('inkwire');\n" * 400
WORKER = b"self.addEventListener('fetch', () => {});\n"


@pytest.fixture
def build(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "excalidraw-assets" / "fonts" / "Virgil").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "sw.js").write_bytes(WORKER)
    (root / "assets" / "index-abc123.js").write_bytes(BUNDLE)
    (root / "excalidraw-assets" / "fonts" / "Virgil" / "Virgil.woff2").write_bytes(b"wOF2font")
    (tmp_path / "secret.txt").write_text("not for clients")
    return root


def app(root: Path) -> CollabApp:
    return CollabApp(config=Config(grace_period=0.1), web_root=root)


@pytest.mark.anyio
async def test_pages_are_the_app_and_revalidated(build: Path) -> None:
    async with running(app(build)) as server, httpx.AsyncClient() as http:
        for path in ("/", "/d/some-diagram", "/d/x/"):
            response = await http.get(server.http_url + path)
            assert response.status_code == 200
            assert response.content == INDEX
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert response.headers["cache-control"] == "no-cache"


@pytest.mark.anyio
async def test_the_service_worker_is_served_from_the_root_and_revalidated(build: Path) -> None:
    async with running(app(build)) as server, httpx.AsyncClient() as http:
        response = await http.get(server.http_url + "/sw.js")
        assert response.status_code == 200
        assert response.content == WORKER
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"  # a new worker reaches users
        (build / "sw.js").unlink()
        fresh = CollabApp(config=Config(grace_period=0.1), web_root=build)
    async with running(fresh) as server, httpx.AsyncClient() as http:
        assert (await http.get(server.http_url + "/sw.js")).status_code == 404


@pytest.mark.anyio
async def test_hashed_assets_are_immutable_and_gzipped_on_request(build: Path) -> None:
    async with running(app(build)) as server, httpx.AsyncClient() as http:
        url = server.http_url + "/assets/index-abc123.js"
        zipped = await http.get(url, headers={"accept-encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.headers["content-type"] == "text/javascript; charset=utf-8"
        assert zipped.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert zipped.headers["vary"] == "accept-encoding"
        assert int(zipped.headers["content-length"]) < len(BUNDLE) / 10
        assert zipped.content == BUNDLE  # httpx decoded it
        plain = await http.get(url, headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert plain.content == BUNDLE
        head = await http.head(url, headers={"accept-encoding": "identity"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(BUNDLE))
        font = await http.get(server.http_url + "/excalidraw-assets/fonts/Virgil/Virgil.woff2")
        assert font.headers["content-type"] == "font/woff2"
        assert "content-encoding" not in font.headers  # woff2 is compressed already
        assert font.content == b"wOF2font"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path",
    [
        "/assets/missing.js",
        "/assets/../../secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/excalidraw-assets/fonts",
        "/index.html/x",
        "/secret.txt",
    ],
)
async def test_nothing_outside_the_build_is_served(build: Path, path: str) -> None:
    async with running(app(build)) as server, httpx.AsyncClient() as http:
        response = await http.get(server.http_url + path)
        assert response.status_code == 404
        assert b"not for clients" not in response.content


@pytest.mark.anyio
async def test_without_a_build_the_page_says_how_to_build_and_the_server_works(
    tmp_path: Path,
) -> None:
    async with running(app(tmp_path / "nowhere")) as server, httpx.AsyncClient() as http:
        page = await http.get(server.http_url + "/")
        assert page.status_code == 200
        assert b"web app is not built" in page.content
        assert b"npm ci" in page.content and b"make serve" in page.content
        assert (await http.get(server.http_url + "/d/anything")).content == page.content
        assert (await http.get(server.http_url + "/health/ready")).status_code == 200
        assert (await http.get(server.http_url + "/api/diagrams")).json() == []

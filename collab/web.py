"""The web app's files: the built Excalidraw client (``clients/web/dist``).

Routes are the app's own: ``/`` (landing), ``/d/{diagram}`` (editor) and
``/dashboard`` (the live dashboard) all answer ``index.html``, which routes in
the browser. In a checkout the build is ``clients/web/dist``; an installed
wheel carries it at the same place inside the ``clients`` package. Hashed build output under
``/assets/`` never changes for a name, so it is cached for a year; the page
itself is revalidated every time so a rebuild reaches users at once.

``/sw.js`` is the app's service worker (``clients/web/public/sw.js``: the app
opens offline); it is revalidated like the page, so a new one is picked up at once.

Files are read once and kept in memory (the build is a few MB and immutable
while serving), with a gzip copy of the compressible ones: the Excalidraw
bundle is 4 MB raw, 1.3 MB gzipped.

Without a build (no Node on this machine), ``/`` says how to build it and
the rest of the server works as usual.
"""

from __future__ import annotations

import gzip
import html
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from net.asgi import Send

DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "clients" / "web" / "dist"
COMPRESSIBLE = (".js", ".css", ".html", ".json", ".svg", ".map", ".txt")
IMMUTABLE = "public, max-age=31536000, immutable"
TYPES = {".js": "text/javascript", ".woff2": "font/woff2", ".json": "application/json"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    cache: str


def _missing_page(root: Path) -> bytes:
    where = html.escape(str(root))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>inkwire: web app not built</title>
<style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:3rem auto;
line-height:1.5;padding:0 1rem}}code,pre{{background:#f1f3f5;padding:.1rem .3rem}}</style>
</head><body><h1>inkwire is running, but its web app is not built</h1>
<p>No build was found in <code>{where}</code>. Building it needs Node.js 20 or newer and npm.
Then either run <code>make serve</code> (it builds what is missing), or build by hand:</p>
<pre>cd clients/web
npm ci
npm run build</pre>
<p>and reload this page. The server itself works without it: Yjs clients connect to
<code>ws://HOST/yjs/&lt;diagram&gt;</code>, the REST API is under <code>/api/</code>, diagram
events under <code>ws://HOST/events</code>.</p>
</body></html>
""".encode()


class WebApp:
    """Answers GET/HEAD for the web app's pages and files."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or DEFAULT_ROOT).resolve()
        self._cache: dict[str, Asset] = {}

    @property
    def built(self) -> bool:
        return (self.root / "index.html").is_file()

    @staticmethod
    def is_page(path: str) -> bool:
        return path in ("/", "/dashboard") or path.startswith("/d/")

    async def serve(
        self, path: str, method: str, headers: list[tuple[bytes, bytes]], send: Send
    ) -> bool:
        """Send ``path``'s response and return True, or False if it is not ours."""
        if self.is_page(path):
            asset = await self._asset("index.html")
            if asset is None:
                body = _missing_page(self.root)
                asset = Asset(body, None, "text/html; charset=utf-8", "no-cache")
        elif path == "/sw.js":
            asset = await self._asset("sw.js")
            if asset is None:
                return False
        elif path.startswith(("/assets/", "/excalidraw-assets/")):
            asset = await self._asset(path.lstrip("/"))
            if asset is None:
                return False
        else:
            return False
        accepts_gzip = any(
            name == b"accept-encoding" and b"gzip" in value.lower() for name, value in headers
        )
        body = asset.gzipped if accepts_gzip and asset.gzipped is not None else asset.body
        response = [
            (b"content-type", asset.content_type.encode()),
            (b"content-length", b"%d" % len(body)),
            (b"cache-control", asset.cache.encode()),
            (b"x-content-type-options", b"nosniff"),
        ]
        if asset.gzipped is not None:
            response.append((b"vary", b"accept-encoding"))
            if body is asset.gzipped:
                response.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": response})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        return True

    async def _asset(self, relative: str) -> Asset | None:
        asset = self._cache.get(relative)
        if asset is None:
            # misses are not remembered: a build can appear later, and a flood
            # of made-up names must not grow this dict
            asset = await anyio.to_thread.run_sync(self._load, relative)
            if asset is not None:
                self._cache[relative] = asset
        return asset

    def _load(self, relative: str) -> Asset | None:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None  # "..", symlinks out of the build, directories: not ours
        body = path.read_bytes()
        suffix = path.suffix.lower()
        content_type = TYPES.get(suffix) or mimetypes.guess_type(path.name)[0]
        content_type = content_type or "application/octet-stream"
        if content_type.startswith("text/") or suffix in (".js", ".json", ".svg"):
            content_type += "; charset=utf-8"
        gzipped = gzip.compress(body, 6, mtime=0) if suffix in COMPRESSIBLE else None
        if relative in ("index.html", "sw.js"):
            cache = "no-cache"
        elif relative.startswith("assets/"):
            cache = IMMUTABLE  # names carry a content hash
        else:
            cache = "public, max-age=86400"  # Excalidraw's fonts: fixed per release
        return Asset(body, gzipped, content_type, cache)

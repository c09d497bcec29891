"""Image files of diagrams: what is accepted, and the metadata the doc keeps of each.

The bytes are kept by a :class:`storage.store.FileStore`, never in the doc.

Only the image types Excalidraw itself produces are accepted. SVG is
*refused*, not sanitized, when it carries anything active (``<script``,
``on*=`` event handlers, ``javascript:`` URLs, external ``href``s, or
``<foreignObject>``): a sanitizer that misses one trick serves script from
our origin, while refusing costs a user nothing Excalidraw makes itself.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.store import FileStore

MAX_FILE_BYTES = 4 * 1024 * 1024
ALLOWED_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"})
_SVG_ACTIVE = [
    (re.compile(rb"<\s*script", re.I), "a <script> element"),
    (re.compile(rb"\son[a-z]+\s*=", re.I), "an on* event handler attribute"),
    (re.compile(rb"javascript\s*:", re.I), "a javascript: URL"),
    (re.compile(rb"<\s*foreignObject", re.I), "a <foreignObject> element"),
    (
        re.compile(rb"href\s*=\s*[\"']\s*(?!#|data:image/)[^\"']", re.I),
        "an external href (only #fragment and data:image/ links are allowed)",
    ),
]


class FileRejected(ValueError):
    """A file we will not store; ``status`` is the HTTP answer (413 or 415)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def check_file(mime: str, data: bytes, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The normalized MIME type, or :class:`FileRejected` saying why not."""
    mime = mime.split(";")[0].strip().lower()
    if len(data) > max_bytes:
        raise FileRejected(413, f"file is {len(data)} bytes; the limit is {max_bytes}")
    if mime not in ALLOWED_TYPES:
        allowed = ", ".join(sorted(ALLOWED_TYPES))
        raise FileRejected(415, f"type {mime or '(none)'!r} is not accepted; use one of {allowed}")
    if mime == "image/svg+xml":
        for pattern, what in _SVG_ACTIVE:
            if pattern.search(data):
                raise FileRejected(415, f"SVG refused: it contains {what}")
    return mime


def file_metadata(
    mime: str, data: bytes, *, created: Any = None, max_bytes: int = MAX_FILE_BYTES
) -> dict[str, Any]:
    """What the doc's ``files`` map holds for a file: never the bytes themselves."""
    mime = check_file(mime, data, max_bytes)
    when = created if isinstance(created, int | float) else int(time.time() * 1000)
    return {
        "mimeType": mime,
        "created": when,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def save_file(
    store: FileStore, diagram: str, file_id: str, mime: str, data: bytes, info: dict[str, Any]
) -> None:
    """Store the bytes with what the doc records of them (``info``, from :func:`file_metadata`)."""
    store.put_file(diagram, file_id, mime, data, sha256=info["sha256"], created=info["created"])

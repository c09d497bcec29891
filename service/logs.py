"""One log format for every inkwire process: text lines, or one JSON object per line.

Text is what ``inkwire serve`` always wrote (``time level logger message``).
JSON is for log shippers: ``{"time", "level", "service", "logger", "message"}``
(``service``: collab, a relay's name, ``relays`` for ``inkwire relay all``),
plus ``"worker"`` when the process is a worker of ``inkwire up``, and
``"exc_info"`` with the traceback when there is one. Under ``inkwire up``
the supervisor names the service on each text line itself (see
:mod:`service.up`), so whatever a worker writes to stderr, a traceback
included, carries it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    def __init__(self, fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.fields = fields or {}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            **self.fields,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def iso_time(created: float) -> str:
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def setup(level: str, fmt: str, **fields: Any) -> None:
    """Log to stderr at ``level`` as ``fmt`` ("text" or "json"); ``fields`` go on each
    JSON line (``service``, ``worker``)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(fields))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())

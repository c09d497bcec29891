"""One worker of ``inkwire up`` (``python -m service.worker``): one server on an inherited
socket.

It reads one JSON line on stdin, ``{"settings", "service", "worker", "fd"}``, serves
``service`` (collab or a relay's name) on the listening socket ``fd`` until
SIGTERM or SIGINT, or until stdin closes: the supervisor keeps it open for the
worker's whole life, so its end means the supervisor is gone and nothing would
restart or stop this worker any more.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import anyio

from service import logs, run
from service.settings import Settings

log = logging.getLogger("inkwire.worker")


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.stdin.buffer.readline() or b"null") or {}
    if not {"settings", "service", "worker", "fd"} <= spec.keys():
        sys.exit("service.worker: started by `inkwire up` only (no settings on stdin)")
    settings = Settings.model_validate(spec["settings"])
    logs.setup(
        settings.log.level, settings.log.format, service=spec["service"], worker=spec["worker"]
    )
    anyio.run(work, settings, spec["service"], int(spec["fd"]))


async def work(settings: Settings, service: str, fd: int) -> None:
    async def stop() -> None:
        async with anyio.create_task_group() as tg:

            async def first(wait: run.Stop) -> None:
                await wait()
                tg.cancel_scope.cancel()

            tg.start_soon(first, run.on_signal)
            tg.start_soon(first, supervisor_gone)

    if service == "collab":
        await run.serve_collab(settings, fd, stop)
    else:
        await run.serve_relays(settings, [service], {service: fd}, stop)


async def supervisor_gone() -> None:
    """Return when stdin reaches its end."""
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)
    while True:
        await anyio.wait_readable(fd)
        try:
            if not os.read(fd, 4096):
                log.warning("the supervisor is gone: shutting down")
                return
        except BlockingIOError:
            continue


if __name__ == "__main__":
    main()

"""``inkwire up``: every enabled server, supervised, in one process tree.

Real processes on free ports: all seven answer /health; a worker killed with
SIGKILL is started again and serves; SIGTERM stops everything, and so does the
supervisor's own death (its workers see their stdin close); with Redis, two
workers share one port, clients of one diagram on both see each other's edits,
and the port keeps answering while one of the workers restarts.
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from clients import DiagramClient
from tests.redis_server import RedisServer
from tests.service_process import (
    NAMES,
    alive,
    all_ready,
    inkwire,
    listening_pids,
    seven_on_free_ports,
    status,
    stop,
    wait_for,
    worker_pids,
)

pytestmark = [pytest.mark.processes, pytest.mark.slow]


def test_all_seven_restart_a_killed_worker_and_stop_together(tmp_path: Path) -> None:
    config, ports = seven_on_free_ports(tmp_path)
    log = tmp_path / "up.log"
    up = inkwire("up", "--config", str(config), log=log)
    try:
        wait_for("all seven ready", lambda: all_ready(ports.values()), log=log)
        assert all(status(f"http://127.0.0.1:{p}/health/live") == 200 for p in ports.values())
        first = worker_pids(up.pid)
        assert len(first) == 7  # without Redis: one worker per server
        for name in ("collab", "dhruva"):
            (victim,) = listening_pids(ports[name]) - {up.pid}
            os.kill(victim, signal.SIGKILL)
            wait_for(
                f"{name} back",
                lambda n=name, v=victim: (
                    bool(listening_pids(ports[n]) - {up.pid, v}) and all_ready([ports[n]])
                ),
                log=log,
            )
        assert all_ready(ports.values())
        survivors = worker_pids(up.pid)
        assert len(survivors) == 7 and len(set(survivors) - set(first)) == 2
        assert stop(up) == 0
        wait_for("no worker left", lambda: not alive(first + survivors), timeout=5, log=log)
        assert all(status(f"http://127.0.0.1:{p}/health/live") is None for p in ports.values())
    finally:
        stop(up)
    lines = log.read_text().splitlines()
    for name in NAMES:  # one stream, each line naming its service
        assert any(line.startswith(f"{name:<14} | ") for line in lines), name
    assert any("collab exited (killed by SIGKILL): restarting" in line for line in lines)
    assert any(line.startswith("up             | ") and "stopped" in line for line in lines)
    assert all(" | " in line for line in lines), [line for line in lines if " | " not in line]


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    config, ports = seven_on_free_ports(tmp_path)
    log = tmp_path / "up.log"
    up = inkwire("up", "--config", str(config), "--log-format", "json", log=log)
    try:
        wait_for("all seven ready", lambda: all_ready(ports.values()), log=log)
        pids = worker_pids(up.pid)
        up.kill()
        up.wait(timeout=10)
        wait_for("orphaned workers gone", lambda: not alive(pids), timeout=10, log=log)
    finally:
        stop(up)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["service"] for e in entries} == {"up", *NAMES}
    assert all({"time", "level", "logger", "message", "worker"} <= e.keys() for e in entries)
    # (the workers' "supervisor is gone" line has nobody left to read it)


def test_with_redis_workers_share_a_port(tmp_path: Path, redis_server: RedisServer) -> None:
    config, ports = seven_on_free_ports(tmp_path, redis=redis_server.url)
    settings = json.loads(config.read_text())
    for name in NAMES[1:]:
        if name != "dhruva":
            settings["relays"][name]["enabled"] = False
    config.write_text(json.dumps(settings))
    served = [ports["collab"], ports["dhruva"]]
    log = tmp_path / "up.log"
    up = inkwire("up", "--config", str(config), "--workers", "2", log=log)
    try:
        wait_for("collab and dhruva ready", lambda: all_ready(served), log=log)
        wait_for("two workers each", lambda: len(worker_pids(up.pid)) == 4, log=log)
        anyio.run(one_room_across_workers, ports["collab"], log)
        collab = sorted(listening_pids(ports["collab"]) - {up.pid})
        assert len(collab) == 2
        os.kill(collab[0], signal.SIGKILL)
        # the other worker holds the port meanwhile: it never stops answering
        for _ in range(20):
            assert status(f"http://127.0.0.1:{ports['collab']}/health/live") == 200
        wait_for(
            "the killed worker replaced",
            lambda: len(listening_pids(ports["collab"]) - {up.pid, collab[0]}) == 2,
            log=log,
        )
        assert stop(up) == 0
    finally:
        stop(up)
    text = log.read_text()
    assert "collab.1 " in text and "collab.2 " in text and "dhruva.2 " in text


async def one_room_across_workers(port: int, log: Path) -> None:
    """Clients of one diagram on both workers (told apart by the log's `collab.N |`)
    see each other's edits: the workers share the room through Redis."""
    url = f"ws://127.0.0.1:{port}/yjs"

    def workers_with_clients() -> set[str]:
        lines = log.read_text().splitlines()
        return {line.split(" ", 1)[0] for line in lines if "open room=shared " in line}

    async with AsyncExitStack() as stack:
        clients: list[DiagramClient] = []
        while workers_with_clients() != {"collab.1", "collab.2"}:
            assert len(clients) < 24, "every connection went to one worker"
            client = await stack.enter_async_context(DiagramClient(url, "shared"))
            await client.wait_for(lambda c: c.sync_count > 0, timeout=10)
            clients.append(client)
            await anyio.sleep(0.05)  # for the open line to reach the log
        clients[0].add_element({"id": "across", "type": "rectangle"})
        for client in clients:
            await client.wait_for(lambda c: c.get_element("across") is not None, timeout=10)

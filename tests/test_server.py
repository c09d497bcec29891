"""The server process: clean shutdown, structured connection logs, keepalive."""

from __future__ import annotations

import signal
import time

import anyio
import pytest

from collab.config import Config
from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_clients_with_1001_and_exits_within_3s(
    server_process, tmp_path, signum
) -> None:
    server = server_process()
    async with peer(server.yjs_url + "/bye", 1) as a, peer(server.yjs_url + "/bye", 2) as b:
        await a.send_set("k", {"id": "k"})
        await wait_until(lambda: "k" in b.snapshot())
        started = time.monotonic()
        server.process.send_signal(signum)
        with anyio.fail_after(3):
            await a.closed.wait()
            await b.closed.wait()
            while server.process.poll() is None:
                await anyio.sleep(0.02)
        assert time.monotonic() - started < 3
    assert (a.close_code, b.close_code) == (1001, 1001)
    assert a.close_reason == "server shutting down"
    assert server.process.returncode == 0
    log = (tmp_path / f"server-{server.port}.log").read_text()
    assert "Traceback" not in log
    assert "Error" not in log
    assert "open room=bye client=" in log
    assert "close room=bye client=" in log and "code=1001 reason='server shutting down'" in log


async def test_lone_client_gets_keepalives(make_server) -> None:
    async with make_server(Config(keepalive_interval=0.1)) as server:
        async with peer(server.yjs_url + "/quiet", 1) as alone:
            await anyio.sleep(0.5)
            keepalives = [f for f in alone.frames if f == b"\x01\x01\x00"]
            assert 2 <= len(keepalives) <= 6
            assert alone.ws.close_code is None

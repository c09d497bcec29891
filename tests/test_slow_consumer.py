"""A client that stops reading is cut off (4009); memory stays bounded; others get everything."""

from __future__ import annotations

import socket

import anyio
import httpx
import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from collab.protocol import sync_step1
from tests.yclient import peer, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

UPDATES = 50_000
PAYLOAD = "x" * 2000  # 50 000 updates of 2 kB: 100 MB if a server queued them all


def stuck_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_slow_consumer_is_cut_off_and_memory_stays_bounded(server_process) -> None:
    # the writer sends 100 MB as fast as it can: the flood the /yjs rate limit slows down
    # (tests/test_capacity.py tests that); here it must reach the server whole
    server = server_process("--set", "collab.yjs_message_rate_limit=null")
    process = psutil.Process(server.process.pid)
    url = server.yjs_url + "/slow"
    async with (
        peer(url, 1) as writer,
        peer(url, 2) as healthy,
        connect(
            url,
            sock=stuck_socket(server.port),
            max_queue=1,
            max_size=None,
            compression=None,
            ping_interval=None,  # its own keepalive would give up while it is stuck
        ) as stuck,
    ):
        await stuck.send(sync_step1(b"\x00"))  # fully joined, then never reads
        await anyio.sleep(0.2)
        rss_before = process.memory_info().rss
        peak = rss_before
        for i in range(UPDATES):
            writer.set(f"k{i % 100}", {"id": f"k{i % 100}", "i": i, "text": PAYLOAD})
            await writer.flush()
            if i % 50 == 0:
                await anyio.sleep(0.001)  # the healthy reader shares this process: let it read
            if i % 1000 == 0:
                peak = max(peak, process.memory_info().rss)
        await wait_until(lambda: healthy.doc.get_state() == writer.doc.get_state(), timeout=60)
        peak = max(peak, process.memory_info().rss)
        assert healthy.snapshot() == writer.snapshot()
        # the updates amount to 100 MB: queueing them for the stuck client cannot fit
        assert (peak - rss_before) < 90 << 20, f"server grew by {(peak - rss_before) >> 20} MiB"

        async with httpx.AsyncClient() as http:
            metrics = (await http.get(server.http_url + "/metrics")).text
        assert "inkwire_slow_consumer_closes_total 1.0" in metrics

        with anyio.fail_after(30):  # reading again, it finds the close frame at the end
            try:
                while True:
                    await stuck.recv()
            except ConnectionClosed:
                pass
        assert stuck.close_code == 4009
        assert stuck.close_reason == "slow consumer"
        assert writer.ws.close_code is None and healthy.ws.close_code is None

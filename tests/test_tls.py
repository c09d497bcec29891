"""TLS: with a certificate and key, every route of every server is ``https://`` / ``wss://``.

A throwaway CA (trustme) signs a certificate for 127.0.0.1; clients trust that
CA and nothing else: our Python clients (``verify=``), httpx, and the stock Node
y-websocket client (``NODE_EXTRA_CA_CERTS``). The servers run in this loop
(collab and a relay, through the same hosting code as the CLI), and as
``inkwire up --certfile --keyfile`` processes.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
import trustme

import relays
from clients import DiagramClient, RelayClient
from collab.app import CollabApp
from collab.config import Config
from collab.server import serve
from net.hosting import Listen
from relays.catalogs import dhruva
from relays.serve import wait_listening
from tests.conftest import free_port
from tests.node import INTEROP_DIR, NodeScript, require_node
from tests.service_process import all_ready, inkwire, seven_on_free_ports, stop, wait_for

PEER_SCRIPT = INTEROP_DIR / "peer.mjs"


@dataclass
class Certs:
    ca: Path
    certfile: Path
    keyfile: Path

    @property
    def listen(self) -> Listen:
        return Listen(certfile=str(self.certfile), keyfile=str(self.keyfile))

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    found = Certs(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(found.ca))
    cert.private_key_pem.write_to_path(str(found.keyfile))
    found.certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return found


@asynccontextmanager
async def collab_tls(certs: Certs) -> AsyncIterator[int]:
    port = free_port()
    stop = anyio.Event()
    app = CollabApp(config=Config(grace_period=1.0))
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: serve(app, "127.0.0.1", port, shutdown_trigger=stop.wait, listen=certs.listen)
        )
        await wait_listening("127.0.0.1", port)
        yield port
        stop.set()


@pytest.mark.anyio
async def test_collab_routes_over_https_and_wss(certs: Certs) -> None:
    async with collab_tls(certs) as port:
        base = f"https://127.0.0.1:{port}"
        diagram = f"tls-{uuid.uuid4().hex[:8]}"
        async with (
            DiagramClient(f"wss://127.0.0.1:{port}/yjs", diagram, verify=certs.context()) as a,
            DiagramClient(f"wss://127.0.0.1:{port}/yjs", diagram, verify=certs.context()) as b,
        ):
            await a.wait_for(lambda c: c.sync_count > 0)
            a.add_element({"id": "e1", "type": "rectangle", "x": 1, "y": 2})
            await b.wait_for(lambda c: c.get_element("e1") is not None)
        async with httpx.AsyncClient(verify=certs.context()) as http:
            assert (await http.get(f"{base}/health/live")).status_code == 200
            ready = (await http.get(f"{base}/health/ready")).json()
            assert ready["status"] == "ready"
            assert "inkwire_connections" in (await http.get(f"{base}/metrics")).text
            listed = (await http.get(f"{base}/api/diagrams")).json()
            assert diagram in [d["id"] for d in listed]
            exported = await http.get(f"{base}/api/diagrams/{diagram}")
            assert exported.json()["elements"][0]["id"] == "e1"
            assert (await http.get(f"{base}/")).status_code == 200  # the web app (or its note)
            published = await http.post(f"{base}/events/publish", content=b"not json")
            assert published.status_code == 400  # the relay's own route answered, over TLS
        async with RelayClient(f"wss://127.0.0.1:{port}/events", verify=certs.context()) as events:
            await events.subscribe(f"diagram:{diagram}")
            assert events.session.get("connection_id")
        # no certificate the client trusts: refused
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as http:  # the system's CAs only
                await http.get(f"{base}/health/live")
        # and nothing in the clear
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient() as http:
                await http.get(f"http://127.0.0.1:{port}/health/live", timeout=3)


@pytest.mark.anyio
async def test_a_relay_over_https_and_wss(certs: Certs) -> None:
    async with relays.serve(
        dhruva.catalog,
        port=free_port(),
        certfile=str(certs.certfile),
        keyfile=str(certs.keyfile),
    ) as relay:
        assert relay.url.startswith("wss://") and relay.http_url.startswith("https://")
        async with RelayClient(relay.url, verify=certs.context()) as client:
            await client.subscribe("adapter:a1")
            async with httpx.AsyncClient(verify=certs.context()) as http:
                response = await http.post(
                    f"{relay.http_url}/publish",
                    json={
                        "event": "adapter.activated",
                        "data": {"adapter_id": "a1", "repo": "org/r", "version": "2"},
                    },
                )
                assert response.status_code == 202, response.text
                assert (await http.get(f"{relay.http_url}/health/ready")).status_code == 200
                assert "relay_connections" in (await http.get(f"{relay.http_url}/metrics")).text
            with anyio.fail_after(5):
                async for item in client:
                    assert getattr(item, "event", None) == "adapter.activated"
                    break
    with pytest.raises(ValueError, match="both certfile and keyfile"):
        async with relays.serve(dhruva.catalog, port=free_port(), certfile="x.pem"):
            pass


@pytest.mark.anyio
@pytest.mark.node
async def test_the_stock_node_client_over_wss(certs: Certs) -> None:
    require_node("Node TLS test", ("yjs", "y-websocket", "y-protocols", "lib0", "ws"))
    async with collab_tls(certs) as port:
        url = f"wss://127.0.0.1:{port}/yjs"
        room = f"tls-node-{uuid.uuid4().hex[:8]}"
        trust = {"NODE_EXTRA_CA_CERTS": str(certs.ca)}
        async with (
            NodeScript.spawn(PEER_SCRIPT, "node-tls", env=trust) as node,
            DiagramClient(url, room, verify=certs.context()) as python,
        ):
            reply = await node.request("connect", url=url, room=room, clientName="node-tls")
            assert reply["ok"] == "synced", reply
            await node.request("set", key="from-node", value={"id": "from-node", "v": 1})
            await python.wait_for(lambda c: c.elements.get("from-node") is not None)
            python.add_element({"id": "from-python", "type": "ellipse"})
            await node.request("wait_key", key="from-python", timeout_ms=5000)
            await node.request("close")
        # without the CA, Node refuses the certificate
        async with NodeScript.spawn(PEER_SCRIPT, "node-untrusting") as stranger:
            with pytest.raises(Exception, match=r"timeout|closed|certificate"):
                await stranger.request(
                    "connect", url=url, room=room, clientName="x", timeout_ms=1500
                )


@pytest.mark.processes
@pytest.mark.slow
def test_inkwire_up_serves_all_seven_over_tls(certs: Certs, tmp_path: Path) -> None:
    config, ports = seven_on_free_ports(tmp_path)
    log = tmp_path / "up.log"
    up = inkwire(
        "up", "--config", str(config), "--certfile", str(certs.certfile),
        "--keyfile", str(certs.keyfile), log=log,
    )  # fmt: skip
    try:
        wait_for(
            "all seven ready over https",
            lambda: all_ready(ports.values(), "https", verify=certs.context()),
            log=log,
        )
        assert not all_ready([ports["collab"]])  # and not in the clear
        assert stop(up) == 0
    finally:
        stop(up)
    assert "serving on https://127.0.0.1" in log.read_text()
    assert "relay dhruva on wss://127.0.0.1" in log.read_text()

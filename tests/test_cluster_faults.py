"""Rooms across nodes when things break: real `inkwire serve --redis` processes, a real Redis.

Every test runs node processes sharing one SQLite file (or, where the
``cluster`` fixture is given "postgres", one PostgreSQL database, each node
in a working directory of its own: they share nothing but TCP connections)
and a private redis-server, and real clients: :class:`clients.DiagramClient` (it
reconnects by itself and keeps its edits while offline, as a browser tab
does) and, where a client must die with its node or misbehave, bare
y-websocket peers (tests/yclient.py). Clients that may land on any node
connect through a round-robin TCP balancer (tests/balancer.py), so a dead
node's clients reconnect to another one, as behind a load balancer without
sticky sessions.

What the faults must not break, whatever dies or stops: nothing any client
was sent is lost (it was committed to the shared store first), every node
keeps serving its own clients, and once the fault is over every client and
the store hold the same elements within seconds.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
import pytest
from pycrdt import Map
from websockets.exceptions import ConnectionClosed

from clients.diagram import DiagramClient
from cluster.link import COMMAND_TIMEOUT, MAX_BACKOFF, NODE_TTL_SECONDS
from cluster.rooms import SWEEP_SECONDS
from collab.app import CollabApp
from collab.config import Config
from storage.databases import Database, open_store
from storage.excalidraw import load_doc, plain
from tests.balancer import balancing
from tests.conftest import ROOT, ServerProcess, free_port, running
from tests.databases import Backend, backend_for
from tests.redis_server import RedisServer
from tests.yclient import Peer, peer, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.processes]

DIAGRAM = "plan"
CONVERGE_S = 5.0  # once a fault is over, everything converges within this (plus a reconnect)
RECONNECT_S = MAX_BACKOFF + COMMAND_TIMEOUT  # the link's longest wait before it is back
GONE_S = NODE_TTL_SECONDS + SWEEP_SECONDS  # the others find a dead node gone within this
PROMPT_S = 1.0  # an edit reaches a client of a working node within this, whatever else is broken
STOP_S = 10.0  # how long a SIGSTOP lasts

Elements = dict[str, Any]


# --- the cluster ------------------------------------------------------------------


@dataclass
class Cluster:
    """Node processes on one Redis and one database (a SQLite file, or PostgreSQL)."""

    redis: RedisServer
    db: str  # the --db: a file, or a postgresql:// URL
    start_process: Callable[..., ServerProcess]
    nodes: list[ServerProcess] = field(default_factory=list)
    homes: Path | None = None  # set: each node runs in a working directory of its own

    def args(self, grace: float) -> tuple[str, ...]:
        return ("--redis", self.redis.url, "--db", self.db, "--grace", str(grace))

    def home(self, port: int | None) -> dict[str, Any]:
        return {} if self.homes is None or port is None else {"cwd": self.homes / f"node-{port}"}

    async def start(self, count: int, *, grace: float = 2.0) -> list[ServerProcess]:
        """Start ``count`` nodes at once (each in a thread: starting one blocks)."""
        started: list[ServerProcess | None] = [None] * count

        async def one(i: int) -> None:
            port = free_port()
            start = partial(self.start_process, *self.args(grace), port=port, **self.home(port))
            started[i] = await anyio.to_thread.run_sync(start)

        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(one, i)
        self.nodes = [node for node in started if node is not None]
        return self.nodes

    def kill(self, node: ServerProcess) -> None:
        node.process.kill()
        node.process.wait(timeout=10)

    async def restart(self, node: ServerProcess, *, grace: float = 2.0) -> ServerProcess:
        """SIGKILL a node and start it again on its port; return once it answers."""
        self.kill(node)
        start = partial(
            self.start_process,
            *self.args(grace),
            port=node.port,
            ready=False,
            **self.home(node.port),
        )
        new: ServerProcess = await anyio.to_thread.run_sync(start)
        self.nodes[self.nodes.index(node)] = new
        return new

    def stored(self, diagram: str = DIAGRAM) -> Elements:
        """The diagram's live elements as the shared store has them now."""
        store = open_store(self.db)
        try:
            state = store.state_at(diagram)
        finally:
            store.close()
        elements = load_doc(state).get("elements", type=Map)
        return {k: plain(dict(v)) for k, v in elements.items() if not v.get("isDeleted")}

    async def exported(self, diagram: str = DIAGRAM) -> Elements:
        """The diagram as `inkwire export --db` writes it, by element id."""
        with anyio.fail_after(30):
            result = await anyio.run_process(
                [sys.executable, "-m", "collab.cli", "export", diagram, "--db", self.db],
                cwd=ROOT,
            )
        elements = json.loads(result.stdout)["elements"]
        ids = [e["id"] for e in elements]
        assert len(ids) == len(set(ids)), "an element is exported twice"
        return {e["id"]: e for e in elements}


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest, redis_server: RedisServer, server_process: Any, tmp_path: Path
) -> Iterator[Cluster]:
    """The nodes' cluster: on SQLite, or (``indirect`` parameter "postgres") PostgreSQL."""
    kind = getattr(request, "param", "sqlite")
    with backend_for(kind, tmp_path) as database:
        homes = tmp_path / "homes" if kind == "postgres" else None
        yield Cluster(redis_server, database.target, server_process, homes=homes)


async def health(node: ServerProcess) -> tuple[int, dict[str, Any]]:
    """``/health/ready``, which must answer promptly whatever Redis does."""
    async with httpx.AsyncClient(timeout=PROMPT_S) as http:
        response = await http.get(node.http_url + "/health/ready")
    return response.status_code, response.json()


async def wait_health(nodes: Iterable[ServerProcess], status: int, timeout: float) -> None:
    with anyio.fail_after(timeout):
        for node in nodes:
            while (await health(node))[0] != status:
                await anyio.sleep(0.05)


# --- clients ------------------------------------------------------------------------


@asynccontextmanager
async def diagram_client(
    url: str, name: str, diagram: str = DIAGRAM
) -> AsyncIterator[DiagramClient]:
    client = DiagramClient(url, diagram, user={"name": name}, backoff=(0.05, MAX_BACKOFF))
    async with client:
        yield client


@asynccontextmanager
async def diagram_clients(
    urls: Sequence[str], diagram: str = DIAGRAM
) -> AsyncIterator[list[DiagramClient]]:
    """One client per URL, connected one after the other (a balancer places them in turn)."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(diagram_client(url, f"c{i}", diagram))
            for i, url in enumerate(urls)
        ]


def element(key: str, n: int = 0) -> dict[str, Any]:
    return {"id": key, "type": "rectangle", "x": n, "y": 0, "width": 10, "height": 10}


class Writers:
    """A task per client adding an element every ``interval`` until stopped; what each wrote."""

    def __init__(self, clients: Sequence[DiagramClient], interval: float = 0.02) -> None:
        self.clients = clients
        self.interval = interval
        self.written: set[str] = set()
        self._stop = anyio.Event()

    async def _write(self, client: DiagramClient, prefix: str) -> None:
        n = 0
        while not self._stop.is_set():
            key = f"{prefix}-{n}"
            client.add_element(element(key, n))  # offline too: the next sync delivers it
            self.written.add(key)
            n += 1
            await anyio.sleep(self.interval)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Writers]:
        async with anyio.create_task_group() as tg:
            for i, client in enumerate(self.clients):
                tg.start_soon(self._write, client, f"w{i}")
            try:
                yield self
            finally:
                self._stop.set()


async def write_until_closed(p: Peer, prefix: str) -> None:
    """A bare peer's edits, until its socket drops (it does not come back: a closed tab)."""
    n = 0
    try:
        while True:
            await p.send_set(f"{prefix}-{n}", element(f"{prefix}-{n}", n))
            n += 1
            await anyio.lowlevel.checkpoint()  # as fast as the node takes them: big batches
    except ConnectionClosed:
        pass


def keys(client: DiagramClient) -> set[str]:
    return set(client.elements_snapshot())


def elements_of(client: DiagramClient) -> Elements:
    return {k: plain(v) for k, v in client.elements_snapshot().items()}


async def delivery_time(
    sender: DiagramClient, receiver: DiagramClient, key: str, limit: float = PROMPT_S
) -> float:
    """Seconds from ``sender`` adding an element to ``receiver`` having it (at most ``limit``)."""
    began = time.monotonic()
    sender.add_element(element(key))
    await receiver.wait_for(lambda c: key in c.elements, timeout=limit)
    return time.monotonic() - began


async def converged(
    cluster: Cluster,
    clients: Sequence[DiagramClient],
    required: set[str],
    timeout: float,
    allowed: set[str] | None = None,
) -> Elements:
    """Wait until every client and the store hold the same elements, ``required`` among
    them (and nothing but ``allowed``, by default nothing else); return them."""

    def state() -> tuple[list[set[str]], set[str]]:
        return [keys(c) for c in clients], set(cluster.stored())

    try:
        with anyio.fail_after(timeout):
            while True:
                held, stored = state()
                if required <= stored and all(h == stored for h in held):
                    break
                await anyio.sleep(0.05)
    except TimeoutError:
        held, stored = state()
        report = [f"store: missing {sorted(required - stored)[:10]}"]
        for client, have in zip(clients, held, strict=True):
            report.append(
                f"{client.user}: missing {sorted(stored - have)[:10]} "
                f"({len(stored - have)}), not in the store {sorted(have - stored)[:10]}"
            )
        raise AssertionError("no convergence:\n" + "\n".join(report)) from None
    final = cluster.stored()
    for client in clients:
        assert elements_of(client) == final, f"{client.user} differs from the store"
    unexpected = set(final) - (required if allowed is None else allowed)
    assert not unexpected, f"elements nobody wrote: {sorted(unexpected)[:10]}"
    return final


# --- a node dies --------------------------------------------------------------------


@pytest.mark.parametrize("cluster", ["sqlite", "postgres"], indirect=True)
async def test_a_node_killed_while_its_clients_edit_loses_nothing_anyone_was_sent(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2)
    async with (
        balancing([a.port, b.port]) as balancer,
        diagram_clients([balancer.yjs_url] * 4) as clients,
        peer(f"{a.yjs_url}/{DIAGRAM}", 7001) as doomed,  # a tab that goes with its node
    ):
        assert balancer.routes == [0, 1, 0, 1]
        on_a = [clients[0], clients[2]]
        writers = Writers(clients)
        async with writers.running(), anyio.create_task_group() as tg:
            tg.start_soon(write_until_closed, doomed, "doomed")
            await anyio.sleep(1.0)
            cluster.kill(a)
            seen = [keys(c) for c in clients]  # what each was sent, or wrote itself
            with anyio.fail_after(5):
                await doomed.closed.wait()
            from_doomed = set().union(*seen) & {k for k in doomed.snapshot() if "doomed" in k}
            assert from_doomed, "nobody received the doomed tab's edits before the kill"
            # its clients come back through the balancer, to the node that is left
            for client in on_a:
                await client.wait_for(lambda c: c.sync_count >= 2, timeout=5)
            await anyio.sleep(1.0)  # and go on editing there
        assert set(balancer.routes[4:]) == {1}
        # what reached a client before the kill is kept; the doomed tab's edits that were
        # on their way to a client when its node died may arrive too, and so may those it
        # saved but never sent anyone, once node b has found it gone
        required = set().union(*seen) | writers.written
        doomed_wrote = {k for k in doomed.snapshot() if k.startswith("doomed")}
        stopped = time.monotonic()
        final = await converged(
            cluster, clients, required, timeout=GONE_S + CONVERGE_S, allowed=required | doomed_wrote
        )
        converge_s = time.monotonic() - stopped
        assert from_doomed <= set(final)
        assert await cluster.exported() == final
    print(f"converged {converge_s:.2f} s after the writers stopped")


def pointer_of(watcher: DiagramClient, client: DiagramClient) -> Any:
    return watcher.peers().get(client.client_id, {}).get("pointer")


async def test_a_dead_nodes_client_shows_its_presence_from_its_new_node(cluster: Cluster) -> None:
    """Presence follows a client that reconnects to another node (its old node died)."""
    a, b = await cluster.start(2)
    async with (
        balancing([a.port, b.port]) as balancer,
        diagram_clients([balancer.yjs_url] * 2) as (moving, staying),
    ):
        moving.set_presence(pointer=(1, 1))
        await staying.wait_for(
            lambda c: pointer_of(c, moving) == {"x": 1, "y": 1, "tool": "pointer"}
        )
        cluster.kill(a)
        await moving.wait_for(lambda c: c.sync_count >= 2, timeout=5)  # now on b
        moving.set_presence(pointer=(2, 2))
        await staying.wait_for(
            lambda c: pointer_of(c, moving) == {"x": 2, "y": 2, "tool": "pointer"},
            timeout=2 * PROMPT_S,
        )


# --- Redis dies, stops, forgets -----------------------------------------------------


@pytest.mark.parametrize("wipe", [False, True], ids=["restarted", "restarted-empty"])
async def test_redis_killed_and_restarted_editing_resumes_everywhere(
    cluster: Cluster, wipe: bool
) -> None:
    a, b = await cluster.start(2)
    async with diagram_client(a.yjs_url, "archivist", "archive") as archivist:
        for i in range(5):
            archivist.add_element(element(f"saved-{i}", i))
        await wait_until(lambda: len(cluster.stored("archive")) == 5)
    async with (
        balancing([a.port, b.port]) as balancer,
        diagram_clients([balancer.yjs_url] * 4) as clients,
    ):
        assert balancer.routes == [0, 1, 0, 1]
        writers = Writers(clients)
        async with writers.running():
            await anyio.sleep(0.5)
            before = set().union(*(keys(c) for c in clients))
            cluster.redis.kill()
            await wait_health([a, b], 503, timeout=RECONNECT_S + 1)
            await anyio.sleep(0.5)
            cluster.redis.start(wipe=wipe)
            await wait_health([a, b], 200, timeout=RECONNECT_S + 1)
            # editing crosses nodes again, by itself
            assert await delivery_time(clients[0], clients[1], "after-a") < PROMPT_S
            assert await delivery_time(clients[1], clients[0], "after-b") < PROMPT_S
        expected = before | writers.written | {"after-a", "after-b"}
        await converged(cluster, clients, expected, timeout=CONVERGE_S)
        names = {f"c{i}" for i in range(4)}
        for client in clients:
            others = names - {client.user["name"]}  # type: ignore[index]
            await client.wait_for(
                lambda c, o=others: (
                    {p.get("user", {}).get("name") for p in c.peers().values()} >= o
                ),
                timeout=CONVERGE_S,
            )
    # a diagram nobody had open is as it was saved
    async with diagram_client(b.yjs_url, "reader", "archive") as reader:
        assert keys(reader) == {f"saved-{i}" for i in range(5)}


async def test_redis_stopped_nothing_hangs_nothing_is_duplicated(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    async with diagram_clients([a.yjs_url, a.yjs_url, b.yjs_url, b.yjs_url]) as clients:
        a1, a2, b1, b2 = clients
        writers = Writers(clients, interval=0.05)
        latencies: list[float] = []
        statuses: list[int] = []
        async with writers.running():
            await delivery_time(a1, b1, "before")
            cluster.redis.pause()
            stopped = time.monotonic()
            probe = 0
            while time.monotonic() - stopped < STOP_S:
                # each node goes on serving its own clients, promptly
                latencies.append(await delivery_time(a1, a2, f"probe-a{probe}"))
                latencies.append(await delivery_time(b2, b1, f"probe-b{probe}"))
                statuses += [(await health(node))[0] for node in (a, b)]
                probe += 1
                await anyio.sleep(0.4)
            cluster.redis.resume()
        resumed = time.monotonic()
        assert max(latencies) < PROMPT_S
        assert 503 in statuses  # the heartbeat noticed a Redis that no longer answers
        expected = writers.written | {"before"}
        expected |= {f"probe-{n}{i}" for n in "ab" for i in range(probe)}
        final = await converged(cluster, clients, expected, timeout=CONVERGE_S + RECONNECT_S)
        converge_s = time.monotonic() - resumed
        assert len(final) == len(expected)
        exported = await cluster.exported()
        assert exported == final
    print(f"converged {converge_s:.2f} s after SIGCONT; slowest local edit {max(latencies):.3f} s")


async def test_without_redis_each_node_serves_durably_then_all_catch_up(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    async with diagram_clients([a.yjs_url, b.yjs_url]) as (alice, bob):
        writers = Writers([alice, bob], interval=0.05)
        async with writers.running():
            await delivery_time(alice, bob, "before")
            cluster.redis.kill()
            await wait_health([a, b], 503, timeout=RECONNECT_S + 1)
            for node in (a, b):
                assert (await health(node))[1]["redis"] == "failing"
            # two tabs on node a, editing with Redis gone
            async with (
                peer(f"{a.yjs_url}/{DIAGRAM}", 8001) as tab,
                peer(f"{a.yjs_url}/{DIAGRAM}", 8002) as other_tab,
            ):
                for i in range(20):
                    await tab.send_set(f"tab-{i}", element(f"tab-{i}", i))
                await wait_until(
                    lambda: {f"tab-{i}" for i in range(20)} <= set(other_tab.snapshot())
                )
                sent_on_a = set(other_tab.snapshot())
            # node a restarts, Redis still gone: what it served is in the store
            a = await cluster.restart(a)
            status, body = await health(a)
            assert status == 503 and body["redis"] == "failing"
            async with peer(f"{a.yjs_url}/{DIAGRAM}", 8003) as fresh:
                assert sent_on_a <= set(fresh.snapshot())
            await alice.wait_for(lambda c: c.sync_count >= 2, timeout=5)
            await anyio.sleep(0.5)
            cluster.redis.start()
            back = time.monotonic()
            await wait_health([a, b], 200, timeout=RECONNECT_S + 1)
        expected = writers.written | sent_on_a | {"before"}
        await converged(cluster, [alice, bob], expected, timeout=CONVERGE_S)
    print(f"converged {time.monotonic() - back:.2f} s after Redis came back")


# --- a slow node --------------------------------------------------------------------


async def test_a_stopped_node_holds_nobody_up_and_catches_up(cluster: Cluster) -> None:
    a, b, c = await cluster.start(3)
    async with diagram_clients([a.yjs_url, b.yjs_url, c.yjs_url]) as clients:
        on_a, on_b, on_c = clients
        writers = Writers(clients, interval=0.05)
        latencies: list[float] = []
        async with writers.running():
            await delivery_time(on_b, on_a, "before")
            a.process.send_signal(signal.SIGSTOP)
            try:
                stopped = time.monotonic()
                probe = 0
                while time.monotonic() - stopped < STOP_S:
                    latencies.append(await delivery_time(on_b, on_c, f"probe-b{probe}"))
                    latencies.append(await delivery_time(on_c, on_b, f"probe-c{probe}"))
                    probe += 1
                    await anyio.sleep(0.4)
            finally:
                a.process.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        assert max(latencies) < PROMPT_S
        expected = writers.written | {"before"}
        expected |= {f"probe-{n}{i}" for n in "bc" for i in range(probe)}
        await converged(cluster, clients, expected, timeout=CONVERGE_S)
    print(
        f"converged {time.monotonic() - resumed:.2f} s after SIGCONT; "
        f"slowest edit between the others {max(latencies):.3f} s"
    )


# --- many rooms ---------------------------------------------------------------------

ROOMS = 200
GARBAGE = b"\x00\x02\x05\x01\x02"  # a sync update whose payload is cut short
HUGE_BYTES = 5 << 20


async def test_many_rooms_one_bad_one_huge_and_the_others_carry_on(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    # room r: its first peer on a, its second on b, its third on either
    homes = [(a.yjs_url, b.yjs_url, (a.yjs_url, b.yjs_url)[r % 2]) for r in range(ROOMS)]
    rooms: list[dict[int, Peer]] = [{} for _ in range(ROOMS)]
    connecting = anyio.Semaphore(16)
    stop = anyio.Event()

    async def member(r: int, j: int) -> None:
        async with connecting:
            context = peer(f"{homes[r][j]}/many-{r}", 10_000 + 3 * r + j)
            p = await context.__aenter__()
        try:
            rooms[r][j] = p
            await stop.wait()
        finally:
            await context.__aexit__(None, None, None)

    def room_keys(r: int) -> list[set[str]]:
        return [set(p.snapshot()) for p in rooms[r].values() if not p.closed.is_set()]

    async with anyio.create_task_group() as tg:
        began = time.monotonic()
        for r in range(ROOMS):
            for j in range(3):
                tg.start_soon(member, r, j)
        await wait_until(lambda: sum(map(len, rooms)) == 3 * ROOMS, timeout=60)
        opened_s = time.monotonic() - began
        for r in range(ROOMS):
            for j, p in rooms[r].items():
                await p.send_set(f"r{r}-p{j}", element(f"r{r}-p{j}", j))
        await wait_until(
            lambda: all(all(len(k) == 3 for k in room_keys(r)) for r in range(ROOMS)), timeout=30
        )

        # room 0: a client sends garbage; room 1: a client sends a multi-megabyte update
        await rooms[0][2].ws.send(GARBAGE)
        huge = {"id": "huge", "type": "text", "text": "x" * HUGE_BYTES}
        huge_sent = time.monotonic()
        tg.start_soon(rooms[1][0].send_set, "huge", huge)
        # meanwhile every other room's edits cross nodes as ever
        latencies: dict[int, float] = {}

        async def probe(r: int) -> None:
            sender, receiver = rooms[r][1], rooms[r][0]  # from node b to node a
            began = time.monotonic()
            await sender.send_set(f"probe-{r}", element(f"probe-{r}"))
            await wait_until(lambda: f"probe-{r}" in receiver.elements, timeout=10)
            latencies[r] = time.monotonic() - began

        async with anyio.create_task_group() as probes:
            for r in range(2, ROOMS):
                probes.start_soon(probe, r)
        with anyio.fail_after(5):
            await rooms[0][2].closed.wait()
        assert rooms[0][2].close_code == 1007
        await wait_until(lambda: all("huge" in p.elements for p in rooms[1].values()), timeout=30)
        huge_s = time.monotonic() - huge_sent
        await rooms[0][0].send_set("after-garbage", element("after-garbage"))
        await wait_until(lambda: "after-garbage" in rooms[0][1].elements)

        for r in range(ROOMS):  # every room converged, with its store
            await wait_until(lambda r=r: len({frozenset(k) for k in room_keys(r)}) == 1)
            assert set(cluster.stored(f"many-{r}")) == room_keys(r)[0]
        stop.set()
    slowest = max(latencies.values())
    print(
        f"{3 * ROOMS} peers opened in {opened_s:.1f} s; huge update everywhere in {huge_s:.2f} s; "
        f"slowest edit of the other rooms meanwhile {slowest:.3f} s"
    )
    assert slowest < 2 * PROMPT_S


# --- the checkpoint lease -----------------------------------------------------------


@dataclass
class Releases:
    """Every node's release calls on one diagram: how many, and how many at once at most."""

    calls: int = 0
    running: int = 0
    most_at_once: int = 0


class CountingStore:
    """A node's store on the shared database, counting checkpoint/compaction runs across nodes."""

    def __init__(self, store: Database, releases: Releases) -> None:
        self.store = store
        self.releases = releases

    @property
    def healthy(self) -> bool:
        return self.store.healthy

    async def load(self, diagram: str) -> bytes | None:
        return await self.store.load(diagram)

    async def append(self, diagram: str, updates: Any, origins: Any = None) -> int:
        return await self.store.append(diagram, updates, origins)

    async def maintain(self, diagram: str, saved_state: Any = None) -> None:
        await self.store.maintain(diagram, saved_state)

    async def release(self, diagram: str) -> None:
        counts = self.releases
        counts.calls += 1
        counts.running += 1
        counts.most_at_once = max(counts.most_at_once, counts.running)
        try:
            await anyio.sleep(1.0)  # a long checkpoint: the other node's turn comes meanwhile
            await self.store.release(diagram)
        finally:
            counts.running -= 1


async def test_one_node_at_a_time_checkpoints_a_diagram(
    redis_server: RedisServer, backend: Backend
) -> None:
    releases = Releases()
    async with AsyncExitStack() as stack:
        nodes = []
        for _ in range(2):
            app = CollabApp(
                store=CountingStore(backend.open(), releases),
                config=Config(redis_url=redis_server.url, grace_period=0.3),
            )
            nodes.append(await stack.enter_async_context(running(app)))
        for node in nodes:
            await wait_until(lambda n=node: n.app.link.up, timeout=10)

        # both nodes unload the diagram at once: one checkpoints it
        async with (
            peer(f"{nodes[0].yjs_url}/race", 1) as alice,
            peer(f"{nodes[1].yjs_url}/race", 2) as bob,
        ):
            for i in range(20):
                await alice.send_set(f"a{i}", element(f"a{i}"))
                await bob.send_set(f"b{i}", element(f"b{i}"))
            await wait_until(lambda: len(alice.snapshot()) == len(bob.snapshot()) == 40)
        await wait_until(lambda: all("race" not in n.app.rooms.rooms for n in nodes), timeout=10)
        assert (releases.calls, releases.most_at_once) == (1, 1)
        # and did it: the checkpoint recorded the diagram's summary
        summary = backend.open().summary("race")
        assert summary is not None
        assert (summary.summary_seq, summary.live_elements) == (summary.last_seq, 40)

        # both race to release a diagram they have open, again and again
        async with (
            peer(f"{nodes[0].yjs_url}/race", 3),
            peer(f"{nodes[1].yjs_url}/race", 4),
        ):
            rooms = [n.app.rooms.rooms["race"] for n in nodes]
            for round_ in range(3):
                async with anyio.create_task_group() as tg:
                    for room in rooms:
                        tg.start_soon(room.persistence._release)  # type: ignore[attr-defined]
                assert (releases.calls, releases.most_at_once) == (2 + round_, 1)
        lease = await nodes[0].app.link.redis.get(nodes[0].app.link.key("lease", "race"))
        assert lease is None  # given back, not left to expire

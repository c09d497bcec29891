"""Fixtures: real servers on free loopback ports, cleaned up after each test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from collab.app import CollabApp
from collab.config import Config
from collab.server import serve
from tests.databases import KINDS, Backend, backend_for
from tests.node import in_ci
from tests.postgres_server import PostgresServer, postgres_binaries_missing
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ("tests.browser", "tests.markers")  # Chromium fixtures; test kinds


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerAddress:
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def yjs_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/yjs"


@dataclass
class RunningServer(ServerAddress):
    app: CollabApp


async def wait_ready(url: str, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    if (await client.get(f"{url}/health/ready")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.02)


@asynccontextmanager
async def running(app: CollabApp) -> AsyncIterator[RunningServer]:
    """Serve ``app`` in this event loop (asyncio or trio) on a free port until exit."""
    server = RunningServer(free_port(), app)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(app, "127.0.0.1", server.port, shutdown_trigger=stop.wait))
        await wait_ready(server.http_url)
        yield server
        stop.set()


@pytest.fixture
async def collab_server() -> AsyncIterator[RunningServer]:
    """An in-process collab server (hypercorn on a free port, memory store)."""
    async with running(CollabApp(config=Config(grace_period=1.0))) as server:
        yield server


@pytest.fixture
def make_server() -> Callable[..., AbstractAsyncContextManager[RunningServer]]:
    """In-process servers with custom settings: ``async with make_server(config)``."""

    def start(
        config: Config | None = None, app: CollabApp | None = None
    ) -> AbstractAsyncContextManager[RunningServer]:
        return running(app or CollabApp(config=config or Config(grace_period=1.0)))

    return start


@dataclass
class ServerProcess(ServerAddress):
    process: subprocess.Popen[bytes]


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[object]:
    """Start ``inkwire serve`` as a real subprocess; every one is killed at teardown."""
    started: list[ServerProcess] = []

    def start(
        *args: str, port: int | None = None, ready: bool = True, cwd: Path | None = None
    ) -> ServerProcess:
        """Return once it answers ``/health/ready`` with 200 (with ``ready=False``, at all:
        a cluster node whose Redis is down serves, and answers 503). ``cwd``: a working
        directory of its own (default: the checkout)."""
        port = port or free_port()
        if "--db" not in args:
            args = (*args, "--db", str(tmp_path / f"inkwire-{port}.db"))
        log = open(tmp_path / f"server-{port}.log", "ab")  # noqa: SIM115 (a restart appends)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if cwd is not None:
            cwd.mkdir(parents=True, exist_ok=True)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        process = subprocess.Popen(
            [sys.executable, "-m", "collab.cli", "serve", "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd or ROOT,
            env=env,
        )
        server = ServerProcess(port, process)
        started.append(server)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"server exited: {(tmp_path / f'server-{port}.log').read_text()}"
                )
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code
                if status == 200 or not ready:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # not up, or up but not ready (503): ask again shortly
        raise RuntimeError("server did not become ready")

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for this test (the shared one is never touched), stopped after."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A database of each kind (tests/databases.py): one test, both stores."""
    with backend_for(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A private PostgreSQL (initdb in a temp dir, a free port), started; removed after.
    ``indirect`` parameter: a password TCP clients must give.

    Without PostgreSQL's server binaries the test is skipped, saying so (under CI: fails)."""
    missing = postgres_binaries_missing()
    if missing:
        if in_ci():
            pytest.fail(f"CI is set, so this test must run: {missing}")
        pytest.skip(f"private PostgreSQL NOT RUN: {missing}")
    server = PostgresServer(password=getattr(request, "param", None))
    try:
        server.start()
        yield server
    finally:
        server.remove()

"""``inkwire up``: every enabled server of the settings, as supervised worker processes.

The supervisor binds each server's port once, then starts its workers
(``python -m service.worker``), each handed the listening socket (``pass_fds``)
and, on its stdin, the settings (secrets never go on a command line). Workers of
one server accept on that one socket: the port stays bound while a worker
restarts, so no connection is refused meanwhile, and a second ``inkwire up`` on
the same port fails at once instead of quietly sharing it (which SO_REUSEPORT
would allow). More than one worker per server needs Redis, which is how they
share rooms and channels.

A worker that exits while the supervisor is not stopping is started again
(after 0.1 s, doubling to 5 s while it keeps dying within 5 s of its start;
after 5 such quick deaths in a row the supervisor gives up, stops everything and
exits 1). SIGINT or SIGTERM stops them all: SIGTERM to every worker, SIGKILL to
any still running after 10 s. Workers run in sessions of their own, so a
terminal's Ctrl-C reaches only the supervisor, and each one stops by itself
when its stdin closes, i.e. when the supervisor is gone, even by SIGKILL.

One log stream: each worker's output (stdout and stderr, tracebacks included)
is read line by line and written to stderr with the worker named: ``collab |``,
``dhruva |``, ``collab.2 |`` in text; in JSON the workers' own lines carry
``service`` and ``worker`` and anything else is wrapped into such an object.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import anyio
from anyio.abc import ByteReceiveStream, Process

from service import logs
from service.settings import Settings, dump
from service.sources import Resolved, port_clashes

log = logging.getLogger("inkwire.up")

BIND_SECONDS = 10.0  # a restarted `up` may find its old workers still closing the port
STOP_SECONDS = 10.0
QUICK_DEATH = 5.0
MAX_QUICK_DEATHS = 5
MAX_LINE = 64 * 1024


@dataclass
class Worker:
    service: str
    number: int
    fd: int
    label: str
    process: Process | None = None


def with_dashboard_relays(settings: Settings) -> Settings:
    """The settings with ``collab.dashboard_relays`` defaulting to the relays ``up`` runs."""
    if settings.collab.dashboard_relays is not None:
        return settings
    relays = [s.url for s in settings.servers() if s.service != "collab"]
    collab = settings.collab.model_copy(update={"dashboard_relays": relays})
    return settings.model_copy(update={"collab": collab})


def worker_count(settings: Settings) -> int:
    if settings.workers is not None:
        return settings.workers
    return (os.cpu_count() or 1) if settings.redis is not None else 1


def run(resolved: Resolved, only: list[str] | None = None) -> int:
    settings = resolved.settings
    fmt = settings.log.format
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(logs.JsonFormatter({"service": "up", "worker": 0}))
    else:
        handler.setFormatter(logging.Formatter(f"{'up':<14} | {logs.TEXT_FORMAT}"))
    logging.basicConfig(level=settings.log.level, handlers=[handler], force=True)
    for note in resolved.notes:
        log.warning("%s", note)
    problems = port_clashes(resolved)
    servers = [s for s in settings.servers() if not only or s.service in only]
    unknown = sorted(set(only or ()) - {s.service for s in settings.servers()})
    if unknown:
        problems.append(f"--only {', '.join(unknown)}: not an enabled server of the settings")
    if not servers:
        problems.append("no server is enabled")
    if problems:
        for problem in problems:
            print(f"inkwire: {problem}", file=sys.stderr)
        return 2
    supervisor = Supervisor(with_dashboard_relays(settings))
    try:
        for server in servers:
            supervisor.listen(server.service, server.host, server.port)
    except OSError as exc:
        print(f"inkwire: {exc}", file=sys.stderr)
        supervisor.close()
        return 2
    try:
        return anyio.run(supervisor.run)
    finally:
        supervisor.close()


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = worker_count(settings)
        self.sockets: dict[str, socket.socket] = {}
        self.workers: list[Worker] = []
        self.stopping = False
        self.stopped: anyio.Event  # made in run(), inside the event loop
        self.exit_code = 0
        self.spec = dump(settings)

    def listen(self, service: str, host: str, port: int) -> None:
        """Bind one server's port (retrying while a previous run's workers let go of it)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        deadline = time.monotonic() + BIND_SECONDS
        while True:
            try:
                sock = socket.create_server((host, port), family=family, backlog=1024)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise OSError(exc.errno, f"{service}: cannot listen on {host}:{port}: "
                                  f"{exc.strerror}") from exc  # fmt: skip
                time.sleep(0.2)
        self.sockets[service] = sock
        for number in range(1, self.count + 1):
            label = service if self.count == 1 else f"{service}.{number}"
            self.workers.append(Worker(service, number, sock.fileno(), label))

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()

    async def run(self) -> int:
        self.stopped = anyio.Event()
        log.info(
            "starting %d servers, %d worker%s each",
            len(self.sockets),
            self.count,
            "" if self.count == 1 else "s",
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._signals)
            tg.start_soon(self._reaper)
            async with anyio.create_task_group() as workers:
                for worker in self.workers:
                    workers.start_soon(self._keep, worker)
            tg.cancel_scope.cancel()  # every worker is done: the watchers too
        log.info("stopped")
        return self.exit_code

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("received %s, stopping every worker", signal.Signals(signum).name)
                self.stop()

    def stop(self) -> None:
        """SIGTERM to every worker, and no more restarts."""
        if self.stopping:
            return
        self.stopping = True
        self.stopped.set()
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.terminate()

    async def _reaper(self) -> None:
        """SIGKILL to the workers still running STOP_SECONDS after the stop."""
        await self.stopped.wait()
        await anyio.sleep(STOP_SECONDS)
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                log.warning("%s did not stop in %.0f s: killing it", worker.label, STOP_SECONDS)
                worker.process.kill()

    async def _keep(self, worker: Worker) -> None:
        """Run the worker, and again whenever it dies, until the supervisor stops."""
        quick_deaths = 0
        while not self.stopping:
            started = time.monotonic()
            code = await self._run_once(worker)
            if self.stopped.is_set():
                return
            lived = time.monotonic() - started
            quick_deaths = quick_deaths + 1 if lived < QUICK_DEATH else 0
            if quick_deaths >= MAX_QUICK_DEATHS:
                log.error(
                    "%s died %d times within %.0f s of starting (last exit %s): giving up",
                    worker.label, quick_deaths, QUICK_DEATH, _exit(code),
                )  # fmt: skip
                self.exit_code = 1
                self.stop()
                return
            delay = min(0.1 * 2**quick_deaths, 5.0) if quick_deaths else 0.1
            log.warning("%s exited (%s): restarting in %.1f s", worker.label, _exit(code), delay)
            with anyio.move_on_after(delay):
                await self.stopped.wait()

    async def _run_once(self, worker: Worker) -> int:
        process = await anyio.open_process(
            [sys.executable, "-m", "service.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(worker.fd,),
            start_new_session=True,
        )
        worker.process = process
        log.info("%s started (pid %d)", worker.label, process.pid)
        assert process.stdin is not None
        assert process.stdout is not None
        spec = {
            "settings": self.spec,
            "service": worker.service,
            "worker": worker.number,
            "fd": worker.fd,
        }
        with contextlib.suppress(anyio.BrokenResourceError, OSError):  # died at once: see its code
            await process.stdin.send(json.dumps(spec).encode() + b"\n")
        try:
            await self._pump(worker, process.stdout)
            with anyio.CancelScope(shield=True):
                code = await process.wait()
        finally:
            worker.process = None
            with anyio.CancelScope(shield=True):
                await process.aclose()
        return code

    async def _pump(self, worker: Worker, stream: ByteReceiveStream) -> None:
        """Copy the worker's output to our stderr, a line at a time, naming the worker."""
        pending = b""
        while True:
            try:
                chunk = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE:
                lines.append(pending)
                pending = b""
            for line in lines:
                self._emit(worker, line.decode("utf-8", "replace"))
        if pending:
            self._emit(worker, pending.decode("utf-8", "replace"))

    def _emit(self, worker: Worker, line: str) -> None:
        if self.settings.log.format == "json":
            if not line.startswith("{"):
                line = json.dumps(
                    {
                        "time": logs.iso_time(time.time()),
                        "level": "ERROR",
                        "service": worker.service,
                        "worker": worker.number,
                        "logger": "stderr",
                        "message": line,
                    },
                    ensure_ascii=False,
                )
        else:
            line = f"{worker.label:<14} | {line}"
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"

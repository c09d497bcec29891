"""Node-driven tests: find Node and the interop packages, and drive a Node script.

Without Node or the packages the tests skip with the reason; under CI they
must run, so a missing install step fails instead of passing quietly.

:class:`NodeScript` is the one driver of the scripts in ``tests/interop``
(``peer.mjs``, ``relay_client.mjs``): each reads one JSON command per line on
stdin (``{"id", "cmd", ...}``) and answers on stdout with a line carrying the
same ``id`` (and ``error`` when the command failed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Self

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

INTEROP_DIR = Path(__file__).parent / "interop"


def missing_node(packages: Iterable[str]) -> str | None:
    if shutil.which("node") is None:
        return "`node` is not on PATH (install Node.js 20.19+)"
    missing = [
        name
        for name in packages
        if not (INTEROP_DIR / "node_modules" / name / "package.json").is_file()
    ]
    if missing:
        return (
            f"Node packages not installed in {INTEROP_DIR}/node_modules ({', '.join(missing)}): "
            "run `make test` or `cd tests/interop && npm ci`"
        )
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_node(what: str, packages: Iterable[str]) -> None:
    """Skip (or, under CI, fail) the calling test when Node or a package is missing."""
    reason = missing_node(packages)
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI is set, so the {what} must run: {reason}")
    pytest.skip(f"{what} NOT RUN: {reason}")


class NodeError(Exception):
    """A Node script answered a command with an error, or died."""


class NodeScript:
    """One Node process running a script of ``tests/interop``, driven by JSON lines.

    Use ``async with Subclass.spawn(script, name) as node:``; the process is
    ended on exit (the ``goodbye`` command if the class has one, then stdin
    closed, then killed, each step bounded). Commands may be issued
    concurrently from several tasks: replies are matched by ``id``.
    """

    goodbye: str | None = None  # a command that ends the script politely
    margin_s = 5.0  # added to a command's own ``timeout_ms`` (5 s by default)

    def __init__(self, process: Process, name: str) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.name = name
        self.process = process
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._next_id = 0
        self._replies: dict[Any, dict[str, Any]] = {}
        self.stray_output: list[bytes] = []  # lines that were not replies (a library printed)
        self._read_lock = anyio.Lock()
        self._write_lock = anyio.Lock()

    @classmethod
    @asynccontextmanager
    async def spawn(
        cls, script: Path, name: str = "node", env: Mapping[str, str] | None = None
    ) -> AsyncIterator[Self]:
        """``env``: added to this process's environment (e.g. NODE_EXTRA_CA_CERTS)."""
        process = await anyio.open_process(
            ["node", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # inherited: pytest shows it with a failing test
            cwd=INTEROP_DIR,
            env={**os.environ, **env} if env else None,
        )
        node = cls(process, name)
        try:
            yield node
        finally:
            await node.aclose()

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def send(self, cmd: str, **kw: Any) -> int:
        """Write one command; return its id (for :meth:`receive`)."""
        self._next_id += 1
        rid = self._next_id
        line = json.dumps({"id": rid, "cmd": cmd, **kw}) + "\n"
        async with self._write_lock:
            try:
                await self._stdin.send(line.encode())
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise NodeError(f"{self.name}: cannot send {cmd!r}: {exc!r}") from exc
        return rid

    async def receive(self, rid: int, *, limit_s: float = 10.0) -> dict[str, Any]:
        """Wait (at most ``limit_s``) for the reply to command ``rid``.

        Raise NodeError if the reply is an error or the script died.
        """
        with anyio.fail_after(limit_s):
            while rid not in self._replies:
                async with self._read_lock:
                    if rid in self._replies:
                        break
                    try:
                        line = await self._stdout.receive_until(b"\n", 16 * 1024 * 1024)
                    except (anyio.EndOfStream, anyio.IncompleteRead) as exc:
                        raise NodeError(
                            f"{self.name} exited (code {self.process.returncode}) "
                            f"before answering command {rid}"
                        ) from exc
                    try:
                        message = json.loads(line)
                    except ValueError:
                        self.stray_output.append(line)
                        continue
                    self._replies[message.get("id")] = message
        reply = self._replies.pop(rid)
        if "error" in reply:
            raise NodeError(f"{self.name}: {reply['error']}")
        return reply

    async def request(self, cmd: str, *, limit_s: float | None = None, **kw: Any) -> dict[str, Any]:
        """Send a command and wait for its reply: by default the script's own
        ``timeout_ms`` for the command plus :attr:`margin_s`."""
        if limit_s is None:
            limit_s = kw.get("timeout_ms", 5000) / 1000 + self.margin_s
        return await self.receive(await self.send(cmd, **kw), limit_s=limit_s)

    async def kill(self) -> None:
        """SIGKILL: no goodbye of any kind, its sockets just drop."""
        if self.alive:
            self.process.kill()
        with anyio.fail_after(5):
            await self.process.wait()

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            if self.alive and self.goodbye is not None:
                with anyio.move_on_after(2), suppress(NodeError, TimeoutError):
                    await self.request(self.goodbye, limit_s=2)
            with anyio.move_on_after(2), suppress(Exception):
                await self._stdin.aclose()
                await self.process.wait()
            if self.alive:
                self.process.kill()
                with anyio.move_on_after(5):
                    await self.process.wait()
            with anyio.move_on_after(2), suppress(Exception):
                await self.process.aclose()

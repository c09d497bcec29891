"""A private PostgreSQL server for one test: its own data directory and port, stopped by PID.

Tests that stop, kill or restart PostgreSQL need a server of their own; the
machine's shared one (127.0.0.1:5432) is never touched. ``initdb`` refuses
to run as root, so when the tests run as root the server's processes run as
the ``postgres`` OS user (``subprocess``'s ``user=``), in a directory it owns.
``postgres`` itself is started in the foreground, so the test holds its PID:
:meth:`stop` is a fast shutdown (SIGINT, as ``pg_ctl stop -m fast``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BINARIES = ("/usr/local/bin", "/usr/lib/postgresql/15/bin")


def _binary(name: str) -> str | None:
    for directory in BINARIES:
        path = Path(directory) / name
        if path.exists():
            return str(path)
    return shutil.which(name)


INITDB, POSTGRES = _binary("initdb"), _binary("postgres")


def postgres_binaries_missing() -> str | None:
    """Why a private server cannot be started here, or None."""
    if not (INITDB and POSTGRES):
        return f"PostgreSQL's server binaries (initdb, postgres) not found in {BINARIES} or PATH"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and no `postgres` OS user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """``initdb`` once, then start and stop at will on the same port and data.

    With ``password``, TCP connections must give it (scram-sha-256); the
    server's own socket (what :meth:`start` checks readiness on) stays trust.
    """

    def __init__(self, password: str | None = None) -> None:
        assert INITDB and POSTGRES, "PostgreSQL's server binaries (initdb, postgres) are missing"
        self.port = _free_port()
        self._as: dict[str, Any] = {}
        self.directory = Path(tempfile.mkdtemp(prefix="inkwire-pg-"))
        if os.geteuid() == 0:  # initdb refuses root: run the server as `postgres`
            user = pwd.getpwnam("postgres")
            self._as = {"user": user.pw_uid, "group": user.pw_gid}
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        self.data = self.directory / "data"
        self.process: subprocess.Popen[bytes] | None = None
        auth = ["--auth=trust"]
        if password is not None:
            secret = self.directory / "password"
            secret.write_text(password + "\n")
            if self._as:
                os.chown(secret, self._as["user"], self._as["group"])
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={secret}"]
        subprocess.run(
            [INITDB, "-D", str(self.data), "-U", "postgres", *auth, "-E", "UTF8",
             "--no-sync", "--locale=C"],
            check=True,
            capture_output=True,
            timeout=120,
            **self._as,
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        assert POSTGRES is not None
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115 (the child holds it)
        self.process = subprocess.Popen(
            [POSTGRES, "-D", str(self.data), "-p", str(self.port), "-k", str(self.directory),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50"],
            stdout=log,
            stderr=subprocess.STDOUT,
            **self._as,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                import psycopg

                socket_dir = f"host={self.directory} port={self.port} user=postgres"
                with psycopg.connect(socket_dir, connect_timeout=2):
                    return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres did not start: {(self.directory / 'server.log').read_text()}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (what `pg_ctl stop -m fast` does): connections are cut."""
        self._end(signal.SIGINT)

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

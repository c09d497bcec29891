"""Helpers for the tests that run inkwire as a service: settings files on free ports,
``inkwire up`` subprocesses, polling /health, and process trees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import psutil

from relays.catalogs import SERVICES
from tests.conftest import ROOT, free_port

NAMES = ["collab", *(c.service for c in SERVICES)]


def seven_on_free_ports(tmp_path: Path, **extra: Any) -> tuple[Path, dict[str, int]]:
    """A settings file with all seven servers on free ports; their ports by name."""
    ports = {name: free_port() for name in NAMES}
    settings: dict[str, Any] = {
        "collab": {"port": ports["collab"], "db": str(tmp_path / "diagrams.db"), "grace": 1},
        "relays": {c.service: {"port": ports[c.service]} for c in SERVICES},
        **extra,
    }
    path = tmp_path / "inkwire.yaml"
    path.write_text(json.dumps(settings, indent=2))  # JSON is YAML
    return path, ports


def env() -> dict[str, str]:
    """This checkout first on the path (the venv's editable install may point elsewhere)."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def inkwire(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "collab.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env(),
        )


def wait_for(
    what: str, check: Callable[[], bool], timeout: float = 30.0, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    text = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{text}")


def status(url: str, verify: Any = True) -> int | None:
    try:
        return httpx.get(url, timeout=2, verify=verify).status_code
    except httpx.HTTPError:
        return None


def all_ready(ports: Iterable[int], scheme: str = "http", verify: Any = True) -> bool:
    return all(status(f"{scheme}://127.0.0.1:{port}/health/ready", verify) == 200 for port in ports)


def worker_pids(pid: int) -> list[int]:
    """The workers ``inkwire up`` ``pid`` runs now."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "service.worker" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


def listening_pids(port: int) -> set[int]:
    """The processes holding a socket listening on ``port``."""
    pids = set()
    for proc in psutil.process_iter(["pid"]):
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                    pids.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return pids


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        raise


def alive(pids: Iterable[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except psutil.NoSuchProcess:
            continue
    return found

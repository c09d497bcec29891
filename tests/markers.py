"""The test kinds ``make quick`` leaves out, and a guard that keeps them marked.

``make quick`` runs ``-m "not browser and not node and not processes and not slow"``.
A test gets ``browser``, ``node`` or ``processes`` from a ``pytestmark`` or decorator in
its module, or here from the fixtures it uses (:data:`MARK_BY_FIXTURE`), so tests built
on the shared fixtures need no mark of their own.

Forgetting the mark on a test that starts a process would quietly slow the quick loop,
so an audit hook makes such a test fail instead, in every run: whatever starts the
process (``subprocess``, ``anyio.run_process``, asyncio, Playwright), the interpreter
reports it. Long sleeps it cannot see: ``make quick`` prints the slowest tests for that.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest

MARK_BY_FIXTURE = {
    "browser": "browser",  # Chromium via Playwright (tests/browser.py)
    "server_process": "processes",  # `inkwire serve` subprocesses (tests/conftest.py)
    "redis_server": "processes",  # a private redis-server (tests/redis_server.py)
    "postgres_server": "processes",  # a private PostgreSQL (tests/postgres_server.py)
    "_require_node": "node",  # the autouse fixture of the modules that drive Node scripts
}
PROCESS_MARKS = frozenset(MARK_BY_FIXTURE.values())
PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.posix_spawn", "os.fork"})
QUICK_PROGRAMS = frozenset({"git"})  # local and fast (the docs test lists tracked files)

_running: pytest.Item | None = None  # the test being set up, run or torn down


def _refuse_unmarked_processes(event: str, args: tuple[Any, ...]) -> None:
    if event not in PROCESS_EVENTS or _running is None:
        return
    if event == "subprocess.Popen" and str(args[0]).rsplit("/", 1)[-1] in QUICK_PROGRAMS:
        return
    if any(_running.get_closest_marker(name) for name in PROCESS_MARKS):
        return
    raise RuntimeError(
        f"{_running.nodeid} started a process ({event} {args[:2]!r}) but is not marked "
        f"{' / '.join(sorted(PROCESS_MARKS))}: mark it so `make quick` leaves it out"
    )


sys.addaudithook(_refuse_unmarked_processes)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = getattr(item, "fixturenames", ())  # with those the fixtures use, transitively
        for fixture, mark in MARK_BY_FIXTURE.items():
            if fixture in used:
                item.add_marker(mark)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    global _running
    _running = item
    try:
        return (yield)
    finally:
        _running = None

"""``/dashboard`` in real Chromium: a real ``inkwire serve`` told about a real relay process.

The numbers move when rooms are opened and events published; the live tail
shows a channel's events through the relay's WebSocket; a relay that is
stopped shows as down, and as up again (its tail live again) once restarted
on its port; so does the collab server itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Map
from websockets.sync.client import ClientConnection, connect

from collab.protocol import sync_step1, sync_update
from relays.auth import make_token
from tests.browser import ARTIFACTS, Outside, open_context, wait_for
from tests.conftest import ROOT, free_port

pytestmark = [pytest.mark.browser, pytest.mark.processes]

SECRET = "dashboard-secret-long-enough-for-hs256-keys"


class RelayProcess:
    """``inkwire relay dhruva`` on a fixed port, stopped and started again at will."""

    def __init__(self, port: int, log: Path, *extra: str) -> None:
        self.port = port
        self.log = log
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "collab.cli", "relay", "dhruva", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*argv, *self.extra], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"relay not ready: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def publish(self, adapter: str, count: int = 1, token: str | None = None) -> None:
        body = [
            {
                "event": "adapter.activated",
                "data": {"adapter_id": adapter, "repo": "org/r", "version": str(i)},
            }
            for i in range(count)
        ]
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(f"{self.url}/publish", json=body, headers=headers, timeout=5)
        assert response.status_code == 202, response.text


@pytest.fixture
def relay_process(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    started: list[RelayProcess] = []

    def start(*extra: str) -> RelayProcess:
        relay = RelayProcess(free_port(), tmp_path / "relay.log", *extra)
        started.append(relay)
        relay.start()
        return relay

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture
def page(browser: Any, outside: Outside) -> Iterator[Any]:
    context = open_context(browser, outside, None)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def card(page: Any, name: str) -> Any:
    return page.locator(f'.server-card[data-server="{name}"]')


def field(page: Any, name: str, which: str) -> str:
    text: str = card(page, name).locator(f'dd[data-field="{which}"]').inner_text()
    return text


def wait_field(page: Any, name: str, which: str, expected: str, timeout: float = 10) -> None:
    wait_for(
        lambda: field(page, name, which) == expected,
        timeout,
        f"{name}'s {which} shows {expected} (shows {field(page, name, which)!r})",
    )


def wait_state(page: Any, name: str, state: str, timeout: float = 10) -> None:
    wait_for(
        lambda: card(page, name).get_attribute("data-state") == state,
        timeout,
        f"{name} shows as {state}",
    )


def join(stack: ExitStack, port: int, diagram: str, token: str | None = None) -> ClientConnection:
    """A y-websocket client that joins and syncs (enough to count in the room), until
    ``stack`` closes."""
    query = f"?token={token}" if token else ""
    ws = stack.enter_context(
        connect(f"ws://127.0.0.1:{port}/yjs/{diagram}{query}", open_timeout=10)
    )
    ws.send(sync_step1(Doc().get_state()))
    return ws


def add_element(ws: ClientConnection, element_id: str) -> None:
    """Send a document update that adds one rectangle to the diagram."""
    doc: Doc[Any] = Doc()
    elements = doc.get("elements", type=Map)
    elements[element_id] = {"id": element_id, "type": "rectangle", "x": 1, "y": 2, "version": 1}
    ws.send(sync_update(doc.get_update()))


def test_the_dashboard_shows_every_server_live_and_a_relay_going_down_and_up(
    server_process: Any, relay_process: Any, page: Any
) -> None:
    relay = relay_process()
    server = server_process("--grace", "1", "--dashboard-relay", relay.url)
    page.goto(f"http://127.0.0.1:{server.port}/dashboard")
    wait_state(page, "excalidraw", "ready")
    wait_state(page, "dhruva", "ready")
    wait_field(page, "excalidraw", "rooms", "0")
    wait_field(page, "dhruva", "messages_in", "0")
    assert field(page, "excalidraw", "storage") == "ok"

    # opening rooms moves collab's numbers, and the busiest rooms list them
    with ExitStack() as clients:
        alice, _, _ = [join(clients, server.port, d) for d in ("plan", "plan", "sketch")]
        wait_field(page, "excalidraw", "rooms", "2")
        wait_field(page, "excalidraw", "connections", "3")
        rows = card(page, "excalidraw").locator(".busiest tbody tr")
        wait_for(lambda: rows.count() == 2, 5, "both rooms listed")
        assert rows.first.get_attribute("data-name") == "plan"  # two clients: busiest
        # "tail" on a room: its diagram's events, from the collab server's own /events
        rows.first.locator("button").click()
        plan = page.locator(
            '.tail-subscriptions li[data-channel="diagram:plan"][data-status="live"]'
        )
        wait_for(lambda: plan.count() == 1, 10, "the tail follows diagram:plan")
        add_element(alice, "r1")
        wait_field(page, "excalidraw", "messages_in", "1")
        added = page.locator(
            '.tail-events li[data-channel="diagram:plan"][data-event="element.added"]'
        )
        wait_for(lambda: added.count() == 1, 10, "the element's event is in the tail")

    # publishing moves the relay's, and the busiest channels list the channel
    relay.publish("a1", count=5)
    wait_field(page, "dhruva", "messages_in", "5")
    busiest = card(page, "dhruva").locator('.busiest tr[data-name="adapter:a1"]')
    wait_for(lambda: busiest.count() == 1, 5, "adapter:a1 among the busiest channels")
    # the events-in chart saw a rate above zero at some refresh
    chart = card(page, "dhruva").locator('[data-chart="in"] polyline')
    wait_for(lambda: chart.count() == 1, 5, "the events-in chart is drawn")

    # the live tail, over the relay's own WebSocket, with a channel filter
    page.select_option('select[aria-label="server"]', label="dhruva")
    page.fill('input[aria-label="channel"]', "adapter:a1")
    page.click('.tail-form button[type="submit"]')
    live = page.locator('.tail-subscriptions li[data-channel="adapter:a1"][data-status="live"]')
    wait_for(lambda: live.count() == 1, 10, "the tail is subscribed to adapter:a1")
    relay.publish("a1")
    tailed = page.locator(
        '.tail-events li[data-channel="adapter:a1"][data-event="adapter.activated"]'
    )
    wait_for(lambda: tailed.count() == 1, 10, "the published event is in the tail")
    page.fill('input[aria-label="filter"]', "adapter:zz")
    wait_for(lambda: tailed.count() == 0, 5, "the filter hides other channels")
    page.fill('input[aria-label="filter"]', "a1")
    wait_for(lambda: tailed.count() == 1, 5, "the filter shows the channel again")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # a stopped relay shows as down; restarted on its port, as up, and its tail goes on
    relay.stop()
    wait_state(page, "dhruva", "down")
    assert card(page, "dhruva").locator(".server-error").inner_text()
    assert card(page, "excalidraw").get_attribute("data-state") == "ready"
    reconnecting = page.locator('.tail-subscriptions li[data-status="reconnecting"]')
    wait_for(lambda: reconnecting.count() == 1, 5, "the tail says it is reconnecting")
    relay.start()
    wait_state(page, "dhruva", "ready")
    wait_field(page, "dhruva", "messages_in", "0")  # a new process counts from zero
    wait_for(lambda: live.count() == 1, 20, "the tail reconnected after the restart")
    # the new process has a new epoch: the tail says events may be missing, then goes on
    gap = page.locator('.tail-events li[data-channel="adapter:a1"][data-event="gap"]')
    wait_for(lambda: gap.count() == 1, 10, "the tail shows the gap of the restart")

    def published_and_tailed() -> bool:
        relay.publish("a1")  # again until seen: the first may beat the resubscription
        time.sleep(0.2)
        return tailed.count() >= 2

    wait_for(published_and_tailed, 10, "an event after the restart is in the tail")

    # the collab server itself restarting: the page says so, and recovers by itself
    server.process.kill()
    server.process.wait(timeout=10)
    dashboard = page.locator("main.dashboard")
    wait_for(lambda: dashboard.get_attribute("data-reachable") == "false", 10, "unreachable")
    wait_state(page, "excalidraw", "down")
    server_process("--grace", "1", "--dashboard-relay", relay.url, port=server.port)
    wait_state(page, "excalidraw", "ready")
    wait_state(page, "dhruva", "ready")
    assert dashboard.get_attribute("data-reachable") == "true"


def test_with_auth_the_dashboard_uses_the_token_of_its_link(
    server_process: Any, relay_process: Any, page: Any
) -> None:
    relay = relay_process("--auth-secret", SECRET)
    server = server_process("--auth-secret", SECRET, "--dashboard-relay", relay.url)
    token = make_token(SECRET, sub="ops", channels=["*"], publish=True)
    page.goto(f"http://127.0.0.1:{server.port}/dashboard")
    wait_for(
        lambda: page.locator("main.dashboard").get_attribute("data-reachable") == "false",
        10,
        "without a token the page says it cannot read the servers",
    )
    assert "/dashboard?token=" in page.locator(".dashboard-head").inner_text()
    page.goto(f"http://127.0.0.1:{server.port}/dashboard?token={token}")
    wait_state(page, "dhruva", "ready")
    with ExitStack() as clients:
        join(clients, server.port, "secret-plan", token)
        wait_field(page, "excalidraw", "rooms", "1")
    relay.publish("a7", token=token)
    wait_field(page, "dhruva", "messages_in", "1")
    page.select_option('select[aria-label="server"]', label="dhruva")
    page.fill('input[aria-label="channel"]', "adapter:a7")
    page.click('.tail-form button[type="submit"]')
    live = page.locator('.tail-subscriptions li[data-channel="adapter:a7"][data-status="live"]')
    wait_for(lambda: live.count() == 1, 10, "the tail subscribed with the token")
    relay.publish("a7", token=token)
    tailed = page.locator('.tail-events li[data-channel="adapter:a7"]')
    wait_for(lambda: tailed.count() == 1, 10, "the event is in the tail")
    assert json.loads(tailed.first.locator(".tail-data").inner_text())["adapter_id"] == "a7"

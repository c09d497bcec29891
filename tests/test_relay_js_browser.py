"""The JS relay client in Chromium: ``clients/js/relay-client.js`` as a browser runs it.

The relay is ``inkwire relay dhruva`` as a subprocess on a free port; the
page is a blank one with the module inlined (it has no dependencies, and
uses the browser's own ``WebSocket``). Also a browser-style client written
without our library, the way the services' existing clients are (read the
welcome, subscribe without waiting, dispatch on ``type == "event"``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import Outside, open_context, wait_for
from tests.conftest import ROOT, free_port

CLIENT = (ROOT / "clients" / "js" / "relay-client.js").read_text()
FAST_BACKOFF = "{initial: 50, max: 400, factor: 2, jitter: 0.5}"


class Relay:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.db = tmp_path / "relay.db"
        self.log = tmp_path / "relay.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "collab.cli", "relay", "dhruva", "--port"]
        command += [str(self.port), "--db", str(self.db)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("relay did not become ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def publish(self, version: str) -> None:
        body = {
            "event": "adapter.activated",
            "data": {"adapter_id": "a1", "repo": "org/repo", "version": version},
        }
        assert httpx.post(f"{self.url}/publish", json=body, timeout=5).status_code == 202


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    running = Relay(tmp_path)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def page(browser: Any, outside: Outside) -> Iterator[Any]:
    context = open_context(browser, outside, None)
    errors: list[str] = []
    blank = context.new_page()
    blank.on("pageerror", lambda error: errors.append(str(error)))
    yield blank
    context.close()
    assert errors == []


def versions(page: Any) -> list[str]:
    result: list[str] = page.evaluate("() => window.received.map((m) => m.data.version)")
    return result


def test_our_js_client_in_chromium_subscribes_requests_and_recovers(
    relay: Relay, page: Any
) -> None:
    page.add_script_tag(
        type="module",
        content=CLIENT
        + f"""
window.received = [];
window.client = new RelayClient("ws://127.0.0.1:{relay.port}/", {{backoff: {FAST_BACKOFF}}});
window.client.on("event", (message) => window.received.push(message));
window.ready = window.client.connect().then(() => window.client.subscribe("adapter:a1"));
""",
    )
    page.wait_for_function("() => window.ready !== undefined")
    page.evaluate("() => window.ready")
    welcome = page.evaluate("() => window.client.welcome")
    assert welcome["server"]
    relay.publish("1.0")
    wait_for(lambda: versions(page) == ["1.0"], 5, "the event reached the page")
    message = page.evaluate("() => window.received[0]")
    assert (message["event"], message["room"]) == ("adapter.activated", "adapter:a1")
    status = page.evaluate("() => window.client.request('get_adapter_status', {adapter_id: 'a1'})")
    assert status["adapter_id"] == "a1" and status["status"] == "active"

    # the relay restarts (same --db, so the same epoch): the client reconnects,
    # resubscribes with `since`, and gets what was published meanwhile, in order
    relay.stop()
    relay.start()
    relay.publish("2.0")
    relay.publish("3.0")
    wait_for(lambda: versions(page) == ["1.0", "2.0", "3.0"], 10, "recovered after restart")


COMPAT = """
window.received = [];
const ws = new WebSocket("ws://127.0.0.1:PORT/");
let welcomed = false;
const handlers = {"adapter.activated": (data, message) => window.received.push(message)};
ws.onmessage = (frame) => {
  const message = JSON.parse(frame.data);
  if (!welcomed) {
    welcomed = true;
    window.welcome = message;
    ws.send(JSON.stringify({type: "request", event: "subscribe",
                            data: {channel: "adapter:a1"}, id: "sub_adapter:a1"}));
    return;
  }
  const handler = message.type === "event" && handlers[message.event];
  if (handler) handler(message.data, message);
  if (message.type === "response") window.subscribed = message;
};
"""


def test_a_browser_style_client_without_our_library_gets_events(relay: Relay, page: Any) -> None:
    page.add_script_tag(content=COMPAT.replace("PORT", str(relay.port)))
    wait_for(lambda: page.evaluate("() => window.subscribed"), 5, "subscribed")
    assert page.evaluate("() => window.welcome.type") == "event"
    relay.publish("7")
    wait_for(lambda: versions(page) == ["7"], 5, "the event was dispatched")

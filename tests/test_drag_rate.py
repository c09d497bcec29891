"""What a fast drag in the web app sends, against the ``/yjs`` rate limit's defaults.

The rate limit (``collab.yjs_message_rate_limit``, 300 messages a second, bursts of
600) must never touch a person. Here Chromium drags as fast as Playwright's mouse goes
(each step dispatched as soon as the last was handled: faster than a hand), the page
counts every WebSocket message the app sends, and the server says whether it ever
paused the reading. docs/capacity.md quotes the figures this prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.browser import Outside, Peer, open_context

pytestmark = pytest.mark.browser

ALICE = {"id": "alice-1", "name": "Alice", "color": "#1971c2"}

COUNT_SENDS = """() => {
  window.sentAt = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (this.url.includes('/yjs/')) window.sentAt.push(performance.now());
    return send.call(this, data);
  };
}"""


@pytest.fixture
def server(server_process: Callable[..., Any]) -> Any:
    return server_process("--grace", "1")


@pytest.fixture
def page_peer(browser: Any, outside: Outside) -> Iterator[Callable[[str], Peer]]:
    contexts: list[Any] = []

    def start(base_url: str) -> Peer:
        context = open_context(browser, outside, ALICE)
        contexts.append(context)
        return Peer(context.new_page(), base_url)

    yield start
    for context in contexts:
        context.close()


def busiest_second(times_ms: list[float]) -> int:
    best, start = 0, 0
    for end, t in enumerate(times_ms):
        while t - times_ms[start] >= 1000:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_a_fast_drag_stays_far_under_the_yjs_rate_limit(server: Any, page_peer: Any) -> None:
    base = f"http://127.0.0.1:{server.port}"
    alice = page_peer(base).open("drag-rate")
    drawn = alice.draw_rectangle(300, 250, 160, 100)
    alice.page.evaluate(COUNT_SENDS)
    element = alice.live()[drawn]
    x, y = alice.canvas_point(element["x"] + 80, element["y"] + 50)
    mouse = alice.page.mouse
    mouse.move(x, y)
    mouse.down()
    for round_ in range(4):  # the rectangle dragged around in circles, fast
        dx = 200 if round_ % 2 == 0 else -200
        mouse.move(x + dx, y + 150, steps=60)
        mouse.move(x, y + 300, steps=60)
        mouse.move(x - dx, y + 150, steps=60)
        mouse.move(x, y, steps=60)
    mouse.up()
    alice.page.wait_for_timeout(300)  # the last pointer update goes out
    sent: list[float] = alice.page.evaluate("window.sentAt")
    seconds = (sent[-1] - sent[0]) / 1000 if len(sent) > 1 else 0.0
    busiest = busiest_second(sent)
    print(f"fast drag: {len(sent)} messages in {seconds:.2f} s, at most {busiest} in one second")
    metrics = httpx.get(f"{base}/metrics", timeout=5).text
    assert "inkwire_rate_limited_waits_total 0.0" in metrics
    assert busiest <= 150  # half the default limit: room to spare

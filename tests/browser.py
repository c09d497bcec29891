"""Browser tests' support: Debian's Chromium driven by Playwright, and a page object.

Chromium is the machine's own (``/usr/bin/chromium``, installed by
``.ci/run``); Playwright's browser download is never used. Without Chromium,
Playwright or a built web app the tests skip with the reason, except under
CI, where they must run.

Every browser context records any request that is not to 127.0.0.1 and
aborts it; :func:`open_context` callers assert the record is empty, so no
test passes while the page reaches outside (fonts from a CDN, say).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from collab.web import DEFAULT_ROOT
from tests.node import in_ci

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
NOT_LOOPBACK = re.compile(r"^(?!(https?|wss?)://127\.0\.0\.1[:/])")
T = TypeVar("T")


def missing_browser() -> str | None:
    if not CHROMIUM.exists():
        found = shutil.which("chromium")
        hint = f" (found {found}, but tests use {CHROMIUM})" if found else ""
        return f"{CHROMIUM} is missing{hint}: `apt-get install chromium` (.ci/run does)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed: `pip install -e '.[test]'`"
    if not (DEFAULT_ROOT / "index.html").is_file():
        return f"the web app is not built in {DEFAULT_ROOT}: run `make web`"
    return None


def require_browser() -> None:
    """Skip (or, under CI, fail) when a browser test cannot run here."""
    reason = missing_browser()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI is set, so the browser tests must run: {reason}")
    pytest.skip(f"BROWSER TESTS NOT RUN: {reason}")


def launch(playwright: Any) -> Browser:
    browser: Browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    return browser


@dataclass
class Outside:
    """Requests that tried to leave 127.0.0.1 (each was aborted)."""

    urls: list[str] = field(default_factory=list)


def open_context(
    browser: Browser, outside: Outside, identity: dict[str, str] | None
) -> BrowserContext:
    """A fresh browser profile; with ``identity``, as if the name was given before."""
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    if identity is not None:
        context.add_init_script(
            f"localStorage.setItem('inkwire.identity', JSON.stringify({_js(identity)}))"
        )

    def refuse(route: Any) -> None:
        outside.urls.append(route.request.url)
        route.abort()

    context.route(NOT_LOOPBACK, refuse)
    context.on(
        "page",
        lambda page: page.on(
            "websocket",
            lambda ws: outside.urls.append(ws.url) if NOT_LOOPBACK.match(ws.url) else None,
        ),
    )
    return context


def _js(value: object) -> str:
    return json.dumps(value)


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy, or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"within {timeout:g} s: {what} (last seen: {last!r})")
        time.sleep(0.02)


SCENE_JS = """() => window.inkwire.api.getSceneElementsIncludingDeleted().map((e) => ({
  id: e.id, type: e.type, x: e.x, y: e.y, width: e.width, height: e.height,
  version: e.version, versionNonce: e.versionNonce, isDeleted: e.isDeleted,
  index: e.index, fileId: e.fileId ?? null, text: e.text ?? null,
}))"""

DOC_JS = """() => Object.fromEntries([...window.inkwire.doc.getMap("elements").entries()]
  .map(([id, e]) => [id, {x: e.x, y: e.y, version: e.version,
                          versionNonce: e.versionNonce, isDeleted: !!e.isDeleted}]))"""

COLLABORATORS_JS = """() => [...window.inkwire.api.getAppState().collaborators.values()]
  .map((c) => ({name: c.username, pointer: c.pointer ?? null, color: c.color ?? null,
                selected: Object.keys(c.selectedElementIds ?? {})}))"""


# --- fixtures (registered for every test module by tests/conftest.py) ---------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module; tests open their own contexts in it."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def outside() -> Iterator[Outside]:
    """The test fails if any of its pages tried to reach beyond 127.0.0.1."""
    record = Outside()
    yield record
    assert record.urls == [], f"requests left 127.0.0.1: {record.urls}"


class Peer:
    """One person's editor tab."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url

    def open(self, diagram: str, query: str = "") -> Peer:
        """Go to the diagram's editor and wait until it synced (``query``: ``?token=...``)."""
        self.page.goto(f"{self.base_url}/d/{diagram}{query}")
        self.page.wait_for_function(
            "() => window.inkwire && window.inkwire.provider.synced", timeout=15_000
        )
        return self

    def scene(self) -> dict[str, dict[str, Any]]:
        """Every element on the canvas, tombstones included, by id."""
        return {e["id"]: e for e in self.page.evaluate(SCENE_JS)}

    def live(self) -> dict[str, dict[str, Any]]:
        return {k: e for k, e in self.scene().items() if not e["isDeleted"]}

    def doc(self) -> dict[str, dict[str, Any]]:
        """This tab's Y.Doc ``elements`` map (what the binding shared or received)."""
        result: dict[str, dict[str, Any]] = self.page.evaluate(DOC_JS)
        return result

    def collaborators(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.page.evaluate(COLLABORATORS_JS)
        return result

    def status(self) -> tuple[str, int]:
        badge = self.page.locator(".status-badge")
        return badge.get_attribute("data-status") or "", int(
            badge.get_attribute("data-people") or 0
        )

    def canvas_point(self, x: float, y: float) -> tuple[float, float]:
        """Viewport coordinates of a scene point (the canvas may be scrolled or zoomed)."""
        point: list[float] = self.page.evaluate(
            """([x, y]) => { const s = window.inkwire.api.getAppState();
               return [(x + s.scrollX) * s.zoom.value + s.offsetLeft,
                       (y + s.scrollY) * s.zoom.value + s.offsetTop]; }""",
            [x, y],
        )
        return point[0], point[1]

    def draw_rectangle(self, x: float, y: float, width: float, height: float) -> str:
        """Draw with the real mouse and keyboard: press ``r``, drag. Returns the new id."""
        before = set(self.scene())
        self.page.mouse.click(x + width + 200, y + height + 150)  # focus the canvas, off shapes
        self.page.keyboard.press("r")
        self.page.mouse.move(x, y)
        self.page.mouse.down()
        self.page.mouse.move(x + width / 2, y + height / 2, steps=4)
        self.page.mouse.move(x + width, y + height, steps=4)
        self.page.mouse.up()
        self.page.keyboard.press("Escape")
        new = wait_for(lambda: set(self.live()) - before, 2, "the drawn rectangle is on the canvas")
        assert len(new) == 1, new
        return new.pop()

    def wait_live(
        self,
        check: Callable[[dict[str, dict[str, Any]]], bool],
        what: str,
        timeout: float = 2.0,
    ) -> dict[str, dict[str, Any]]:
        """The live elements once ``check`` accepts them."""
        found = wait_for(lambda: (live,) if check(live := self.live()) else None, timeout, what)
        return found[0]

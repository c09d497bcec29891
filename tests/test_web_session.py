"""The editing session as excalidraw.com users know it, in real Chromium.

Joining without a name prompt, idle and away, follow mode, laser trails and
the theme: each with two browser contexts against a real ``inkwire serve``
(the fixtures are test_web_app's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.browser import Peer, wait_for
from tests.test_web_app import (
    ADD_ELEMENT_JS,
    ALICE,
    BOB,
    CAROL,
    open_peer,
    server,
    server_elements,
    url,
)

__all__ = ["open_peer", "server"]  # fixtures, used by name

APP_STATE_JS = "(key) => { const v = window.inkwire.api.getAppState()[key]; return v ?? null; }"


def app_state(peer: Peer, key: str) -> Any:
    return peer.page.evaluate(APP_STATE_JS, key)


def collaborator(peer: Peer, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = peer.page.evaluate(
        """(name) => { const c = [...window.inkwire.api.getAppState().collaborators.values()]
             .find((c) => c.username === name);
           return c ? {userState: c.userState ?? null, pointer: c.pointer ?? null,
                       button: c.button ?? null, socketId: c.socketId} : null; }""",
        name,
    )
    return found


def test_a_newcomer_draws_at_once_under_a_generated_name_and_can_change_it(
    server: Any, open_peer: Any
) -> None:
    newcomer = open_peer(url(server), None).open("welcome")  # no name given before
    assert newcomer.page.locator(".modal-backdrop").count() == 0  # no wall
    drawn = newcomer.draw_rectangle(300, 250, 160, 100)
    generated = newcomer.page.evaluate("() => JSON.parse(localStorage.getItem('inkwire.identity'))")
    assert generated["name"].count(" ") == 1 and generated["color"].startswith("hsl(")
    bob = open_peer(url(server), BOB).open("welcome")
    bob.wait_live(lambda live: drawn in live, "Bob sees the newcomer's rectangle")
    wait_for(
        lambda: collaborator(bob, generated["name"]), 2, "Bob sees the newcomer's generated name"
    )

    newcomer.page.locator(".status-badge").click()
    newcomer.page.get_by_label("your name").fill("Dana")
    newcomer.page.get_by_role("radio", name="hsl(120, 100%, 83%)").click()
    newcomer.page.get_by_role("button", name="Save").click()
    wait_for(lambda: collaborator(bob, "Dana"), 2, "Bob sees the new name")
    assert collaborator(bob, generated["name"]) is None

    newcomer.page.reload()
    newcomer.page.wait_for_function("() => window.inkwire && window.inkwire.provider.synced")
    assert newcomer.page.locator(".status-badge .me").inner_text() == "Dana"
    stored = newcomer.page.evaluate("() => JSON.parse(localStorage.getItem('inkwire.identity'))")
    assert stored == {**generated, "name": "Dana", "color": "hsl(120, 100%, 83%)"}


HIDE_TAB_JS = """(hidden) => {
  Object.defineProperty(document, "visibilityState", {
    configurable: true, get: () => (hidden ? "hidden" : "visible") });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_collaborators_show_as_active_idle_or_away(server: Any, open_peer: Any) -> None:
    alice = open_peer(url(server), ALICE).open("idling", query="?idle=600")
    bob = open_peer(url(server), BOB).open("idling")
    alice.page.mouse.move(400, 300)
    alice.page.mouse.move(420, 320, steps=3)

    def state() -> str | None:
        seen = collaborator(bob, "Alice")
        return seen["userState"] if seen else None

    wait_for(lambda: state() == "active", 2, "Alice is active for Bob")
    wait_for(lambda: state() == "idle", 3, "after 0.6 s without input Alice is idle")
    alice.page.mouse.move(500, 400, steps=3)
    wait_for(lambda: state() == "active", 2, "moving the mouse makes her active again")
    alice.page.evaluate(HIDE_TAB_JS, True)
    wait_for(lambda: state() == "away", 2, "a hidden tab is away")
    alice.page.evaluate(HIDE_TAB_JS, False)
    wait_for(lambda: state() == "active", 2, "back in the tab: active")
    wait_for(lambda: state() == "idle", 3, "idle again")


def follow(peer: Peer, name: str) -> None:
    """Click ``name`` in Excalidraw's user list (its avatars, or the "+N" list of the rest)."""
    more = peer.page.locator(".UserList__more")
    if more.count():
        more.click()
        peer.page.locator(".UserList__collaborator", has_text=name).click()
    else:
        peer.page.locator(f'.UserList .Avatar[title="{name}"]').click()


CENTRE_JS = """() => { const s = window.inkwire.api.getAppState();
  return [s.width / 2 / s.zoom.value - s.scrollX, s.height / 2 / s.zoom.value - s.scrollY,
          s.zoom.value]; }"""


def test_following_a_collaborator_shows_their_viewport_until_you_pan(
    server: Any, open_peer: Any
) -> None:
    alice = open_peer(url(server), ALICE).open("tour")
    bob = open_peer(url(server), BOB).open("tour")
    alice.page.mouse.move(400, 300, steps=2)
    wait_for(lambda: collaborator(bob, "Alice"), 2, "Bob sees Alice")
    viewports: list[Any] = []
    bob.page.evaluate(
        """() => { window.inkwire.provider.awareness.on("change", () => {
             for (const s of window.inkwire.provider.awareness.getStates().values())
               if (s.viewport) window.viewportSeen = true; }); }"""
    )
    alice.page.mouse.wheel(0, 300)  # nobody follows: no viewport in awareness
    alice.page.wait_for_timeout(300)
    viewports.append(bob.page.evaluate("() => window.viewportSeen ?? false"))
    assert viewports == [False]

    follow(bob, "Alice")
    wait_for(lambda: app_state(bob, "userToFollow"), 2, "Bob follows Alice")
    alice.page.locator('.followed-by[data-followers="Bob"]').wait_for(timeout=3000)
    assert app_state(alice, "followedBy") is not None

    alice.page.mouse.move(500, 400)
    alice.page.mouse.wheel(250, 400)  # Alice scrolls; Bob's view goes along
    target = alice.page.evaluate(CENTRE_JS)

    def bob_centred() -> bool:
        x, y, zoom = bob.page.evaluate(CENTRE_JS)
        return abs(x - target[0]) < 1 and abs(y - target[1]) < 1 and zoom == target[2]

    wait_for(bob_centred, 3, "Bob's viewport shows what Alice's does")
    alice.page.get_by_role("button", name="Zoom in").first.click()  # and zooms
    wait_for(lambda: alice.page.evaluate(CENTRE_JS)[2] > 1, 2, "Alice zoomed in")
    target = alice.page.evaluate(CENTRE_JS)
    wait_for(bob_centred, 3, "Bob's zoom follows too")

    bob.page.mouse.move(500, 400)
    bob.page.mouse.wheel(0, 200)  # Bob pans himself: following stops
    wait_for(lambda: app_state(bob, "userToFollow") is None, 2, "Bob stopped following")
    wait_for(
        lambda: alice.page.locator(".followed-by").count() == 0, 3, "Alice is followed no more"
    )
    wait_for(
        lambda: (
            not alice.page.evaluate(
                "() => window.inkwire.provider.awareness.getLocalState().viewport"
            )
        ),
        2,
        "Alice's viewport left awareness",
    )


def test_a_collaborators_laser_trail_shows_on_the_other_canvas(server: Any, open_peer: Any) -> None:
    alice = open_peer(url(server), ALICE).open("pointing")
    bob = open_peer(url(server), BOB).open("pointing")
    trail = """() => [...document.querySelectorAll('.SVGLayer path')]
                 .filter((p) => (p.getAttribute('d') ?? '').length > 20).length"""
    assert bob.page.evaluate(trail) == 0
    alice.page.mouse.click(700, 600)
    alice.page.keyboard.press("k")  # Excalidraw's laser pointer
    wait_for(lambda: app_state(alice, "activeTool")["type"] == "laser", 2, "laser selected")
    alice.page.mouse.move(300, 300)
    alice.page.mouse.down()
    for step in range(20):
        alice.page.mouse.move(300 + step * 15, 300 + step * 8)
        alice.page.wait_for_timeout(20)
    wait_for(
        lambda: (c := collaborator(bob, "Alice")) and c["pointer"]["tool"] == "laser",
        2,
        "Bob sees Alice's pointer as a laser",
    )
    wait_for(lambda: bob.page.evaluate(trail) > 0, 2, "Bob's canvas draws Alice's laser trail")
    alice.page.mouse.up()


def test_the_theme_follows_the_system_until_toggled_and_is_kept(
    server: Any, open_peer: Any
) -> None:
    night = open_peer(url(server), ALICE)
    night.page.emulate_media(color_scheme="dark")
    night.open("themes")
    day = open_peer(url(server), BOB)
    day.page.emulate_media(color_scheme="light")
    day.open("themes")
    assert app_state(night, "theme") == "dark"
    assert night.page.locator(".excalidraw.theme--dark").count() == 1
    assert app_state(day, "theme") == "light"

    day.page.locator(".main-menu-trigger").click()  # Excalidraw's own toggle
    day.page.get_by_text("Dark mode").click()
    wait_for(lambda: app_state(day, "theme") == "dark", 2, "the toggle switched to dark")
    day.page.reload()
    day.page.wait_for_function("() => window.inkwire && window.inkwire.provider.synced")
    assert app_state(day, "theme") == "dark"  # kept in this browser, over the system's light
    assert app_state(night, "theme") == "dark"  # a theme is per browser, not per diagram
    night.page.emulate_media(color_scheme="light")
    wait_for(lambda: app_state(night, "theme") == "light", 2, "no choice made: system wins")


def pending(peer: Peer) -> int:
    return int(peer.page.locator(".status-badge").get_attribute("data-pending") or 0)


STORED_UPDATES_JS = """(name) => new Promise((resolve) => {
  const open = indexedDB.open(name);
  open.onsuccess = () => {
    const db = open.result;
    const count = db.transaction("updates").objectStore("updates").count();
    count.onsuccess = () => { db.close(); resolve(count.result); };
  };
  open.onerror = () => resolve(-1);
})"""


def test_edits_made_offline_survive_a_reload_and_reach_the_others(
    server: Any, open_peer: Any
) -> None:
    alice = open_peer(url(server), ALICE).open("travel")
    bob = open_peer(url(server), BOB).open("travel")
    first = alice.draw_rectangle(300, 250, 160, 100)
    bob.wait_live(lambda live: first in live, "Bob has the first rectangle")
    alice.page.wait_for_function(  # the app is cached for offline use
        "() => document.documentElement.dataset.offlineReady === 'true'"
        " && navigator.serviceWorker.controller",
        timeout=15_000,
    )

    alice.page.context.set_offline(True)
    wait_for(lambda: alice.status()[0] == "offline", 5, "Alice's badge says offline")
    stored = alice.page.evaluate(STORED_UPDATES_JS, "inkwire:travel")
    offline = alice.draw_rectangle(600, 250, 100, 100)
    wait_for(lambda: pending(alice) == 1, 2, "the badge counts one change waiting")
    wait_for(
        lambda: alice.page.evaluate(STORED_UPDATES_JS, "inkwire:travel") > stored,
        2,
        "the offline edit is in IndexedDB",
    )
    alice.page.reload()  # still offline: the service worker serves the app
    alice.page.wait_for_function(
        "() => window.inkwire && window.inkwire.offline.persistence.synced", timeout=15_000
    )
    alice.wait_live(lambda live: {first, offline} <= set(live), "the drawing survived the reload")
    assert pending(alice) == 1 and alice.status()[0] == "offline"
    assert offline not in bob.live()  # it never left Alice's browser

    bob_edit = bob.draw_rectangle(300, 500, 120, 80)  # meanwhile, Bob draws too
    alice.page.context.set_offline(False)
    bob.wait_live(lambda live: offline in live, "Bob gets the offline edit", timeout=10)
    alice.wait_live(lambda live: bob_edit in live, "Alice gets Bob's edit", timeout=10)
    wait_for(lambda: pending(alice) == 0, 5, "nothing waits any more")
    wait_for(lambda: alice.doc() == bob.doc(), 5, "both docs agree")
    assert {first, offline, bob_edit} <= set(server_elements(server, "travel"))


SECRET = "browser-share-secret-long-enough-for-hs256-0123456789"


def test_an_editor_shares_a_view_only_and_an_edit_link(
    server_process: Callable[..., Any], open_peer: Any
) -> None:
    from relays.auth import make_token

    guarded = server_process("--grace", "1", "--auth-secret", SECRET)
    base = url(guarded)
    owner = make_token(SECRET, sub="alice", channels=["diagram:*"], publish=True)
    alice = open_peer(base, ALICE).open("shared", query=f"?token={owner}")
    drawn = alice.draw_rectangle(300, 250, 160, 100)

    alice.page.get_by_role("button", name="Share").click()
    dialog = alice.page.get_by_role("dialog", name="Share")
    dialog.get_by_label("Links expire after").select_option(label="1 day")
    dialog.get_by_role("button", name="Create view-only link").click()
    dialog.get_by_role("button", name="Create edit link").click()
    view_link = dialog.get_by_label("view-only link").input_value()
    edit_link = dialog.get_by_label("edit link", exact=True).input_value()
    assert view_link.startswith(f"{base}/d/shared?token=") and view_link != edit_link
    assert "View only, until" in dialog.inner_text()

    bob = open_peer(base, BOB)
    bob.page.goto(view_link)
    bob.page.wait_for_function("() => window.inkwire && window.inkwire.provider.synced")
    bob.wait_live(lambda live: drawn in live, "the viewer sees the drawing")
    assert app_state(bob, "viewModeEnabled")
    assert bob.page.locator('.status-badge[data-read-only="true"]').count() == 1
    bob.page.get_by_role("button", name="Share").click()  # a viewer cannot share on
    assert "only people who can edit" in bob.page.get_by_role("dialog").inner_text()
    bob.page.get_by_role("button", name="Close").click()
    bob.page.evaluate(ADD_ELEMENT_JS, ["from-viewer"])  # an edit through the API: refused
    bob.page.get_by_role("alert").wait_for(timeout=5000)
    bob.wait_live(lambda live: set(live) == {drawn}, "the viewer's edit is dropped", timeout=5)

    carol = open_peer(base, CAROL)
    carol.page.goto(edit_link)
    carol.page.wait_for_function("() => window.inkwire && window.inkwire.provider.synced")
    assert not app_state(carol, "viewModeEnabled")
    added = carol.draw_rectangle(600, 250, 100, 100)
    alice.wait_live(lambda live: added in live, "Alice sees what the edit link drew")
    assert "from-viewer" not in alice.live()


def test_without_auth_share_copies_the_plain_link(server: Any, open_peer: Any) -> None:
    alice = open_peer(url(server), ALICE).open("open-door")
    alice.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    alice.page.get_by_role("button", name="Share").click()
    dialog = alice.page.get_by_role("dialog", name="Share")
    assert dialog.get_by_label("link").input_value() == f"{url(server)}/d/open-door"
    assert "Anyone with this link can edit" in dialog.inner_text()
    dialog.get_by_role("button", name="Copy").click()
    dialog.get_by_role("button", name="Copied").wait_for(timeout=2000)
    copied = alice.page.evaluate("() => navigator.clipboard.readText()")
    assert copied == f"{url(server)}/d/open-door"


DARK_PIXELS_JS = """(selector) => {
  const img = document.querySelector(selector);
  if (!img || !img.complete || !img.naturalWidth) return -1;
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
  let dark = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] < 200) dark++;
  return dark;
}"""


def test_the_landing_page_shows_cards_searches_renames_and_deletes(
    server: Any, open_peer: Any
) -> None:
    alice = open_peer(url(server), ALICE).open("roadmap")
    alice.draw_rectangle(300, 250, 300, 200)
    other = open_peer(url(server), ALICE).open("scratch")
    other.draw_rectangle(300, 250, 100, 100)
    other.page.close()
    alice.page.close()  # the room unloads (grace 1 s) and checkpoints: a thumbnail
    wait_for(
        lambda: httpx.get(f"{url(server)}/api/diagrams/roadmap/thumbnail").status_code == 200,
        10,
        "the checkpoint rendered a thumbnail",
    )
    bob = open_peer(url(server), BOB).open("roadmap")  # Bob is in it now
    assert bob

    carol = open_peer(url(server), CAROL)
    carol.page.goto(url(server) + "/")
    card = carol.page.locator('.card[data-id="roadmap"]')
    card.wait_for(timeout=5000)
    assert "by Alice" in card.inner_text()
    card.locator('.card-people .person:has-text("Bob")').wait_for(timeout=15_000)
    wait_for(
        lambda: carol.page.evaluate(DARK_PIXELS_JS, '.card[data-id="roadmap"] img') > 300,
        5,
        "the thumbnail shows the drawn rectangle",
    )
    assert carol.page.locator('.card[data-id="scratch"]').count() == 1

    carol.page.get_by_label("search diagrams").fill("road")
    wait_for(lambda: carol.page.locator(".card").count() == 1, 3, "the search leaves only roadmap")
    card.get_by_role("button", name="Rename").click()
    card.get_by_label("new title of roadmap").fill("Q3 plans")
    card.get_by_role("button", name="Save").click()
    carol.page.get_by_label("search diagrams").fill("q3")  # by title, any case
    carol.page.get_by_role("link", name="Q3 plans").wait_for(timeout=5000)

    carol.page.get_by_label("search diagrams").fill("")
    scratch = carol.page.locator('.card[data-id="scratch"]')
    scratch.get_by_role("button", name="Delete").click()
    scratch.wait_for(state="detached", timeout=5000)
    late = open_peer(url(server), BOB).open("scratch")  # an old link still opens it
    late.page.get_by_role("status", name="in the trash").wait_for(timeout=5000)
    carol.page.get_by_role("button", name="Show the trash").click()
    carol.page.get_by_role("button", name="Restore scratch").click()
    scratch.wait_for(timeout=5000)  # back among the cards
    listed = {d["id"]: d for d in httpx.get(f"{url(server)}/api/diagrams").json()}
    assert listed["roadmap"]["title"] == "Q3 plans" and listed["scratch"]["deleted"] is None

"""The replay CLI against a real database file and through a real server process.

``inkwire list|history|export|import|restore`` must answer the same on the
file directly and with ``--server``; ``replay`` re-draws a saved history
into a live room.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.databases import Backend
from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def inkwire(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "collab.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def element(eid: str, index: str, **extra: Any) -> dict[str, Any]:
    return {"id": eid, "type": "rectangle", "x": 0, "y": 0, "index": index, "version": 1, **extra}


async def draw(yjs_url: str, name: str) -> None:
    async with peer(f"{yjs_url}/{name}", 7) as p:
        await p.send_set("a", element("a", "a1"))
        await anyio.sleep(0.05)
        await p.send_set("b", element("b", "a0"))
        await anyio.sleep(0.05)
        await p.send_set("a", element("a", "a1", x=9, version=2))
        await anyio.sleep(0.2)


def ids(doc: dict[str, Any]) -> list[str]:
    return [e["id"] for e in doc["elements"]]


async def test_cli_via_server_and_on_the_file(
    server_process: Any, tmp_path: Path, backend: Backend
) -> None:
    db = backend.target
    server = server_process("--db", str(db), "--grace", "0.2")
    await draw(server.yjs_url, "plan")
    via = ("--server", server.http_url)

    listing = json.loads(inkwire("list", "--json", *via).stdout)
    assert [(d["id"], d["elements"]) for d in listing] == [("plan", 2)]
    history = json.loads(inkwire("history", "plan", "--json", *via).stdout)["versions"]
    assert [v["seq"] for v in history] == [3, 2, 1] and history[0]["changed"] == ["a"]
    assert "+b" in inkwire("history", "plan", *via).stdout

    out = tmp_path / "plan.excalidraw"
    inkwire("export", "plan", "-o", str(out), *via)
    assert ids(json.loads(out.read_text())) == ["b", "a"]
    assert ids(json.loads(inkwire("export", "plan", "--at", "1", *via).stdout)) == ["a"]
    moment = history[1]["time"]
    assert ids(json.loads(inkwire("export", "plan", "--at", moment, *via).stdout)) == ["b", "a"]

    async with peer(f"{server.yjs_url}/plan", 8) as watcher:
        inkwire("restore", "plan", "--at", "1", *via)
        await wait_until(lambda: watcher.snapshot()["b"].get("isDeleted") is True, 5)
    bad = inkwire("restore", "plan", "--at", "99", *via, check=False)
    assert bad.returncode == 1 and "404" in bad.stderr

    scene = {"type": "excalidraw", "elements": [{"id": "n", "type": "ellipse"}]}
    (tmp_path / "new.excalidraw").write_text(json.dumps(scene))
    inkwire("import", str(tmp_path / "new.excalidraw"), *via)
    (tmp_path / "junk.excalidraw").write_text('{"type": "png"}')
    junk = inkwire("import", str(tmp_path / "junk.excalidraw"), "--as", "plan", *via, check=False)
    assert junk.returncode == 1 and "not an .excalidraw file" in junk.stderr

    # The same answers from the file, once the server is gone.
    server.process.terminate()
    server.process.wait(timeout=10)
    file_ = ("--db", str(db))
    listing = json.loads(inkwire("list", "--json", *file_).stdout)
    assert [(d["id"], d["elements"]) for d in listing] == [("new", 1), ("plan", 1)]
    versions = json.loads(inkwire("history", "plan", "--json", *file_).stdout)["versions"]
    assert [v["seq"] for v in versions] == [4, 3, 2, 1]
    assert ids(json.loads(inkwire("export", "plan", *file_).stdout)) == ["a"]
    assert ids(json.loads(inkwire("export", "plan", "--at", "3", *file_).stdout)) == ["b", "a"]

    inkwire("restore", "plan", "--at", "3", *file_)
    assert ids(json.loads(inkwire("export", "plan", *file_).stdout)) == ["b", "a"]
    top = json.loads(inkwire("history", "plan", "--json", "--limit", "1", *file_).stdout)
    assert top["versions"][0]["origin"] == "restore" and top["versions"][0]["added"] == ["b"]
    inkwire("import", str(tmp_path / "new.excalidraw"), "--as", "plan", *file_)
    assert ids(json.loads(inkwire("export", "plan", *file_).stdout)) == ["n"]
    junk = inkwire("import", str(tmp_path / "junk.excalidraw"), "--as", "plan", *file_, check=False)
    assert junk.returncode == 1
    assert ids(json.loads(inkwire("export", "plan", *file_).stdout)) == ["n"]
    missing = inkwire("list", "--db", str(tmp_path / "none.db"), check=False)
    assert missing.returncode == 1 and "no database" in missing.stderr

    # A restarted server serves what the CLI wrote to the file.
    again = server_process("--db", str(db))
    async with peer(f"{again.yjs_url}/plan", 9) as p:
        assert {k for k, v in p.snapshot().items() if not v.get("isDeleted")} == {"n"}


async def test_replay_redraws_history_into_a_live_room(
    server_process: Any, tmp_path: Path, backend: Backend
) -> None:
    db = backend.target
    source = server_process("--db", str(db), "--grace", "0.2")
    await draw(source.yjs_url, "plan")
    source.process.terminate()
    source.process.wait(timeout=10)

    target = server_process("--db", str(tmp_path / "live.db"))
    async with peer(f"{target.yjs_url}/plan-replay", 10) as watcher:
        done = await anyio.to_thread.run_sync(
            lambda: inkwire(
                "replay", "plan", "--db", str(db), "--into", f"ws://127.0.0.1:{target.port}",
                "--speed", "100",
            )
        )  # fmt: skip
        assert "3/3" in done.stderr
        await wait_until(lambda: watcher.snapshot().get("a", {}).get("x") == 9, 5)
        assert set(watcher.snapshot()) == {"a", "b"}

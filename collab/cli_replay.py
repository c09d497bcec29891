"""``inkwire list|history|export|import|restore|replay``: saved diagrams from the terminal.

Each command works on the database directly (``--db``: a SQLite file, or a
``postgresql://`` URL; a file only when no server runs on it) or through a
running server's REST API (``--server URL``); both
paths end in the same :mod:`storage.replay` functions, so their answers are
the same. Edits made on the file directly are appended to its update log,
exactly as a room would have saved them; do not edit a file a server is
serving (use ``--server`` then: the edit reaches its live clients too).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import anyio.to_thread

from storage import StorageError, replay
from storage.databases import exists, open_store, shown
from storage.excalidraw import InvalidDiagram
from storage.store import DiagramArchive
from storage.urls import warn_if_password_in_argv

if TYPE_CHECKING:
    import httpx

COMMANDS = ("list", "history", "export", "import", "restore", "replay")


class CommandError(Exception):
    """A failure to report in one line and exit 1."""


def add_commands(commands: Any) -> None:
    """Register the replay commands on the ``inkwire`` subparsers."""

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help)
        parser.add_argument(
            "--db",
            default="inkwire.db",
            help="SQLite file (default inkwire.db) or postgresql://USER@HOST:PORT/DBNAME",
        )
        if name != "replay":
            parser.add_argument("--server", help="use this server's API, e.g. http://host:3042")
        parser.add_argument(
            "--token",
            help="a token for a server with auth on (with --server; replay: for --into)"
            if name != "replay"
            else "a token for a server with auth on (replay needs one with publish)",
        )
        return parser

    listing = command("list", "saved diagrams, last edited first")
    listing.add_argument("--limit", type=int, default=replay.LIST_PAGE, help="at most this many")
    listing.add_argument("--prefix", default="", help="only diagrams whose name starts with it")
    listing.add_argument("--json", action="store_true")
    history = command("history", "versions of a diagram, newest first")
    history.add_argument("diagram")
    history.add_argument("--limit", type=int, default=replay.HISTORY_PAGE)
    history.add_argument("--before", type=int, help="only versions before this seq")
    history.add_argument("--json", action="store_true")
    export = command("export", "write a diagram as a .excalidraw file")
    export.add_argument("diagram")
    export.add_argument("--at", help="a seq or an ISO-8601 time (default: now)")
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    imported = command("import", "make a .excalidraw file a diagram's content (as an edit)")
    imported.add_argument("file")
    imported.add_argument("--as", dest="diagram", help="diagram name (default: the file's stem)")
    restore = command("restore", "restore a past version as a new edit")
    restore.add_argument("diagram")
    restore.add_argument("--at", required=True, help="a seq or an ISO-8601 time")
    redraw = command("replay", "re-draw a saved diagram's history into a live room")
    redraw.add_argument("diagram")
    redraw.add_argument("--into", required=True, help="the server, e.g. ws://127.0.0.1:3042")
    redraw.add_argument("--as", dest="name", help="room to draw into (default: DIAGRAM-replay)")
    redraw.add_argument("--speed", type=float, default=10.0, help="times faster than it was drawn")
    redraw.add_argument(
        "--max-gap", type=float, default=2.0, help="longest pause between updates, in seconds"
    )


def run(args: argparse.Namespace) -> int:
    """Run one replay command; print the reason and return 1 if it fails."""
    try:
        if getattr(args, "server", None):
            _via_server(args)
        else:
            _direct(args)
    except (CommandError, StorageError, InvalidDiagram, replay.NotFound, replay.BadRequest) as exc:
        print(f"inkwire {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


# --- on the database file ---------------------------------------------------------


def _direct(args: argparse.Namespace) -> None:
    warn_if_password_in_argv(args.db)
    if args.command != "import" and not exists(args.db):
        raise CommandError(f"no database at {shown(args.db)} (use --db PATH, or --server URL)")
    store = open_store(args.db)
    try:
        if args.command == "list":
            listed = replay.list_diagrams(store, limit=args.limit, prefix=args.prefix)
            _print_list(listed, args.json)
        elif args.command == "history":
            page = replay.history(store, args.diagram, limit=args.limit, before=args.before)
            _print_history(page, args.json)
        elif args.command == "export":
            _write_export(replay.export(store, args.diagram, args.at), args.output)
        elif args.command == "import":
            name = args.diagram or Path(args.file).stem
            raw = _read(args.file)
            _print_json(anyio.run(replay.import_in_store, store, name, raw))
        elif args.command == "restore":
            _print_json(anyio.run(replay.restore_in_store, store, args.diagram, args.at))
        elif args.command == "replay":
            anyio.run(_replay, store, args)
    finally:
        store.close()


# --- through a server ---------------------------------------------------------------


def _via_server(args: argparse.Namespace) -> None:
    import httpx  # only here: the commands on a file start without it

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    try:
        with httpx.Client(base_url=args.server.rstrip("/"), headers=headers, timeout=60) as http:
            _requests(http, args)
    except httpx.HTTPError as exc:
        raise CommandError(str(exc)) from exc


def _requests(http: httpx.Client, args: argparse.Namespace) -> None:
    if args.command == "list":
        params = {"limit": args.limit} | ({"prefix": args.prefix} if args.prefix else {})
        _print_list(_ok(http.get("/api/diagrams", params=params)), args.json)
        return
    diagram = args.diagram or Path(args.file).stem
    base = f"/api/diagrams/{quote(diagram, safe='')}"
    if args.command == "history":
        params = {"limit": args.limit} | ({"before": args.before} if args.before else {})
        _print_history(_ok(http.get(f"{base}/history", params=params)), args.json)
    elif args.command == "export":
        params = {"at": args.at} if args.at else {}
        _write_export(_ok(http.get(base, params=params)), args.output)
    elif args.command == "import":
        _print_json(_ok(http.post(f"{base}/import", content=_read(args.file))))
    elif args.command == "restore":
        at: str | int = int(args.at) if args.at.isdigit() else args.at
        _print_json(_ok(http.post(f"{base}/restore", json={"at": at})))


def _ok(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        return body
    reason = body.get("error") if isinstance(body, dict) else response.text.strip()
    raise CommandError(f"{response.status_code}: {reason}")


# --- replay into a live room ------------------------------------------------------


async def _replay(store: DiagramArchive, args: argparse.Namespace) -> None:
    """Send the saved updates, in order, with their original pauses / speed."""
    from clients import DiagramClient  # the CLI is a client here, like a browser

    if args.speed <= 0:
        raise CommandError("--speed must be > 0")
    rows = await anyio.to_thread.run_sync(lambda: list(store.updates(args.diagram)))
    if not rows:
        raise CommandError(f"no saved history for {args.diagram!r}")
    url = args.into.rstrip("/")
    if not url.endswith("/yjs"):
        url += "/yjs"
    name = args.name or f"{args.diagram}-replay"
    progress = Progress(len(rows), f"replay {args.diagram} -> {name}")
    user = {"name": "inkwire replay"}
    async with DiagramClient(url, name, user=user, token=args.token) as client:
        previous = rows[0][1]
        for n, (_seq, ts, _origin, update) in enumerate(rows, 1):
            await anyio.sleep(min(max(ts - previous, 0.0) / args.speed, args.max_gap))
            previous = ts
            client.doc.apply_update(update)
            progress.show(n)
            _refused(client)
        if args.token:  # a read-only token's refusal may still be on its way: wait a little
            with suppress(TimeoutError):
                await client.wait_for(lambda c: c.permission_denied is not None, timeout=1.0)
            _refused(client)
    progress.done()


def _refused(client: Any) -> None:
    if client.permission_denied is not None:
        raise CommandError(f"the server refused the edits: {client.permission_denied}")


class Progress:
    """A one-line progress bar on stderr, redrawn at most every 0.1 s."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self._shown = 0.0

    def show(self, n: int) -> None:
        now = time.monotonic()
        if n < self.total and now - self._shown < 0.1:
            return
        self._shown = now
        filled = 30 * n // self.total
        bar = "#" * filled + "." * (30 - filled)
        print(f"\r{self.label} [{bar}] {n}/{self.total}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        print(file=sys.stderr)


# --- output -------------------------------------------------------------------------


def _read(file: str) -> bytes:
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror}") from None


def _write_export(doc: dict[str, Any], output: str | None) -> None:
    text = json.dumps(doc, indent=2) + "\n"
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)


def _print_json(value: Any) -> None:
    print(json.dumps(value))


def _print_list(diagrams: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        _print_json(diagrams)
        return
    print(f"{'diagram':<32} {'elements':>8}  {'last edit':<29} {'size':>9}")
    stale = False
    for d in diagrams:
        elements = str(d["elements"])
        if d.get("elements_seq", d.get("seq")) != d.get("seq"):
            elements, stale = f"~{elements}", True
        print(f"{d['id']:<32} {elements:>8}  {d['last_edit'] or '-':<29} {d['size']:>9}")
    if stale:
        print("(~: as of the last checkpoint; later edits are not counted yet)")


def _print_history(page: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(page)
        return
    for v in page["versions"]:
        changes = " ".join(
            f"{sign}{eid}"
            for sign, key in (("+", "added"), ("~", "changed"), ("-", "removed"))
            for eid in v[key]
        )
        print(f"{v['seq']:>7}  {v['time']}  {v['origin'] or '-':<8} {changes}")
    if page.get("next_before"):
        print(f"(older: --before {page['next_before']})")

"""The shared layer, ``net``, imports nothing else of inkwire; ``agents`` builds on the servers.

Checked twice for ``net``: in the source (every import statement, wherever
it is: in a function, under ``TYPE_CHECKING``), and at run time (importing
all of ``net`` in a fresh interpreter loads none of the other packages).
``agents`` (the MCP server and its tools) may import ``net``, ``storage``,
``clients``, ``collab`` and ``relays``, never ``cluster`` or ``service``.

And the ``inkwire`` command's parser loads no server, client or settings model:
each command imports those when it runs, so every command starts quickly.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

NET = ROOT / "net"
OTHERS = ("collab", "relays", "storage", "clients", "cluster", "service", "agents")
AGENTS = ROOT / "agents"
AGENTS_MAY_NOT = ("cluster", "service")


def fresh_python(script: str) -> str:
    """What ``script`` prints, run by a fresh interpreter on this checkout (what
    importing loads is only seen where nothing was imported before)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _net_modules() -> list[str]:
    return sorted(
        "net" if path.stem == "__init__" else f"net.{path.stem}" for path in NET.glob("*.py")
    )


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an import statement names, with its line (relative imports resolved)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from a module of net itself
                found.append((node.lineno, "net" + (f".{node.module}" if node.module else "")))
            else:
                assert node.module is not None
                found.append((node.lineno, node.module))
    return found


def _forbidden(module: str) -> bool:
    return module.split(".")[0] in OTHERS


def test_net_source_imports_nothing_else_of_inkwire() -> None:
    files = sorted(NET.glob("*.py"))
    assert NET / "__init__.py" in files  # the check must see the modules it guards
    breaches = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in files
        for line, module in _imported(ast.parse(path.read_text(), str(path)))
        if _forbidden(module)
    ]
    assert not breaches, "net must not import the rest of inkwire:\n" + "\n".join(breaches)


def test_agents_import_only_the_layers_below_them() -> None:
    files = sorted(AGENTS.rglob("*.py"))
    assert AGENTS / "__init__.py" in files
    breaches = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in files
        for line, module in _imported(ast.parse(path.read_text(), str(path)))
        if module.split(".")[0] in AGENTS_MAY_NOT
    ]
    assert not breaches, "agents must not import cluster or service:\n" + "\n".join(breaches)


def test_the_import_check_sees_every_kind_of_import() -> None:
    source = """
import collab.room
from relays import hub
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from storage.sqlite import SQLiteStore
def later():
    import clients
from .wire import Frame
"""
    found = [module for _, module in _imported(ast.parse(source))]
    assert [module for module in found if _forbidden(module)] == [
        "collab.room",
        "relays",
        "storage.sqlite",
        "clients",
    ]
    assert "net.wire" in found


@pytest.mark.processes  # a fresh interpreter: the static check above stays in `make quick`
def test_importing_net_loads_nothing_else_of_inkwire() -> None:
    modules = _net_modules()
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps({'net': sys.modules['net'].__file__, 'loaded': sorted(sys.modules)}))\n"
    )
    report = json.loads(fresh_python(script))
    assert Path(report["net"]).parent == NET  # this checkout's net, not an installed one
    loaded = report["loaded"]
    assert set(modules) <= set(loaded)
    others = [name for name in loaded if _forbidden(name)]
    assert not others, f"importing net loaded {others}"


AGENTS = ROOT / "agents"
#: What ``agents`` may build on: the servers' pieces, never the relays, cluster or service.
AGENTS_MAY_IMPORT = {"net", "storage", "clients", "collab", "agents"}
#: The pure element model: plain dicts in and out, no I/O, no CRDT, no MCP SDK.
AGENTS_PURE = ("specs", "text", "elements", "layout", "edits", "describe")
PURE_FORBIDDEN = {"pycrdt", "mcp", "anyio", "httpx", "net", "collab", "clients", "storage"}


def test_agents_import_only_what_they_build_on() -> None:
    files = sorted(AGENTS.glob("**/*.py"))
    assert AGENTS / "__init__.py" in files
    inkwire = {*OTHERS, "net", "agents"}
    breaches = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in files
        for line, module in _imported(ast.parse(path.read_text(), str(path)))
        if module.split(".")[0] in inkwire and module.split(".")[0] not in AGENTS_MAY_IMPORT
    ]
    assert not breaches, "agents may import only net, storage, clients, collab:\n" + "\n".join(
        breaches
    )


def test_the_agents_element_model_is_pure() -> None:
    breaches = []
    for name in AGENTS_PURE:
        path = AGENTS / f"{name}.py"
        if not path.exists():  # describe may come later; the others are the model
            continue
        for line, module in _imported(ast.parse(path.read_text(), str(path))):
            if module.split(".")[0] in PURE_FORBIDDEN:
                breaches.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert not breaches, "the element model does no I/O:\n" + "\n".join(breaches)


# What building the `inkwire` parser may not load: each is imported by the command that
# uses it (a server, a client, the settings model, token checks), so the commands that do
# not (--help, list, config's parser...) start without them.
NOT_AT_STARTUP = (
    "clients",  # httpx-ws, httpcore, trio: tail and replay
    "httpx",  # --server and publish
    "hypercorn",  # serve, relay, up
    "jwt",  # token checks and minting
    "pydantic",  # the settings model: serve, relay, up, config, deploy
    "relays.app",
    "collab.app",
    "service.settings",
)


@pytest.mark.processes  # a fresh interpreter, as `inkwire` starts
def test_the_cli_parser_loads_no_server_client_or_settings_model() -> None:
    script = (
        "import contextlib, io, json, sys\n"
        "from collab import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        "print(json.dumps({'cli': cli.__file__, 'loaded': sorted(sys.modules)}))\n"
    )
    report = json.loads(fresh_python(script))
    assert Path(report["cli"]).parent == ROOT / "collab"
    loaded = [
        name
        for name in report["loaded"]
        if any(name == heavy or name.startswith(f"{heavy}.") for heavy in NOT_AT_STARTUP)
    ]
    assert not loaded, f"building the inkwire parser loaded {loaded}"

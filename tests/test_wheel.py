"""The wheel, as a deployment gets it: built by ``python -m build``, installed alone in a
fresh venv, serving the editor with no Node and no checkout.

The build runs on a copy of the tracked files plus the web app's build
(``clients/web/dist``, made by ``make web``), so whatever lies untracked in
this checkout cannot leak into the wheel. pip installs the wheel's
dependencies as it is configured to (the registry, or a wheelhouse given in
``$INKWIRE_WHEELHOUSE``, used with ``--no-index``). Then every module of the
product is imported from the venv (the wheel depends on what the product
imports: nothing test-only, such as pycrdt-websocket), and ``inkwire serve``
from the venv answers ``/d/x`` and one hashed asset of the build inside it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from collab.web import DEFAULT_ROOT
from tests.conftest import ROOT, free_port
from tests.node import in_ci

pytestmark = [pytest.mark.slow, pytest.mark.processes]

PRODUCT = ("net", "collab", "relays", "storage", "clients", "cluster", "agents")
TEST_ONLY = ("pycrdt-websocket", "pytest", "playwright", "websockets", "build")
IMPORT_ALL = """
import importlib, pkgutil, sys
names = []
for top in sys.argv[1:]:
    package = importlib.import_module(top)
    names.append(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        importlib.import_module(info.name)
        names.append(info.name)
    assert "site-packages" in package.__file__, package.__file__
print(len(names))
"""


def run(argv: list[str], cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_clean_env()
    )
    assert done.returncode == 0, f"{argv[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _clean_env() -> dict[str, str]:
    """This environment without what would make the venv see this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding the freshly built wheel and its dependencies, nothing else."""
    if not (DEFAULT_ROOT / "index.html").is_file():
        reason = f"the web app is not built in {DEFAULT_ROOT}: run `make web`"
        if in_ci():
            pytest.fail(f"CI is set, so the wheel test must run: {reason}")
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    for name in filter(None, tracked.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    shutil.copytree(DEFAULT_ROOT, source / "clients" / "web" / "dist")
    run([sys.executable, "-m", "build", "--outdir", str(work / "out"), str(source)], work)
    (wheel,) = (work / "out").glob("inkwire-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "clients/web/dist/index.html" in names
    assert not [n for n in names if "node_modules" in n or n.startswith("tests/")]
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], work)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    wheelhouse = os.environ.get("INKWIRE_WHEELHOUSE")
    if wheelhouse:
        pip += ["--no-index", "--find-links", wheelhouse]
    run([*pip, str(wheel)], work, timeout=600)
    return venv


def test_the_wheel_depends_on_what_the_product_imports_only(installed: Path) -> None:
    listed = run([str(installed / "bin" / "python"), "-m", "pip", "list"], installed)
    present = {line.split()[0].lower() for line in listed.splitlines()[2:] if line.strip()}
    assert "inkwire" in present
    assert present.isdisjoint(TEST_ONLY), present & set(TEST_ONLY)
    # every module of every package, imported from the venv, not from this checkout
    count = run([str(installed / "bin" / "python"), "-c", IMPORT_ALL, *PRODUCT], installed)
    assert int(count) > 50


def test_inkwire_serve_from_the_wheel_serves_the_editor(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(installed / "bin" / "inkwire"), "serve", "--port", str(port), "--db", ":memory:"],
            cwd=tmp_path,  # nowhere near a checkout
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**_clean_env(), "PATH": f"{installed / 'bin'}:/usr/bin:/bin"},
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not ready: {log.read_text()}"
            time.sleep(0.1)
        page = httpx.get(f"{base}/d/x", timeout=5)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        asset = re.search(r'src="(/assets/index-[\w-]+\.js)"', page.text)
        assert asset is not None, page.text
        script = httpx.get(
            f"{base}{asset.group(1)}", headers={"accept-encoding": "gzip"}, timeout=10
        )
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "immutable" in script.headers["cache-control"]
        installed_copy = next(installed.glob("lib/python*/site-packages/clients/web/dist"))
        assert script.content == (installed_copy / asset.group(1).lstrip("/")).read_bytes()
        assert httpx.get(f"{base}/dashboard", timeout=5).text == page.text
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)

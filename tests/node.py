"""Node-driven tests: find Node and the interop packages, or say loudly why not.

Without them the tests skip with the reason; under CI they must run, so a
missing install step fails instead of passing quietly.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

INTEROP_DIR = Path(__file__).parent / "interop"


def missing_node(packages: Iterable[str]) -> str | None:
    if shutil.which("node") is None:
        return "`node` is not on PATH (install Node.js 20.19+)"
    missing = [
        name
        for name in packages
        if not (INTEROP_DIR / "node_modules" / name / "package.json").is_file()
    ]
    if missing:
        return (
            f"Node packages not installed in {INTEROP_DIR}/node_modules ({', '.join(missing)}): "
            "run `make test` or `cd tests/interop && npm ci`"
        )
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_node(what: str, packages: Iterable[str]) -> None:
    """Skip (or, under CI, fail) the calling test when Node or a package is missing."""
    reason = missing_node(packages)
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI is set, so the {what} must run: {reason}")
    pytest.skip(f"{what} NOT RUN: {reason}")

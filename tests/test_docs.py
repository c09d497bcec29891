"""The documentation lives in the repository: nothing outside ``docs/`` cites a
document a clone does not have, and every relative link in the markdown files
leads to a file (and heading) that exists."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = ROOT / "docs"
CHECKED_SUFFIXES = frozenset({".py", ".js", ".mjs", ".jsx", ".md", ".toml", ".sh"})
CHECKED_NAMES = frozenset({"Makefile"})
SKIPPED_DIRS = frozenset({".git", ".venv", "node_modules", "dist", "test-artifacts"})

# The old design notes and service catalog, kept outside the repository: a
# citation of them sends a reader to a file they do not have.
OUTSIDE_DOCUMENT = re.compile(r"(?i:design\.md)|\bDESIGN\b|(?i:catalog\.md)|(?<![\w.-])shared/")

LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def repo_files() -> list[Path]:
    """The repository's files: git's tracked ones, or a walk of the tree without git."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
        paths = [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in ROOT.rglob("*") if not SKIPPED_DIRS & set(p.relative_to(ROOT).parts)]
    return sorted(p for p in paths if p.is_file())


def checked_for_citations(path: Path) -> bool:
    relative = path.relative_to(ROOT)
    if relative.parts[0] == "docs" or path == Path(__file__).resolve():
        return False
    return (
        path.suffix in CHECKED_SUFFIXES or path.name in CHECKED_NAMES or relative.parts[0] == ".ci"
    )


def test_nothing_cites_documents_outside_the_repo() -> None:
    found = []
    for path in filter(checked_for_citations, repo_files()):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE_DOCUMENT.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "documents outside the repo are cited; point into docs/ instead:\n" + (
        "\n".join(found)
    )


# --- links ------------------------------------------------------------------------------


def prose(markdown: str) -> str:
    """The text without fenced code blocks and code spans (no links live in them)."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        base = slug(heading)
        anchor, n = base, 0
        while anchor in found:
            n += 1
            anchor = f"{base}-{n}"
        found.add(anchor)
    return found


def links(path: Path) -> Iterator[str]:
    for target in LINK.findall(prose(path.read_text())):
        if not SCHEME.match(target):
            yield target


MARKDOWN = [p for p in repo_files() if p.suffix == ".md"]


def test_the_docs_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in MARKDOWN}
    for page in ("README.md", "architecture.md", "relay-protocol.md", "catalogs.md"):
        assert f"docs/{page}" in names
    assert any(target.startswith("docs/") for target in links(ROOT / "README.md"))


@pytest.mark.parametrize("path", MARKDOWN, ids=[str(p.relative_to(ROOT)) for p in MARKDOWN])
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target in links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.is_relative_to(ROOT) or not linked.exists():
            broken.append(f"{target}: no such file in the repo")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{path.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)

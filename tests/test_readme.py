"""The README's catalog tables are the generated ones (they cannot drift from the code)."""

from relays.catalogs import ALL
from relays.docs import BEGIN, END, reference_all
from tests.conftest import ROOT


def test_readme_catalog_tables_are_current() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == reference_all(ALL).strip(), (
        "README catalogs are stale: run `.venv/bin/python -m relays.docs README.md`"
    )

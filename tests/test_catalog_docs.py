"""docs/catalogs.md holds the generated catalog tables (they cannot drift from the code)."""

from relays.catalogs import ALL
from relays.docs import BEGIN, END, reference_all
from tests.conftest import ROOT


def test_catalog_tables_are_current() -> None:
    page = (ROOT / "docs" / "catalogs.md").read_text()
    assert BEGIN in page and END in page, "docs/catalogs.md lost its generated-block markers"
    block = page.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == reference_all(ALL).strip(), (
        "docs/catalogs.md is stale: run `.venv/bin/python -m relays.docs docs/catalogs.md`"
    )

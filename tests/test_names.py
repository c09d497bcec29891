"""The diagram-name rule is one rule: the server's, and the web app's copy of it."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from storage.names import DIAGRAM_NAME, NAME_PREFIX

WEB_API = Path(__file__).parent.parent / "clients" / "web" / "src" / "api.js"


def test_the_web_app_checks_the_same_pattern() -> None:
    match = re.search(r"export const DIAGRAM_NAME = /\^(.*)\$/;", WEB_API.read_text())
    assert match is not None, "clients/web/src/api.js no longer exports DIAGRAM_NAME"
    assert match.group(1) == DIAGRAM_NAME.pattern


@given(st.text(max_size=140))
def test_a_name_is_a_prefix_of_itself(name: str) -> None:
    if DIAGRAM_NAME.fullmatch(name):
        assert NAME_PREFIX.fullmatch(name)
        assert "/" not in name and "%" not in name and 1 <= len(name) <= 128

"""The rooms channel's messages, without sockets: every message round-trips, junk is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.messages import BadMessage, Kind, RoomMessage, decode, encode

nodes = st.text("0123456789abcdef", min_size=12, max_size=12)
diagrams = st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True)


@given(st.sampled_from(Kind), nodes, diagrams, st.binary(max_size=300))
def test_round_trip(kind: Kind, node: str, diagram: str, payload: bytes) -> None:
    message = RoomMessage(kind, node, diagram, payload)
    assert decode(encode(message)) == message


@given(st.binary(max_size=64))
def test_junk_is_refused_or_read_as_some_message(data: bytes) -> None:
    try:
        message = decode(data)
    except BadMessage:
        return
    assert encode(message) == data  # whatever decodes is exactly what it says


def test_what_is_refused() -> None:
    good = encode(RoomMessage(Kind.UPDATE, "a" * 12, "d", b"xy"))
    for bad in (b"", good[:5], b"Z" + good[1:], good[:13] + b"\x05d"):
        with pytest.raises(BadMessage):
            decode(bad)
    with pytest.raises(ValueError, match="node id"):
        encode(RoomMessage(Kind.UPDATE, "short", "d"))

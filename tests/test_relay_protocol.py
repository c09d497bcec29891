"""The relay wire protocol without sockets: parsing, replies, events, batching."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relays.protocol import (
    ErrorCode,
    Ping,
    Pong,
    PreparedEvent,
    ProtocolError,
    Request,
    Welcome,
    encode_error,
    encode_event,
    encode_failure,
    encode_ping,
    encode_pong,
    encode_protocol_error,
    encode_response,
    encode_welcome,
    join_batch,
    new_id,
    parse_client_message,
    split_batch,
)

ENVELOPE_KEYS = {
    "id",
    "correlation_id",
    "type",
    "event",
    "data",
    "timestamp",
    "room",
    "error_code",
    "error_message",
}


def decode(text: str) -> dict[str, Any]:
    message = json.loads(text)
    assert isinstance(message, dict)
    assert message.keys() >= ENVELOPE_KEYS
    stamp = datetime.fromisoformat(message["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    return message


def bad_request(text: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(text)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    return caught.value


# --- parsing -------------------------------------------------------------------


def test_request_as_existing_clients_send_it() -> None:
    frame = json.dumps(
        {"type": "request", "event": "subscribe", "data": {"channel": "adapter:x"}, "id": "sub_1"}
    )
    message = parse_client_message(frame)
    assert message == Request("subscribe", {"channel": "adapter:x"}, "sub_1")
    assert isinstance(message, Request)
    assert message.reply_to == "sub_1"


def test_correlation_id_wins_over_id() -> None:
    message = parse_client_message(
        '{"type":"request","event":"x","id":"a","correlation_id":"b","data":null}'
    )
    assert isinstance(message, Request)
    assert message.reply_to == "b"
    assert message.data == {}


def test_integer_ids_accepted_and_echoed() -> None:
    message = parse_client_message('{"type":"request","event":"x","id":7}')
    assert isinstance(message, Request)
    assert decode(encode_response(message))["correlation_id"] == 7


def test_ping_and_pong() -> None:
    ping = parse_client_message('{"type":"ping","id":"p1"}')
    assert ping == Ping("p1")
    assert isinstance(ping, Ping)
    pong = decode(encode_pong(ping))
    assert (pong["type"], pong["correlation_id"]) == ("pong", "p1")
    assert parse_client_message('{"type":"pong","correlation_id":"s1"}') == Pong(None, "s1")
    assert decode(encode_ping())["type"] == "ping"


def test_unknown_top_level_keys_are_ignored() -> None:
    message = parse_client_message('{"type":"request","event":"x","extra":[1,2]}')
    assert message == Request("x")


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "",
        "[1,2]",
        '"text"',
        "42",
        "null",
        b"\xff\xfe",
        "[" * 100_000,
        '{"event":"x"}',
        '{"type":1}',
        '{"type":"nonsense"}',
        '{"type":"event","event":"x"}',
        '{"type":"response","event":"x"}',
        '{"type":"request"}',
        '{"type":"request","event":""}',
        '{"type":"request","event":5}',
        '{"type":"request","event":"x","data":[1]}',
        '{"type":"request","event":"x","data":"s"}',
        '{"type":"request","event":"x","id":true}',
        '{"type":"request","event":"x","id":1.5}',
        '{"type":"request","event":"x","id":{}}',
        '{"type":"request","event":"x","correlation_id":[]}',
        '{"type":"request","event":"x","timestamp":3}',
        '{"type":"request","event":"' + "e" * 500 + '"}',
    ],
)
def test_malformed_frames_are_bad_requests(frame: str | bytes) -> None:
    error = bad_request(frame)
    reply = decode(encode_protocol_error(error))
    assert reply["type"] == "error"
    assert reply["error_code"] == "BAD_REQUEST"
    assert reply["error_message"]


def test_bad_request_still_correlates_when_it_can() -> None:
    error = bad_request('{"type":"request","event":"subscribe","id":"s9","data":[]}')
    reply = decode(encode_protocol_error(error))
    assert (reply["correlation_id"], reply["event"]) == ("s9", "subscribe")


# --- replies -------------------------------------------------------------------


def test_response_correlation_rules() -> None:
    with_id = decode(encode_response(Request("subscribe", id="sub_1"), {"channel": "c"}))
    assert with_id["type"] == "response"
    assert with_id["event"] == "subscribe"
    assert with_id["correlation_id"] == "sub_1"
    assert with_id["data"] == {"channel": "c"}
    assert with_id["id"] != "sub_1"
    both = decode(encode_response(Request("x", id="a", correlation_id="b")))
    assert both["correlation_id"] == "b"
    neither = decode(encode_response(Request("x")))
    assert neither["correlation_id"] is None


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_encodes(code: ErrorCode) -> None:
    reply = decode(encode_error(code, "why", event="subscribe", correlation_id="r1"))
    assert reply["type"] == "error"
    assert (reply["error_code"], reply["error_message"]) == (code.value, "why")
    assert (reply["event"], reply["correlation_id"]) == ("subscribe", "r1")


def test_unexpected_exceptions_never_leak() -> None:
    request = Request("get_x", id="q1")
    secret = RuntimeError("/etc/passwd line 3: Traceback (most recent call last)")
    reply = decode(encode_failure(secret, request))
    assert reply["error_code"] == "INTERNAL_ERROR"
    assert "passwd" not in json.dumps(reply)
    assert reply["correlation_id"] == "q1"


def test_protocol_errors_are_addressed_to_the_request() -> None:
    request = Request("get_adapter_status", id="q2")
    error = ProtocolError(ErrorCode.NOT_FOUND, "no such adapter")
    reply = decode(encode_failure(error, request))
    assert reply["error_code"] == "NOT_FOUND"
    assert (reply["event"], reply["correlation_id"]) == ("get_adapter_status", "q2")


def test_welcome() -> None:
    welcome = decode(
        encode_welcome("c1", server="dhruva", authenticated=False, limits={"max_message": 65536})
    )
    assert (welcome["type"], welcome["event"]) == ("event", "session.created")
    assert welcome["data"] == {
        "connection_id": "c1",
        "server": "dhruva",
        "protocol": "inkwire-relay/1",
        "authenticated": False,
        "limits": {"max_message": 65536},
    }


@pytest.mark.parametrize("authenticated", [False, True])
def test_a_welcome_encoded_once_is_the_same_text(authenticated: bool) -> None:
    """Welcome splices a connection's ids and time into a text encoded once: byte for
    byte what encode_welcome makes (key order, compact JSON, escapes)."""
    limits = {"max_message_size": 1 << 20, "history_age": 3600, "keepalive_interval": 25.0}
    welcome = Welcome(server='dh"ru\u00e9va', limits=limits)
    text = welcome.encode('c\n"1', authenticated=authenticated, id="i1", timestamp="t1")
    expected = decode(
        encode_welcome('c\n"1', server='dh"ru\u00e9va', authenticated=authenticated, limits=limits)
    )
    expected.update(id="i1", timestamp="t1")
    assert text == json.dumps(expected, separators=(",", ":"))
    fresh = decode(welcome.encode("c2", authenticated=authenticated))
    assert fresh["id"] != decode(welcome.encode("c2", authenticated=authenticated))["id"]
    assert fresh["timestamp"].endswith("+00:00")


def test_message_ids_are_uuid4_hex() -> None:
    for _ in range(200):
        value = new_id()
        assert value == uuid.UUID(hex=value, version=4).hex


# --- events --------------------------------------------------------------------


def test_event_envelope() -> None:
    data = {"adapter_id": "x"}
    text = encode_event("adapter.activated", "adapter:x", data, offset=17, epoch="e1")
    event = decode(text)
    assert event["type"] == "event"
    assert (event["event"], event["room"], event["data"]) == (
        "adapter.activated",
        "adapter:x",
        {"adapter_id": "x"},
    )
    assert (event["offset"], event["epoch"]) == (17, "e1")
    assert event["correlation_id"] is None
    assert event["error_code"] is None


def test_a_prepared_event_rebuilt_from_its_head_is_the_same_event() -> None:
    payload = {"diagram_id": "d", "s": 'quote " \t\n and é', "n": [1, {"x": None}]}
    prepared = PreparedEvent("element.added", payload)
    again = PreparedEvent.from_head("element.added", prepared.head)
    assert again.for_channel("diagram:d", 3, "ep") == prepared.for_channel("diagram:d", 3, "ep")
    assert again.data == payload  # decoded from the head, on demand
    assert "\t" not in prepared.head and "\n" not in prepared.head  # safe to split records on


def test_prepared_event_is_one_event_on_many_channels() -> None:
    prepared = PreparedEvent("element.added", {"diagram_id": "d", "s": 'quote " \n and é'})
    one = decode(prepared.for_channel("diagram:d", 1, "ep"))
    two = decode(prepared.for_channel("element:e", 5, "ep"))
    assert one["id"] == two["id"]
    assert one["timestamp"] == two["timestamp"]
    assert one["data"] == two["data"] == {"diagram_id": "d", "s": 'quote " \n and é'}
    assert (one["room"], one["offset"], two["room"], two["offset"]) == (
        "diagram:d",
        1,
        "element:e",
        5,
    )


# --- batching ------------------------------------------------------------------


def test_batch_round_trip() -> None:
    messages = [
        encode_event("e", "c", {"text": "line\nbreak"}, offset=i, epoch="x") for i in range(3)
    ]
    frame = join_batch(messages)
    assert frame.count("\n") == 2
    assert split_batch(frame) == messages
    assert split_batch(messages[0]) == [messages[0]]
    assert split_batch("") == []


# --- property: arbitrary input never escapes as anything but ProtocolError ------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
envelope_keys = st.sampled_from(
    ["type", "event", "data", "id", "correlation_id", "timestamp", "room", "x"]
)
envelopes = st.dictionaries(
    envelope_keys,
    json_values | st.sampled_from(["request", "ping", "pong", "event", "subscribe"]),
    max_size=6,
)


def check_any_frame(frame: str | bytes) -> None:
    try:
        message = parse_client_message(frame)
    except ProtocolError as error:
        reply = decode(encode_protocol_error(error))
        assert reply["error_code"] in {code.value for code in ErrorCode}
    else:
        assert isinstance(message, Request | Ping | Pong)
        if isinstance(message, Request):
            decode(encode_response(message, {"ok": True}))


@given(st.text())
def test_arbitrary_text_only_raises_protocol_errors(frame: str) -> None:
    check_any_frame(frame)


@given(st.binary())
def test_arbitrary_bytes_only_raise_protocol_errors(frame: bytes) -> None:
    check_any_frame(frame)


@given(json_values | envelopes)
def test_arbitrary_json_only_raises_protocol_errors(value: Any) -> None:
    check_any_frame(json.dumps(value))

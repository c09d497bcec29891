"""Token scope of requests (relays.scope), without sockets: which channels each request reads."""

from __future__ import annotations

from typing import Any

import pytest

from net.tokens import OPEN, Authenticator, Grant, make_token
from relays.catalogs import BY_NAME
from relays.projection import Projection
from relays.protocol import ErrorCode, ProtocolError
from relays.scope import Scopes

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


def grant(*channels: str) -> Grant:
    return Grant(sub="t", channels=channels, publish=False)


# (service, request, params, a grant that covers it, grants that do not)
CASES: list[tuple[str, str, dict[str, Any], tuple[str, ...], list[tuple[str, ...]]]] = [
    ("dhruva", "get_adapter_status", {"adapter_id": "a1"}, ("adapter:a1",), [("adapter:a2",)]),
    (
        "dhruva",
        "get_distribution_status",
        {"repo": "org/r"},
        ("distribution:org/*",),
        [("adapter:*",)],
    ),
    (
        "fastblocks",
        "get_component_state",
        {"component_id": "c1"},
        ("component:c1",),
        [("render", "state"), ("page:*",)],
    ),
    ("fastblocks", "get_page_status", {"page_id": "p1"}, ("page:p1",), [("component:*",)]),
    (
        "fastblocks",
        "register_component",
        {"component_id": "c1", "page_id": "p1"},
        ("component:c1", "page:p1"),
        [("page:p1",), ("component:c1",)],
    ),
    ("fastblocks", "trigger_render", {"component_id": "c1"}, ("component:*",), [("render",)]),
    ("crackerjack", "get_test_status", {"run_id": "r1"}, ("test:*",), [("coverage",)]),
    ("crackerjack", "get_quality_gate", {"project": "x"}, ("quality:x",), [("coverage",)]),
    ("mahavishnu", "get_workflow_status", {"workflow_id": "w"}, ("workflow:w",), [("pool:*",)]),
    ("mahavishnu", "get_pool_status", {"pool_id": "p"}, ("pool:p",), [("workflow:*",)]),
    ("akosha", "get_patterns", {"category": "c"}, ("patterns:c",), [("patterns:d",)]),
    # no param names a channel: the fixed channel the records travel on
    (
        "session-buddy",
        "get_session",
        {"session_id": "s"},
        ("sessions",),
        [("knowledge", "metrics")],
    ),
    ("session-buddy", "get_metrics", {}, ("metrics",), [("sessions",)]),
    ("excalidraw", "get_active_users", {"room_id": "d"}, ("collaboration:d",), [("diagram:d",)]),
    ("excalidraw", "get_diagram_status", {"diagram_id": "d"}, ("diagram:d",), [("element:*",)]),
    (
        "excalidraw",
        "join_collaboration",
        {"room_id": "d", "user_id": "u"},
        ("collaboration:*",),
        [("cursor", "diagram:d")],
    ),
]


@pytest.mark.parametrize(
    ("service", "name", "params", "enough", "not_enough"),
    CASES,
    ids=[f"{c[0]}-{c[1]}" for c in CASES],
)
@pytest.mark.parametrize("projection", [True, False], ids=["projection", "service"])
def test_a_request_needs_the_channels_it_reads(
    service: str,
    name: str,
    params: dict[str, Any],
    enough: tuple[str, ...],
    not_enough: list[tuple[str, ...]],
    projection: bool,
) -> None:
    scopes = Scopes(BY_NAME[service])
    assert scopes.check(grant(*enough), name, params, projection=projection) is None
    assert scopes.check(OPEN, name, params, projection=projection) is None
    assert scopes.check(grant("*"), name, params, projection=projection) is None
    for channels in [*not_enough, ()]:
        with pytest.raises(ProtocolError) as caught:
            scopes.check(grant(*channels), name, params, projection=projection)
        assert caught.value.code is ErrorCode.FORBIDDEN, channels


def test_requests_naming_no_channel_and_reading_no_projection_pass() -> None:
    scopes = Scopes(BY_NAME["dhruva"])
    assert scopes.check(grant(), "unsubscribe", {"channel": "adapter:x"}, projection=False) is None
    assert scopes.check(grant(), "a_service_request", {"anything": 1}, projection=False) is None
    # a service's own request naming a catalog resource is bound all the same
    with pytest.raises(ProtocolError):
        scopes.check(grant("adapter:a1"), "restart", {"adapter_id": "a2"}, projection=False)


def test_a_value_that_cannot_name_a_channel_is_not_a_way_around() -> None:
    scopes = Scopes(BY_NAME["dhruva"])
    with pytest.raises(ProtocolError) as caught:
        scopes.check(
            grant("adapter:a1"), "get_adapter_status", {"adapter_id": "a 1"}, projection=True
        )
    assert caught.value.code is ErrorCode.FORBIDDEN


def test_pattern_that_covers_one_value_does_not_cover_every_value() -> None:
    scopes = Scopes(BY_NAME["dhruva"])
    for channels in [("adapter:?",), ("adapter:a*",), ("?",)]:
        with pytest.raises(ProtocolError):
            scopes.check(grant(*channels), "list_adapters", {}, projection=False)
    assert scopes.check(grant("adapter:*"), "list_adapters", {}, projection=False) is None


def _listed(service: str, name: str, params: dict[str, Any], *channels: str) -> list[str]:
    catalog = BY_NAME[service]
    projection = Projection(catalog)
    if service == "dhruva":
        for adapter in ("a1", "a2"):
            projection.apply(
                "adapter.activated", {"adapter_id": adapter, "repo": "r", "version": "1"}
            )
    else:
        for pattern, category in (("p1", "x"), ("p2", "y")):
            payload = {"pattern_id": pattern, "type": "t", "confidence": 1, "category": category}
            projection.apply("pattern.detected", payload)
        projection.apply("anomaly.detected", {"anomaly_id": "n1", "type": "t", "severity": 1})
    visible = Scopes(catalog).check(grant(*channels), name, params, projection=True)
    answer = projection.answer(name, params, visible)
    [records] = answer.values()
    return sorted(r.get("adapter_id") or r.get("pattern_id") or r["anomaly_id"] for r in records)


def test_a_projected_list_holds_only_what_the_token_covers() -> None:
    assert _listed("dhruva", "list_adapters", {}, "adapter:a1") == ["a1"]
    assert _listed("dhruva", "list_adapters", {}, "adapter:*") == ["a1", "a2"]
    assert _listed("dhruva", "list_adapters", {}, "registry") == []
    assert _listed("akosha", "get_patterns", {}, "patterns:x") == ["p1"]
    assert _listed("akosha", "get_patterns", {"category": "y"}, "patterns:y") == ["p2"]
    assert _listed("akosha", "get_anomalies", {}, "anomalies") == ["n1"]
    assert _listed("akosha", "get_anomalies", {}, "insights") == []


def test_a_token_knows_its_expiry() -> None:
    auth = Authenticator(SECRET)
    checked = auth.check(make_token(SECRET, channels=["*"], ttl=60))
    assert checked.expires is not None and not checked.expired()
    assert checked.expired(now=checked.expires)
    assert checked.describe()["expires"] == checked.expires
    forever = auth.check(make_token(SECRET, channels=["*"]))
    assert forever.expires is None and not forever.expired(now=1e12)

"""The catalogs against the services' specification, and what derives from them (no sockets)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from relays.broadcaster import Broadcaster
from relays.catalog import (
    Catalog,
    CatalogError,
    EventSpec,
    Field,
    From,
    Get,
    Table,
    Update,
    event,
    method,
    request,
)
from relays.catalogs import ALL, BY_NAME
from relays.docs import reference, reference_all
from relays.projection import Projection
from relays.protocol import ErrorCode, ProtocolError

# --- the catalogs as the services specified them ------------------------------------
# service: (port, channels, {event: (channel, also on, payload)}, {method: params},
#           {request: params}); payload and params in the catalog notation.

SPEC: dict[str, tuple[int, str, dict[str, tuple[str, str, str]], dict[str, str], dict[str, str]]]
SPEC = {
    "dhruva": (
        8693,
        "adapter:{adapter_id} distribution:{repo} lifecycle registry global",
        {
            "adapter.activated": (
                "adapter:{adapter_id}",
                "lifecycle",
                "adapter_id repo version config?",
            ),
            "adapter.deactivated": ("adapter:{adapter_id}", "lifecycle", "adapter_id repo reason"),
            "adapter.swapped": ("distribution:{repo}", "lifecycle", "old_adapter new_adapter repo"),
            "distribution.completed": (
                "distribution:{repo}",
                "",
                "repo adapters_count adapters? duration_ms",
            ),
            "registry.updated": ("registry", "", "version added? removed? updated?"),
            "lifecycle.changed": ("lifecycle", "", "entity_type entity_id old_state new_state"),
        },
        {
            "adapter_activated": "adapter_id repo metadata",
            "adapter_deactivated": "adapter_id repo reason",
            "adapter_swapped": "old_adapter new_adapter repo",
            "distribution_completed": "repo adapters duration",
            "registry_updated": "registry_version changes",
            "lifecycle_changed": "entity_type entity_id old_state new_state",
        },
        {
            "get_adapter_status": "adapter_id",
            "get_distribution_status": "repo",
            "list_adapters": "",
        },
    ),
    "excalidraw": (
        3042,
        "diagram:{diagram_id} element:{element_id} collaboration:{room_id} cursor selection global",
        {
            "element.added": (
                "diagram:{diagram_id}",
                "element:{element_id}",
                "diagram_id element_id type props user_id?",
            ),
            "element.updated": (
                "diagram:{diagram_id}",
                "element:{element_id}",
                "diagram_id element_id changes user_id?",
            ),
            "element.deleted": (
                "diagram:{diagram_id}",
                "element:{element_id}",
                "diagram_id element_id user_id?",
            ),
            "cursor.moved": ("collaboration:{room_id}", "cursor", "room_id user_id x y color?"),
            "selection.changed": (
                "collaboration:{room_id}",
                "selection",
                "room_id user_id element_ids",
            ),
            "user.joined": ("collaboration:{room_id}", "", "room_id user_id name color?"),
            "user.left": ("collaboration:{room_id}", "", "room_id user_id"),
            "diagram.saved": ("diagram:{diagram_id}", "", "diagram_id storage_key timestamp"),
            "diagram.locked": ("diagram:{diagram_id}", "", "diagram_id user_id reason"),
        },
        {
            "element_added": "diagram_id element user_id",
            "element_updated": "diagram_id element_id changes user_id",
            "element_deleted": "diagram_id element_id user_id",
            "cursor_moved": "room_id user_id position",
            "selection_changed": "room_id user_id selected_elements",
            "diagram_saved": "diagram_id storage_key",
        },
        {
            "join_collaboration": "room_id user_id name? color?",
            "leave_collaboration": "room_id",
            "broadcast_cursor": "room_id x y",
            "get_diagram_status": "diagram_id",
            "get_active_users": "room_id",
        },
    ),
    "fastblocks": (
        8684,
        "component:{component_id} page:{page_id} render state hot_reload global",
        {
            "component.updated": ("component:{component_id}", "", "component_id props state"),
            "component.mounted": ("page:{page_id}", "", "component_id page_id props?"),
            "component.unmounted": ("page:{page_id}", "", "component_id page_id"),
            "page.rendered": ("page:{page_id}", "", "page_id duration component_count"),
            "state.changed": (
                "component:{component_id}",
                "state",
                "component_id path old_value new_value",
            ),
            "hot_reload.triggered": ("hot_reload", "", "file_path affected_components"),
            "render.started": ("render", "", "component_id render_type"),
            "render.completed": ("render", "", "component_id duration result?"),
            "render.failed": ("render", "", "component_id error"),
        },
        {
            "component_updated": "component_id props state",
            "component_mounted": "component_id page_id",
            "component_unmounted": "component_id page_id",
            "page_rendered": "page_id duration component_count",
            "state_changed": "component_id state_path old_value new_value",
            "hot_reload": "file_path components",
        },
        {
            "get_component_state": "component_id",
            "get_page_status": "page_id",
            "trigger_render": "component_id",
            "register_component": "component_id page_id? props?",
        },
    ),
    "mahavishnu": (
        8690,
        "workflow:{workflow_id} pool:{pool_id}",
        {
            "workflow.started": ("workflow:{workflow_id}", "", "workflow_id adapter prompt"),
            "workflow.stage_completed": (
                "workflow:{workflow_id}",
                "",
                "workflow_id stage_name result",
            ),
            "workflow.completed": ("workflow:{workflow_id}", "", "workflow_id result"),
            "workflow.failed": ("workflow:{workflow_id}", "", "workflow_id error"),
            "worker.status_changed": ("pool:{pool_id}", "", "worker_id status pool_id"),
            "pool.status_changed": ("pool:{pool_id}", "", "pool_id metrics"),
        },
        {},
        {"get_workflow_status": "workflow_id", "get_pool_status": "pool_id"},
    ),
    "akosha": (
        8692,
        "patterns:{category} anomalies insights metrics",
        {
            "pattern.detected": ("patterns:{category}", "", "pattern_id type confidence category"),
            "anomaly.detected": ("anomalies", "", "anomaly_id type severity"),
            "insight.generated": ("insights", "", "insight_id type title"),
            "aggregation.completed": ("metrics", "", "aggregation_id record_count"),
        },
        {},
        {"get_patterns": "category?", "get_anomalies": ""},
    ),
    "crackerjack": (
        8686,
        "test:{run_id} quality:{project} coverage",
        {
            "test.started": ("test:{run_id}", "", "run_id test_suite total"),
            "test.completed": ("test:{run_id}", "", "run_id completed failed"),
            "test.failed": ("test:{run_id}", "", "run_id test_name error"),
            "quality_gate.checked": ("quality:{project}", "", "project gate_name status"),
            "coverage.updated": ("coverage", "", "project line branch"),
        },
        {},
        {"get_test_status": "run_id", "get_quality_gate": "project"},
    ),
    "session-buddy": (
        8765,
        "sessions knowledge metrics",
        {
            "session.created": ("sessions", "", "session_id context"),
            "session.updated": ("sessions", "", "session_id changes"),
            "knowledge.captured": ("knowledge", "", "knowledge_id type"),
            "metrics.update": ("metrics", "", "timestamp metrics"),
        },
        {},
        {"get_session": "session_id", "get_metrics": ""},
    ),
}

EVENTS = [(c, e) for c in ALL for e in c.events]
EVENT_IDS = [f"{c.service}:{e.name}" for c, e in EVENTS]
REQUESTS = [(c, r) for c in ALL for r in c.requests]
REQUEST_IDS = [f"{c.service}:{r.name}" for c, r in REQUESTS]


def notation(specs: tuple[Field, ...]) -> str:
    return " ".join(f.name + ("" if f.required else "?") for f in specs)


SAMPLES: dict[str, Any] = {
    "str": None,  # the field's own name, so channels are predictable
    "int": 3,
    "number": 1.5,
    "bool": True,
    "object": {"k": 1},
    "array": ["a", "b"],
    "any": {"v": 2},
}


def sample(spec: Field) -> Any:
    value = SAMPLES[spec.type]
    return f"{spec.name}-1" if value is None else value


def sample_payload(spec: EventSpec, *, optional: bool = True) -> dict[str, Any]:
    return {
        f.name: sample(f)
        for f in spec.payload
        if f.name != "timestamp" and (f.required or optional)
    }


def sample_arguments(spec: EventSpec) -> dict[str, Any]:
    """Arguments for the event's broadcaster method that produce ``sample_payload``."""
    args: dict[str, Any] = {}
    for f in spec.payload:
        source = spec.method.source(f.name)
        if f.name == "timestamp" or source.param not in {p.name for p in spec.method.params}:
            continue
        if source.key is not None:
            args.setdefault(source.param, {})[source.key] = sample(f)
        elif source.via == "len":
            args[source.param] = ["x"] * sample(f)
        else:
            args.setdefault(source.param, sample(f))
    return args


def expected_channels(service: str, spec: EventSpec) -> list[str]:
    channel, also, _ = SPEC[service][2][spec.name]
    payload = sample_payload(spec)
    return [t.format_map(payload) for t in (channel, *also.split())]


class Recorder:
    def __init__(self, catalog: Catalog) -> None:
        self.published: list[tuple[str, list[str], dict[str, Any]]] = []
        self.projection = Projection(catalog)

    def __call__(self, event_name: str, channels: list[str], data: dict[str, Any]) -> str:
        self.published.append((event_name, channels, data))
        self.projection.apply(event_name, data)
        return "published"


# --- the catalogs are what the services specified ---------------------------------------


def test_every_service_has_a_catalog() -> None:
    assert set(BY_NAME) == set(SPEC)


@pytest.mark.parametrize("catalog", ALL, ids=[c.service for c in ALL])
def test_catalog_matches_the_specification(catalog: Catalog) -> None:
    port, channels, events, methods, requests = SPEC[catalog.service]
    assert catalog.port == port
    assert set(catalog.channels) == set(channels.split())
    assert {e.name: (e.channel, " ".join(e.also_on)) for e in catalog.events} == {
        name: (channel, also) for name, (channel, also, _) in events.items()
    }
    for spec in catalog.events:
        expected = events[spec.name][2]
        assert notation(tuple(f for f in spec.payload if f.name != "timestamp")) == " ".join(
            w for w in expected.split() if w != "timestamp"
        )
        assert any(f.name == "timestamp" for f in spec.payload)
    generated = {e.method.name: " ".join(p.name for p in e.method.params) for e in catalog.events}
    assert methods.items() <= generated.items()
    assert {r.name: notation(r.params) for r in catalog.requests} == requests
    assert {"subscribe", "unsubscribe"} <= catalog.request_index.keys()


# --- events: validation, channels, broadcaster --------------------------------------------


@pytest.mark.parametrize(("catalog", "spec"), EVENTS, ids=EVENT_IDS)
def test_event_validates_and_reaches_its_channels(catalog: Catalog, spec: EventSpec) -> None:
    payload, channels = catalog.prepare(spec.name, sample_payload(spec))
    assert channels == expected_channels(catalog.service, spec)
    assert all(catalog.is_channel(c) for c in channels)
    assert payload["timestamp"].endswith("+00:00")
    minimal, _ = catalog.prepare(spec.name, sample_payload(spec, optional=False))
    assert minimal.keys() <= payload.keys()


@pytest.mark.parametrize(("catalog", "spec"), EVENTS, ids=EVENT_IDS)
def test_event_rejects_each_missing_required_field(catalog: Catalog, spec: EventSpec) -> None:
    for field in spec.payload:
        if not field.required or field.name == "timestamp":
            continue
        data = sample_payload(spec)
        del data[field.name]
        with pytest.raises(ProtocolError) as caught:
            catalog.prepare(spec.name, data)
        assert caught.value.code is ErrorCode.INVALID_PAYLOAD
        assert f"'{field.name}'" in caught.value.message


@pytest.mark.parametrize(("catalog", "spec"), EVENTS, ids=EVENT_IDS)
def test_event_rejects_wrong_types(catalog: Catalog, spec: EventSpec) -> None:
    for field in spec.payload:
        if field.type == "any":
            continue
        data = {**sample_payload(spec), field.name: object()}
        with pytest.raises(ProtocolError) as caught:
            catalog.prepare(spec.name, data)
        assert caught.value.code is ErrorCode.INVALID_PAYLOAD
        assert f"'{field.name}'" in caught.value.message


@pytest.mark.parametrize(("catalog", "spec"), EVENTS, ids=EVENT_IDS)
def test_broadcaster_method_publishes_the_event(catalog: Catalog, spec: EventSpec) -> None:
    recorder = Recorder(catalog)
    broadcast = Broadcaster(catalog, recorder)
    method_ = getattr(broadcast, spec.method.name)
    assert list(inspect.signature(method_).parameters) == [p.name for p in spec.method.params]
    assert method_(**sample_arguments(spec)) == "published"
    [(name, channels, data)] = recorder.published
    assert name == spec.name
    assert channels == expected_channels(catalog.service, spec)
    assert {f.name for f in spec.payload if f.required} <= data.keys()
    sources = [spec.method.source(f.name) for f in spec.payload]
    params = [s.param for s in sources]
    for field, source in zip(spec.payload, sources, strict=True):
        plain = source.key is None and source.via is None and params.count(source.param) == 1
        if plain and field.name in data and field.name != "timestamp":
            assert data[field.name] == sample(field)
    with pytest.raises(TypeError):
        method_(**sample_arguments(spec), not_a_parameter=1)


def test_broadcaster_maps_arguments_as_the_specification_says() -> None:
    recorder = Recorder(BY_NAME["dhruva"])
    broadcast = Broadcaster(BY_NAME["dhruva"], recorder)
    broadcast.adapter_activated("a1", "acme/api", {"version": "1.2", "config": {"x": 1}})
    broadcast.distribution_completed("acme/api", ["a1", "a2"], 120)
    broadcast.registry_updated("7", {"added": ["a3"]})
    data = [d for _, _, d in recorder.published]
    assert (data[0]["version"], data[0]["config"]) == ("1.2", {"x": 1})
    assert (data[1]["adapters_count"], data[1]["duration_ms"]) == (2, 120)
    assert (data[2]["version"], data[2]["added"]) == ("7", ["a3"])
    assert "removed" not in data[2]
    with pytest.raises(ProtocolError) as caught:
        broadcast.adapter_activated("a1", "acme/api", {"config": {}})
    assert "'version'" in caught.value.message
    with pytest.raises(AttributeError):
        _ = broadcast.no_such_event


def test_broadcaster_returns_what_publish_returns_so_async_publish_is_awaitable() -> None:
    async def publish(event_name: str, channels: list[str], data: dict[str, Any]) -> int:
        return len(channels)

    broadcast = Broadcaster(BY_NAME["excalidraw"], publish)
    coroutine = broadcast.cursor_moved("d1", "u1", {"x": 1, "y": 2, "color": "#f00"})
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)
    assert done.value.value == 2


def test_state_changed_sends_null_old_value() -> None:
    recorder = Recorder(BY_NAME["fastblocks"])
    Broadcaster(BY_NAME["fastblocks"], recorder).state_changed("c1", "a.b", None, 5)
    [(_, _, data)] = recorder.published
    assert data["old_value"] is None
    assert data["path"] == "a.b"


# --- channels -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channel",
    ["adapter:x", "adapter:acme-api.v2", "distribution:acme/api", "lifecycle", "global"],
)
def test_valid_channels(channel: str) -> None:
    assert BY_NAME["dhruva"].validate_channel(channel) == channel


@pytest.mark.parametrize(
    "channel",
    [
        "",
        "adapter:",
        "adapter",
        "adapter:x y",
        "adapter:" + "x" * 200,
        "adapters:x",
        "lifecycle:extra",
        "nonsense",
        "adapter:{adapter_id}",
        "adapter:x\n",
        None,
        42,
        ["adapter:x"],
    ],
)
def test_invalid_channels(channel: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        BY_NAME["dhruva"].validate_channel(channel)
    assert caught.value.code is ErrorCode.INVALID_CHANNEL


def test_payload_that_cannot_name_a_channel_is_rejected() -> None:
    with pytest.raises(ProtocolError) as caught:
        BY_NAME["dhruva"].prepare(
            "adapter.activated", {"adapter_id": "a b", "repo": "r", "version": "1"}
        )
    assert caught.value.code is ErrorCode.INVALID_PAYLOAD
    assert "'adapter_id'" in caught.value.message


def test_unknown_event_and_request() -> None:
    catalog = BY_NAME["akosha"]
    with pytest.raises(ProtocolError) as event_error:
        catalog.prepare("no.such", {})
    assert event_error.value.code is ErrorCode.INVALID_PAYLOAD
    with pytest.raises(ProtocolError) as request_error:
        catalog.request_spec("no_such")
    assert request_error.value.code is ErrorCode.UNKNOWN_REQUEST
    with pytest.raises(ProtocolError) as payload_error:
        catalog.prepare("anomaly.detected", ["not", "an", "object"])
    assert payload_error.value.code is ErrorCode.INVALID_PAYLOAD


def test_subscribe_without_channel_is_invalid_payload_for_the_request() -> None:
    with pytest.raises(ProtocolError) as caught:
        BY_NAME["dhruva"].request_spec("subscribe").validate({})
    assert caught.value.code is ErrorCode.INVALID_PAYLOAD
    assert "'channel'" in caught.value.message


# --- projections -----------------------------------------------------------------------------


def fed_projection(catalog: Catalog) -> Projection:
    recorder = Recorder(catalog)
    broadcast = Broadcaster(catalog, recorder)
    for spec in catalog.events:
        getattr(broadcast, spec.method.name)(**sample_arguments(spec))
    return recorder.projection


def sample_params(catalog: Catalog, name: str) -> dict[str, Any]:
    return {p.name: sample(p) for p in catalog.request_index[name].params}


@pytest.mark.parametrize(("catalog", "spec"), REQUESTS, ids=REQUEST_IDS)
def test_every_projected_request_answers_with_its_shape(catalog: Catalog, spec: Any) -> None:
    projection = fed_projection(catalog)
    if spec.view is None:
        assert not projection.answers(spec.name)
        assert spec.emits in catalog.event_index
        return
    assert projection.answers(spec.name)
    table = next(t for t in catalog.tables if t.name == spec.view.table)
    answer = projection.answer(spec.name, sample_params(catalog, spec.name))
    records = [answer] if isinstance(spec.view, Get) else answer[table.name]
    assert records
    for record in records:
        assert tuple(record) == table.result_fields
        assert record["last_event"] in catalog.event_index
    if isinstance(spec.view, Get) and spec.view.param is not None:
        with pytest.raises(ProtocolError) as caught:
            projection.answer(spec.name, {spec.view.param: "unknown-id"})
        assert caught.value.code is ErrorCode.NOT_FOUND
        with pytest.raises(ProtocolError) as missing:
            projection.answer(spec.name, {})
        assert missing.value.code is ErrorCode.INVALID_PAYLOAD


def test_adapter_status_and_list_follow_the_latest_event() -> None:
    catalog = BY_NAME["dhruva"]
    recorder = Recorder(catalog)
    broadcast = Broadcaster(catalog, recorder)
    broadcast.adapter_activated("a1", "r", {"version": "1"})
    broadcast.adapter_activated("a2", "r", {"version": "1"})
    broadcast.adapter_deactivated("a2", "r", "retired")
    broadcast.adapter_swapped("a1", "a3", "r")
    projection = recorder.projection
    status = projection.answer("get_adapter_status", {"adapter_id": "a2"})
    assert (status["status"], status["last_event"]) == ("inactive", "adapter.deactivated")
    assert status["data"]["reason"] == "retired"
    listed = projection.answer("list_adapters", {})["adapters"]
    assert [a["adapter_id"] for a in listed] == ["a3"]


def test_test_status_counts() -> None:
    catalog = BY_NAME["crackerjack"]
    recorder = Recorder(catalog)
    broadcast = Broadcaster(catalog, recorder)
    broadcast.test_started("r1", "unit", 3)
    broadcast.test_failed("r1", "test_a", "boom")
    broadcast.test_failed("r1", "test_b", "bang")
    broadcast.test_completed("r1", 1, 2)
    status = recorder.projection.answer("get_test_status", {"run_id": "r1"})
    assert status["counts"] == {"started": 1, "failed": 2, "completed": 1}
    assert status["status"] == "completed"
    assert status["data"]["total"] == 3
    assert status["failures"] == {"test_a": "boom", "test_b": "bang"}


def test_component_state_applies_state_changes_without_touching_the_publisher() -> None:
    catalog = BY_NAME["fastblocks"]
    recorder = Recorder(catalog)
    broadcast = Broadcaster(catalog, recorder)
    state = {"count": 1, "form": {"name": "a"}}
    broadcast.component_updated("c1", {"label": "x"}, state)
    broadcast.state_changed("c1", "form.name", "a", "b")
    broadcast.state_changed("c1", "deep.new.key", None, 7)
    answer = recorder.projection.answer("get_component_state", {"component_id": "c1"})
    assert answer["data"]["state"] == {
        "count": 1,
        "form": {"name": "b"},
        "deep": {"new": {"key": 7}},
    }
    assert answer["data"]["props"] == {"label": "x"}
    assert state == {"count": 1, "form": {"name": "a"}}


def test_active_users_join_and_leave() -> None:
    catalog = BY_NAME["excalidraw"]
    recorder = Recorder(catalog)
    broadcast = Broadcaster(catalog, recorder)
    broadcast.user_joined("d1", "u1", "Ann", "#f00")
    broadcast.user_joined("d1", "u2", "Bob")
    broadcast.user_left("d1", "u1")
    users = recorder.projection.answer("get_active_users", {"room_id": "d1"})["users"]
    assert list(users) == ["u2"]
    assert users["u2"]["name"] == "Bob"


def test_patterns_filter_by_category() -> None:
    catalog = BY_NAME["akosha"]
    recorder = Recorder(catalog)
    broadcast = Broadcaster(catalog, recorder)
    broadcast.pattern_detected("p1", "trend", 0.9, "sales")
    broadcast.pattern_detected("p2", "spike", 0.5, "ops")
    projection = recorder.projection
    assert len(projection.answer("get_patterns", {})["patterns"]) == 2
    [only] = projection.answer("get_patterns", {"category": "ops"})["patterns"]
    assert only["pattern_id"] == "p2"
    assert projection.answer("get_patterns", {"category": "none"}) == {"patterns": []}


def test_metrics_before_and_after() -> None:
    catalog = BY_NAME["session-buddy"]
    recorder = Recorder(catalog)
    with pytest.raises(ProtocolError) as caught:
        recorder.projection.answer("get_metrics", {})
    assert caught.value.code is ErrorCode.NOT_FOUND
    Broadcaster(catalog, recorder).metrics_update({"sessions": 4})
    assert recorder.projection.answer("get_metrics", {})["data"]["metrics"] == {"sessions": 4}


def test_answers_are_copies() -> None:
    projection = fed_projection(BY_NAME["dhruva"])
    answer = projection.answer("get_adapter_status", {"adapter_id": "adapter_id-1"})
    answer["data"]["repo"] = "changed"
    again = projection.answer("get_adapter_status", {"adapter_id": "adapter_id-1"})
    assert again["data"]["repo"] == "repo-1"


def test_projection_records_are_bounded() -> None:
    catalog = Catalog(
        "tiny",
        9,
        events=(event("thing.seen", "things", "thing_id"),),
        tables=(Table("things", "thing_id", (Update("thing.seen", "thing_id"),), max_records=3),),
        requests=(request("get_thing", "thing_id", Get("things", "thing_id")),),
    )
    projection = Projection(catalog)
    for i in range(10):
        projection.apply("thing.seen", {"thing_id": f"t{i}"})
    assert len(projection.tables["things"].records) == 3
    with pytest.raises(ProtocolError):
        projection.answer("get_thing", {"thing_id": "t0"})
    assert projection.answer("get_thing", {"thing_id": "t9"})["thing_id"] == "t9"


def test_request_without_projection_is_not_answered_from_it() -> None:
    projection = Projection(BY_NAME["fastblocks"])
    with pytest.raises(ProtocolError) as caught:
        projection.answer("trigger_render", {"component_id": "c"})
    assert caught.value.code is ErrorCode.UNKNOWN_REQUEST


# --- catalogs check themselves --------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: Catalog("x", 1, events=(event("a.b", "c:{missing}", "field"),)),
        lambda: Catalog("x", 1, events=(event("a.b", "c", "f"), event("a.b", "c", "f"))),
        lambda: Catalog("x", 1, events=(event("a.b", "c", "f", method=method("m", "g")),)),
        lambda: Catalog(
            "x", 1, events=(event("a.b", "c", "f", method=method("m", "f", f=From("f", via="?"))),)
        ),
        lambda: Catalog(
            "x",
            1,
            events=(event("a.b", "c", "f"),),
            tables=(Table("t", "f", (Update("z.z", "f"),)),),
        ),
        lambda: Catalog(
            "x",
            1,
            events=(event("a.b", "c", "f"),),
            tables=(Table("t", "g", (Update("a.b", "g"),)),),
        ),
        lambda: Catalog("x", 1, events=(), requests=(request("r", "p", Get("nope", "p")),)),
        lambda: Catalog("x", 1, events=(), requests=(request("subscribe", "channel"),)),
        lambda: event("a.b", "c", "f:nonsense"),
    ],
)
def test_inconsistent_catalogs_fail_when_built(build: Any) -> None:
    with pytest.raises(CatalogError):
        build()


# --- docs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("catalog", ALL, ids=[c.service for c in ALL])
def test_reference_table_lists_everything(catalog: Catalog) -> None:
    text = reference(catalog)
    assert f"port {catalog.port}" in text
    for channel in catalog.channels:
        assert f"`{channel}`" in text
    for spec in catalog.events:
        assert f"| `{spec.name}` |" in text
        assert f"`{spec.method.name}(" in text
        for field in spec.payload:
            if field.name != "timestamp":
                assert field.name in text
    for name in catalog.request_index:
        assert f"| `{name}` |" in text
    assert catalog.service in reference_all(ALL)

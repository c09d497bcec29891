"""fastblocks: UI component updates (port 8684)."""

from relays.catalog import Catalog, Collect, Get, Table, Update, event, method, request

catalog = Catalog(
    service="fastblocks",
    port=8684,
    description="UI components: updates, mounts, state, renders, hot reload.",
    events=(
        event(
            "component.updated",
            "component:{component_id}",
            "component_id props:object state:object",
        ),
        event(
            "component.mounted",
            "page:{page_id}",
            "component_id page_id props?:object",
            method=method("component_mounted", "component_id page_id"),
        ),
        event("component.unmounted", "page:{page_id}", "component_id page_id"),
        event("page.rendered", "page:{page_id}", "page_id duration:number component_count:int"),
        event(
            "state.changed",
            "component:{component_id}",
            "component_id path old_value:any new_value:any",
            also_on=("state",),
            method=method(
                "state_changed", "component_id state_path old_value new_value", path="state_path"
            ),
        ),
        event(
            "hot_reload.triggered",
            "hot_reload",
            "file_path affected_components:array",
            method=method("hot_reload", "file_path components", affected_components="components"),
        ),
        event("render.started", "render", "component_id render_type"),
        event("render.completed", "render", "component_id duration:number result?:any"),
        event("render.failed", "render", "component_id error"),
    ),
    extra_channels=("global",),
    tables=(
        Table(
            "components",
            key="component_id",
            updates=(
                Update("component.updated", "component_id"),
                Update("state.changed", "component_id", "keep", reducer="set_state_path"),
                Update("component.mounted", "component_id", status="mounted"),
                Update("component.unmounted", "component_id", "keep", status="unmounted"),
                Update("render.started", "component_id", "keep", count_as="renders_started"),
                Update("render.completed", "component_id", "keep", count_as="renders_completed"),
                Update("render.failed", "component_id", "keep", count_as="renders_failed"),
            ),
        ),
        Table(
            "pages",
            key="page_id",
            updates=(
                Update("page.rendered", "page_id", status="rendered"),
                Update(
                    "component.mounted",
                    "page_id",
                    "keep",
                    collect=Collect("components", "component_id"),
                ),
                Update(
                    "component.unmounted",
                    "page_id",
                    "keep",
                    collect=Collect("components", "component_id", remove=True),
                ),
            ),
        ),
    ),
    requests=(
        request(
            "get_component_state",
            "component_id",
            Get("components", "component_id"),
            doc="latest component.updated, with state.changed applied",
        ),
        request("get_page_status", "page_id", Get("pages", "page_id")),
        request(
            "trigger_render",
            "component_id",
            emits="render.started",
            doc="answered by the embedding service's handler",
        ),
        request(
            "register_component",
            "component_id page_id? props?:object",
            emits="component.mounted",
            doc="answered by the embedding service's handler",
        ),
    ),
    settings={"hot_reload_debounce_ms": 100},
)

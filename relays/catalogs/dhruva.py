"""dhruva: adapter distribution (port 8693)."""

from relays.catalog import (
    Catalog,
    Collect,
    From,
    Get,
    ListRecords,
    Table,
    Update,
    event,
    method,
    request,
)

catalog = Catalog(
    service="dhruva",
    port=8693,
    description="Adapter distribution: activations, swaps, distributions, the registry.",
    events=(
        event(
            "adapter.activated",
            "adapter:{adapter_id}",
            "adapter_id repo version config?:object",
            also_on=("lifecycle",),
            method=method(
                "adapter_activated",
                "adapter_id repo metadata",
                version=From("metadata", "version"),
                config=From("metadata", "config"),
            ),
        ),
        event(
            "adapter.deactivated",
            "adapter:{adapter_id}",
            "adapter_id repo reason",
            also_on=("lifecycle",),
        ),
        event(
            "adapter.swapped",
            "distribution:{repo}",
            "old_adapter new_adapter repo",
            also_on=("lifecycle",),
        ),
        event(
            "distribution.completed",
            "distribution:{repo}",
            "repo adapters_count:int adapters?:array duration_ms:number",
            method=method(
                "distribution_completed",
                "repo adapters duration",
                adapters_count=From("adapters", via="len"),
                duration_ms="duration",
            ),
        ),
        event(
            "registry.updated",
            "registry",
            "version added?:array removed?:array updated?:array",
            method=method(
                "registry_updated",
                "registry_version changes",
                version="registry_version",
                added=From("changes", "added"),
                removed=From("changes", "removed"),
                updated=From("changes", "updated"),
            ),
        ),
        event("lifecycle.changed", "lifecycle", "entity_type entity_id old_state new_state"),
    ),
    extra_channels=("global",),
    tables=(
        Table(
            "adapters",
            key="adapter_id",
            updates=(
                Update("adapter.activated", "adapter_id", "replace", status="active"),
                Update("adapter.deactivated", "adapter_id", "replace", status="inactive"),
                Update("adapter.swapped", "old_adapter", "replace", status="swapped_out"),
                Update("adapter.swapped", "new_adapter", "replace", status="active"),
            ),
        ),
        Table(
            "distributions",
            key="repo",
            updates=(
                Update("distribution.completed", "repo", status="completed"),
                Update(
                    "adapter.swapped",
                    "repo",
                    "keep",
                    count_as="swaps",
                    collect=Collect("swaps", "old_adapter", "new_adapter"),
                ),
            ),
        ),
    ),
    requests=(
        request("get_adapter_status", "adapter_id", Get("adapters", "adapter_id")),
        request("get_distribution_status", "repo", Get("distributions", "repo")),
        request(
            "list_adapters",
            view=ListRecords("adapters", status="active"),
            doc="adapters whose last event is an activation",
        ),
    ),
)

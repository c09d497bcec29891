"""mahavishnu: workflow orchestration (port 8690)."""

from relays.catalog import Catalog, Collect, Get, Table, Update, event, request

catalog = Catalog(
    service="mahavishnu",
    port=8690,
    description="Workflow progress and worker pools.",
    events=(
        event("workflow.started", "workflow:{workflow_id}", "workflow_id adapter prompt"),
        event(
            "workflow.stage_completed",
            "workflow:{workflow_id}",
            "workflow_id stage_name result:any",
        ),
        event("workflow.completed", "workflow:{workflow_id}", "workflow_id result:any"),
        event("workflow.failed", "workflow:{workflow_id}", "workflow_id error"),
        event("worker.status_changed", "pool:{pool_id}", "worker_id status pool_id"),
        event("pool.status_changed", "pool:{pool_id}", "pool_id metrics:object"),
    ),
    tables=(
        Table(
            "workflows",
            key="workflow_id",
            updates=(
                Update("workflow.started", "workflow_id", status="running"),
                Update(
                    "workflow.stage_completed",
                    "workflow_id",
                    "keep",
                    count_as="stages_completed",
                    collect=Collect("stages", "stage_name", "result"),
                ),
                Update("workflow.completed", "workflow_id", status="completed"),
                Update("workflow.failed", "workflow_id", status="failed"),
            ),
        ),
        Table(
            "pools",
            key="pool_id",
            updates=(
                Update("pool.status_changed", "pool_id"),
                Update(
                    "worker.status_changed",
                    "pool_id",
                    "keep",
                    collect=Collect("workers", "worker_id", "status"),
                ),
            ),
        ),
    ),
    requests=(
        request("get_workflow_status", "workflow_id", Get("workflows", "workflow_id")),
        request("get_pool_status", "pool_id", Get("pools", "pool_id")),
    ),
)

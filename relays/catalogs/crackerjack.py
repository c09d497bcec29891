"""crackerjack: quality monitoring (port 8686)."""

from relays.catalog import Catalog, Collect, Get, Table, Update, event, request

catalog = Catalog(
    service="crackerjack",
    port=8686,
    description="Test runs, quality gates, coverage.",
    events=(
        event("test.started", "test:{run_id}", "run_id test_suite total:int"),
        event("test.completed", "test:{run_id}", "run_id completed:int failed:int"),
        event("test.failed", "test:{run_id}", "run_id test_name error"),
        event("quality_gate.checked", "quality:{project}", "project gate_name status"),
        event("coverage.updated", "coverage", "project line:number branch:number"),
    ),
    tables=(
        Table(
            "runs",
            key="run_id",
            updates=(
                Update("test.started", "run_id", status="running", count_as="started"),
                Update("test.completed", "run_id", status="completed", count_as="completed"),
                Update(
                    "test.failed",
                    "run_id",
                    "keep",
                    count_as="failed",
                    collect=Collect("failures", "test_name", "error"),
                ),
            ),
        ),
        Table(
            "projects",
            key="project",
            updates=(
                Update(
                    "quality_gate.checked",
                    "project",
                    status_from="status",
                    collect=Collect("gates", "gate_name", "status"),
                ),
                Update("coverage.updated", "project"),
            ),
        ),
    ),
    requests=(
        request(
            "get_test_status",
            "run_id",
            Get("runs", "run_id"),
            doc="a run's started/completed/failed counts",
        ),
        request("get_quality_gate", "project", Get("projects", "project")),
    ),
)

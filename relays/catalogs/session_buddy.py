"""session-buddy: sessions (port 8765)."""

from relays.catalog import Catalog, Get, Table, Update, event, request

catalog = Catalog(
    service="session-buddy",
    port=8765,
    description="Sessions, captured knowledge, metrics.",
    events=(
        event("session.created", "sessions", "session_id context:object"),
        event("session.updated", "sessions", "session_id changes:object"),
        event("knowledge.captured", "knowledge", "knowledge_id type"),
        event("metrics.update", "metrics", "timestamp metrics:object"),
    ),
    tables=(
        Table(
            "sessions",
            key="session_id",
            updates=(
                Update("session.created", "session_id", status="active"),
                Update("session.updated", "session_id", count_as="updates"),
            ),
        ),
        Table("metrics", key=None, updates=(Update("metrics.update", None, "replace"),)),
    ),
    requests=(
        request("get_session", "session_id", Get("sessions", "session_id")),
        request("get_metrics", view=Get("metrics"), doc="the latest metrics.update"),
    ),
)

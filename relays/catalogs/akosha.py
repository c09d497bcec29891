"""akosha: analytics (port 8692)."""

from relays.catalog import Catalog, ListRecords, Table, Update, event, request

catalog = Catalog(
    service="akosha",
    port=8692,
    description="Analytics: patterns, anomalies, insights, aggregations.",
    events=(
        event(
            "pattern.detected",
            "patterns:{category}",
            "pattern_id type confidence:number category",
        ),
        event("anomaly.detected", "anomalies", "anomaly_id type severity:any"),
        event("insight.generated", "insights", "insight_id type title"),
        event("aggregation.completed", "metrics", "aggregation_id record_count:int"),
    ),
    tables=(
        Table(
            "patterns",
            key="pattern_id",
            updates=(Update("pattern.detected", "pattern_id", "replace"),),
            max_records=1000,
        ),
        Table(
            "anomalies",
            key="anomaly_id",
            updates=(Update("anomaly.detected", "anomaly_id", "replace"),),
            max_records=1000,
        ),
    ),
    requests=(
        request(
            "get_patterns",
            "category?",
            ListRecords("patterns", filter="category"),
            doc="recent patterns, of one category if given",
        ),
        request("get_anomalies", view=ListRecords("anomalies"), doc="recent anomalies"),
    ),
)

"""Consumer-side bus metrics, shared by every adapter (labels: topic and group, few)."""

from prometheus_client import Counter, Gauge

CONSUMER_LAG = Gauge(
    "csms_bus_consumer_lag_records",
    "Records behind the end of the partition for this process's consumers",
    ["topic", "group"],
)
HANDLER_FAILURES = Counter(
    "csms_bus_handler_failures_total",
    "Handler failures (the record is redelivered)",
    ["topic", "group"],
)
RECORDS = Counter("csms_bus_records_consumed_total", "Records handled successfully", ["topic", "group"])
DEAD_LETTERS = Counter(
    "csms_bus_dead_letters_total",
    "Records a consumer group gave up on and published to the dead-letter topic (docs/dead-letters.md)",
    ["topic", "group"],
)

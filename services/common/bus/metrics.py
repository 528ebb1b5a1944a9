"""Consumer-side bus metrics, shared by every adapter (labels: topic and group, few)."""

from prometheus_client import Counter, Gauge, Histogram

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
BATCH_RECORDS = Histogram(
    "csms_bus_batch_records",
    "Records per batch handed to a batch handler (subscribe_batch, ADR 015)",
    ["topic", "group"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)

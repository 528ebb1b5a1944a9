"""Prometheus metrics of the REST API. `route` is the route pattern, never a concrete id."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["REQUESTS", "REQUEST_SECONDS", "COMMANDS", "SITE_NOTIFY_FAILURES"]

REQUESTS = Counter(
    "csms_api_requests_total",
    "REST API requests by method, route pattern and HTTP status",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "csms_api_request_seconds",
    "REST API request latency by route pattern",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
COMMANDS = Counter(
    "csms_api_commands_total",
    "Station commands issued through the API, by type and outcome (station status, Timeout, StationOffline)",
    ["type", "status"],
)
SITE_NOTIFY_FAILURES = Counter(
    "csms_api_site_notifications_failed_total",
    "SiteUpdated events that could not be published (the smart-charging processor re-reads sites)",
)

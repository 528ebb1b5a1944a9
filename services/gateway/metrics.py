"""Gateway metrics (prometheus_client default registry). Station ids are never labels.

Label children are cached in dicts so the per-message cost is one dict lookup and
one `inc()`; action labels are limited to actions the version knows (anything else
is counted as "unknown", so a station sending random actions cannot grow the series).
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = [
    "connection_opened", "connection_closed", "open_connections", "station_faulted", "stations_faulted", "HANDSHAKE_REJECTIONS", "MESSAGES", "CALLERRORS",
    "HANDLING_SECONDS", "FENCED", "PUBLISH_FAILURES", "WITHHELD", "BOOT_PENDING",
    "AUTH_FAILURES", "CLOCK_SKEW", "COMMANDS", "LENIENT_FIELDS", "RECORDS_TOO_LARGE", "callerror", "message",
    "handling", "rejected", "lenient", "AUTH_SLOW_CHECKS", "AUTH_UPDATES", "auth_failure", "auth_update",
]



class _Connections:
    """`csms_gateway_connections` (gauge, by ocpp_version) and `csms_gateway_connections_total`
    (counter). prometheus_client refuses a Gauge and a Counter that share the base name,
    so one collector exposes both (valid in the Prometheus text format).

    It also exposes the uptime gauges of ADR 016 §6, without labels:
    `csms_gateway_stations_connected` (the same open sockets, all versions) and
    `csms_gateway_stations_faulted` (connected stations of this gateway whose latest
    StatusNotification of some connector, or of the station as a whole, said Faulted)."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}
        self.total = 0
        self.faulted = 0

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("csms_gateway_connections", "Open station WebSockets", labels=["ocpp_version"])
        for version, n in sorted(self.open.items()):
            gauge.add_metric([version], n)
        yield gauge
        yield CounterMetricFamily("csms_gateway_connections", "Accepted station WebSockets", value=self.total)
        yield GaugeMetricFamily("csms_gateway_stations_connected", "Stations connected to this gateway",
                                value=sum(self.open.values()))
        yield GaugeMetricFamily(
            "csms_gateway_stations_faulted",
            "Connected stations whose latest status of some connector (or of the whole station) is Faulted",
            value=self.faulted,
        )


_CONNECTIONS = _Connections()
REGISTRY.register(_CONNECTIONS)


def connection_opened(version: str) -> None:
    _CONNECTIONS.open[version] = _CONNECTIONS.open.get(version, 0) + 1
    _CONNECTIONS.total += 1


def connection_closed(version: str) -> None:
    _CONNECTIONS.open[version] = _CONNECTIONS.open.get(version, 0) - 1


def open_connections() -> int:
    return sum(_CONNECTIONS.open.values())


def station_faulted(faulted: bool) -> None:
    """A connected station became faulted (True) or stopped being so (False: a later
    non-Faulted status, or its disconnect)."""
    _CONNECTIONS.faulted += 1 if faulted else -1


def stations_faulted() -> int:
    return _CONNECTIONS.faulted

HANDSHAKE_REJECTIONS = Counter(
    "csms_gateway_handshake_rejections_total", "Upgrades refused before or at the handshake", ["reason"]
)
MESSAGES = Counter("csms_gateway_ocpp_messages_total", "OCPP messages", ["action", "direction"])
CALLERRORS = Counter("csms_gateway_callerrors_total", "CALLERRORs sent to stations", ["code"])
HANDLING_SECONDS = Histogram(
    "csms_gateway_message_handling_seconds",
    "Time from dequeuing a CALL to sending its answer (includes the durable publish)",
    ["action"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
FENCED = Counter(
    "csms_gateway_fenced_connections_total", "Older sockets closed because a newer connection of the station won"
)
PUBLISH_FAILURES = Counter("csms_gateway_publish_failures_total", "Failed attempts to publish an event")
WITHHELD = Gauge("csms_gateway_bus_withheld_replies", "Replies currently withheld because the bus is failing")
BOOT_PENDING = Counter("csms_gateway_boot_pending_total", "BootNotifications answered Pending by admission control")
AUTH_FAILURES = Counter("csms_gateway_auth_failures_total", "Failed station authentications", ["reason"])
AUTH_SLOW_CHECKS = Counter(
    "csms_gateway_auth_slow_checks_total",
    "Station password checks that needed scrypt (no fingerprint for the current pepper; successes are remembered)",
)
AUTH_UPDATES = Counter(
    "csms_gateway_auth_station_updates_total",
    "Once-only station updates at login (password_promoted, profile_promoted, fingerprint_upgraded)",
    ["change"],
)
CLOCK_SKEW = Histogram(
    "csms_gateway_clock_skew_seconds",
    "|receive time - station time| of messages carrying a station timestamp",
    buckets=(0.1, 0.5, 1, 2, 5, 15, 60, 300, 900, 3600, 21600, 86400, 604800),
)
COMMANDS = Counter("csms_gateway_commands_total", "Commands handled by this gateway", ["command_type", "status"])
# field: a JSON path without indexes taken from the action's schema (or a fixed handler
# field name), so the label set is bounded whatever stations send.
LENIENT_FIELDS = Counter(
    "csms_gateway_lenient_fields_total",
    "Fields of transaction messages accepted although the strict schema refuses them (canonicalised or kept raw)",
    ["action", "field"],
)
RECORDS_TOO_LARGE = Counter(
    "csms_gateway_records_too_large_total", "Events refused for their size before or by the bus (the CALL got a CALLERROR)"
)

_callerror_children: dict[str, Counter] = {}
_message_children: dict[tuple[str, str], Counter] = {}
_handling_children: dict[str, Histogram] = {}
_lenient_children: dict[tuple[str, str], Counter] = {}
_auth_failure_children: dict[str, Counter] = {}


def auth_failure(reason: str) -> None:
    """`reason`: one of the authenticator's fixed refusal reasons (a bounded label set)."""
    child = _auth_failure_children.get(reason)
    if child is None:
        child = _auth_failure_children[reason] = AUTH_FAILURES.labels(reason=reason)
    child.inc()


def auth_update(change: str) -> None:
    AUTH_UPDATES.labels(change=change).inc()


def callerror(code: str) -> None:
    child = _callerror_children.get(code)
    if child is None:
        child = _callerror_children[code] = CALLERRORS.labels(code=code)
    child.inc()


def message(action: str, direction: str) -> None:
    key = (action, direction)
    child = _message_children.get(key)
    if child is None:
        child = _message_children[key] = MESSAGES.labels(action=action, direction=direction)
    child.inc()


def handling(action: str) -> Histogram:
    child = _handling_children.get(action)
    if child is None:
        child = _handling_children[action] = HANDLING_SECONDS.labels(action=action)
    return child


def rejected(reason: str) -> None:
    HANDSHAKE_REJECTIONS.labels(reason=reason).inc()


def lenient(action: str, field: str, n: int = 1) -> None:
    key = (action, field)
    child = _lenient_children.get(key)
    if child is None:
        child = _lenient_children[key] = LENIENT_FIELDS.labels(action=action, field=field)
    child.inc(n)

"""What an OCPP action handler sees of its call: the contract between gateway core and actions.

The core owns the socket, validation, ordering and durability; a handler only maps one
already-validated CALL payload to one normalized event (published through `publish`)
and to the CALLRESULT payload. The ports a handler needs beyond its call (the clock,
token statuses, transaction ids, boot admission, running cost) are given to the handler
when it is built (`services/gateway/actions`), not carried here, so a handler's factory
says what it touches and a test passes exactly that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from services.common.events import Body
from services.common.ocpp_version import OcppVersion
from services.gateway.running_cost import RunningCosts

__all__ = ["ConnectionState", "CallContext", "Publish", "Lenient"]

# publish(body, station_time): returns once the bus accepted the event (durable); retries
# internally and never raises for bus outages, so a handler's answer is never sent early.
Publish = Callable[[Body, datetime | None], Awaitable[None]]
# lenient(field, detail): the handler accepted `field` of a transaction message although it
# is out of range or unusable (docs/gateway-leniency.md); counted and logged by the core.
Lenient = Callable[[str, str], None]


def _no_lenient(field: str, detail: str) -> None:
    return None


@dataclass(slots=True)  # one per connection (idle memory): optional parts are created on first use
class ConnectionState:
    """Per-connection state that lives as long as the WebSocket (rebuilt on reconnect)."""

    boot_status: str | None = None          # None until the first BootNotification answer
    # time.monotonic() when the station was last seen enabled (the handshake checks it)
    enabled_checked_at: float | None = None
    # 2.0.1 running cost: this connection's price accumulators (first TransactionEvent)
    tx_costs: RunningCosts | None = None
    # (action, field) pairs whose lenient acceptance was logged on this connection; bounded
    # by the metric's label set.
    lenient_logged: set[tuple[str, str]] | None = None
    # (evse id, connector id) whose latest StatusNotification said Faulted (1.6: (connector,
    # connector); 0 = the whole station): the station counts in csms_gateway_stations_faulted
    # while this is non-empty. None until the first Faulted.
    faulted: set[tuple[int, int]] | None = None
    # the connection ended (`clear_faults`): a handler finishing late records no fault
    ended: bool = False

    def connector_status(self, evse_id: int, connector_id: int, faulted: bool) -> bool | None:
        """Record a connector's latest status; True / False when the station as a whole just
        became / stopped being faulted, None when that did not change."""
        if self.ended:
            return None
        before = bool(self.faulted)
        key = (evse_id, connector_id)
        if faulted:
            if self.faulted is None:
                self.faulted = set()
            self.faulted.add(key)
        elif self.faulted:
            self.faulted.discard(key)
        after = bool(self.faulted)
        return None if before == after else after

    def clear_faults(self) -> bool:
        """Forget every fault (the connection ended); True if the station was faulted."""
        was = bool(self.faulted)
        self.faulted = None
        self.ended = True
        return was


@dataclass(slots=True)
class CallContext:
    station_id: str
    ocpp_version: OcppVersion
    message_id: str
    action: str
    received_at: datetime
    state: ConnectionState
    publish: Publish
    lenient: Lenient = _no_lenient

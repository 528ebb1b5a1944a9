"""What an OCPP action handler may see and do: the contract between gateway core and actions.

The core owns the socket, validation, ordering and durability; a handler only maps one
already-validated CALL payload to one normalized event (published through `publish`)
and to the CALLRESULT payload. Everything stateful a handler needs is reached through
this context, so handlers stay easy to test with fakes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable

from services.common.config import Settings
from services.common.events import Body
from services.common.store.port import Store
from services.common.timeutil import Clock

__all__ = ["ConnectionState", "CallContext", "Publish", "Lenient"]

# publish(body, station_time): returns once the bus accepted the event (durable); retries
# internally and never raises for bus outages, so a handler's answer is never sent early.
Publish = Callable[[Body, datetime | None], Awaitable[None]]
# lenient(field, detail): the handler accepted `field` of a transaction message although it
# is out of range or unusable (docs/gateway-leniency.md); counted and logged by the core.
Lenient = Callable[[str, str], None]


def _no_lenient(field: str, detail: str) -> None:
    return None


@dataclass(slots=True)  # one per connection (idle memory), one CallContext per call
class ConnectionState:
    """Per-connection state that lives as long as the WebSocket (rebuilt on reconnect)."""

    boot_status: str | None = None          # None until the first BootNotification answer
    attributes: dict[str, Any] = field(default_factory=dict)
    # (action, field) pairs whose lenient acceptance was logged on this connection; bounded
    # by the metric's label set, created on first use (idle connections carry nothing).
    lenient_logged: set[tuple[str, str]] | None = None


@dataclass(slots=True)
class CallContext:
    station_id: str
    ocpp_version: str                       # "1.6" | "2.0.1" | "2.1"
    message_id: str
    action: str
    received_at: datetime
    settings: Settings
    store: Store
    clock: Clock
    gateway_id: str
    state: ConnectionState
    publish: Publish
    admit_boot: Callable[[], bool]          # admission control: False = answer Pending
    # cached token lookup: "Accepted" / "Blocked" / "Expired" / "Invalid" (unknown -> "Invalid")
    token_status: Callable[[str], Awaitable[str]]
    lenient: Lenient = _no_lenient
    # the Pending interval admission chose for the boot `admit_boot` just refused (None: pick one)
    pending_interval: Callable[[], int | None] | None = None

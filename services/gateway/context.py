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

__all__ = ["ConnectionState", "CallContext", "Publish"]

# publish(body, station_time): returns once the bus accepted the event (durable); retries
# internally and never raises for bus outages, so a handler's answer is never sent early.
Publish = Callable[[Body, datetime | None], Awaitable[None]]


@dataclass
class ConnectionState:
    """Per-connection state that lives as long as the WebSocket (rebuilt on reconnect)."""

    boot_status: str | None = None          # None until the first BootNotification answer
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
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

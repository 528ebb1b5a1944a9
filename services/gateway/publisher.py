"""Durable event publishing with withheld replies (RELIABILITY rows 42, 49).

`publish()` returns only once the bus accepted the event. While the bus refuses, it
retries with capped exponential backoff (50 ms -> 2 s) for as long as the caller is
still interested (`alive()`: the station's socket is open; or until a deadline), marks
the gateway not-ready, and logs once per outage. It never turns a bus failure into a
CALLERROR: the answer is withheld so that the station retries.

A record that is too large is not a bus failure: no retry can make it fit, and it says
nothing about the bus's health. `publish()` measures the encoded record against
`settings.bus_max_record_bytes` (as the bus does, `bus.port.record_size`) before sending
and raises `RecordTooLarge` at once; the same error from the bus is re-raised without a
retry. Neither marks the gateway not-ready nor withholds anything: the caller answers
that one CALL with a CALLERROR.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence

from opentelemetry import trace

from services.common import codec, topics
from services.common.bus.port import record_size
from services.common.errors import RecordTooLarge
from services.common.events import Envelope
from services.gateway import metrics

__all__ = ["BusPublish", "Publisher", "ConnectionGone", "new_event_id", "traceparent"]

log = logging.getLogger("csms.gateway.publish")

_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 2.0


def new_event_id() -> str:
    """A random (version 4) UUID in its canonical text, as `str(uuid.uuid4())` gives, at a
    fifth of its cost (no UUID object): one per published event."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant bits 10xx


class ConnectionGone(Exception):
    """The station left while its event was being published; abandon the CALL."""


def traceparent() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


# bus.publish(topic, key, value, headers): the one bus operation the publisher uses
BusPublish = Callable[[str, str, bytes, Sequence[tuple[str, bytes]]], Awaitable[None]]


class Publisher:
    __slots__ = ("_publish", "_max_record_bytes", "retrying", "in_flight", "_outage")

    def __init__(self, publish: BusPublish, max_record_bytes: int) -> None:
        self._publish = publish
        self._max_record_bytes = max_record_bytes
        self.retrying = 0        # publishes currently in backoff (not ready while > 0)
        self.in_flight = 0       # sent to the bus, not yet acknowledged (admission: back-pressure)
        self._outage = False

    @property
    def failing(self) -> bool:
        return self.retrying > 0

    async def publish(
        self,
        env: Envelope,
        *,
        alive: Callable[[], bool] | None = None,
        deadline: float | None = None,
    ) -> bool:
        """True once durable; False if `alive()` turned False or `deadline` (monotonic) passed.
        Raises RecordTooLarge (at once, never retried) for an event over the record limit."""
        value = codec.encode_event(env)
        headers = codec.event_headers(env, traceparent=traceparent())
        limit = self._max_record_bytes
        size = record_size(env.station_id.encode("utf-8", "surrogateescape"), value, headers)
        if size > limit:
            metrics.RECORDS_TOO_LARGE.inc()
            raise RecordTooLarge(f"the {env.type_name} event would be {size} bytes; the bus record limit is {limit} bytes")
        send = self._publish
        delay = _FIRST_DELAY_S
        counted = False
        try:
            while True:
                try:
                    self.in_flight += 1
                    try:
                        await send(topics.EVENTS, env.station_id, value, headers)
                    finally:
                        self.in_flight -= 1
                except asyncio.CancelledError:
                    raise
                except RecordTooLarge:
                    metrics.RECORDS_TOO_LARGE.inc()
                    raise  # this record, not the bus: no retry, no outage
                except Exception as exc:  # BusUnavailable and any other adapter failure
                    metrics.PUBLISH_FAILURES.inc()
                    if not counted:
                        counted = True
                        self.retrying += 1
                        metrics.WITHHELD.inc()
                    if not self._outage:
                        self._outage = True
                        log.warning("bus publish failing (%s: %s); withholding replies until it recovers", type(exc).__name__, exc)
                    if alive is not None and not alive():
                        return False
                    if deadline is not None and time.monotonic() + delay > deadline:
                        return False
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _MAX_DELAY_S)
                    continue
                if self._outage and (counted or self.retrying == 0):
                    self._outage = False
                    log.warning("bus publish recovered")
                return True
        finally:
            if counted:
                self.retrying -= 1
                metrics.WITHHELD.dec()

"""Frame size limits per action, derived from the bus's record limit (docs/gateway-leniency.md).

Every CALL becomes one record on csms.events.v1, and a record over the bus's limit
(`CSMS_BUS_MAX_RECORD_BYTES`, Kafka's max request size) can never be published. A frame
that cannot become a record is refused up front with a CALLERROR naming the limit,
instead of being accepted and then failing in the producer:

    action frame limit = CSMS_BUS_MAX_RECORD_BYTES - ENVELOPE_HEADROOM_BYTES

The headroom covers what the record adds to the payload it carries: the envelope (event
id, station id, gateway id, message id, action, two timestamps), the CloudEvents headers,
the traceparent and the key, with a wide margin for the JSON re-serialisation of a
notification's payload. `CSMS_MAX_FRAME_BYTES` stays the WebSocket limit (a larger frame
closes the socket 1009); with the defaults (both 1 MiB) the action limit is the tighter one.

DataTransfer's `data` is the one field that can be as large as the frame, so it is
measured on its own and the CALLERROR names it. The frame limit is the cheap first line;
the exact guarantee is `Publisher.publish`, which measures the encoded record (sampled
values expand when the gateway fills in their defaults) and refuses it with
`RecordTooLarge` before it reaches the bus.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["ENVELOPE_HEADROOM_BYTES", "MIN_FRAME_LIMIT_BYTES", "frame_limit", "oversize"]

ENVELOPE_HEADROOM_BYTES = 16 * 1024
# Below this no ordinary OCPP message fits; a smaller record limit is a misconfiguration,
# and the publisher's exact check still protects the bus.
MIN_FRAME_LIMIT_BYTES = 4 * 1024


def frame_limit(bus_max_record_bytes: int) -> int:
    """The largest CALL frame (UTF-8 bytes) any action may have."""
    return max(bus_max_record_bytes - ENVELOPE_HEADROOM_BYTES, MIN_FRAME_LIMIT_BYTES)


def _utf8_len(text: str, limit: int) -> int:
    # A code point is at most 4 UTF-8 bytes: most frames are decided without encoding.
    n = len(text)
    if n * 4 <= limit:
        return n
    return len(text.encode("utf-8", "surrogatepass"))


def oversize(action: str, raw: str, payload: Any, limit: int) -> str | None:
    """None if the CALL fits `limit`; else the CALLERROR description (names the limit)."""
    size = _utf8_len(raw, limit)
    if size <= limit:
        return None
    if action == "DataTransfer" and isinstance(payload, dict) and "data" in payload:
        data = payload["data"]
        data_size = _utf8_len(data, limit) if isinstance(data, str) else len(orjson.dumps(data))
        if data_size > limit:
            return f"DataTransfer data is {data_size} bytes; the limit is {limit} bytes"
    return f"{action} frame is {size} bytes; the limit for one CALL is {limit} bytes"

"""What the two store engines share about rows: column lists, row <-> record mappers, the
page cursor format.

The stations, tokens, owners and meter_samples tables have the same columns on SQLite and
on Cassandra, and every statement names them in the order given here, so one mapper reads
a row of either engine (a sqlite3 row tuple or a driver named tuple, by position). Only
timestamps differ (SQLite: fixed-width UTC text; Cassandra: naive UTC datetimes), so each
engine passes its own encoder/decoder. A Cassandra cell never written reads as null: the
mappers apply the record's default there (SQLite's NOT NULL columns never hold null, so
the defaults change nothing for it).

Documents are JSON objects (`encode_doc`); page cursors are base64 of a small JSON array
whose first element says which listing made it (`encode_cursor`/`decode_cursor`), so a
cursor from elsewhere raises ValueError instead of reading from a wrong position.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Callable, Sequence

import orjson

from services.common.store.port import MeterRow, Owner, Station, Token

__all__ = [
    "STATION_COLUMNS",
    "STATION_COLUMN_COUNT",
    "TOKEN_COLUMNS",
    "OWNER_COLUMNS",
    "SAMPLE_COLUMNS",
    "DecodeTime",
    "EncodeTime",
    "station_values",
    "station_from_row",
    "token_values",
    "token_from_row",
    "owner_from_row",
    "sample_from_row",
    "encode_doc",
    "encode_cursor",
    "decode_cursor",
]

STATION_COLUMNS = (
    "id, password_hash, password_fingerprint, site_id, tariff_id, enabled, created_at, "
    "max_current_a, phases, priority, "
    "security_profile, pending_security_profile, pending_password_hash, pending_password_fingerprint, "
    "ws_ping_interval_s, cost_messages"
)
STATION_COLUMN_COUNT = STATION_COLUMNS.count(",") + 1
TOKEN_COLUMNS = "id_token, status, expires_at, group_id, updated_at"
OWNER_COLUMNS = "station_id, gateway_id, epoch, connected, updated_at"
SAMPLE_COLUMNS = "ts, measurand, phase, value, unit, raw_value, station_time"

DecodeTime = Callable[[Any], datetime | None]  # the engine's stored timestamp -> aware UTC (None stays None)
EncodeTime = Callable[[datetime | None], Any]  # aware or naive-UTC datetime -> the engine's stored form


def station_values(s: Station, when: EncodeTime) -> tuple[Any, ...]:
    """The row of `s`, in STATION_COLUMNS order (`enabled` a bool: sqlite3 stores it as 1/0)."""
    return (
        s.id, s.password_hash, s.password_fingerprint, s.site_id, s.tariff_id, s.enabled, when(s.created_at),
        s.max_current_a, s.phases, s.priority,
        s.security_profile, s.pending_security_profile, s.pending_password_hash, s.pending_password_fingerprint,
        s.ws_ping_interval_s, s.cost_messages,
    )


def station_from_row(row: Sequence[Any], when: DecodeTime) -> Station:
    return Station(
        id=row[0],
        password_hash=row[1] or "",
        password_fingerprint=row[2] or "",
        site_id=row[3],
        tariff_id=row[4],
        enabled=True if row[5] is None else bool(row[5]),
        created_at=when(row[6]),
        max_current_a=row[7],
        phases=row[8],
        priority=row[9] or 0,
        # ADR 017 columns: a row written before them (migration 4) reads as None / ""
        security_profile=row[10],
        pending_security_profile=row[11],
        pending_password_hash=row[12] or "",
        pending_password_fingerprint=row[13] or "",
        ws_ping_interval_s=row[14],
        # ADR 018 column: a row written before it (migration 5) reads as False
        cost_messages=bool(row[15]) if len(row) > 15 and row[15] is not None else False,
    )


def token_values(t: Token, when: EncodeTime) -> tuple[Any, ...]:
    """The row of `t`, in TOKEN_COLUMNS order."""
    return (t.id_token, t.status, when(t.expires_at), t.group_id, when(t.updated_at))


def token_from_row(row: Sequence[Any], when: DecodeTime) -> Token:
    return Token(
        id_token=row[0],
        status="Accepted" if row[1] is None else row[1],
        expires_at=when(row[2]),
        group_id=row[3],
        updated_at=when(row[4]),
    )


def owner_from_row(row: Sequence[Any], when: DecodeTime) -> Owner:
    return Owner(station_id=row[0], gateway_id=row[1], epoch=int(row[2]), connected=bool(row[3]), updated_at=when(row[4]))


def sample_from_row(row: Sequence[Any], when: DecodeTime) -> MeterRow:
    return MeterRow(
        timestamp=when(row[0]),  # type: ignore[arg-type]  # the key column: never null
        measurand=row[1],
        phase=row[2],
        value=row[3],
        unit="Wh" if row[4] is None else row[4],
        raw_value=row[5] or "",
        station_time=when(row[6]),
    )


def encode_doc(doc: dict[str, Any]) -> bytes:
    """A document's stored body (UTF-8 JSON); anything but a dict raises TypeError."""
    if not isinstance(doc, dict):
        raise TypeError(f"a document must be a dict, not {type(doc).__name__}")
    return orjson.dumps(doc)


def encode_cursor(*position: str | int) -> str:
    """An opaque page cursor: `position[0]` is the tag of the listing that made it."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode("ascii")


def decode_cursor(cursor: str, tag: str, *types: type) -> list[Any]:
    """The position `encode_cursor(tag, ...)` made, checked against `types` (one per element
    after the tag); anything else raises ValueError."""
    try:
        position = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as e:
        raise ValueError(f"not a document page cursor: {cursor!r}") from e
    if not (
        isinstance(position, list)
        and len(position) == 1 + len(types)
        and position[0] == tag
        and all(isinstance(value, kind) for value, kind in zip(position[1:], types))
    ):
        raise ValueError(f"not a document page cursor: {cursor!r}")
    return position

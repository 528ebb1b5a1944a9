"""Builders for contract tests: sensible, unique values; override what the test is about.

Ids are unique per call so the same suite can run against a shared database
(a Cassandra keyspace lives for the whole test session). Datetimes are UTC with
millisecond precision: the precision every adapter must keep.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from services.common.store.port import Station, Token

__all__ = [
    "UTC",
    "T0",
    "at",
    "unique",
    "a_station",
    "a_bare_station",
    "a_token",
    "a_bare_token",
    "a_session_doc",
    "a_cdr_doc",
    "a_business_key",
]

UTC = timezone.utc
T0 = datetime(2026, 11, 28, 4, 21, 16, 4000, tzinfo=UTC)  # 2026-11-28T04:21:16.004Z

_seq = itertools.count(1)


def at(seconds: float = 0.0) -> datetime:
    """T0 plus `seconds`, truncated to milliseconds."""
    dt = T0 + timedelta(seconds=seconds)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def a_station(**overrides: Any) -> Station:
    """A station with every field set (none left at its default)."""
    fields: dict[str, Any] = dict(
        id=unique("CP"),
        password_hash="scrypt$16384$8$1$c2FsdA==$aGFzaA==",
        password_fingerprint="hmac-sha256$0f1e2d3c4b5a",
        site_id=unique("site"),
        tariff_id=unique("tariff"),
        enabled=False,
        created_at=at(0),
        max_current_a=32.5,
        phases=3,
        priority=2,
    )
    fields.update(overrides)
    return Station(**fields)


def a_bare_station(**overrides: Any) -> Station:
    """A station with only what is required; every optional field left None/default."""
    fields: dict[str, Any] = dict(id=unique("CP"), password_hash="")
    fields.update(overrides)
    return Station(**fields)


def a_token(**overrides: Any) -> Token:
    """A token with every field set."""
    fields: dict[str, Any] = dict(
        id_token=unique("TAG").upper(),
        status="Blocked",
        expires_at=at(86_400),
        group_id=unique("group"),
        updated_at=at(60),
    )
    fields.update(overrides)
    return Token(**fields)


def a_bare_token(**overrides: Any) -> Token:
    fields: dict[str, Any] = dict(id_token=unique("TAG").upper())
    fields.update(overrides)
    return Token(**fields)


def a_session_doc(**overrides: Any) -> dict[str, Any]:
    """A "session" document as the sessions processor stores it (parent = station id)."""
    doc: dict[str, Any] = {
        "id": unique("sess"),
        "station_id": unique("CP"),
        "transaction_id": 1000 + next(_seq),
        "id_token": "04A1B2C3D4",
        "status": "active",
        "energy_wh": 12_345,
        "started_at": "2026-11-28T04:21:16.004Z",
        "stopped_at": None,
        "received_at": "2026-11-28T04:21:16.120Z",
        "sample_count": 2,  # aggregates only: the samples are rows of their own (ADR 015)
        "first_register": {"at": "2026-11-28T04:22:16.004Z", "wh": 100},
        "last_register": {"at": "2026-11-28T04:23:16.004Z", "wh": 250},
        "cost": {"amount": "2.35", "currency": "EUR"},
        "seq": 1,
    }
    doc.update(overrides)
    return doc


def a_cdr_doc(**overrides: Any) -> dict[str, Any]:
    """A "cdr" document (parent = session id)."""
    doc: dict[str, Any] = {
        "id": unique("cdr"),
        "session_id": unique("sess"),
        "energy_wh": 7_500,
        "total_cost": {"amount": "2.35", "currency": "EUR"},
        "total_cost_incl_tax": {"amount": "2.80", "currency": "EUR"},
        "version": 1,
    }
    doc.update(overrides)
    return doc


def a_business_key(**overrides: Any) -> str:
    """The 1.6 StartTransaction identity: station, connector, idTag, meterStart, timestamp."""
    parts: dict[str, Any] = dict(
        station=unique("CP"), connector=1, id_tag="04A1B2C3D4", meter_start=0, timestamp="2026-11-28T04:21:16.004Z"
    )
    parts.update(overrides)
    return "|".join(str(parts[k]) for k in ("station", "connector", "id_tag", "meter_start", "timestamp"))

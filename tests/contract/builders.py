"""Builders for contract tests: sensible, unique values; override what the test is about.

Ids are unique per call so the same suite can run against a shared database
(a Cassandra keyspace lives for the whole test session). Datetimes are UTC with
millisecond precision: the precision every adapter must keep. Stations, tokens, `at` and
`unique` are the shared ones of tests/support/builders.py; the documents are the store's.
"""

from __future__ import annotations

import itertools
from datetime import timezone
from typing import Any

from tests.support.builders import T0, a_bare_station, a_bare_token, a_station, a_token, at, unique

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

_seq = itertools.count(1)


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

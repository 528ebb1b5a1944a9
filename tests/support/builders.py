"""Builders shared by every test directory: sensible values, override what the test is about.

Ids are unique per call (`unique`), so tests can share a database (a Cassandra keyspace
lives for a whole test session) and never collide. Times are UTC with millisecond
precision, the precision OCPP and every store adapter keep. Builders of one service's
values (sessions, tariffs, envelopes of a kind) stay in that service's test directory;
what is here is what several directories used to copy.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from services.common.config import Settings
from services.common.store.port import Station, Token
from tests.support.clock import T0

__all__ = [
    "T0",
    "at",
    "unique",
    "settings_for_tests",
    "a_station",
    "a_bare_station",
    "a_token",
    "a_bare_token",
]


def at(seconds: float = 0.0) -> datetime:
    """T0 plus `seconds`, truncated to milliseconds."""
    dt = T0 + timedelta(seconds=seconds)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def settings_for_tests(**overrides: Any) -> Settings:
    """Settings for an in-process test: loopback, ephemeral ports, few partitions, short
    command timeout, in-memory bus and store URLs. Anything can be overridden."""
    fields: dict[str, Any] = dict(
        bus_url="memory://",
        store_url="sqlite:///:memory:",
        host="127.0.0.1",
        ocpp_port=0,
        api_port=0,
        metrics_port=0,
        events_partitions=4,
        commands_partitions=8,
        command_timeout_s=2.0,
        drain_window_s=0.0,  # a stopped gateway closes its sockets at once
    )
    fields.update(overrides)
    return Settings(**fields)


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

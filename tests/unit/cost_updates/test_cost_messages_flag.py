"""The per-station 1.6 pricing extension flag (`cost_messages`, ADR 018 §6): stored on the
station (SQLite migration 5; Cassandra in tests/contract), set by PATCH /stations/{id},
shown on the station; and the session answer's `cost_update`."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from services.common import kinds
from services.common.store.port import Station
from services.sessions.documents import session_to_doc
from services.sessions.domain import Session
from tests.support import T0
from tests.unit.api.builders import Api
from tests.unit.api.conftest import api  # noqa: F401  (the API fixture)


async def test_the_flag_is_off_by_default_set_by_patch_and_shown(api: Api) -> None:  # noqa: F811
    body = await api.a_station("CP-16")
    assert body["cost_messages"] is False
    status, body = await api.call("PATCH", "/api/v1/stations/CP-16", {"cost_messages": True})
    assert status == 200 and body["cost_messages"] is True, body
    stored = await api.rt.store.get_station("CP-16")
    assert stored is not None and stored.cost_messages is True
    _, again = await api.get("/api/v1/stations/CP-16")
    assert again["cost_messages"] is True
    status, body = await api.call("PATCH", "/api/v1/stations/CP-16", {"cost_messages": "yes"})
    assert status == 400 and "cost_messages" in body["details"], body
    body = await api.a_station("CP-16b", cost_messages=True)
    assert body["cost_messages"] is True


async def test_the_session_answer_carries_the_last_cost_update(api: Api) -> None:  # noqa: F811
    s = Session(id="S-1", station_id="CP-1", transaction_id="tx", received_at=T0, updated_at=T0, started_at=T0, status="active")
    await api.rt.store.put_doc(kinds.SESSION, s.id, session_to_doc(s), parent=s.station_id)
    status, body = await api.get("/api/v1/sessions/S-1")
    assert status == 200 and body["cost_update"] is None, body
    await api.rt.store.put_doc(kinds.COST_UPDATE, "S-1", {
        "id": "S-1", "kind": "CostUpdated", "total_cost": {"amount": "0.71", "currency": "EUR"},
        "sent_at": "2026-11-28T04:21:16.004Z", "command_id": "c1", "count": 3, "state": "sent", "version": 3,
    }, parent="CP-1")
    expected = {"total_cost": {"amount": "0.71", "currency": "EUR"}, "sent_at": "2026-11-28T04:21:16.004Z",
                "kind": "CostUpdated", "count": 3, "state": "sent"}
    _, body = await api.get("/api/v1/sessions/S-1")
    assert body["cost_update"] == expected
    _, listing = await api.get("/api/v1/sessions?station_id=CP-1")
    assert [i["cost_update"] for i in listing["items"]] == [expected]


async def test_sqlite_rows_stored_before_migration_5_read_as_not_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.common.store.sqlite.schema as sqlite_schema
    from services.common.store.sqlite import SqliteStore

    url = f"sqlite:///{tmp_path / 'before-018.db'}"
    every = sqlite_schema.MIGRATIONS
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", tuple(m for m in every if m.version < 5))
    old = SqliteStore(url)
    await old.start()
    await old.migrate()
    await old.close()
    with sqlite3.connect(tmp_path / "before-018.db") as raw:
        raw.execute("INSERT INTO stations (id, password_hash, enabled, priority) VALUES ('CP-old', 'h', 1, 0)")

    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", every)
    new = SqliteStore(url)
    await new.start()
    try:
        await new.migrate()
        got = await new.get_station("CP-old")
        assert got is not None and got.cost_messages is False
        await new.put_station(dataclasses.replace(got, cost_messages=True))
        again = await new.get_station("CP-old")
        assert again is not None and again.cost_messages is True
        assert again == dataclasses.replace(got, cost_messages=True)
        await new.put_station(Station(id="CP-new", password_hash=""))
        fresh = await new.get_station("CP-new")
        assert fresh is not None and fresh.cost_messages is False
    finally:
        await new.close()

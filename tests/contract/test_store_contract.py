"""The Store port's contract: every adapter (sqlite, cassandra) passes this suite.

Tests never assume an empty database (a Cassandra keyspace is shared by the session):
every id comes from the builders and is unique.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.contract.builders import (
    a_bare_station,
    a_bare_token,
    a_business_key,
    a_cdr_doc,
    a_session_doc,
    a_station,
    a_token,
    at,
    unique,
)
from services.common.errors import ConfigError, StoreUnavailable
from services.common.store import store_from_url
from services.common.store.port import Owner, Store
from tests.contract.conftest import INFRA, SESSION_TAG

INT32_MAX = 2**31 - 1


async def put_in_order(store: Store, kind: str, docs: list[tuple[str, dict[str, Any]]], parent: str = "") -> None:
    """Writes one after the other, a few ms apart (adapters may keep millisecond update times)."""
    for doc_id, doc in docs:
        assert await store.put_doc(kind, doc_id, doc, parent=parent)
        await asyncio.sleep(0.005)


# -- lifecycle -----------------------------------------------------------------
async def test_a_started_store_is_healthy_and_a_closed_one_is_not(open_store: Any) -> None:
    store = await open_store()
    assert store.healthy
    await store.close()
    assert not store.healthy


async def test_migrating_twice_is_harmless_and_keeps_the_data(store: Store) -> None:
    station = a_station()
    await store.put_station(station)
    await store.migrate()
    await store.migrate()
    assert await store.get_station(station.id) == station


# -- stations ------------------------------------------------------------------
async def test_a_station_with_every_field_set_round_trips(store: Store) -> None:
    station = a_station()
    await store.put_station(station)
    assert await store.get_station(station.id) == station


async def test_a_station_with_only_required_fields_round_trips_its_nones_and_defaults(store: Store) -> None:
    station = a_bare_station()
    await store.put_station(station)
    got = await store.get_station(station.id)
    assert got == station
    assert got is not None and got.site_id is None and got.created_at is None and got.max_current_a is None


async def test_putting_a_station_again_replaces_every_field_including_back_to_none(store: Store) -> None:
    station = a_station()
    await store.put_station(station)
    updated = dataclasses.replace(
        station, password_hash="new", site_id=None, tariff_id=None, enabled=True, created_at=None,
        max_current_a=None, phases=None, priority=0,
    )
    await store.put_station(updated)
    await store.put_station(updated)
    assert await store.get_station(station.id) == updated


async def test_a_station_with_its_security_fields_set_round_trips(store: Store) -> None:
    station = a_station(
        security_profile=3, pending_security_profile=2, pending_password_hash="scrypt$16384$8$1$cGVuZA==$eA==",
        pending_password_fingerprint="hmac-sha256$aabbcc", ws_ping_interval_s=12.5,
    )
    await store.put_station(station)
    assert await store.get_station(station.id) == station
    assert [s for s in await store.list_stations(site_id=station.site_id)] == [station]


async def test_a_bare_station_reads_its_security_fields_as_none_and_empty(store: Store) -> None:
    station = a_bare_station()
    await store.put_station(station)
    got = await store.get_station(station.id)
    assert got is not None
    assert (got.security_profile, got.pending_security_profile, got.ws_ping_interval_s) == (None, None, None)
    assert (got.pending_password_hash, got.pending_password_fingerprint) == ("", "")


async def test_putting_a_station_again_clears_its_pending_security_fields(store: Store) -> None:
    station = a_station(
        security_profile=1, pending_security_profile=2, pending_password_hash="h", pending_password_fingerprint="f",
        ws_ping_interval_s=0.0,
    )
    await store.put_station(station)
    cleared = dataclasses.replace(
        station, security_profile=2, pending_security_profile=None, pending_password_hash="",
        pending_password_fingerprint="", ws_ping_interval_s=None,
    )
    await store.put_station(cleared)
    assert await store.get_station(station.id) == cleared


async def test_station_datetimes_come_back_as_the_same_utc_instant(store: Store) -> None:
    station = a_station(created_at=at(3600.123))
    await store.put_station(station)
    got = await store.get_station(station.id)
    assert got is not None and got.created_at == at(3600.123)
    assert got.created_at.utcoffset() is not None and got.created_at.utcoffset().total_seconds() == 0


async def test_an_unknown_station_is_none_and_deleting_it_reports_false(store: Store) -> None:
    assert await store.get_station(unique("nope")) is None
    assert await store.delete_station(unique("nope")) is False


async def test_a_batch_read_answers_the_stations_that_exist_each_as_its_single_read(store: Store) -> None:
    one, two = a_station(), a_station()
    await store.put_station(one)
    await store.put_station(two)
    missing = unique("nope")
    got = await store.get_stations([one.id, missing, two.id, one.id])
    assert got == {one.id: one, two.id: two}
    assert got[one.id] == await store.get_station(one.id)
    assert await store.get_stations([]) == {}


async def test_deleting_a_station_removes_it_once(store: Store) -> None:
    station = a_station()
    await store.put_station(station)
    assert await store.delete_station(station.id) is True
    assert await store.get_station(station.id) is None
    assert await store.delete_station(station.id) is False


async def test_stations_are_listed_by_site_and_the_limit_is_honoured(store: Store) -> None:
    site, other = unique("site"), unique("site")
    mine = [a_station(site_id=site) for _ in range(5)]
    theirs = [a_station(site_id=other) for _ in range(2)]
    for s in mine + theirs + [a_bare_station()]:
        await store.put_station(s)
    listed = await store.list_stations(site_id=site)
    assert sorted(s.id for s in listed) == sorted(s.id for s in mine)
    assert all(s in mine for s in listed)
    assert len(await store.list_stations(site_id=site, limit=3)) == 3
    everyone = {s.id for s in await store.list_stations(limit=100_000)}
    assert {s.id for s in mine + theirs} <= everyone


# -- tokens --------------------------------------------------------------------
async def test_a_token_with_every_field_set_round_trips(store: Store) -> None:
    token = a_token()
    await store.put_token(token)
    assert await store.get_token(token.id_token) == token


async def test_a_token_with_only_its_id_round_trips_with_defaults(store: Store) -> None:
    token = a_bare_token()
    await store.put_token(token)
    got = await store.get_token(token.id_token)
    assert got == token
    assert got is not None and got.status == "Accepted" and got.expires_at is None and got.group_id is None


async def test_putting_a_token_again_replaces_it_and_delete_removes_it_once(store: Store) -> None:
    token = a_token()
    await store.put_token(token)
    updated = dataclasses.replace(token, status="Accepted", expires_at=None, group_id=None, updated_at=at(120))
    await store.put_token(updated)
    assert await store.get_token(token.id_token) == updated
    assert await store.delete_token(token.id_token) is True
    assert await store.get_token(token.id_token) is None
    assert await store.delete_token(token.id_token) is False


async def test_tokens_are_listed_and_the_limit_is_honoured(store: Store) -> None:
    tokens = [a_token() for _ in range(4)]
    for t in tokens:
        await store.put_token(t)
    listed = {t.id_token: t for t in await store.list_tokens(limit=100_000)}
    for t in tokens:
        assert listed[t.id_token] == t
    assert len(await store.list_tokens(limit=2)) == 2


# -- transaction ids ------------------------------------------------------------
async def test_the_same_business_key_always_gets_the_same_transaction_id(store: Store) -> None:
    key = a_business_key()
    first = await store.allocate_transaction_id(key)
    assert 0 < first <= INT32_MAX
    assert await store.allocate_transaction_id(key) == first


async def test_distinct_business_keys_get_distinct_transaction_ids(store: Store) -> None:
    ids = [await store.allocate_transaction_id(a_business_key()) for _ in range(20)]
    assert len(set(ids)) == 20


async def test_200_concurrent_allocations_get_200_distinct_positive_ids_and_replays_get_them_back(store: Store) -> None:
    keys = [a_business_key(connector=i % 4 + 1) for i in range(200)]
    ids = await asyncio.wait_for(asyncio.gather(*(store.allocate_transaction_id(k) for k in keys)), 60)
    assert len(set(ids)) == 200
    assert all(isinstance(i, int) and 0 < i <= INT32_MAX for i in ids)
    replayed = await asyncio.wait_for(asyncio.gather(*(store.allocate_transaction_id(k) for k in keys)), 60)
    assert replayed == ids


async def test_the_same_key_allocated_concurrently_gets_one_id(store: Store) -> None:
    key = a_business_key()
    ids = await asyncio.wait_for(asyncio.gather(*(store.allocate_transaction_id(key) for _ in range(25))), 60)
    assert len(set(ids)) == 1


async def test_transaction_ids_survive_closing_and_reopening_the_store(store: Store, open_store: Any) -> None:
    keys = [a_business_key() for _ in range(10)]
    ids = [await store.allocate_transaction_id(k) for k in keys]
    await store.close()
    reopened = await open_store()
    assert [await reopened.allocate_transaction_id(k) for k in keys] == ids
    fresh = await reopened.allocate_transaction_id(a_business_key())
    assert fresh not in ids and 0 < fresh <= INT32_MAX


async def test_two_stores_on_one_database_never_share_a_transaction_id(store: Store, open_store: Any) -> None:
    other = await open_store()
    keys = [a_business_key() for _ in range(60)]
    stores = [store, other]
    ids = await asyncio.wait_for(
        asyncio.gather(*(stores[i % 2].allocate_transaction_id(k) for i, k in enumerate(keys))), 60
    )
    assert len(set(ids)) == 60
    assert [await other.allocate_transaction_id(k) for k in keys] == ids


# -- ownership -------------------------------------------------------------------
async def test_an_unclaimed_station_has_no_owner(store: Store) -> None:
    assert await store.get_owner(unique("CP")) is None


async def test_claiming_records_the_owner_as_connected_with_a_positive_epoch(store: Store) -> None:
    station = unique("CP")
    epoch = await store.claim_station(station, "gateway-0")
    assert epoch >= 1
    owner = await store.get_owner(station)
    assert owner is not None
    assert (owner.station_id, owner.gateway_id, owner.epoch, owner.connected) == (station, "gateway-0", epoch, True)


async def test_epochs_strictly_increase_across_gateways_and_the_latest_claim_owns(store: Store) -> None:
    station = unique("CP")
    epochs = []
    for gw in ["gateway-0", "gateway-1", "gateway-0", "gateway-2", "gateway-2"]:
        epochs.append(await store.claim_station(station, gw))
        owner = await store.get_owner(station)
        assert owner == Owner(station, gw, epochs[-1], True, owner.updated_at if owner else None)
    assert epochs == sorted(set(epochs))


async def test_concurrent_claims_get_distinct_epochs(store: Store) -> None:
    station = unique("CP")
    epochs = await asyncio.wait_for(
        asyncio.gather(*(store.claim_station(station, f"gateway-{i % 3}") for i in range(30))), 60
    )
    assert len(set(epochs)) == 30
    owner = await store.get_owner(station)
    assert owner is not None and owner.epoch == max(epochs)


async def test_releasing_with_the_current_gateway_and_epoch_marks_the_station_disconnected(store: Store) -> None:
    station = unique("CP")
    epoch = await store.claim_station(station, "gateway-0")
    assert await store.release_station(station, "gateway-0", epoch) is True
    owner = await store.get_owner(station)
    assert owner is not None and owner.connected is False
    assert (owner.gateway_id, owner.epoch) == ("gateway-0", epoch)


async def test_releasing_with_a_stale_epoch_or_another_gateway_changes_nothing(store: Store) -> None:
    station = unique("CP")
    old = await store.claim_station(station, "gateway-0")
    new = await store.claim_station(station, "gateway-1")
    assert await store.release_station(station, "gateway-0", old) is False
    assert await store.release_station(station, "gateway-1", old) is False
    assert await store.release_station(station, "gateway-0", new) is False
    owner = await store.get_owner(station)
    assert owner is not None and (owner.gateway_id, owner.epoch, owner.connected) == ("gateway-1", new, True)


async def test_releasing_an_unclaimed_station_reports_false(store: Store) -> None:
    assert await store.release_station(unique("CP"), "gateway-0", 1) is False


async def test_a_claim_after_a_release_reconnects_with_a_higher_epoch(store: Store) -> None:
    station = unique("CP")
    first = await store.claim_station(station, "gateway-0")
    await store.release_station(station, "gateway-0", first)
    second = await store.claim_station(station, "gateway-0")
    assert second > first
    owner = await store.get_owner(station)
    assert owner is not None and owner.connected is True and owner.epoch == second


async def test_epochs_survive_closing_and_reopening_the_store(store: Store, open_store: Any) -> None:
    station = unique("CP")
    first = await store.claim_station(station, "gateway-0")
    await store.close()
    reopened = await open_store()
    assert await reopened.claim_station(station, "gateway-1") > first


async def test_a_batch_claim_answers_each_station_with_its_new_epoch_and_the_owner_it_replaced(store: Store) -> None:
    fresh, mine, other = unique("CP"), unique("CP"), unique("CP")
    mine_epoch = await store.claim_station(mine, "gateway-0")
    other_epoch = await store.claim_station(other, "gateway-1")
    await store.release_station(other, "gateway-1", other_epoch)
    got = await store.claim_stations([fresh, mine, other, mine], "gateway-0")
    assert set(got) == {fresh, mine, other}  # a repeated id is claimed once
    assert got[fresh] == (1, None)
    epoch, prev = got[mine]
    assert epoch > mine_epoch and prev is not None
    assert (prev.gateway_id, prev.epoch, prev.connected) == ("gateway-0", mine_epoch, True)
    epoch, prev = got[other]
    assert epoch > other_epoch and prev is not None
    assert (prev.gateway_id, prev.epoch, prev.connected) == ("gateway-1", other_epoch, False)
    for sid in (fresh, mine, other):
        owner = await store.get_owner(sid)
        assert owner is not None and (owner.gateway_id, owner.epoch, owner.connected) == ("gateway-0", got[sid][0], True)
    assert await store.claim_stations([], "gateway-0") == {}


async def test_batch_claims_and_single_claims_of_one_station_get_distinct_epochs(store: Store) -> None:
    station = unique("CP")
    claims = await asyncio.wait_for(asyncio.gather(
        *(store.claim_stations([station], f"gateway-{i % 3}") for i in range(10)),
        *(store.claim_station(station, "gateway-0") for _ in range(10)),
    ), 60)
    epochs = [c[station][0] if isinstance(c, dict) else c for c in claims]
    assert len(set(epochs)) == 20


# -- documents -------------------------------------------------------------------
async def test_a_document_round_trips_with_ints_strings_and_nesting_exactly(store: Store) -> None:
    doc = a_session_doc(
        big=2**53 + 1, negative=-7, zero=0, flag=True, nothing=None, ratio=0.25,
        text="Ladesäule “Nord” ⚡ 🚗", empty="", decimal_money="0.30", nested={"a": [1, "1", [], {}]},
    )
    assert await store.put_doc("session", doc["id"], doc, parent=doc["station_id"]) is True
    got = await store.get_doc("session", doc["id"])
    assert got == doc
    assert got is not None and type(got["big"]) is int and type(got["decimal_money"]) is str and got["nested"]["a"][1] == "1"


async def test_an_unknown_document_is_none_and_deleting_it_reports_false(store: Store) -> None:
    assert await store.get_doc("session", unique("nope")) is None
    assert await store.delete_doc("session", unique("nope")) is False


async def test_a_document_without_version_is_always_overwritten(store: Store) -> None:
    doc_id = unique("status")
    assert await store.put_doc("station_status", doc_id, {"status": "Available"}) is True
    assert await store.put_doc("station_status", doc_id, {"status": "Charging"}) is True
    assert await store.get_doc("station_status", doc_id) == {"status": "Charging"}


async def test_versions_only_move_forward_older_or_equal_writes_change_nothing(store: Store) -> None:
    doc_id = unique("sess")
    assert await store.put_doc("session", doc_id, {"seq": 2}, version=2) is True
    assert await store.put_doc("session", doc_id, {"seq": 1}, version=1) is False
    assert await store.put_doc("session", doc_id, {"seq": 2, "replay": True}, version=2) is False
    assert await store.get_doc("session", doc_id) == {"seq": 2}
    assert await store.put_doc("session", doc_id, {"seq": 3}, version=3) is True
    assert await store.get_doc("session", doc_id) == {"seq": 3}


async def test_a_redelivered_versioned_write_does_not_move_the_document_in_the_listing(store: Store) -> None:
    parent = unique("CP")
    await put_in_order(store, "session", [("a-" + parent, {"n": "a"})], parent=parent)
    assert await store.put_doc("session", "b-" + parent, {"n": "b"}, parent=parent, version=5)
    await asyncio.sleep(0.005)
    await put_in_order(store, "session", [("c-" + parent, {"n": "c"})], parent=parent)
    assert await store.put_doc("session", "b-" + parent, {"n": "b"}, parent=parent, version=5) is False
    assert [d["n"] for d in await store.list_docs("session", parent=parent)] == ["c", "b", "a"]


async def test_concurrent_versioned_writes_leave_the_highest_version(store: Store) -> None:
    doc_id = unique("sess")
    versions = list(range(1, 31))
    results = await asyncio.wait_for(
        asyncio.gather(*(store.put_doc("session", doc_id, {"v": v}, version=v) for v in reversed(versions))), 60
    )
    assert results[0] is True  # version 30 was first
    assert await store.get_doc("session", doc_id) == {"v": 30}


async def test_documents_are_listed_newest_first_and_filtered_by_parent(store: Store) -> None:
    station, other = unique("CP"), unique("CP")
    mine = [a_session_doc(station_id=station, seq=i) for i in range(4)]
    await put_in_order(store, "session", [(d["id"], d) for d in mine[:2]], parent=station)
    await put_in_order(store, "session", [(d["id"], d) for d in [a_session_doc(station_id=other)]], parent=other)
    await put_in_order(store, "session", [(d["id"], d) for d in mine[2:]], parent=station)
    assert await store.list_docs("session", parent=station) == list(reversed(mine))
    assert [d["station_id"] for d in await store.list_docs("session", parent=other)] == [other]


async def test_updating_a_document_moves_it_to_the_front_of_the_listing(store: Store) -> None:
    session = unique("sess")
    cdrs = [a_cdr_doc(session_id=session, n=i) for i in range(3)]
    await put_in_order(store, "cdr", [(c["id"], c) for c in cdrs], parent=session)
    await put_in_order(store, "cdr", [(cdrs[0]["id"], {**cdrs[0], "version": 2})], parent=session)
    assert [c["n"] for c in await store.list_docs("cdr", parent=session)] == [0, 2, 1]


async def test_listing_documents_honours_the_limit_and_keeps_the_newest(store: Store) -> None:
    parent = unique("CP")
    docs = [(f"{parent}-{i}", {"i": i}) for i in range(6)]
    await put_in_order(store, "command", docs, parent=parent)
    assert await store.list_docs("command", parent=parent, limit=2) == [{"i": 5}, {"i": 4}]


async def test_listing_documents_without_parent_covers_every_parent(store: Store) -> None:
    kind = unique("kind")  # a kind of its own, so the listing is exactly this test's documents
    await put_in_order(store, kind, [("x", {"p": 1})], parent="p1")
    await put_in_order(store, kind, [("y", {"p": 2})], parent="p2")
    await put_in_order(store, kind, [("z", {"p": 0})])
    assert await store.list_docs(kind) == [{"p": 0}, {"p": 2}, {"p": 1}]
    assert await store.list_docs(kind, parent="") == [{"p": 0}]


async def test_kinds_are_separate_namespaces(store: Store) -> None:
    doc_id = unique("same")
    await store.put_doc("site", doc_id, {"kind": "site"})
    await store.put_doc("site_state", doc_id, {"kind": "site_state"}, version=1)
    assert await store.get_doc("site", doc_id) == {"kind": "site"}
    assert await store.delete_doc("site", doc_id) is True
    assert await store.get_doc("site", doc_id) is None
    assert await store.get_doc("site_state", doc_id) == {"kind": "site_state"}


async def test_a_deleted_document_is_gone_from_get_and_list(store: Store) -> None:
    parent = unique("CP")
    doc = a_session_doc(station_id=parent)
    await store.put_doc("session", doc["id"], doc, parent=parent, version=1)
    assert await store.delete_doc("session", doc["id"]) is True
    assert await store.get_doc("session", doc["id"]) is None
    assert await store.list_docs("session", parent=parent) == []
    assert await store.delete_doc("session", doc["id"]) is False


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
async def test_any_json_document_round_trips_unchanged(store: Store, doc: dict[str, Any]) -> None:
    doc_id = unique("any")
    assert await store.put_doc("prop", doc_id, doc) is True
    assert await store.get_doc("prop", doc_id) == doc


# -- the sqlite adapter (URLs, migrations, errors) ---------------------------------
async def test_sqlite_urls_resolve_relative_absolute_and_memory_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common.store.sqlite import SqliteStore, parse_sqlite_url

    assert parse_sqlite_url("sqlite:///./csms.db") == "./csms.db"
    assert parse_sqlite_url("sqlite:////abs/path.db") == "/abs/path.db"
    assert parse_sqlite_url("sqlite:///:memory:") == ":memory:"
    for bad in ("sqlite://", "sqlite:///", "postgres:///x.db"):
        with pytest.raises(ConfigError):
            SqliteStore(bad)

    monkeypatch.chdir(tmp_path)
    for url, path in [
        ("sqlite:///./rel/csms.db", tmp_path / "rel" / "csms.db"),
        (f"sqlite:///{tmp_path / 'abs.db'}", tmp_path / "abs.db"),
    ]:
        s = store_from_url(url)
        assert isinstance(s, SqliteStore)
        await s.start()
        await s.migrate()
        await s.put_station(a_station(id="CP-1"))
        await s.close()
        assert path.exists()
        with sqlite3.connect(path) as raw:
            assert raw.execute("SELECT id FROM stations").fetchall() == [("CP-1",)]
            assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_memory_stores_are_private_and_fully_functional() -> None:
    a, b = store_from_url("sqlite:///:memory:"), store_from_url("sqlite:///:memory:")
    for s in (a, b):
        await s.start()
        await s.migrate()
    try:
        assert await a.allocate_transaction_id("k") == 1
        assert await b.allocate_transaction_id("other") == 1
        assert await a.claim_station("CP-1", "gateway-0") == 1
        assert await b.get_owner("CP-1") is None
    finally:
        await a.close()
        await b.close()


async def test_sqlite_allocations_start_at_one_and_count_up(tmp_path: Path) -> None:
    s = store_from_url(f"sqlite:///{tmp_path / 'ids.db'}")
    await s.start()
    await s.migrate()
    try:
        assert [await s.allocate_transaction_id(f"k{i}") for i in range(3)] == [1, 2, 3]
    finally:
        await s.close()


async def test_sqlite_migrations_are_recorded_once_in_order(tmp_path: Path) -> None:
    from services.common.store.sqlite import SqliteStore
    from services.common.store.sqlite.schema import MIGRATIONS

    s = SqliteStore(f"sqlite:///{tmp_path / 'm.db'}")
    await s.start()
    try:
        assert await s.applied_migrations() == []
        await s.migrate()
        await s.migrate()
        assert await s.applied_migrations() == [m.version for m in MIGRATIONS]
        assert [m.version for m in MIGRATIONS] == sorted({m.version for m in MIGRATIONS})
    finally:
        await s.close()
    with sqlite3.connect(tmp_path / "m.db") as raw:
        assert raw.execute("SELECT COUNT(*) FROM schema_migrations").fetchone() == (len(MIGRATIONS),)
        assert raw.execute("SELECT value FROM counters WHERE name = 'tx_id'").fetchone() == (0,)


async def test_sqlite_operations_on_a_closed_store_raise_store_unavailable(tmp_path: Path) -> None:
    s = store_from_url(f"sqlite:///{tmp_path / 'c.db'}")
    await s.start()
    await s.migrate()
    await s.close()
    with pytest.raises(StoreUnavailable):
        await s.get_station("CP-1")
    with pytest.raises(StoreUnavailable):
        await s.allocate_transaction_id("k")


async def test_sqlite_a_database_that_cannot_be_opened_raises_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()
    s = store_from_url(f"sqlite:///{tmp_path / 'a-directory.db'}")
    with pytest.raises(StoreUnavailable):
        await s.start()
    assert not s.healthy


async def test_sqlite_a_locked_database_raises_store_unavailable_and_recovers(tmp_path: Path) -> None:
    from services.common.store.sqlite import SqliteStore

    path = tmp_path / "locked.db"
    s = SqliteStore(f"sqlite:///{path}", busy_timeout_ms=50)
    await s.start()
    await s.migrate()
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable):
            await s.allocate_transaction_id("k")
        assert not s.healthy
        raw.execute("ROLLBACK")
        assert await s.allocate_transaction_id("k") == 1
        assert s.healthy
    finally:
        raw.close()
        await s.close()


async def test_sqlite_a_cancelled_allocation_leaves_the_store_usable(tmp_path: Path) -> None:
    s = store_from_url(f"sqlite:///{tmp_path / 'cancel.db'}")
    await s.start()
    await s.migrate()
    try:
        tasks = [asyncio.create_task(s.allocate_transaction_id(f"k{i}")) for i in range(50)]
        await asyncio.sleep(0.005)
        for t in tasks[::3]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        ids = [d for d in done if isinstance(d, int)]
        assert len(set(ids)) == len(ids)
        again = [await s.allocate_transaction_id(f"k{i}") for i in range(50)]
        assert len(set(again)) == 50
        for i, d in enumerate(done):
            if isinstance(d, int):
                assert again[i] == d
    finally:
        await s.close()


async def test_sqlite_database_files_are_created_private_and_loose_ones_are_tightened(tmp_path: Path) -> None:
    import os
    import stat

    fresh = tmp_path / "fresh.db"
    s = store_from_url(f"sqlite:///{fresh}")
    await s.start()
    await s.migrate()
    try:
        await s.put_station(a_station())  # writes the -wal file
        for name in (fresh, tmp_path / "fresh.db-wal", tmp_path / "fresh.db-shm"):
            assert name.exists(), name
            assert stat.S_IMODE(os.stat(name).st_mode) & 0o077 == 0, name
    finally:
        await s.close()

    loose = tmp_path / "loose.db"
    sqlite3.connect(loose).close()
    os.chmod(loose, 0o644)
    s = store_from_url(f"sqlite:///{loose}")
    await s.start()
    try:
        assert stat.S_IMODE(os.stat(loose).st_mode) == 0o600
    finally:
        await s.close()


async def test_sqlite_migration_4_reads_stations_stored_before_it_with_no_security_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.common.store.sqlite.schema as sqlite_schema
    from services.common.store.sqlite import SqliteStore

    url = f"sqlite:///{tmp_path / 'before-017.db'}"
    every = sqlite_schema.MIGRATIONS
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", tuple(m for m in every if m.version < 4))
    old = SqliteStore(url)
    await old.start()
    await old.migrate()
    await old.close()
    with sqlite3.connect(tmp_path / "before-017.db") as raw:
        raw.execute("INSERT INTO stations (id, password_hash, enabled, priority) VALUES ('CP-old', 'h', 1, 0)")

    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", every)
    new = SqliteStore(url)
    await new.start()
    try:
        await new.migrate()
        await new.migrate()
        got = await new.get_station("CP-old")
        assert got is not None and got.password_hash == "h"
        assert (got.security_profile, got.pending_security_profile, got.ws_ping_interval_s) == (None, None, None)
        assert (got.pending_password_hash, got.pending_password_fingerprint) == ("", "")
        upgraded = dataclasses.replace(got, security_profile=2, ws_ping_interval_s=30.0)
        await new.put_station(upgraded)
        assert await new.get_station("CP-old") == upgraded
    finally:
        await new.close()


if INFRA:

    @pytest.mark.infra
    async def test_cassandra_migration_4_adds_the_security_columns_and_reads_old_rows_as_none(
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        import secrets

        import services.common.store.cassandra.schema as cassandra_schema
        from services.common.store.cassandra import CassandraStore

        keyspace = f"csms_m4_{SESSION_TAG}_{secrets.token_hex(2)}"
        url = f"cassandra://127.0.0.1:9042/{keyspace}"
        every = cassandra_schema.MIGRATIONS
        monkeypatch.setattr(cassandra_schema, "MIGRATIONS", [m for m in every if m[0] < 4])
        old = CassandraStore(url)
        await asyncio.wait_for(old.start(), 180)
        try:
            await asyncio.wait_for(old.migrate(), 180)
            await old._run(
                "INSERT INTO stations (id, password_hash, enabled, priority) VALUES (%s, %s, %s, %s)",
                ("CP-old", "h", True, 0),
            )
            monkeypatch.setattr(cassandra_schema, "MIGRATIONS", every)
            await asyncio.wait_for(old.migrate(), 180)
            # a half-done migration re-runs: the columns already there are not added again
            await cassandra_schema._add_station_security_columns(old)
            got = await old.get_station("CP-old")
            assert got is not None and got.password_hash == "h"
            assert (got.security_profile, got.pending_security_profile, got.ws_ping_interval_s) == (None, None, None)
            assert (got.pending_password_hash, got.pending_password_fingerprint) == ("", "")
            upgraded = dataclasses.replace(got, security_profile=3, pending_password_hash="p", ws_ping_interval_s=5.0)
            await old.put_station(upgraded)
            assert await old.get_station("CP-old") == upgraded
        finally:
            try:
                await old._run(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
            finally:
                await old.close()

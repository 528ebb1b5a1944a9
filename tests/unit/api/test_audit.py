"""The audit log: an entry per mutating call and per refused authentication, in the store and
on csms.audit.v1; listing newest first across days; retention; failures never fail a call."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import pytest
from prometheus_client import REGISTRY

from services.api.audit import AuditEntry, AuditFilter, AuditLog, audit_record, new_entry_id, prune
from services.common import kinds, topics
from services.common.bus.port import Header
from services.common.gen.csms.audit.v1 import audit_pb2
from services.common.store.sqlite import SqliteStore

from tests.support.waiting import eventually

from .access_harness import BOOTSTRAP, a_key, access_api

UTC = timezone.utc


async def _entries(api: Any, **query: str) -> list[dict[str, Any]]:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    status, body = await api.get(f"/api/v1/audit?{q}", key=BOOTSTRAP)
    assert status == 200, body
    return list(body["items"])


async def test_a_patch_is_audited_in_the_store_and_on_the_bus(tmp_path: Path) -> None:
    async with access_api(tmp_path) as api:
        installer = await a_key(api, "installer")  # a password is admin/installer only
        seen: list[Any] = []
        await api.rt.bus.subscribe(topics.AUDIT, "audit-test", lambda rec: _append(seen, rec))
        assert (await api.post("/api/v1/stations", {"id": "CP-1", "password": "p" * 20}, key=BOOTSTRAP))[0] == 201
        status, _ = await api.call("PATCH", "/api/v1/stations/CP-1", {"enabled": False, "password": "q" * 20},
                                   key=installer)
        assert status == 200
        assert (await api.call("PATCH", "/api/v1/stations/NOPE", {"enabled": False}, key=installer))[0] == 404
        assert (await api.get("/api/v1/stations", key=installer))[0] == 200  # reads are not audited

        items = await _entries(api, action="PATCH%20/api/v1/stations/%7Bid%7D")
        assert [(e["target"], e["status"], e["result"]) for e in items] == [
            ("station:NOPE", 404, "error"), ("station:CP-1", 200, "ok")]
        ok = items[1]
        installer_id = installer.split("_")[1]
        assert ok["actor"] == f"key:{installer_id}" and ok["role"] == "installer" and ok["source"] == "127.0.0.1"
        assert ok["request_id"]
        created = await _entries(api, action="POST%20/api/v1/stations")
        assert [(e["actor"], e["target"], e["status"]) for e in created] == [("bootstrap", "station:CP-1", 201)]
        # no credential anywhere in the log
        everything = str(await _entries(api, limit="500"))
        assert "q" * 20 not in everything and "p" * 20 not in everything and BOOTSTRAP not in everything
        assert installer.split("_", 2)[2] not in everything

        await eventually(lambda: len(seen) >= 4, what="the audit entries on csms.audit.v1")
        rec = seen[0]
        pb = audit_pb2.AuditEntry()
        pb.ParseFromString(rec.value)
        headers = dict(rec.headers)
        assert headers["ce_type"] == b"csms.audit.v1.AuditEntry" and headers["ce_id"] == pb.id.encode()
        assert rec.key == pb.actor.encode()


async def _append(seen: list[Any], rec: Any) -> None:
    seen.append(rec)


async def test_a_failed_login_is_audited_without_the_credential(tmp_path: Path) -> None:
    async with access_api(tmp_path) as api:
        wrong = "csms_0123456789abcdef_" + "S" * 43
        assert (await api.call("DELETE", "/api/v1/stations/CP-1", key=wrong))[0] == 401
        assert (await api.get("/api/v1/stations", key="totally-wrong-secret"))[0] == 401
        assert (await api.get("/api/v1/stations", key=None))[0] == 401  # a read without credentials: not audited
        items = await _entries(api, result="unauthenticated")
        assert [(e["action"], e["actor"], e["role"], e["detail"]) for e in items] == [
            ("GET /api/v1/stations", "anonymous", "", "unknown credentials"),
            ("DELETE /api/v1/stations/{id}", "anonymous", "", "api key unknown key"),
        ]
        assert "S" * 43 not in str(items) and "totally-wrong-secret" not in str(items)
        # a write without credentials is audited, once per source and minute (no flooding)
        for _ in range(3):
            assert (await api.post("/api/v1/tariffs", {}, key=None))[0] == 401
        [anonymous] = await _entries(api, action="POST%20/api/v1/tariffs")
        assert anonymous["detail"] == "missing credentials" and anonymous["status"] == 401


async def test_a_refused_role_and_a_throttled_source_are_audited(tmp_path: Path) -> None:
    async with access_api(tmp_path, api_auth_fail_limit=1) as api:
        viewer = await a_key(api, "viewer")
        assert (await api.post("/api/v1/tariffs", {}, key=viewer))[0] == 403
        [denied] = await _entries(api, result="denied")
        assert denied["detail"] == "role viewer may not POST /api/v1/tariffs" and denied["status"] == 403
        assert (await api.get("/api/v1/stations", key="nope"))[0] == 401
        for _ in range(3):
            assert (await api.get("/api/v1/stations", key="nope"))[0] == 429
    async with access_api(tmp_path, api_auth_fail_limit=1000) as api:
        throttled = await _entries(api, result="throttled")
        assert len(throttled) == 1  # once per window, not once per request


async def test_an_audit_write_failure_does_not_fail_the_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with access_api(tmp_path) as api:
        audit = api.service.ctx.audit
        assert audit is not None

        async def broken(*_: Any) -> None:
            raise RuntimeError("bus down")

        monkeypatch.setattr(audit, "_publish", broken)
        before = REGISTRY.get_sample_value("csms_api_audit_write_failures_total", {"sink": "bus"}) or 0
        assert (await api.post("/api/v1/stations", {"id": "CP-1", "password": "p" * 20}, key=BOOTSTRAP))[0] == 201
        assert REGISTRY.get_sample_value("csms_api_audit_write_failures_total", {"sink": "bus"}) == before + 1
        assert len(await _entries(api)) == 1  # the store part landed


# -- the log itself ---------------------------------------------------------------------------------

class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(f"sqlite:///{tmp_path}/audit.db")
    await s.start()
    await s.migrate()
    yield s
    await s.close()


async def _nowhere(topic: str, key: str, value: bytes, headers: Sequence[Header]) -> None:
    return None


def _entry(at: datetime, actor: str = "key:a", action: str = "POST /api/v1/tariffs", result: str = "ok") -> AuditEntry:
    return AuditEntry(new_entry_id(at), at, actor, "admin", action, "tariff:t1", 201 if result == "ok" else 403,
                      result, "127.0.0.1")


async def test_entries_list_newest_first_across_days_with_cursors_and_filters(store: SqliteStore) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    log = AuditLog(store, _nowhere, Clock(now), retention_days=365)
    written: list[AuditEntry] = []
    for days_ago in (0, 0, 1, 3, 40, 40):
        for i in range(2):
            e = _entry(now - timedelta(days=days_ago, minutes=i * 7 + len(written)),
                       actor="key:b" if len(written) % 3 == 0 else "key:a")
            written.append(e)
            assert await log.write(e)
    expected = sorted(written, key=lambda e: e.at, reverse=True)

    got: list[AuditEntry] = []
    cursor = None
    pages = 0
    while True:
        items, cursor = await log.list(AuditFilter(), limit=5, cursor=cursor)
        got.extend(items)
        pages += 1
        if cursor is None:
            break
        assert pages < 20
    assert [e.id for e in got] == [e.id for e in expected]

    only_b, _ = await log.list(AuditFilter(actor="key:b"), limit=100)
    only_b_all = [e for e in expected if e.actor == "key:b"]
    # a page looks at 31 days: the rest comes with the cursor
    assert [e.id for e in only_b] == [e.id for e in only_b_all if e.at > now - timedelta(days=31)]
    since, _ = await log.list(AuditFilter(since=now - timedelta(days=2), until=now - timedelta(minutes=1)), limit=100)
    assert [e.id for e in since] == [e.id for e in expected if now - timedelta(days=2) <= e.at < now - timedelta(minutes=1)]


async def test_prune_deletes_the_days_past_the_retention(store: SqliteStore) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    log = AuditLog(store, _nowhere, Clock(now))
    old, kept = _entry(now - timedelta(days=12)), _entry(now - timedelta(days=5))
    for e in (old, kept):
        await log.write(e)
    assert await prune(store, Clock(now), 0) == 0
    assert await prune(store, Clock(now), 10) == 1
    assert await store.get_doc(kinds.AUDIT, old.id) is None
    assert await store.get_doc(kinds.AUDIT, kept.id) is not None


def test_entry_ids_sort_by_time_and_the_record_carries_the_entry() -> None:
    t = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    ids = [new_entry_id(t + timedelta(microseconds=n)) for n in (0, 1, 999_999, 1_000_000)]
    assert ids == sorted(ids) and len(set(ids)) == 4
    topic, key, value, headers = audit_record(_entry(t, actor="oidc:alice"))
    assert topic == topics.AUDIT and key == "oidc:alice"
    pb = audit_pb2.AuditEntry()
    pb.ParseFromString(value)
    assert pb.action == "POST /api/v1/tariffs" and pb.at.ToDatetime(tzinfo=UTC) == t
    assert dict(headers)["ce_id"] == _entry_id_of(value).encode()


def _entry_id_of(value: bytes) -> str:
    pb = audit_pb2.AuditEntry()
    pb.ParseFromString(value)
    return pb.id


async def test_the_audit_query_is_validated(tmp_path: Path) -> None:
    async with access_api(tmp_path) as api:
        for q in ("result=maybe", "cursor=nope", "since=yesterday", "limit=0"):
            status, body = await api.get(f"/api/v1/audit?{q}", key=BOOTSTRAP)
            assert status == 422, (q, body)


async def test_the_audit_query_errors_follow_the_paged_routes_convention(tmp_path: Path) -> None:
    """services/api/query.py: a query parameter of a cursor-paged route that cannot be read is
    a 422 naming it (400 is for request bodies); /audit answers as the history and campaign
    routes do."""
    async with access_api(tmp_path) as api:
        assert (await api.post("/api/v1/stations", {"id": "CP-1", "password": "p" * 20}, key=BOOTSTRAP))[0] == 201
        for q, name in (("limit=0", "limit"), ("limit=x", "limit"), ("cursor=nope", "cursor"),
                        ("since=yesterday", "since")):
            answers = []
            for path in ("/api/v1/audit", "/api/v1/stations/CP-1/events", "/api/v1/firmware-campaigns"):
                if name == "since" and "campaigns" in path:
                    continue  # campaigns take no time filter
                status, body = await api.get(f"{path}?{q}", key=BOOTSTRAP)
                answers.append((path, status, name in body.get("details", {})))
            assert {(s, named) for _, s, named in answers} == {(422, True)}, (q, answers)

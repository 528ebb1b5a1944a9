"""Sites, their outside limit, and the SiteUpdated they publish on csms.sites.v1 for
smart charging (ADR 015: never a `site:` event on csms.events.v1)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from services.api.context import CTX
from services.api.site_events import SiteNotifier
from services.common import kinds, topics
from services.common.bus.port import Record
from services.common.errors import BusUnavailable
from services.common.sites_codec import CE_TYPE, SiteChange, decode_site_updated
from services.smart_charging.documents import SiteDoc, site_doc_to_json
from services.smart_charging.domain import ActiveSession, NoProfiles, SiteState

from tests.support.clock import FixedClock

from .builders import Api, NOW, a_tariff_body


async def site_records(api: Api) -> list[Record]:
    return list(await api.rt.bus.read(topics.SITES))


async def site_changes(api: Api) -> list[SiteChange]:
    return [decode_site_updated(r.value) for r in await site_records(api)]


async def no_site_events(api: Api) -> bool:
    return not [r for r in await api.rt.bus.read(topics.EVENTS) if r.key.startswith(b"site:")]


async def test_a_site_is_created_with_three_phases_by_default(api: Api) -> None:
    status, body = await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 200})
    assert status == 201
    assert (body["id"], body["grid_limit_a"], body["phases"], body["external_limit_a"]) == ("S1", 200, 3, None)
    assert (await api.get("/api/v1/sites/S1"))[1]["grid_limit_a"] == 200
    _, listing = await api.get("/api/v1/sites")
    assert [s["id"] for s in listing["items"]] == ["S1"]


async def test_invalid_sites_are_400_and_duplicates_409(api: Api) -> None:
    status, body = await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 0, "phases": 2})
    assert status == 400 and set(body["details"]) == {"grid_limit_a", "phases"}
    assert (await api.post("/api/v1/sites", {"id": "S1"}))[0] == 400
    assert (await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 10, "tariff_id": "nope"}))[0] == 400
    assert (await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 10}))[0] == 201
    assert (await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 10}))[0] == 409


async def test_a_site_takes_a_tariff_and_lets_it_go(api: Api) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="t1"))
    await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 100})
    status, body = await api.call("PATCH", "/api/v1/sites/S1", {"tariff_id": "t1", "grid_limit_a": 150})
    assert status == 200 and body["tariff_id"] == "t1" and body["grid_limit_a"] == 150
    status, body = await api.call("PATCH", "/api/v1/sites/S1", {"tariff_id": None})
    assert status == 200 and body["tariff_id"] is None
    assert (await api.call("PATCH", "/api/v1/sites/S1", {"tariff_id": "nope"}))[0] == 400
    assert (await api.call("PATCH", "/api/v1/sites/S9", {"grid_limit_a": 1}))[0] == 404


async def test_an_outside_limit_is_stored_and_published_as_site_updated(api: Api) -> None:
    await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 100})

    status, body = await api.call("PUT", "/api/v1/sites/S1/limit", {"limit_a": 40})

    assert status == 200 and body["external_limit_a"] == 40
    created, limited = await site_records(api)
    assert limited.key == b"S1"
    headers = dict(limited.headers)
    assert headers["ce_type"] == CE_TYPE.encode() == b"csms.sites.v1.SiteUpdated"
    assert headers["ce_subject"] == b"S1" and headers["ce_source"] == b"/csms/api"
    change = decode_site_updated(limited.value)
    assert (change.site_id, change.deleted) == ("S1", False)
    assert change.site == body  # the stored document, REST shape
    assert change.version > decode_site_updated(created.value).version
    assert headers["ce_id"] == change.event_id.encode()
    status, body = await api.call("PUT", "/api/v1/sites/S1/limit", {"limit_a": None})
    assert status == 200 and body["external_limit_a"] is None
    assert (await site_changes(api))[-1].site == body
    assert (await api.call("PUT", "/api/v1/sites/S1/limit", {"limit_a": -1}))[0] == 400
    assert (await api.call("PUT", "/api/v1/sites/S1/limit", {}))[0] == 400
    assert (await api.call("PUT", "/api/v1/sites/S9/limit", {"limit_a": 1}))[0] == 404
    assert len(await site_records(api)) == 3  # refused changes publish nothing
    assert await no_site_events(api)


async def test_versions_increase_with_every_change_even_at_the_same_instant(api: Api) -> None:
    assert api.service.app is not None
    api.service.app[CTX].on_site_changed = SiteNotifier(api.rt.store, api.rt.bus.publish, FixedClock(NOW)).changed
    await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 100})
    await api.call("PATCH", "/api/v1/sites/S1", {"grid_limit_a": 90})
    await api.call("PUT", "/api/v1/sites/S1/limit", {"limit_a": 40})
    await api.call("DELETE", "/api/v1/sites/S1")

    versions = [c.version for c in await site_changes(api)]

    assert len(versions) == 4 and versions == sorted(set(versions))
    assert versions[0] >= int(NOW.timestamp()) * 1_000_000  # microseconds since the epoch


async def test_a_site_document_with_its_own_version_publishes_that_version(api: Api) -> None:
    await api.rt.store.put_doc("site", "S7", {"id": "S7", "grid_limit_a": 10, "version": 42})

    await api.service.on_site_changed("S7")

    [change] = await site_changes(api)
    assert change.version == 42


async def test_a_failed_publish_is_counted_and_the_change_is_still_stored(api: Api) -> None:
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("csms_api_site_notifications_failed_total") or 0.0
    async def sites_down(topic: str, *args: Any, **kwargs: Any) -> None:
        raise BusUnavailable("broker away")

    assert api.service.app is not None
    api.service.app[CTX].on_site_changed = SiteNotifier(api.rt.store, sites_down, api.rt.clock).changed
    status, _ = await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 100})

    assert status == 201
    assert (await api.get("/api/v1/sites/S1"))[1]["grid_limit_a"] == 100
    assert (REGISTRY.get_sample_value("csms_api_site_notifications_failed_total") or 0.0) - before == 1
    assert await site_records(api) == []


async def test_every_site_change_calls_the_overridable_hook(api: Api) -> None:
    seen: list[str] = []

    async def hook(site_id: str) -> None:
        seen.append(site_id)

    assert api.service.app is not None
    api.service.app[CTX].on_site_changed = hook
    await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 100})
    await api.post("/api/v1/sites", {"id": "S2", "grid_limit_a": 100})
    await api.call("PATCH", "/api/v1/sites/S1", {"phases": 1})
    await api.call("PUT", "/api/v1/sites/S1/limit", {"limit_a": 10})
    await api.a_station("CP-1", site_id="S1")
    await api.call("PATCH", "/api/v1/stations/CP-1", {"site_id": "S2"})
    await api.call("DELETE", "/api/v1/sites/S1")
    assert seen[:5] == ["S1", "S2", "S1", "S1", "S1"]
    assert sorted(seen[5:7]) == ["S1", "S2"]  # the station left S1 for S2
    assert seen[7:] == ["S1"]


async def test_a_deleted_site_is_gone_and_announced(api: Api) -> None:
    await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 100})

    assert (await api.call("DELETE", "/api/v1/sites/S1"))[0] == 204

    deleted = (await site_changes(api))[-1]
    assert (deleted.site_id, deleted.deleted, deleted.site) == ("S1", True, None)
    assert (await site_records(api))[-1].key == b"S1"
    assert (await api.get("/api/v1/sites/S1"))[0] == 404
    assert (await api.call("DELETE", "/api/v1/sites/S1"))[0] == 404
    assert await no_site_events(api)


# ------------------------------------------------------------------ the allocation view


def _session(station_id: str, *, controllable: bool = True, measured_a: str | None = None) -> ActiveSession:
    return ActiveSession(
        station_id=station_id, evse_id=1, transaction_id=f"tx-{station_id}", phases=3, min_a=Decimal(6),
        max_a=Decimal(32), priority=0, started_at=NOW, controllable=controllable,
        measured_a=None if measured_a is None else Decimal(measured_a),
        limit_a=Decimal(32) if controllable else None,
    )


async def test_a_sites_allocation_is_what_the_allocator_decides_from_the_processors_state(api: Api) -> None:
    """The view recomputes the allocation from smart charging's "site_state" document (the
    processor's own writer is used to make it): a station's outside limit caps its session,
    a station that does not take profiles is reserved its measured draw plus headroom, and
    the rest of the limit goes to the other session."""
    assert (await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 40}))[0] == 201
    status, empty = await api.get("/api/v1/sites/S1/allocation")
    assert status == 200
    assert (empty["sessions"], empty["total_a"], empty["limit_a"], empty["updated_at"]) == ([], 0, 40, None)

    sessions = {s.key: s for s in (_session("A"), _session("B"), _session("R", controllable=False, measured_a="16"))}
    state = SiteState(
        site_id="S1", limit_a=Decimal(40), sessions=sessions,
        external_limits={("B", 1, "EMS"): Decimal(5)},
        no_profiles={"R": NoProfiles(since=NOW - timedelta(minutes=5), reason="NotImplemented")},
    )
    stamp = "2026-11-28T10:00:00.000Z"
    await api.rt.store.put_doc(kinds.SITE_STATE, "S1", site_doc_to_json(SiteDoc(state=state, version=3), stamp))

    status, body = await api.get("/api/v1/sites/S1/allocation")
    assert status == 200
    by_station = {s["station_id"]: s for s in body["sessions"]}
    assert by_station["R"]["allocated_a"] == 17 and not by_station["R"]["controllable"]  # 16 A measured + 1 A headroom
    assert by_station["B"]["allocated_a"] == 5  # its outside limit
    assert by_station["A"]["allocated_a"] == 18  # 40 - 17 - 5
    assert by_station["A"]["last_sent_a"] == 32 and by_station["R"]["last_sent_a"] is None
    assert (body["total_a"], body["reserved_a"], body["over_limit"], body["limit_a"]) == (40, 17, False, 40)
    assert body["outside_limits"] == [{"station_id": "B", "evse_id": 1, "source": "EMS", "limit_a": 5}]
    assert [(m["station_id"], m["reason"]) for m in body["stations_without_profiles"]] == [("R", "NotImplemented")]
    assert body["updated_at"] == stamp

    assert (await api.get("/api/v1/sites/NOPE/allocation"))[0] == 404

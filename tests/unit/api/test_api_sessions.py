"""Sessions are read from the processor's documents and priced (CDR, or a running price)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from services.billing.documents import cdr_to_dict
from services.billing.domain import SessionUsage, decide_cdr
from services.billing.codec import tariff_from_dict
from services.common.timeutil import parse_ocpp

from .builders import Api, a_session_doc, a_tariff_body


async def _put_session(api: Api, **overrides: object) -> dict[str, Any]:
    doc = a_session_doc(**overrides)
    await api.rt.store.put_doc("session", doc["id"], doc, parent=doc["station_id"])
    return doc


async def test_sessions_are_listed_by_station_and_filtered_by_status(api: Api) -> None:
    await _put_session(api, id="s1", station_id="ST1", status="completed")
    await _put_session(api, id="s2", station_id="ST1", status="active")
    await _put_session(api, id="s3", station_id="ST2", status="completed")
    _, body = await api.get("/api/v1/sessions?station_id=ST1")
    assert sorted(s["id"] for s in body["items"]) == ["s1", "s2"]
    _, body = await api.get("/api/v1/sessions?station_id=ST1&status=completed")
    assert [s["id"] for s in body["items"]] == ["s1"]
    _, body = await api.get("/api/v1/sessions?status=completed")
    assert sorted(s["id"] for s in body["items"]) == ["s1", "s3"]
    _, body = await api.get("/api/v1/sessions")
    assert len(body["items"]) == 3
    _, body = await api.get("/api/v1/sessions?limit=1")
    assert len(body["items"]) == 1


async def test_a_session_keeps_the_processor_shape_and_has_no_cost_without_a_tariff(api: Api) -> None:
    doc = await _put_session(api, id="s1")
    status, body = await api.get("/api/v1/sessions/s1")
    assert status == 200
    assert {k: body[k] for k in doc} == doc
    assert body["cost"] is None
    assert (await api.get("/api/v1/sessions/nope"))[0] == 404


async def _process(api: Api, *events: Any) -> None:
    """Run events through the sessions processor's handler (one batch), as the worker would."""
    from services.common import codec, topics
    from services.common.bus.port import Record
    from services.sessions.wiring import build_handler

    records = [
        Record(topics.EVENTS, 0, i, e.station_id.encode(), codec.encode_event(e), tuple(codec.event_headers(e)))
        for i, e in enumerate(events)
    ]
    await build_handler(api.rt).handle_batch(records)


def _a_16_session(station: str, *readings: tuple[float, Any], meter_start: int = 1000) -> list[Any]:
    from tests.unit.sessions.builders import V16, a_register, a_started, meter_values

    env = {"station_id": station, **V16}
    events = [a_started(env=env, meter_start_wh=meter_start, charging_state="", trigger_reason="")]
    for minute, value in readings:
        sample = a_register(minute, value) if not isinstance(value, str) else replace(a_register(minute, 0), raw_value=value)
        events.append(meter_values(sample, at_min=minute, env=env))
    return events


async def test_an_active_session_shows_a_running_price_with_the_default_tariff(api: Api) -> None:
    from tests.unit.sessions.builders import V16, a_register, meter_values

    await api.post("/api/v1/tariffs", a_tariff_body(id="d", price_per_kwh="0.50", default=True))
    events = _a_16_session("ST9", (30, 3000))
    power = meter_values(a_register(30, 11_000, measurand="Power.Active.Import"), at_min=30, env={"station_id": "ST9", **V16})
    await _process(api, *events, power)
    _, body = await api.get("/api/v1/sessions?station_id=ST9")
    (s,) = body["items"]
    assert (s["energy_wh"], s["sample_count"], s["peak_power_w"]) == (2000, 2, 11_000)
    assert "meter_samples" not in s and "_state" not in s
    cost = s["cost"]
    assert cost["final"] is False and cost["tariff_id"] == "d"
    assert (cost["amount"], cost["currency"]) == ("1.00", "EUR")  # 2 kWh x 0.50
    assert cost["incl_tax"] == {"amount": "1.19", "currency": "EUR"}


async def test_the_meter_values_of_a_session_are_paged_with_their_judgement(api: Api) -> None:
    await _process(api, *_a_16_session("ST8", (10, 2000), (20, "1e308"), (30, 3000), (40, 2_000_000_000), (50, 4000)))
    _, body = await api.get("/api/v1/sessions?station_id=ST8")
    (s,) = body["items"]
    assert (s["sample_count"], s["excluded_count"], s["energy_wh"]) == (5, 2, 3000)

    pages, cursor = [], None
    while True:
        status, page = await api.get(f"/api/v1/sessions/{s['id']}/meter-values?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200 and len(page["items"]) <= 2
        pages.append(page["items"])
        cursor = page["next"]
        if cursor is None:
            break
    items = [x for p in pages for x in p]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [(x["timestamp"][11:16], x["value"], x["raw_value"], x["excluded"]) for x in items] == [
        ("10:10", 2000, "", False),
        ("10:20", 0, "1e308", True),
        ("10:30", 3000, "", False),
        ("10:40", 2_000_000_000, "", True),  # a jump beyond CSMS_METER_MAX_POWER_KW x elapsed
        ("10:50", 4000, "", False),
    ]
    assert all(x["measurand"] == "Energy.Active.Import.Register" and x["unit"] == "Wh" for x in items)
    _, whole = await api.get(f"/api/v1/sessions/{s['id']}/meter-values")
    assert whole == {"items": items, "next": None}

    assert (await api.get(f"/api/v1/sessions/{s['id']}/meter-values?cursor=garbage!"))[0] == 400
    assert (await api.get(f"/api/v1/sessions/{s['id']}/meter-values?limit=0"))[0] == 400
    assert (await api.get("/api/v1/sessions/nope/meter-values"))[0] == 404


async def test_a_legacy_document_is_shown_without_its_samples(api: Api) -> None:
    await _put_session(api, id="old", meter_samples=[
        {"timestamp": "2026-11-28T10:30:00.000Z", "measurand": "Energy.Active.Import.Register", "value": 3000, "unit": "Wh"},
    ])
    _, body = await api.get("/api/v1/sessions/old")
    assert "meter_samples" not in body and body["id"] == "old"


async def test_the_station_tariff_wins_over_the_site_and_default_tariffs(api: Api) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="d", price_per_kwh="0.50", default=True))
    await api.post("/api/v1/tariffs", a_tariff_body(id="site", price_per_kwh="0.40"))
    await api.post("/api/v1/tariffs", a_tariff_body(id="own", price_per_kwh="0.10"))
    await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 100, "tariff_id": "site"})
    await api.a_station("ST1", site_id="S1")
    await _put_session(api, id="s1", energy_wh=1000, meter_start_wh=None)
    _, body = await api.get("/api/v1/sessions/s1")
    assert body["cost"]["tariff_id"] == "site" and body["cost"]["amount"] == "0.40"
    await api.call("PATCH", "/api/v1/stations/ST1", {"tariff_id": "own"})
    _, body = await api.get("/api/v1/sessions/s1")
    assert body["cost"]["tariff_id"] == "own" and body["cost"]["amount"] == "0.10"


async def test_a_completed_session_shows_its_latest_cdr(api: Api) -> None:
    tariff = tariff_from_dict(a_tariff_body(id="t1"))
    usage = SessionUsage(
        started_at=parse_ocpp("2026-11-28T10:00:00Z"),
        stopped_at=parse_ocpp("2026-11-28T11:00:00Z"),
        meter_start_wh=0,
        meter_stop_wh=10_000,
    )
    now = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
    v1 = decide_cdr(None, "s1", "ST1", tariff, usage, now)
    assert v1 is not None
    usage2 = SessionUsage(started_at=usage.started_at, stopped_at=usage.stopped_at, meter_start_wh=0, meter_stop_wh=12_000)
    v2 = decide_cdr(v1, "s1", "ST1", tariff, usage2, now)
    assert v2 is not None
    for cdr in (v2, v1):  # stored out of order: the highest version still wins
        await api.rt.store.put_doc("cdr", cdr.id, cdr_to_dict(cdr), parent="s1", version=cdr.version)
    await _put_session(api, id="s1", status="completed", stopped_at="2026-11-28T11:00:00.000Z", energy_wh=12_000)
    _, body = await api.get("/api/v1/sessions/s1")
    assert body["cost"] == {
        "amount": "3.60",
        "currency": "EUR",
        "incl_tax": {"amount": "4.28", "currency": "EUR"},
        "cdr_id": "s1-v2",
        "version": 2,
        "tariff_id": "t1",
        "final": True,
    }


@pytest.mark.parametrize("status", ["active", "completed"])
async def test_a_session_document_without_a_start_is_priced_from_its_receive_time(api: Api, status: str) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="d", default=True))
    await _put_session(api, id="s1", status=status, started_at=None, energy_wh=1000, meter_start_wh=None)
    status_code, body = await api.get("/api/v1/sessions/s1")
    assert status_code == 200 and body["started_at"] is None
    assert body["cost"]["amount"] == "0.30" and body["cost"]["final"] is False


async def test_a_session_document_the_processor_cannot_have_written_is_left_out(api: Api) -> None:
    await _put_session(api, id="bad", received_at=None)
    await _put_session(api, id="good")
    _, body = await api.get("/api/v1/sessions")
    assert [s["id"] for s in body["items"]] == ["good"]
    assert (await api.get("/api/v1/sessions/bad"))[0] == 500


async def test_abandoned_sessions_are_listed_with_status_abandoned(api: Api) -> None:
    from services.common import events as ev
    from services.sessions.documents import session_to_doc
    from services.sessions.domain import apply
    from tests.unit.sessions.builders import NOW, TX, V16, a_started, an_envelope, at

    s = apply(None, a_started(env=V16, meter_start_wh=0, id_token_status="Invalid"), NOW).session
    assert s is not None
    abandoned = apply(s, an_envelope(ev.SessionAbandoned(transaction_id=TX, session_id=s.id, reason="boot"), station_time=at(5)), NOW).session
    assert abandoned is not None and abandoned.status == "abandoned"
    await api.rt.store.put_doc("session", abandoned.id, session_to_doc(abandoned), parent=abandoned.station_id)
    await _put_session(api, id="s2", station_id=abandoned.station_id, status="active")

    _, body = await api.get("/api/v1/sessions?status=abandoned")
    assert [(x["id"], x["status"], x["abandon_reason"], x["authorization"]) for x in body["items"]] == [
        (abandoned.id, "abandoned", "boot", "Invalid")
    ]
    _, body = await api.get(f"/api/v1/sessions?station_id={abandoned.station_id}&status=active")
    assert [x["id"] for x in body["items"]] == ["s2"]

"""GET /api/v1/tokens/{id}/sessions: the driver's view, from the token index the
sessions processor keeps, each session as GET /api/v1/sessions/{id} shows it."""

from __future__ import annotations

from typing import Any

import jsonschema

from services.api.openapi import openapi_document
from services.common import codec, kinds, topics
from services.common import events as ev
from services.common.bus.port import Record
from services.common.store.port import Token
from services.sessions.wiring import build_handler
from tests.unit.api.builders import Api
from tests.unit.sessions.builders import V16, a_register, a_started, an_ended, meter_values

from .test_session_driver_domain import a_needs, a_schedule

_DOC = openapi_document()


def _valid(value: Any, schema: str) -> None:
    root = {"$ref": f"#/components/schemas/{schema}", "components": _DOC["components"]}
    jsonschema.Draft202012Validator(root).validate(value)


async def _process(api: Api, *events: ev.Envelope) -> None:
    records = [
        Record(topics.EVENTS, 0, i, e.station_id.encode(), codec.encode_event(e), tuple(codec.event_headers(e)))
        for i, e in enumerate(events)
    ]
    await build_handler(api.rt).handle_batch(records)


def _a_16(station: str, tx: str, token: str, start_min: float, wh: int, *, stop: bool) -> list[ev.Envelope]:
    env = {"station_id": station, **V16}
    out = [a_started(transaction_id=tx, id_token=token, meter_start_wh=1_000, at_min=start_min, charging_state="",
                     trigger_reason="", env=env),
           meter_values(a_register(start_min + 10, 1_000 + wh), transaction_id=tx, at_min=start_min + 10, env=env)]
    if stop:
        out.append(an_ended(transaction_id=tx, at_min=start_min + 20, meter_stop_wh=1_000 + wh, env=env))
    return out


async def test_a_tokens_sessions_on_two_stations_newest_first_with_energy(api: Api) -> None:
    await api.rt.store.put_token(Token(id_token="DRIVER-1", status="Accepted"))
    await _process(api, *_a_16("ST-A", "1", "DRIVER-1", 0, 4_000, stop=True))
    await _process(api, *_a_16("ST-B", "2", "DRIVER-1", 60, 2_500, stop=False),
                   *_a_16("ST-B", "3", "OTHER", 70, 100, stop=False))
    status, body = await api.get("/api/v1/tokens/DRIVER-1/sessions")
    assert status == 200, body
    assert [(s["station_id"], s["energy_wh"], s["status"]) for s in body["items"]] == [
        ("ST-B", 2_500, "active"), ("ST-A", 4_000, "completed")]
    for item in body["items"]:
        _valid(item, "Session")
        assert item["id_token"] == "DRIVER-1" and item["reservation_id"] is None
    _, one = await api.get(f"/api/v1/sessions/{body['items'][0]['id']}")
    assert body["items"][0] == one  # the same view as the sessions route

    _, done = await api.get("/api/v1/tokens/DRIVER-1/sessions?status=completed")
    assert [s["station_id"] for s in done["items"]] == ["ST-A"]
    _, first = await api.get("/api/v1/tokens/DRIVER-1/sessions?limit=1")
    assert [s["station_id"] for s in first["items"]] == ["ST-B"]


async def test_a_deleted_token_still_shows_its_sessions_and_an_unknown_one_is_404(api: Api) -> None:
    await _process(api, *_a_16("ST-A", "1", "GONE", 0, 1_000, stop=True))
    status, body = await api.get("/api/v1/tokens/GONE/sessions")
    assert status == 200 and len(body["items"]) == 1
    status, body = await api.get("/api/v1/tokens/NOBODY/sessions")
    assert status == 404 and "NOBODY" in body["error"]
    await api.rt.store.put_token(Token(id_token="NEW", status="Accepted"))
    assert await api.get("/api/v1/tokens/NEW/sessions") == (200, {"items": []})


async def test_bad_queries_name_every_bad_field(api: Api) -> None:
    status, body = await api.get("/api/v1/tokens/X/sessions?limit=0&status=running")
    assert status == 400 and set(body["details"]) == {"limit", "status"}
    status, body = await api.get("/api/v1/tokens/" + "x" * 300 + "/sessions?limit=abc")
    assert status == 400 and set(body["details"]) == {"id", "limit"}


async def test_an_index_entry_whose_session_names_another_token_is_left_out(api: Api) -> None:
    await _process(api, *_a_16("ST-A", "1", "DRIVER-1", 0, 1_000, stop=True))
    (entry,) = await api.rt.store.list_docs(kinds.TOKEN_SESSION, parent="DRIVER-1")
    await api.rt.store.put_doc(kinds.TOKEN_SESSION, "stale", {**entry, "session_id": entry["session_id"]}, parent="SOMEONE")
    status, body = await api.get("/api/v1/tokens/SOMEONE/sessions")
    assert status == 404, body


async def test_the_session_view_shows_the_reservation_and_what_the_ev_said(api: Api) -> None:
    await _process(api, a_started(reservation_id=12, id_token="EV-1", env={"station_id": "ST-201"}),
                   _at(a_needs(1), "ST-201"), _at(a_schedule(2), "ST-201"))
    _, body = await api.get("/api/v1/tokens/EV-1/sessions")
    (item,) = body["items"]
    _valid(item, "Session")
    _valid(item["ev_charging_needs"], "EvChargingNeeds")
    _valid(item["ev_charging_schedule"], "EvChargingSchedule")
    assert item["reservation_id"] == 12
    assert item["ev_charging_needs"]["ev_max_current_a"] == 32
    assert item["ev_charging_schedule"]["charging_rate_unit"] == "A"


def _at(e: ev.Envelope, station: str) -> ev.Envelope:
    from dataclasses import replace

    return replace(e, station_id=station)

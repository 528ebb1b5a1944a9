"""The session document's compact internal form (`_state` v2: instants as epoch
milliseconds, samples as short lists) and the processor's cache of the sessions it wrote:
what makes loading cheap must give back exactly the session that was written, keep the
public (REST) fields as they were, and never stand in for a document someone else wrote."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson

from services.billing.domain.tariff import Tariff, TariffBand
from services.common import events as ev
from services.common.timeutil import to_ocpp
from services.sessions.documents import session_from_doc, session_to_doc
from services.sessions.domain import Plausibility
from services.sessions.repository import SessionCache

from .builders import V16, SampleStore, a_register, a_started, an_ended, at, meter_values, replay

UTC = timezone.utc
TARIFF = Tariff(
    id="t-1", currency="EUR", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.01"),
    bands=(TariffBand(start="10:25", end="11:05", price_per_kwh=Decimal("0.50")),),
)
POWER = "Power.Active.Import"


def _rich_session():  # type: ignore[no-untyped-def]
    """Phase power groups, a clock-suspect sample (station time kept), an unusable value,
    per-phase registers, a band mark in the price, idle keys, an end."""
    rules = Plausibility(clock_floor=datetime(2020, 1, 1, tzinfo=UTC))
    old_clock = datetime(2001, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)
    events = [
        a_started(env=V16, meter_start_wh=1_000, charging_state="", trigger_reason=""),
        meter_values(a_register(15, 3_000), a_register(15, 3_700, "L1", POWER), a_register(15, 3_650, "L2", POWER),
                     a_register(15, 1_200, "L1"), at_min=15, env=V16),
        meter_values(ev.MeterSample(timestamp=at(20), value=0.0, unit="Celsius", measurand="Temperature", raw_value="x"),
                     at_min=20, env=V16),
        meter_values(a_register(30, 5_000), a_register(30, 3_600, "L1", POWER), a_register(30, 1_900, "L1"),
                     at_min=30, env=V16),
        meter_values(ev.MeterSample(timestamp=old_clock, value=16.5, unit="A", measurand="Current.Import", phase="L1"),
                     at_min=31, env={**V16, "received_at": at(31)}),
        an_ended(at_min=50, meter_stop_wh=8_500, env=V16),
    ]
    return replace(replay(events, store=SampleStore(), tariff=TARIFF, rules=rules), applied=(3, 41))


def test_the_compact_document_round_trips_every_field() -> None:
    s = _rich_session()
    assert s.price is not None and s.price.marks, "the band mark is part of what must round-trip"
    assert any(m.last.station_time is not None or m.first.station_time is not None for m in s.marks)
    assert any(m.last.raw_value or m.first.raw_value for m in s.marks)
    assert s.phase_power is not None and s.idle_keys and s.end_key is not None
    doc = json.loads(json.dumps(session_to_doc(s)))
    assert doc["_state"]["v"] == 2
    back = session_from_doc(doc)
    assert back == s
    assert session_to_doc(back) == doc


def test_the_public_fields_keep_their_iso_form() -> None:
    s = _rich_session()
    doc = session_to_doc(s)
    for name in ("started_at", "stopped_at", "received_at", "updated_at", "first_sample_at", "last_sample_at"):
        value = getattr(s, name)
        assert doc[name] == to_ocpp(value) and doc[name].endswith("Z") and len(doc[name]) == 24
    assert doc["last_register"] == {"at": to_ocpp(s.last_register[0]), "wh": s.last_register[1]}
    assert doc["price"]["tariff_id"] == "t-1"


def test_instants_before_1970_and_at_the_ends_of_the_range_round_trip() -> None:
    s = _rich_session()
    for when in (datetime(1, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
                 datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)):
        odd = replace(s, received_at=when, abandoned_at=when, station_started_at=when, idle_keys=((5, when),))
        doc = json.loads(json.dumps(session_to_doc(odd)))
        assert session_from_doc(doc) == odd
        assert doc["received_at"] == to_ocpp(when)


def test_the_cache_gives_back_only_the_document_it_wrote() -> None:
    s = _rich_session()
    doc = session_to_doc(s)
    cache = SessionCache(10)
    cache.put(s, orjson.dumps(doc))
    assert cache.get(s.id, json.loads(json.dumps(doc))) is s
    # another writer's document with the same version (a rebalance overlap) is decoded
    other = dict(doc, energy_wh=doc["energy_wh"] + 1)
    assert cache.get(s.id, other) is None
    # an older or newer version is decoded
    assert cache.get(s.id, dict(doc, version=s.version + 1)) is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_the_cache_is_bounded_and_can_be_off() -> None:
    s = _rich_session()
    cache = SessionCache(2)
    for i in range(5):
        one = replace(s, id=f"s-{i}")
        cache.put(one, orjson.dumps(session_to_doc(one)))
        assert len(cache) <= 2
    off = SessionCache(0)
    off.put(s, orjson.dumps(session_to_doc(s)))
    assert len(off) == 0 and off.get(s.id, session_to_doc(s)) is None


def test_a_document_written_by_a_previous_processor_version_is_still_read() -> None:
    """The `_state` of before the compact form (ISO text) keeps loading: what it holds is
    the same session."""
    s = _rich_session()
    doc = json.loads(json.dumps(session_to_doc(s)))
    iso = to_ocpp
    v1 = dict(doc)
    st = doc["_state"]

    def key(k):  # type: ignore[no-untyped-def]
        return None if k is None else [k[0], iso(_ms(k[1]))]

    def smp(x, m, p):  # type: ignore[no-untyped-def]
        d = {"timestamp": iso(_ms(x[0])), "measurand": m, "value": x[1], "unit": x[2], "phase": p}
        if len(x) > 3 and x[3]:
            d["raw_value"] = x[3]
        if len(x) > 4:
            d["station_time"] = iso(_ms(x[4]))
        return d

    v1["_state"] = {
        "start_key": key(st["k"][0]), "end_key": key(st["k"][1]), "token_key": key(st["k"][2]),
        "location_key": key(st["k"][3]), "last_charging_key": key(st["k"][4]),
        "idle_keys": [key(k) for k in st["idle"]], "event_token": st["event_token"], "remote_token": st["remote_token"],
        "seq_ranges": st["seq"], "seq_overflow": st["seq_overflow"], "flags": st["flags"],
        "sample_reasons": st["sample_reasons"],
        "marks": [{"last": smp(m[2], m[0], m[1]), **({"first": smp(m[3], m[0], m[1])} if len(m) > 3 else {})}
                  for m in st["marks"]],
        "registers": [[r[0], iso(_ms(r[1])), iso(_ms(r[2])),
                       None if r[3] is None else {"at": iso(_ms(r[3][0])), "wh": r[3][1]},
                       None if r[4] is None else {"at": iso(_ms(r[4][0])), "wh": r[4][1]}] for r in st["regs"]],
        "peak_total_w": st["peak_total_w"],
        "phase_power": None if st["pp"] is None else [iso(_ms(st["pp"][0])), st["pp"][1]],
        "price_basis": None if st["pb"] is None else [iso(_ms(st["pb"][0])), st["pb"][1]],
        "applied": st["applied"],
    }
    assert session_from_doc(v1) == s


def _ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


# A document of the rich session as the processor wrote it before the mappers moved to
# services/sessions/documents.py: it must load, and be written back byte for byte.
STORED_SESSION = (
    '{"id":"a6872786-c5da-5bf5-afb6-7cffc966a90d","station_id":"CS-1","transaction_id":"tx-1","id_token":"TOK'
    'EN-1","authorization":"","status":"completed","energy_wh":7500,"started_at":"2026-11-28T10:00:00.000Z","'
    'stopped_at":"2026-11-28T10:50:00.000Z","station_started_at":null,"station_stopped_at":null,"received_at"'
    ':"2026-11-28T10:00:00.000Z","charging_ended_at":"2026-11-28T10:50:00.000Z","abandoned_at":null,"abandon_'
    'reason":"","evse_id":1,"connector_id":1,"meter_start_wh":1000,"meter_stop_wh":8500,"stop_reason":"Local"'
    ',"ocpp_version":"1.6","remote_start_id":0,"issued_by":"","orphan":false,"suspect":true,"suspect_reasons"'
    ':["clock_before_floor","meter_not_a_number"],"clock_suspect":true,"hold":true,"hold_reasons":["clock_sus'
    'pect"],"seq_gaps":false,"sample_count":9,"excluded_count":1,"first_sample_at":"2026-11-28T10:15:00.000Z"'
    ',"last_sample_at":"2026-11-28T10:31:00.000Z","first_register":{"at":"2026-11-28T10:15:00.000Z","wh":3000'
    '.0},"last_register":{"at":"2026-11-28T10:30:00.000Z","wh":5000.0},"peak_power_w":7350.0,"energy_anchor_w'
    'h":1000,"price":{"tariff_id":"t-1","tariff_fingerprint":"a1df04e35203f0afca44f450640f9fe55f1fb94d490be77'
    'fc3f7afa584a8e61f","currency":"EUR","opened_at":"2026-11-28T10:00:00.000000Z","open_wh":1000,"last_at":"'
    '2026-11-28T10:30:00.000000Z","last_wh":5000,"marks":[["2026-11-28T10:25:00.000000Z","4333.333333"]]},"ve'
    'rsion":6,"updated_at":"2026-11-28T12:00:00.000Z","_state":{"v":2,"t":[1795860000000,1795867200000,179586'
    '0000000,null,1795863000000,null,1795863000000,null,1795860900000,1795861860000],"k":[[0,1795860000000],['
    '2147483647,1795863000000],[0,1795860000000],[0,1795860000000],null],"idle":[[2147483647,1795863000000]],'
    '"event_token":"TOKEN-1","remote_token":"","seq":[[0,0],[2147483647,2147483647]],"seq_overflow":false,"fl'
    'ags":["clock_before_floor"],"sample_reasons":["meter_not_a_number"],"marks":[["Current.Import","L1",[179'
    '5861860000,16.5,"A","",978307200123]],["Energy.Active.Import.Register","",[1795861800000,5000.0,"Wh"],[1'
    '795860900000,3000.0,"Wh"]],["Energy.Active.Import.Register","L1",[1795861800000,1900.0,"Wh"],[1795860900'
    '000,1200.0,"Wh"]],["Power.Active.Import","L1",[1795861800000,3600.0,"W"],[1795860900000,3700.0,"W"]],["P'
    'ower.Active.Import","L2",[1795860900000,3650.0,"W"]],["Temperature","",[1795861200000,0.0,"Celsius","x"]'
    ']],"regs":[["",1795860900000,1795861800000,[1795860900000,3000.0],[1795861800000,5000.0]],["L1",17958609'
    '00000,1795861800000,[1795860900000,1200.0],[1795861800000,1900.0]]],"peak_total_w":7350.0,"pp":[17958618'
    '00000,[["L1",3600.0]]],"pb":[1795860000000,1000],"acc":["t-1","a1df04e35203f0afca44f450640f9fe55f1fb94d4'
    '90be77fc3f7afa584a8e61f","EUR",1795860000000000,1000,1795861800000000,5000,[[1795861500000000,"4333.3333'
    '33"]]],"applied":[3,41]}}'
)


def test_a_stored_document_loads_and_is_written_back_byte_for_byte() -> None:
    doc = json.loads(STORED_SESSION)
    s = session_from_doc(doc)
    assert orjson.dumps(session_to_doc(s)).decode() == STORED_SESSION
    rich = _rich_session()
    # the same session (the accumulator's tariff fingerprint is billing's to compute)
    assert replace(s, price=None) == replace(rich, price=None)
    assert s.price is not None and rich.price is not None
    assert replace(s.price, tariff_fingerprint="") == replace(rich.price, tariff_fingerprint="")

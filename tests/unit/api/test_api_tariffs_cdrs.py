"""Tariffs are validated by the billing domain; CDRs are served as stored and as OCPI."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from services.billing.documents import cdr_to_doc
from services.billing.codec import cdr_to_ocpi
from services.billing.documents import cdr_to_dict
from services.billing.domain import SessionUsage, decide_cdr
from services.billing.codec import tariff_from_dict
from services.common.timeutil import parse_ocpp

from .builders import Api, a_session_doc, a_tariff_body


async def test_a_tariff_is_stored_in_its_canonical_shape(api: Api) -> None:
    status, body = await api.post("/api/v1/tariffs", a_tariff_body(id="t1", price_per_kwh="0.3"))
    assert status == 201
    assert body["price_per_kwh"] == "0.30" and body["default"] is False
    status, again = await api.get("/api/v1/tariffs/t1")
    assert status == 200 and again == body


async def test_json_numbers_are_read_as_exact_decimals(api: Api) -> None:
    status, body = await api.post("/api/v1/tariffs", a_tariff_body(id="t1", price_per_kwh=0.1))
    assert status == 201 and body["price_per_kwh"] == "0.10"


async def test_invalid_tariffs_are_400_naming_the_field(api: Api) -> None:
    cases = {
        "currency": a_tariff_body(currency="euro"),
        "tax_rate": a_tariff_body(tax_rate="1.5"),
        "price_per_kwh": a_tariff_body(price_per_kwh="-1"),
        "bands[0]": a_tariff_body(bands=[{"start": "25:00", "end": "06:00"}]),
        "tariff": a_tariff_body(colour="red"),
        "id": a_tariff_body(id="a/b"),
    }
    for field, body in cases.items():
        status, answer = await api.post("/api/v1/tariffs", body)
        assert status == 400, (field, answer)
        assert field in answer["details"], (field, answer)


async def test_a_duplicate_tariff_is_a_409_and_put_replaces(api: Api) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="t1"))
    assert (await api.post("/api/v1/tariffs", a_tariff_body(id="t1")))[0] == 409
    status, body = await api.call("PUT", "/api/v1/tariffs/t1", a_tariff_body(id="t1", price_per_kwh="0.45"))
    assert status == 200 and body["price_per_kwh"] == "0.45"
    status, body = await api.call("PUT", "/api/v1/tariffs/t2", {"currency": "EUR"})
    assert status == 201 and body["id"] == "t2"
    assert (await api.call("PUT", "/api/v1/tariffs/t2", {"id": "t3", "currency": "EUR"}))[0] == 400


async def test_only_one_tariff_is_the_default(api: Api) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="a", default=True))
    await api.post("/api/v1/tariffs", a_tariff_body(id="b", default=True))
    _, body = await api.get("/api/v1/tariffs")
    assert {t["id"]: t["default"] for t in body["items"]} == {"a": False, "b": True}


async def test_a_deleted_tariff_is_gone(api: Api) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="t1"))
    assert (await api.call("DELETE", "/api/v1/tariffs/t1"))[0] == 204
    assert (await api.get("/api/v1/tariffs/t1"))[0] == 404
    assert (await api.call("DELETE", "/api/v1/tariffs/t1"))[0] == 404


def _a_cdr(version_energy: int = 10_000):  # type: ignore[no-untyped-def]
    tariff = tariff_from_dict(
        a_tariff_body(
            id="t1",
            price_per_minute="0.02",
            session_fee="0.50",
            idle_fee_per_minute="0.10",
            idle_grace_minutes=5,
            bands=[{"start": "10:30", "end": "12:00", "price_per_kwh": "0.50"}],
        )
    )
    samples = ((parse_ocpp("2026-11-28T10:20:00Z"), 3_000), (parse_ocpp("2026-11-28T10:40:00Z"), 7_000))
    usage = SessionUsage(
        started_at=parse_ocpp("2026-11-28T10:00:00Z"),
        stopped_at=parse_ocpp("2026-11-28T11:30:00Z"),
        charging_ended_at=parse_ocpp("2026-11-28T11:00:00Z"),
        energy_samples=samples,
        meter_start_wh=0,
        meter_stop_wh=version_energy,
    )
    cdr = decide_cdr(None, "s1", "ST1", tariff, usage, datetime(2026, 11, 28, 12, tzinfo=timezone.utc))
    assert cdr is not None
    return cdr


async def test_cdrs_are_listed_by_session_and_read_by_id(api: Api) -> None:
    cdr = _a_cdr()
    await api.rt.store.put_doc("cdr", cdr.id, cdr_to_dict(cdr), parent="s1", version=1)
    _, body = await api.get("/api/v1/cdrs?session_id=s1")
    assert [c["id"] for c in body["items"]] == [cdr.id]
    assert (await api.get("/api/v1/cdrs?session_id=other"))[1] == {"items": []}
    status, body = await api.get(f"/api/v1/cdrs/{cdr.id}")
    assert status == 200 and body["total_cost"] == cdr.total_cost.to_dict() and body["version"] == 1
    assert (await api.get("/api/v1/cdrs/none"))[0] == 404


async def test_a_stored_cdr_renders_as_the_same_ocpi_cdr_as_the_billing_domain_would(api: Api) -> None:
    cdr = _a_cdr()
    await api.rt.store.put_doc("cdr", cdr.id, cdr_to_dict(cdr), parent="s1", version=1)
    status, body = await api.get(f"/api/v1/cdrs/{cdr.id}?format=ocpi&country_code=NL&party_id=ABC")
    assert status == 200, body
    assert body == cdr_to_ocpi(cdr, country_code="NL", party_id="ABC")


async def test_the_billing_workers_cdr_document_is_served_without_its_bookkeeping(api: Api) -> None:
    cdr = _a_cdr()
    doc = cdr_to_doc(cdr, published=True)
    await api.rt.store.put_doc("cdr", cdr.id, doc, parent="s1", version=1)
    _, body = await api.get(f"/api/v1/cdrs/{cdr.id}")
    assert "exact" not in body and "published" not in body
    assert body["total_cost_incl_tax"] == cdr.total_cost_incl_tax.to_dict()
    _, listing = await api.get("/api/v1/cdrs?session_id=s1")
    assert all("exact" not in c for c in listing["items"])
    status, ocpi = await api.get(f"/api/v1/cdrs/{cdr.id}?format=ocpi&country_code=NL&party_id=ABC")
    assert status == 200 and ocpi == cdr_to_ocpi(cdr, country_code="NL", party_id="ABC")


async def test_ocpi_parameters_are_validated(api: Api) -> None:
    cdr = _a_cdr()
    await api.rt.store.put_doc("cdr", cdr.id, cdr_to_dict(cdr), parent="s1", version=1)
    assert (await api.get(f"/api/v1/cdrs/{cdr.id}?format=xml"))[0] == 400
    assert (await api.get(f"/api/v1/cdrs/{cdr.id}?format=ocpi&country_code=nl"))[0] == 400


# --- bounded decimals (issue 7) ------------------------------------------------------------


async def test_a_price_with_an_absurd_exponent_is_a_400_naming_the_field_not_a_megabyte(api: Api) -> None:
    cases = {
        "price_per_kwh": ("1e-999999", "1e400", "1E+16", "0.0000000000000001", "NaN", "Infinity", "1" * 70),
        "session_fee": ("1e-999999", "1e400"),
        "min_price": ("1e-999999",),
        "tax_rate": ("1e-999999",),
    }
    for field, values in cases.items():
        for value in values:
            status, answer = await api.post("/api/v1/tariffs", a_tariff_body(id="t-absurd", **{field: value}))
            assert status == 400, (field, value, answer)
            assert field in answer["details"], (field, value, answer)
            assert len(json.dumps(answer)) < 1000
    status, answer = await api.post("/api/v1/tariffs", a_tariff_body(id="t-absurd", bands=[
        {"start": "18:00", "end": "22:00", "price_per_kwh": "1e-999999"},
    ]))
    assert status == 400 and "bands[0]" in answer["details"], answer
    assert (await api.get("/api/v1/tariffs/t-absurd"))[0] == 404  # nothing stored


async def test_a_json_number_with_an_absurd_exponent_is_a_400_too(api: Api) -> None:
    for number in ("1e-999999", "1e400", "-1e400"):
        raw = ('{"id": "t-num", "currency": "EUR", "price_per_kwh": %s}' % number).encode()
        status, answer = await api.call("POST", "/api/v1/tariffs", raw=raw, headers={"Content-Type": "application/json"})
        assert status == 400, (number, answer)
        assert "price_per_kwh" in answer["details"], (number, answer)
        assert len(json.dumps(answer)) < 1000
        status, answer = await api.call("PUT", "/api/v1/tariffs/t-num", raw=raw, headers={"Content-Type": "application/json"})
        assert status == 400 and "price_per_kwh" in answer["details"], (number, answer)


async def test_bounded_prices_with_many_decimals_are_still_accepted(api: Api) -> None:
    status, body = await api.post("/api/v1/tariffs", a_tariff_body(id="t-fine", price_per_kwh="0.123456789", session_fee="1e2"))
    assert status == 201, body
    assert body["price_per_kwh"] == "0.123456789" and body["session_fee"] == "100.00"


async def test_other_numbers_of_the_api_are_bounded_too(api: Api) -> None:
    raw = b'{"id": "ST-BIG", "password": "pppppppppppppppppppp", "max_current_a": 1e-999999}'
    status, answer = await api.call("POST", "/api/v1/stations", raw=raw, headers={"Content-Type": "application/json"})
    assert status == 400 and "max_current_a" in answer["details"], answer


# --- held CDRs ----------------------------------------------------------------------------


async def _store(api: Api, cdr_doc: dict[str, Any], session_id: str = "s1") -> None:
    await api.rt.store.put_doc("cdr", cdr_doc["id"], cdr_doc, parent=session_id, version=int(cdr_doc["version"]))


def _held_doc(cdr_id: str = "s2-v1", session_id: str = "s2") -> dict[str, Any]:
    cdr = _a_cdr()
    doc = cdr_to_doc(cdr, hold_reasons=("clock_suspect", "duration_exceeds_max"))
    doc.update(id=cdr_id, session_id=session_id, clock_suspect=True)
    return doc


async def test_a_held_cdr_is_listed_with_its_reasons_and_the_filter_finds_it(api: Api) -> None:
    await _store(api, cdr_to_doc(_a_cdr(), published=True))
    await _store(api, _held_doc(), session_id="s2")

    _, body = await api.get("/api/v1/cdrs")
    by_id = {c["id"]: c for c in body["items"]}
    assert by_id["s2-v1"]["held"] is True and by_id["s2-v1"]["clock_suspect"] is True
    assert by_id["s2-v1"]["hold_reasons"] == ["clock_suspect", "duration_exceeds_max"]
    assert by_id["s1-v1"]["held"] is False and by_id["s1-v1"]["hold_reasons"] == []
    assert by_id["s1-v1"]["clock_suspect"] is False
    assert [c["id"] for c in (await api.get("/api/v1/cdrs?held=true"))[1]["items"]] == ["s2-v1"]
    assert [c["id"] for c in (await api.get("/api/v1/cdrs?held=false"))[1]["items"]] == ["s1-v1"]
    assert [c["id"] for c in (await api.get("/api/v1/cdrs?held=true&session_id=s1"))[1]["items"]] == []
    status, answer = await api.get("/api/v1/cdrs?held=maybe")
    assert status == 400 and "held" in answer["details"]


async def test_the_held_filter_finds_held_cdrs_beyond_the_page_size(api: Api) -> None:
    await _store(api, _held_doc("old-held-v1", "old-held"), session_id="old-held")
    for i in range(5):
        cdr = _a_cdr()
        doc = cdr_to_doc(cdr, published=True)
        doc.update(id=f"n{i}-v1", session_id=f"n{i}")
        await _store(api, doc, session_id=f"n{i}")

    _, body = await api.get("/api/v1/cdrs?held=true&limit=2")

    assert [c["id"] for c in body["items"]] == ["old-held-v1"]


async def test_a_cdr_stored_before_holds_existed_reads_as_not_held(api: Api) -> None:
    cdr = _a_cdr()
    await _store(api, cdr_to_dict(cdr))

    _, body = await api.get(f"/api/v1/cdrs/{cdr.id}")

    assert body["held"] is False and body["hold_reasons"] == [] and body["clock_suspect"] is False


async def test_a_held_cdr_is_not_exported_as_ocpi(api: Api) -> None:
    await _store(api, _held_doc(), session_id="s2")

    status, answer = await api.get("/api/v1/cdrs/s2-v1?format=ocpi&country_code=NL&party_id=ABC")

    assert status == 409, answer
    assert answer["hold_reasons"] == ["clock_suspect", "duration_exceeds_max"] and "held" in answer["error"]
    status, body = await api.get("/api/v1/cdrs/s2-v1")
    assert status == 200 and body["held"] is True


# --- session costs (services/api/costs.py) ---------------------------------------------------


async def _put_session(api: Api, **overrides: object) -> None:
    doc = a_session_doc(**overrides)
    await api.rt.store.put_doc("session", doc["id"], doc, parent=doc["station_id"])


def _energy(at: str, wh: object, **extra: object) -> dict[str, Any]:
    return {"timestamp": at, "measurand": "Energy.Active.Import.Register", "value": wh, "unit": "Wh", **extra}


async def test_a_session_whose_token_was_refused_has_no_cost(api: Api) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="d", default=True))
    await _put_session(api, id="ghost", authorization="Invalid", energy_wh=2000, meter_start_wh=None)
    await _put_session(api, id="real", authorization="Accepted", energy_wh=2000, meter_start_wh=None)

    assert (await api.get("/api/v1/sessions/ghost"))[1]["cost"] is None
    assert (await api.get("/api/v1/sessions/real"))[1]["cost"]["amount"] == "0.60"


async def test_excluded_and_unusable_samples_do_not_count_in_the_running_cost(api: Api) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="d", price_per_kwh="0.50", default=True))
    await _put_session(api, id="s1", meter_start_wh=1000, energy_wh=2000, meter_samples=[
        _energy("2026-11-28T10:30:00.000Z", 3000),
        _energy("2026-11-28T10:31:00.000Z", 9_000_000, excluded=True),
        _energy("2026-11-28T10:32:00.000Z", 0, raw_value="1e308"),
        _energy("2026-11-28T10:33:00.000Z", "Infinity"),
    ])

    status, body = await api.get("/api/v1/sessions/s1")

    assert status == 200 and body["cost"]["amount"] == "1.00"  # 2 kWh x 0.50


async def test_an_abandoned_session_is_priced_to_its_last_reading_or_its_cdr(api: Api) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="d", price_per_kwh="0.50", price_per_minute="0.10", default=True))
    await _put_session(api, id="s1", status="abandoned", abandoned_at="2026-11-28T12:00:00.000Z",
                       meter_start_wh=1000, energy_wh=2000, meter_samples=[_energy("2026-11-28T10:30:00.000Z", 3000)])

    _, body = await api.get("/api/v1/sessions/s1")
    # 10:00 -> 10:30 (last reading): 2 kWh x 0.50 + 30 min x 0.10
    assert body["cost"]["amount"] == "4.00" and body["cost"]["final"] is False
    assert body["cost"]["priced_until"] == "2026-11-28T10:30:00.000Z"

    cdr = _a_cdr()
    doc = cdr_to_doc(cdr, published=True)
    doc.update(id="s1-v1", session_id="s1")
    await _store(api, doc, session_id="s1")
    _, body = await api.get("/api/v1/sessions/s1")
    assert body["cost"]["final"] is True and body["cost"]["cdr_id"] == "s1-v1"


async def test_an_active_session_from_1970_is_priced_quickly_and_bounded(api: Api) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="d", price_per_kwh="0.30", price_per_minute="0.01", default=True))
    await _put_session(api, id="s1970", started_at="1970-01-01T00:00:00.000Z", meter_start_wh=0, energy_wh=10_000,
                       meter_samples=[_energy("2026-11-28T10:30:00.000Z", 10_000)])

    t0 = time.perf_counter()
    _, body = await api.get("/api/v1/sessions/s1970")
    elapsed = time.perf_counter() - t0

    assert body["cost"]["amount"] == "46.20"  # 10 kWh x 0.30 + 72 h x 60 x 0.01
    assert elapsed < 0.5, elapsed


# --- the running price on the session's accumulator (ADR 015) ---------------------------------

_BANDED = {"price_per_kwh": "0.30", "price_per_minute": "0", "session_fee": "0",
           "bands": [{"start": "10:15", "end": "10:25", "price_per_kwh": "0.50"}]}
_READINGS = [(parse_ocpp("2026-11-28T10:10:00Z"), 3_000), (parse_ocpp("2026-11-28T10:20:00Z"), 5_000),
             (parse_ocpp("2026-11-28T10:30:00Z"), 7_000)]


def _sample_reads(api: Api) -> int:
    ops = api.rt.store.ops  # type: ignore[attr-defined]
    return sum(n for (op, table), n in ops.items() if op == "read" and "sample" in table)


async def _a_priced_session(api: Api, tariff_body: dict[str, Any]) -> None:
    from services.billing.codec import accumulator_to_dict
    from services.billing.domain import fold_price

    acc = fold_price(tariff_from_dict(tariff_body), parse_ocpp("2026-11-28T10:00:00Z"), 1000, _READINGS)
    await _put_session(api, id="s1", meter_start_wh=1000, energy_anchor_wh=1000, energy_wh=6000,
                       last_register={"at": "2026-11-28T10:30:00.000Z", "wh": 7000}, sample_count=3,
                       price=accumulator_to_dict(acc))


async def test_an_active_sessions_cost_is_its_accumulator_finished_now_without_reading_samples(api: Api) -> None:
    body = a_tariff_body(id="d", default=True, **_BANDED)
    await api.post("/api/v1/tariffs", body)
    _, stored = await api.get("/api/v1/tariffs/d")
    await _a_priced_session(api, stored)
    before = _sample_reads(api)

    _, session = await api.get("/api/v1/sessions/s1")

    # register 4000 at 10:15, 6000 at 10:25 (the accumulator's marks; no sample is stored):
    # 3 kWh + 1 kWh at 0.30, 2 kWh at 0.50
    assert session["cost"]["amount"] == "2.20" and session["cost"]["final"] is False
    assert _sample_reads(api) == before


async def test_a_tariff_edited_since_the_start_reprices_from_the_stored_samples(api: Api) -> None:
    from services.common.store.port import MeterRow

    opened_with = a_tariff_body(id="d", default=True, **_BANDED)
    await api.post("/api/v1/tariffs", opened_with)
    _, stored = await api.get("/api/v1/tariffs/d")
    await _a_priced_session(api, stored)
    await api.rt.store.append_samples(
        "s1", [MeterRow(at, "Energy.Active.Import.Register", "", float(wh), "Wh") for at, wh in _READINGS]
    )
    await api.call("PUT", "/api/v1/tariffs/d", {**stored, "price_per_kwh": "0.40"})
    before = _sample_reads(api)

    _, session = await api.get("/api/v1/sessions/s1")

    assert session["cost"]["amount"] == "2.60"  # 4 kWh x 0.40 + 2 kWh x 0.50: the same split
    assert _sample_reads(api) > before

"""Tariffs are validated by the billing domain; CDRs are served as stored and as OCPI."""

from __future__ import annotations

from datetime import datetime, timezone

from services.billing.adapters import cdr_to_doc
from services.billing.domain import SessionUsage, cdr_to_dict, cdr_to_ocpi, decide_cdr, tariff_from_dict
from services.common.timeutil import parse_ocpp

from .builders import Api, a_tariff_body


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

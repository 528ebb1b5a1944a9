"""Every response body is one of the views in services/api/views.py, and each view is
described by its schema in the OpenAPI document: every field a view emits is declared
there (the view schemas allow no other property) and every field the schema requires is
emitted. Checked on real responses, with as many optional parts filled in as the CSMS
can produce (boot, connectors, registers, a running and a final cost, holds, ...)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jsonschema

from services.api.openapi import VIEW_SCHEMAS, openapi_document
from services.api.views import command_record_view
from services.billing.documents import cdr_to_doc
from services.common import kinds
from services.common.ocpp_version import OcppVersion
from services.common.timeutil import parse_ocpp
from services.sessions.documents import station_status_to_doc
from services.sessions.domain import Boot, ConnectorState, StationStatus
from services.stations.domain.commands import CommandRecord

from .builders import Api, a_tariff_body
from .test_api_sessions import _a_16_session, _process
from .test_api_tariffs_cdrs import _a_cdr

_DOC = openapi_document()


def _valid(value: Any, schema: str) -> None:
    """Raises when `value` is not an instance of components/schemas/`schema`."""
    root = {"$ref": f"#/components/schemas/{schema}", "components": _DOC["components"]}
    jsonschema.Draft202012Validator(root).validate(value)


def _listed(body: Any, schema: str) -> None:
    assert set(body) == {"items"} and body["items"], body
    for item in body["items"]:
        _valid(item, schema)


def test_every_view_schema_declares_all_its_fields_and_nothing_else() -> None:
    schemas = _DOC["components"]["schemas"]
    for name in VIEW_SCHEMAS:
        schema = schemas[name]
        assert schema.get("additionalProperties") is False, name
        assert set(schema.get("required", ())) <= set(schema["properties"]), name


def test_a_schema_check_fails_on_a_field_the_schema_does_not_declare() -> None:
    record = command_record_view(CommandRecord("c1", "CP-1", "Reset"))
    _valid(record, "CommandRecord")
    for broken in ({**record, "version": 3}, {k: v for k, v in record.items() if k != "status"}):
        try:
            _valid(broken, "CommandRecord")
        except jsonschema.ValidationError:
            continue
        raise AssertionError(f"accepted {broken}")


async def test_stations_and_tokens_match_their_schemas(api: Api) -> None:
    status, created = await api.post("/api/v1/stations", {"id": "CP-1", "max_current_a": 32, "phases": 3})
    assert status == 201 and "password" in created
    _valid(created, "Station")
    await api.connected("CP-1", "gateway-2")
    status_of = StationStatus(
        "CP-1", connected=True, epoch=1, gateway_id="gateway-2", ocpp_version=OcppVersion.V201,
        boot=Boot(vendor="V", model="M", interval=300, at=parse_ocpp("2026-11-28T08:00:00Z")),
        connectors={
            "1/1": ConnectorState("Faulted", "GroundFailure", "hot", "E42", parse_ocpp("2026-11-28T09:00:00Z")),
            "main": ConnectorState("Available"),
        },
        last_seen=parse_ocpp("2026-11-28T10:05:00Z"),
    )
    await api.rt.store.put_doc(kinds.STATION_STATUS, "CP-1", station_status_to_doc(status_of))
    _, station = await api.get("/api/v1/stations/CP-1")
    assert station["last_boot"]["interval"] == 300 and len(station["connectors"]) == 2
    assert station["connectors"][1] == {
        "key": "main", "status": "Available", "error_code": "", "info": "", "vendor_error_code": "", "at": None,
    }
    _valid(station, "Station")
    _listed((await api.get("/api/v1/stations"))[1], "Station")

    status, token = await api.post(
        "/api/v1/tokens", {"id_token": "T1", "status": "Blocked", "expires_at": "2027-01-01T00:00:00Z", "group_id": "G"}
    )
    assert status == 201
    _valid(token, "Token")
    _listed((await api.get("/api/v1/tokens"))[1], "Token")


async def test_tariffs_and_sites_match_their_schemas(api: Api) -> None:
    body = a_tariff_body(
        id="t1", min_price="1.00", max_price="50", default=True,
        bands=[{"start": "08:00", "end": "20:00", "days_of_week": [0, 1], "price_per_kwh": "0.40"}],
    )
    status, tariff = await api.post("/api/v1/tariffs", body)
    assert status == 201
    _valid(tariff, "Tariff")
    _valid((await api.get("/api/v1/tariffs/t1"))[1], "Tariff")
    _listed((await api.get("/api/v1/tariffs"))[1], "Tariff")

    status, site = await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 63.5, "tariff_id": "t1"})
    assert status == 201
    _valid(site, "Site")
    _, limited = await api.call("PUT", "/api/v1/sites/S1/limit", {"limit_a": 20})
    assert limited["external_limit_a"] == 20
    _valid(limited, "Site")
    _listed((await api.get("/api/v1/sites"))[1], "Site")


async def test_sessions_meter_values_and_cdrs_match_their_schemas(api: Api) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="d", default=True))
    await _process(api, *_a_16_session("ST7", (10, 2000), (20, "1e308"), (30, 3000)))
    _, listing = await api.get("/api/v1/sessions?station_id=ST7")
    _listed(listing, "Session")
    (running,) = listing["items"]
    assert running["last_register"] is not None and running["cost"]["final"] is False
    assert "priced_until" in running["cost"]

    _, page = await api.get(f"/api/v1/sessions/{running['id']}/meter-values?limit=2")
    assert page["next"] is not None and any(x["raw_value"] and x["excluded"] for x in page["items"])
    _valid(page, "MeterValuePage")
    _, rest = await api.get(f"/api/v1/sessions/{running['id']}/meter-values?cursor={page['next']}")
    assert rest["next"] is None
    _valid(rest, "MeterValuePage")

    cdr = _a_cdr()
    doc = cdr_to_doc(cdr, hold_reasons=("duration_exceeds_max",))
    await api.rt.store.put_doc(kinds.CDR, cdr.id, doc, parent=cdr.session_id, version=cdr.version)
    _, shown = await api.get(f"/api/v1/cdrs/{cdr.id}")
    assert shown["held"] is True
    _valid(shown, "Cdr")
    _listed((await api.get("/api/v1/cdrs"))[1], "Cdr")


def test_a_command_record_matches_its_schema() -> None:
    issued = parse_ocpp("2026-11-28T10:00:00Z")
    record = CommandRecord(
        "c1", "CP-1", "Reset", ocpp_action="Reset", payload={"type": "Soft"}, status="Accepted",
        response={"status": "Accepted"}, issued_at=issued, completed_at=issued + timedelta(seconds=1),
        expired_at=issued + timedelta(seconds=1), late_reply=True, version=3, updated_at=issued,
    )
    view = command_record_view(record)
    assert "version" not in view
    _valid(view, "CommandRecord")

"""Stations: registration, passwords, connection state, changes."""

from __future__ import annotations

from services.common import kinds, passwords
from services.common.ocpp_version import OcppVersion
from services.common.timeutil import parse_ocpp
from services.sessions.documents import station_status_to_doc
from services.sessions.domain import Boot, ConnectorState, StationStatus

from .builders import Api, a_tariff_body


async def test_a_station_created_without_a_password_gets_one_generated_and_shown_once(api: Api) -> None:
    status, body = await api.post("/api/v1/stations", {"id": "CP-1"})
    assert status == 201
    pw = body["password"]
    assert passwords.MIN_LENGTH <= len(pw) <= passwords.MAX_LENGTH
    stored = await api.rt.store.get_station("CP-1")
    assert stored is not None
    assert passwords.verify_password_slow(pw, stored.password_hash)
    assert passwords.verify_fingerprint(b"p", "CP-1", pw, stored.password_fingerprint)
    status, again = await api.get("/api/v1/stations/CP-1")
    assert status == 200
    assert "password" not in again
    _, listing = await api.get("/api/v1/stations")
    assert all("password" not in s for s in listing["items"])


async def test_a_station_created_with_a_password_does_not_echo_it_or_its_hash(api: Api) -> None:
    body = await api.a_station("CP-2", site_id="S1")
    assert "password" not in body
    text = str(body)
    assert "scrypt" not in text and "hmac" not in text
    assert body["site_id"] == "S1" and body["enabled"] is True and body["connected"] is False


async def test_a_duplicate_station_is_a_409(api: Api) -> None:
    await api.a_station("CP-1")
    status, body = await api.post("/api/v1/stations", {"id": "CP-1", "password": "q" * 20})
    assert status == 409 and "error" in body


async def test_station_ids_follow_the_gateway_rules(api: Api) -> None:
    for bad in ("a..b", "x" * 49, "a/b", "a:b", "", "a%2Fb", 12):
        status, body = await api.post("/api/v1/stations", {"id": bad, "password": "p" * 20})
        assert status == 400, bad
        assert "id" in body["details"]
    assert (await api.post("/api/v1/stations", {"id": "x" * 48, "password": "p" * 20}))[0] == 201


async def test_passwords_outside_16_to_40_characters_are_refused(api: Api) -> None:
    for bad in ("p" * 15, "p" * 41):
        status, body = await api.post("/api/v1/stations", {"id": "CP-1", "password": bad})
        assert status == 400 and "password" in body["details"]


async def test_unknown_fields_and_bad_types_are_reported_per_field(api: Api) -> None:
    status, body = await api.post(
        "/api/v1/stations", {"id": "CP-1", "colour": "red", "phases": 2, "max_current_a": -1, "enabled": "yes"}
    )
    assert status == 400
    assert set(body["details"]) >= {"colour", "phases", "max_current_a", "enabled"}


async def test_the_station_view_shows_connection_state_boot_and_connectors(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1", "gateway-2")
    status_of = StationStatus(
        "CP-1",
        connected=True,
        epoch=1,
        gateway_id="gateway-2",
        ocpp_version=OcppVersion.V201,
        boot=Boot(vendor="V", model="M", serial_number="S", firmware_version="1.0", at=parse_ocpp("2026-11-28T08:00:00Z")),
        connectors={
            "2/1": ConnectorState("Charging", "", at=parse_ocpp("2026-11-28T10:00:00Z")),
            "1/1": ConnectorState("Available", "NoError", at=parse_ocpp("2026-11-28T09:00:00Z")),
        },
        last_seen=parse_ocpp("2026-11-28T10:05:00Z"),
    )
    await api.rt.store.put_doc(kinds.STATION_STATUS, "CP-1", station_status_to_doc(status_of))
    status, body = await api.get("/api/v1/stations/CP-1")
    assert status == 200
    assert body["connected"] is True and body["gateway_id"] == "gateway-2"
    assert body["ocpp_version"] == "2.0.1"
    assert body["last_boot"]["vendor"] == "V" and body["last_boot"]["at"] == "2026-11-28T08:00:00.000Z"
    assert [(c["evse_id"], c["connector_id"], c["status"], c["at"]) for c in body["connectors"]] == [
        (1, 1, "Available", "2026-11-28T09:00:00.000Z"), (2, 1, "Charging", "2026-11-28T10:00:00.000Z"),
    ]
    assert body["last_seen"] == "2026-11-28T10:05:00.000Z"
    owner = await api.rt.store.get_owner("CP-1")
    assert owner is not None
    await api.rt.store.release_station("CP-1", owner.gateway_id, owner.epoch)
    _, body = await api.get("/api/v1/stations/CP-1")
    assert body["connected"] is False and body["gateway_id"] is None


async def test_a_station_never_connected_shows_no_boot_and_no_connectors(api: Api) -> None:
    body = await api.a_station("CP-1")
    assert body["last_boot"] is None and body["connectors"] == [] and body["ocpp_version"] is None


async def test_stations_are_listed_and_filtered_by_site(api: Api) -> None:
    await api.a_station("A", site_id="S1")
    await api.a_station("B", site_id="S2")
    await api.a_station("C", site_id="S1")
    _, body = await api.get("/api/v1/stations?site_id=S1")
    assert sorted(s["id"] for s in body["items"]) == ["A", "C"]
    _, body = await api.get("/api/v1/stations?limit=2")
    assert len(body["items"]) == 2
    assert (await api.get("/api/v1/stations?limit=1001"))[0] == 400
    assert (await api.get("/api/v1/stations?limit=abc"))[0] == 400


async def test_patch_changes_site_tariff_and_limits_and_null_clears_them(api: Api) -> None:
    await api.a_station("CP-1", site_id="S1")
    assert (await api.post("/api/v1/tariffs", a_tariff_body(id="t1")))[0] == 201
    status, body = await api.call(
        "PATCH", "/api/v1/stations/CP-1", {"tariff_id": "t1", "max_current_a": 32, "phases": 3, "priority": 2}
    )
    assert status == 200, body
    assert (body["tariff_id"], body["max_current_a"], body["phases"], body["priority"]) == ("t1", 32, 3, 2)
    status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"site_id": None, "tariff_id": None})
    assert status == 200 and body["site_id"] is None and body["tariff_id"] is None
    assert body["max_current_a"] == 32


async def test_patch_with_an_unknown_tariff_is_a_400(api: Api) -> None:
    await api.a_station("CP-1")
    status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"tariff_id": "nope"})
    assert status == 400 and "tariff_id" in body["details"]


async def test_patch_can_replace_the_password(api: Api) -> None:
    await api.a_station("CP-1")
    status, _ = await api.call("PATCH", "/api/v1/stations/CP-1", {"password": "n" * 24})
    assert status == 200
    stored = await api.rt.store.get_station("CP-1")
    assert stored is not None and passwords.verify_password_slow("n" * 24, stored.password_hash)
    assert passwords.verify_fingerprint(b"p", "CP-1", "n" * 24, stored.password_fingerprint)


async def test_a_deleted_station_is_gone(api: Api) -> None:
    await api.a_station("CP-1")
    status, _ = await api.call("DELETE", "/api/v1/stations/CP-1")
    assert status == 204
    assert (await api.get("/api/v1/stations/CP-1"))[0] == 404
    assert (await api.call("DELETE", "/api/v1/stations/CP-1"))[0] == 404
    assert (await api.call("PATCH", "/api/v1/stations/CP-1", {"enabled": False}))[0] == 404


async def test_a_station_whose_status_document_is_unreadable_is_shown_without_it(api: Api) -> None:
    await api.a_station("CP-1")
    await api.rt.store.put_doc(kinds.STATION_STATUS, "CP-1", {"connectors": {"1/1": {"status": "Charging"}}})
    status, body = await api.get("/api/v1/stations/CP-1")
    assert status == 200 and body["id"] == "CP-1"
    assert body["connectors"] == [] and body["last_boot"] is None

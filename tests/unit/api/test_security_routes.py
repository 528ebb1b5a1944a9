"""Station security through the REST API (ADR 017, docs/security.md): the station's new
fields, revocation on every command partition, password rotation, raising the profile,
certificates and trust anchors. Commands are answered by fake gateways reading their
command partitions (tests/unit/api/builders.py)."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest

from services.api.openapi import openapi_document
from services.certificates.documents import Certificate, Certificates
from services.common import kinds, topics
from services.common.codec import Command
from services.common.events import CommandResult
from services.common.routing import REVOKE
from services.common.timeutil import utcnow
from services.sessions.documents import station_status_to_doc
from services.sessions.domain.station_status import StationStatus

from .builders import Api, FakeGateway, eventually

PARTITIONS = 8  # commands_partitions of the fixture
_DOC = openapi_document()


def valid(value: Any, schema: str) -> None:
    root = {"$ref": f"#/components/schemas/{schema}", "components": _DOC["components"]}
    jsonschema.Draft202012Validator(root).validate(value)


def replying(answers: dict[str, Any]) -> Callable[[Command], CommandResult | None]:
    """A station that answers each command type with its entry: a status, or (status,
    snake_case response); a callable gets the command. Revocations are never answered
    (a gateway acts on them, nobody waits)."""

    def answer(cmd: Command) -> CommandResult | None:
        if cmd.command_type == REVOKE:
            return None
        entry = answers[cmd.command_type]
        if callable(entry):
            entry = entry(cmd)
        status, response = entry if isinstance(entry, tuple) else (entry, {"status": entry})
        return CommandResult(command_id=cmd.command_id, command_type=cmd.command_type, status=status,
                             response_json=json.dumps(response), ocpp_action=cmd.command_type)

    return answer


def commands(gw: FakeGateway) -> list[Command]:
    """What the station was sent (revocations are for the gateway)."""
    return [c for _, c in gw.received if c.command_type != REVOKE]


async def every_partition(api: Api) -> list[FakeGateway]:
    return [await FakeGateway(api.rt, f"gateway-{p}").start() for p in range(PARTITIONS)]


async def stop(gateways: list[FakeGateway]) -> None:
    for gw in gateways:
        await gw.stop()


def revokes(gateways: list[FakeGateway], station_id: str) -> list[tuple[int, dict[str, Any]]]:
    return [(p, json.loads(c.params_json)) for gw in gateways for p, c in gw.received
            if c.command_type == REVOKE and c.station_id == station_id]


async def revoked_everywhere(gateways: list[FakeGateway], station_id: str, reason: str) -> bool:
    async def check() -> bool:
        got = [p for p, params in revokes(gateways, station_id) if params == {"reason": reason, "close": True}]
        return sorted(got) == list(range(PARTITIONS))

    return await eventually(check)


async def speaks(api: Api, station_id: str, version: str) -> None:
    status = StationStatus(station_id, connected=True, epoch=1, gateway_id="gateway-3", ocpp_version=version)
    await api.rt.store.put_doc(kinds.STATION_STATUS, station_id, station_status_to_doc(status), parent=station_id)


async def a_key(api: Api, role: str) -> str:
    status, body = await api.post("/api/v1/api-keys", {"name": f"test {role}", "role": role})
    assert status == 201, body
    return str(body["key"])


# -- the station's security fields -------------------------------------------------------

async def test_a_station_is_created_with_the_default_profile_and_shows_its_security_fields(api: Api) -> None:
    created = await api.a_station("CP-1")
    assert created["security_profile"] == 1  # the fixture's Settings() default
    assert created["pending_security_profile"] is None
    assert created["password_rotation_pending"] is False
    assert created["ws_ping_interval_s"] is None
    assert created["connection"]["security_profile"] is None
    valid(created, "Station")
    stored = await api.rt.store.get_station("CP-1")
    assert stored is not None and stored.security_profile == 1


async def test_a_profile_3_station_may_be_created_without_a_password_and_gets_none(api: Api) -> None:
    status, body = await api.post("/api/v1/stations", {"id": "CP-3", "security_profile": 3, "ws_ping_interval_s": 20})
    assert status == 201, body
    assert "password" not in body and body["has_password"] is False
    assert body["security_profile"] == 3 and body["ws_ping_interval_s"] == 20.0
    stored = await api.rt.store.get_station("CP-3")
    assert stored is not None and stored.password_hash == "" and stored.ws_ping_interval_s == 20.0


async def test_a_profile_2_station_without_a_password_gets_one_generated(api: Api) -> None:
    status, body = await api.post("/api/v1/stations", {"id": "CP-2", "security_profile": 2})
    assert status == 201 and len(body["password"]) >= 16 and body["security_profile"] == 2


async def test_bad_security_fields_are_400(api: Api) -> None:
    for body, field in [
        ({"id": "X1", "security_profile": 0}, "security_profile"),
        ({"id": "X1", "security_profile": 4}, "security_profile"),
        ({"id": "X1", "security_profile": "2"}, "security_profile"),
        ({"id": "X1", "ws_ping_interval_s": -1}, "ws_ping_interval_s"),
        ({"id": "X1", "ws_ping_interval_s": 1e300}, "ws_ping_interval_s"),
        ({"id": "X1", "password": "p" * 15}, "password"),
        ({"id": "X1", "password": "p" * 41}, "password"),
    ]:
        status, answer = await api.post("/api/v1/stations", body)
        assert status == 400 and field in answer["details"], (body, answer)


# -- revocation ---------------------------------------------------------------------------

async def test_disabling_a_station_revokes_it_on_every_command_partition(api: Api) -> None:
    await api.a_station("CP-1")
    gateways = await every_partition(api)
    try:
        status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"enabled": False})
        assert status == 200 and body["enabled"] is False
        assert await revoked_everywhere(gateways, "CP-1", "disabled")
    finally:
        await stop(gateways)


async def test_a_password_reset_revokes_and_clears_a_rotation(api: Api) -> None:
    await api.a_station("CP-1")
    stored = await api.rt.store.get_station("CP-1")
    assert stored is not None
    await api.rt.store.put_station(dataclasses.replace(stored, pending_password_hash="h", pending_password_fingerprint="f"))
    gateways = await every_partition(api)
    try:
        status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"password": "n" * 20})
        assert status == 200 and body["password_rotation_pending"] is False
        assert await revoked_everywhere(gateways, "CP-1", "password")
    finally:
        await stop(gateways)
    after = await api.rt.store.get_station("CP-1")
    assert after is not None and after.password_hash != stored.password_hash and after.pending_password_hash == ""


async def test_a_profile_change_revokes_and_deleting_revokes(api: Api) -> None:
    await api.a_station("CP-1")
    gateways = await every_partition(api)
    try:
        status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"security_profile": 2})
        assert status == 200 and body["security_profile"] == 2
        assert await revoked_everywhere(gateways, "CP-1", "security_profile")
        status, _ = await api.call("DELETE", "/api/v1/stations/CP-1")
        assert status == 204
        assert await revoked_everywhere(gateways, "CP-1", "deleted")
    finally:
        await stop(gateways)
    assert len(revokes(gateways, "CP-1")) == 2 * PARTITIONS  # one per partition per change, nothing else


async def refreshed_everywhere(gateways: list[FakeGateway], station_id: str, reason: str) -> bool:
    async def check() -> bool:
        got = [p for p, params in revokes(gateways, station_id) if params == {"reason": reason, "close": False}]
        return sorted(got) == list(range(PARTITIONS))

    return await eventually(check)


async def test_changes_the_gateways_do_not_check_send_nothing(api: Api) -> None:
    await api.a_station("CP-1")
    before = api.rt.bus.end_offsets(topics.COMMANDS)  # type: ignore[attr-defined]
    gateways = await every_partition(api)
    try:
        # enabled and the profile as they are, the ping period as it is: nothing changes for a gateway
        status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"priority": 3, "ws_ping_interval_s": None,
                                                                         "enabled": True, "security_profile": 1})
        assert status == 200 and body["priority"] == 3
    finally:
        await stop(gateways)
    assert revokes(gateways, "CP-1") == []
    assert api.rt.bus.end_offsets(topics.COMMANDS) == before  # type: ignore[attr-defined]


async def test_re_enabling_and_a_new_ping_period_refresh_every_gateway_without_closing(api: Api) -> None:
    await api.a_station("CP-1", enabled=False)
    gateways = await every_partition(api)
    try:
        status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"enabled": True})
        assert status == 200 and body["enabled"] is True
        assert await refreshed_everywhere(gateways, "CP-1", "enabled")
        status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"ws_ping_interval_s": 0})
        assert status == 200 and body["ws_ping_interval_s"] == 0.0
        assert await refreshed_everywhere(gateways, "CP-1", "ws_ping_interval_s")
    finally:
        await stop(gateways)
    assert len(revokes(gateways, "CP-1")) == 2 * PARTITIONS
    assert all(not params["close"] for _, params in revokes(gateways, "CP-1"))


async def test_only_admin_and_installer_may_patch_a_stations_credentials(api: Api) -> None:
    await api.a_station("CP-1")
    operator, installer = await a_key(api, "operator"), await a_key(api, "installer")
    stored = await api.rt.store.get_station("CP-1")
    for change, field in (({"password": "n" * 20}, "password"), ({"security_profile": 2}, "security_profile"),
                          ({"priority": 1, "password": "n" * 20}, "password")):
        status, body = await api.call("PATCH", "/api/v1/stations/CP-1", change, key=operator)
        assert status == 403 and field in body["error"] and body["details"][field], (change, body)
    assert await api.rt.store.get_station("CP-1") == stored  # nothing stored
    status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"priority": 2}, key=operator)
    assert status == 200 and body["priority"] == 2
    status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"password": "n" * 20, "security_profile": 2},
                                  key=installer)
    assert status == 200 and body["security_profile"] == 2


async def test_lowering_a_profile_needs_the_admin_role(api: Api) -> None:
    await api.a_station("CP-1", security_profile=3)
    installer = await a_key(api, "installer")
    status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"security_profile": 2}, key=installer)
    assert status == 403 and "admin" in body["error"]
    stored = await api.rt.store.get_station("CP-1")
    assert stored is not None and stored.security_profile == 3
    status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"security_profile": 2})  # the admin key
    assert status == 200 and body["security_profile"] == 2


async def test_a_passwordless_station_cannot_be_lowered_below_profile_3(api: Api) -> None:
    status, _ = await api.post("/api/v1/stations", {"id": "CP-3", "security_profile": 3})
    assert status == 201
    status, body = await api.call("PATCH", "/api/v1/stations/CP-3", {"security_profile": 2})
    assert status == 400 and "password" in body["details"]
    status, body = await api.call("PATCH", "/api/v1/stations/CP-3", {"security_profile": 2, "password": "q" * 16})
    assert status == 200 and body["security_profile"] == 2 and body["has_password"] is True


# -- password rotation --------------------------------------------------------------------

async def test_a_rotation_stores_the_pending_password_and_sends_it_the_16_way(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    before = await api.rt.store.get_station("CP-1")
    gw = await FakeGateway(api.rt, "gateway-3", replying({"ChangeConfiguration": "Accepted"})).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/password", {"password": "r" * 24})
    finally:
        await gw.stop()
    assert status == 200, body
    assert body == {"status": "Accepted", "pending": True}
    valid(body, "PasswordRotation")
    [cmd] = commands(gw)
    assert cmd.command_type == "ChangeConfiguration"
    assert json.loads(cmd.params_json) == {"key": "AuthorizationKey", "value": ("r" * 24).encode().hex()}  # whitepaper: hex
    after = await api.rt.store.get_station("CP-1")
    assert after is not None and before is not None
    assert after.password_hash == before.password_hash  # the current one still works
    assert after.pending_password_hash and after.pending_password_fingerprint
    _, view = await api.get("/api/v1/stations/CP-1")
    assert view["password_rotation_pending"] is True


async def test_a_rotation_of_a_201_station_uses_set_variables_and_shows_a_generated_password(api: Api) -> None:
    await api.a_station("CP-2")
    await api.connected("CP-2")
    await speaks(api, "CP-2", "2.0.1")
    answer = ("Accepted", {"set_variable_result": [{"attribute_status": "Accepted"}]})
    gw = await FakeGateway(api.rt, "gateway-3", replying({"SetVariables": answer})).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-2/password")
    finally:
        await gw.stop()
    assert status == 200, body
    assert body["status"] == "Accepted" and body["pending"] is True and 16 <= len(body["password"]) <= 40
    valid(body, "PasswordRotation")
    [cmd] = commands(gw)
    assert json.loads(cmd.params_json) == {"variables": [
        {"component": "SecurityCtrlr", "variable": "BasicAuthPassword", "value": body["password"]},
    ]}


def lacking(cmd: Command) -> CommandResult | None:
    """A gateway whose station speaks 2.0.1 where the API did not know it yet: a 1.6-only
    command is NotSupported without being sent; the rest Accepted."""
    if cmd.command_type == REVOKE:
        return None
    if cmd.command_type == "ChangeConfiguration":
        return CommandResult(command_id=cmd.command_id, command_type=cmd.command_type, status="NotSupported",
                             error_description="ChangeConfiguration is not available for OCPP 2.0.1")
    response = {"set_variable_result": [{"attribute_status": "Accepted"}]} if cmd.command_type == "SetVariables" else {
        "status": "Accepted"}
    return CommandResult(command_id=cmd.command_id, command_type=cmd.command_type, status="Accepted",
                         response_json=json.dumps(response), ocpp_action=cmd.command_type)


async def test_a_station_whose_version_is_not_known_yet_gets_the_201_commands_after_the_gateway_says_so(
    api: Api,
) -> None:
    await api.a_station("CP-2")
    await api.connected("CP-2")  # no status document yet: the version is not known here
    gw = await FakeGateway(api.rt, "gateway-3", lacking).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-2/password", {"password": "r" * 24})
        assert status == 200 and body["status"] == "Accepted", body
        status, body = await api.post("/api/v1/stations/CP-2/security-profile",
                                      {"profile": 2, "ocpp_csms_url": "wss://csms.example/ocpp"})
        assert status == 200, body
        assert [s["action"] for s in body["steps"]] == ["SetNetworkProfile", "SetVariables", "Reset"]
    finally:
        await gw.stop()
    assert [c.command_type for c in commands(gw)] == [
        "ChangeConfiguration", "SetVariables", "ChangeConfiguration", "SetNetworkProfile", "SetVariables", "Reset"]


async def test_a_rotation_the_station_rejects_drops_the_pending_password_and_is_409(api: Api) -> None:
    await api.a_station("CP-2")
    await api.connected("CP-2")
    await speaks(api, "CP-2", "2.0.1")
    answer = ("Accepted", {"set_variable_result": [{"attribute_status": "Rejected"}]})
    gw = await FakeGateway(api.rt, "gateway-3", replying({"SetVariables": answer})).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-2/password", {"password": "r" * 24})
    finally:
        await gw.stop()
    assert status == 409 and body["status"] == "Rejected"
    after = await api.rt.store.get_station("CP-2")
    assert after is not None and after.pending_password_hash == "" and after.pending_password_fingerprint == ""


async def test_a_rotation_refreshes_every_gateway_without_closing_anything(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    gateways = await every_partition(api)
    gateways[3].answer = replying({"ChangeConfiguration": "Accepted"})
    try:
        status, _ = await api.post("/api/v1/stations/CP-1/password", {"password": "r" * 24})
        assert status == 200

        async def refreshed() -> bool:
            got = [p for p, params in revokes(gateways, "CP-1")
                   if params == {"reason": "password_rotation", "close": False}]
            return sorted(got) == list(range(PARTITIONS))

        assert await eventually(refreshed)
    finally:
        await stop(gateways)
    assert all(not params["close"] for _, params in revokes(gateways, "CP-1"))


async def test_a_rotation_for_an_offline_station_is_409_and_keeps_nothing_pending(api: Api) -> None:
    await api.a_station("CP-1")
    status, body = await api.post("/api/v1/stations/CP-1/password", {"password": "r" * 24})
    assert status == 409 and body["status"] == "StationOffline"
    after = await api.rt.store.get_station("CP-1")
    assert after is not None and after.pending_password_hash == ""


async def test_a_rotation_is_validated_and_never_closes_the_connection(api: Api) -> None:
    await api.a_station("CP-1")
    status, body = await api.post("/api/v1/stations/CP-1/password", {"password": "short"})
    assert status == 400 and "password" in body["details"]
    status, body = await api.post("/api/v1/stations/CP-1/password", {"pass": "r" * 20})
    assert status == 400 and "pass" in body["details"]
    assert (await api.post("/api/v1/stations/NOPE/password", {}))[0] == 404
    # only the creation's announcement (one per partition)
    assert api.rt.bus.end_offsets(topics.COMMANDS) == [0] * PARTITIONS  # type: ignore[attr-defined]


# -- raising the security profile ------------------------------------------------------

async def test_raising_the_profile_of_a_16_station_sends_change_configuration(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    gw = await FakeGateway(api.rt, "gateway-3", replying({"ChangeConfiguration": "Accepted"})).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/security-profile", {"profile": 2})
    finally:
        await gw.stop()
    assert status == 200, body
    assert body == {"status": "Accepted", "steps": [{"action": "ChangeConfiguration", "status": "Accepted"}],
                    "pending_security_profile": 2}
    valid(body, "SecurityProfileChange")
    [cmd] = commands(gw)
    assert json.loads(cmd.params_json) == {"key": "SecurityProfile", "value": "2"}
    stored = await api.rt.store.get_station("CP-1")
    assert stored is not None and stored.pending_security_profile == 2 and stored.security_profile == 1


async def test_raising_the_profile_of_a_201_station_takes_three_steps(api: Api) -> None:
    await api.a_station("CP-2")
    await api.connected("CP-2")
    await speaks(api, "CP-2", "2.0.1")
    answers = {
        "SetNetworkProfile": "Accepted",
        "SetVariables": ("Accepted", {"set_variable_result": [{"attribute_status": "Accepted"}]}),
        "Reset": "Scheduled",
    }
    gw = await FakeGateway(api.rt, "gateway-3", replying(answers)).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-2/security-profile",
                                      {"profile": 3, "ocpp_csms_url": "wss://csms.example/ocpp", "configuration_slot": 2})
    finally:
        await gw.stop()
    assert status == 200, body
    assert body["steps"] == [{"action": "SetNetworkProfile", "status": "Accepted"},
                             {"action": "SetVariables", "status": "Accepted"},
                             {"action": "Reset", "status": "Scheduled"}]
    assert body["pending_security_profile"] == 3
    sent = [(c.command_type, json.loads(c.params_json)) for c in commands(gw)]
    assert sent[0] == ("SetNetworkProfile", {"configuration_slot": 2, "connection_data": {
        "ocpp_csms_url": "wss://csms.example/ocpp", "security_profile": 3, "ocpp_interface": "Wired0",
        "message_timeout": 30}})
    assert sent[1] == ("SetVariables", {"variables": [
        {"component": "OCPPCommCtrlr", "variable": "NetworkConfigurationPriority", "value": "2"}]})
    assert sent[2] == ("Reset", {"reset_type": "OnIdle"})


async def test_a_refused_step_stops_the_profile_change_and_stores_nothing(api: Api) -> None:
    await api.a_station("CP-2")
    await api.connected("CP-2")
    await speaks(api, "CP-2", "2.0.1")
    gw = await FakeGateway(api.rt, "gateway-3", replying({"SetNetworkProfile": "Rejected"})).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-2/security-profile",
                                      {"profile": 2, "ocpp_csms_url": "wss://csms.example/ocpp"})
    finally:
        await gw.stop()
    assert status == 409 and body["status"] == "Rejected"
    assert body["steps"] == [{"action": "SetNetworkProfile", "status": "Rejected"}]
    assert len(commands(gw)) == 1
    stored = await api.rt.store.get_station("CP-2")
    assert stored is not None and stored.pending_security_profile is None


async def test_the_profile_is_raised_only_and_a_201_station_needs_the_url(api: Api) -> None:
    await api.a_station("CP-1", security_profile=2)
    for body, field in [({"profile": 2}, "profile"), ({"profile": 1}, "profile"), ({}, "profile"),
                        ({"profile": 3, "ocpp_csms_url": "ws://plain"}, "ocpp_csms_url")]:
        status, answer = await api.post("/api/v1/stations/CP-1/security-profile", body)
        assert status == 400 and field in answer["details"], (body, answer)
    await speaks(api, "CP-1", "2.0.1")
    status, answer = await api.post("/api/v1/stations/CP-1/security-profile", {"profile": 3})
    assert status == 400 and "ocpp_csms_url" in answer["details"]


# -- certificates -----------------------------------------------------------------------

def a_certificate(station_id: str, serial: str, **overrides: Any) -> Certificate:
    now = utcnow()
    fields: dict[str, Any] = dict(
        serial=serial, station_id=station_id, certificate_type="ChargingStationCertificate", status="installed",
        subject=f"CN={station_id}", not_before=now - timedelta(days=1), not_after=now + timedelta(days=300),
        fingerprint_sha256="ab" * 32, pem="-----BEGIN CERTIFICATE-----\n...", issued_at=now - timedelta(days=1),
        command_status="Accepted",
    )
    fields.update(overrides)
    return Certificate(**fields)


async def test_certificates_are_listed_newest_first_without_their_pem(api: Api) -> None:
    await api.a_station("CP-1")
    certs = Certificates(api.rt.store)
    old = a_certificate("CP-1", "0a", status="superseded", issued_at=utcnow() - timedelta(days=30))
    new = a_certificate("CP-1", "0b")
    gone = a_certificate("CP-1", "0c", issued_at=utcnow() - timedelta(days=400), not_after=utcnow() - timedelta(days=35))
    for c in (old, new, gone):
        assert await certs.put(c) is not None
    await certs.put(a_certificate("CP-OTHER", "0d"))
    status, body = await api.get("/api/v1/stations/CP-1/certificates")
    assert status == 200
    assert [(c["serial"], c["status"]) for c in body["items"]] == [("0b", "installed"), ("0a", "superseded"),
                                                                  ("0c", "expired")]
    assert all("pem" not in c for c in body["items"])
    valid(body, "CertificateList")


async def test_revoking_a_certificate_stores_it_and_revokes_the_station_everywhere(api: Api) -> None:
    await api.a_station("CP-1")
    certs = Certificates(api.rt.store)
    await certs.put(a_certificate("CP-1", "1f"))
    gateways = await every_partition(api)
    try:
        status, body = await api.post("/api/v1/stations/CP-1/certificates/1f/revoke", {"reason": "keyCompromise"})
        assert status == 200, body
        assert body["status"] == "revoked" and body["revocation_reason"] == "keyCompromise" and body["revoked_at"]
        valid(body, "Certificate")
        assert await revoked_everywhere(gateways, "CP-1", "certificate")
    finally:
        await stop(gateways)
    stored = await certs.get("1f")
    assert stored is not None and stored.status == "revoked" and stored.revision == 2
    # revoking again changes nothing; another station's serial is not found
    status, again = await api.post("/api/v1/stations/CP-1/certificates/1f/revoke")
    assert status == 200 and again["revocation_reason"] == "keyCompromise"
    await certs.put(a_certificate("CP-OTHER", "2f"))
    assert (await api.post("/api/v1/stations/CP-1/certificates/2f/revoke"))[0] == 404
    assert (await api.post("/api/v1/stations/CP-1/certificates/nope/revoke"))[0] == 404


async def test_a_certificate_csms_ca_issued_is_listed_and_can_be_revoked(
        api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from services.certificates.ca import init_ca
    from services.certificates.cli import main as csms_ca
    from services.common import pki

    await api.a_station("CP-1", security_profile=3)
    init_ca(tmp_path / "ca", cn="Test CA", days=30)
    monkeypatch.setenv("CSMS_STORE_URL", f"sqlite:///{tmp_path}/a.db")  # the fixture's store
    out = tmp_path / "cs.pem"
    rc = await asyncio.to_thread(csms_ca, ["--dir", str(tmp_path / "ca"), "issue-station-cert", "CP-1",
                                           "--out-cert", str(out), "--out-key", str(tmp_path / "cs.key")])
    assert rc == 0
    serial = pki.serial_hex(pki.load_certificate(out.read_bytes()))
    status, body = await api.get("/api/v1/stations/CP-1/certificates")
    assert status == 200 and [(c["serial"], c["status"]) for c in body["items"]] == [(serial, "installed")]
    status, body = await api.post(f"/api/v1/stations/CP-1/certificates/{serial}/revoke", {"reason": "keyCompromise"})
    assert status == 200 and body["status"] == "revoked"


async def test_renewal_triggers_a_new_csr(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    gw = await FakeGateway(api.rt, "gateway-3", replying({"TriggerMessage": "Accepted"})).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/certificates/renew")
    finally:
        await gw.stop()
    assert status == 202 and body == {"status": "Accepted"}
    valid(body, "StationAnswer")
    [cmd] = commands(gw)
    assert json.loads(cmd.params_json) == {"requested_message": "SignChargingStationCertificate"}


# -- trust anchors ---------------------------------------------------------------------

def _hash(serial: str) -> dict[str, str]:
    return {"hash_algorithm": "SHA256", "issuer_name_hash": "n" * 8, "issuer_key_hash": "k" * 8, "serial_number": serial}


async def test_trust_anchors_of_a_16_station_are_asked_per_type_and_stored(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")

    def installed(cmd: Command) -> tuple[str, dict[str, Any]]:
        [kind] = json.loads(cmd.params_json)["certificate_types"]
        if kind == "CSMSRootCertificate":
            return "Accepted", {"status": "Accepted", "certificate_hash_data": [_hash("01"), _hash("02")]}
        return "NotFound", {"status": "NotFound"}

    gw = await FakeGateway(api.rt, "gateway-3", replying({"GetInstalledCertificateIds": installed})).start()
    try:
        status, body = await api.get("/api/v1/stations/CP-1/trust-anchors")
    finally:
        await gw.stop()
    assert status == 200, body
    assert [json.loads(c.params_json) for c in commands(gw)] == [
        {"certificate_types": ["CSMSRootCertificate"]}, {"certificate_types": ["ManufacturerRootCertificate"]}]
    assert body["items"] == [{"certificate_type": "CSMSRootCertificate", **_hash("01")},
                             {"certificate_type": "CSMSRootCertificate", **_hash("02")}]
    assert body["retrieved_at"]
    valid(body, "TrustAnchorList")
    status, cached = await api.get("/api/v1/stations/CP-1/trust-anchors?cached=true")
    assert status == 200 and cached == body


async def test_trust_anchors_install_and_delete_on_a_201_station(api: Api) -> None:
    await api.a_station("CP-2")
    await api.connected("CP-2")
    await speaks(api, "CP-2", "2.0.1")
    chain = {"status": "Accepted", "certificate_hash_data_chain": [
        {"certificate_type": "CSMSRootCertificate", "certificate_hash_data": _hash("0A")},
        {"certificate_type": "V2GRootCertificate", "certificate_hash_data": _hash("0B")},
    ]}
    answers = {"GetInstalledCertificateIds": ("Accepted", chain), "InstallCertificate": "Accepted",
               "DeleteCertificate": "Accepted"}
    gw = await FakeGateway(api.rt, "gateway-3", replying(answers)).start()
    try:
        status, body = await api.get("/api/v1/stations/CP-2/trust-anchors")
        assert status == 200 and [i["serial_number"] for i in body["items"]] == ["0A", "0B"]
        pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        status, body = await api.post("/api/v1/stations/CP-2/trust-anchors",
                                      {"certificate_type": "MORootCertificate", "certificate": pem})
        assert status == 200 and body == {"status": "Accepted"}
        status, body = await api.call("DELETE", "/api/v1/stations/CP-2/trust-anchors/0b")
        assert status == 200 and body == {"status": "Accepted"}
        assert (await api.call("DELETE", "/api/v1/stations/CP-2/trust-anchors/0C"))[0] == 404
    finally:
        await gw.stop()
    sent = [(c.command_type, json.loads(c.params_json)) for c in commands(gw)]
    assert sent[0] == ("GetInstalledCertificateIds", {})
    assert sent[1] == ("InstallCertificate", {"certificate_type": "MORootCertificate", "certificate": pem})
    assert sent[2] == ("DeleteCertificate", _hash("0B"))
    _, cached = await api.get("/api/v1/stations/CP-2/trust-anchors?cached=true")
    assert [i["serial_number"] for i in cached["items"]] == ["0A"]


async def test_trust_anchor_inputs_are_validated(api: Api) -> None:
    await api.a_station("CP-1")
    for body, field in [({"certificate_type": "Bogus", "certificate": "-----BEGIN CERTIFICATE-----"}, "certificate_type"),
                        ({"certificate_type": "CSMSRootCertificate", "certificate": "not a pem"}, "certificate"),
                        ({"certificate_type": "CSMSRootCertificate"}, "certificate")]:
        status, answer = await api.post("/api/v1/stations/CP-1/trust-anchors", body)
        assert status == 400 and field in answer["details"], (body, answer)
    status, answer = await api.get("/api/v1/stations/CP-1/trust-anchors?cached=maybe")
    assert status == 400 and "cached" in answer["details"]
    status, answer = await api.get("/api/v1/stations/CP-1/trust-anchors?cached=true")
    assert status == 200 and answer == {"items": [], "retrieved_at": None}
    assert (await api.call("DELETE", "/api/v1/stations/CP-1/trust-anchors/01"))[0] == 404


async def test_the_default_profile_comes_from_the_settings_and_an_old_station_shows_profile_1(api: Api) -> None:
    from services.api.context import CTX
    from services.common.store.port import Station

    assert api.service.app is not None
    ctx = api.service.app[CTX]
    ctx.settings = dataclasses.replace(ctx.settings, default_security_profile=2)
    created = await api.a_station("CP-NEW")
    assert created["security_profile"] == 2
    await api.rt.store.put_station(Station(id="CP-OLD", password_hash="h"))  # stored before profiles were
    _, old = await api.get("/api/v1/stations/CP-OLD")
    assert old["security_profile"] == 1 and old["pending_security_profile"] is None
    valid(old, "Station")


async def test_setting_the_same_profile_drops_a_pending_one_and_refreshes_without_closing(api: Api) -> None:
    await api.a_station("CP-1")
    stored = await api.rt.store.get_station("CP-1")
    assert stored is not None
    await api.rt.store.put_station(dataclasses.replace(stored, pending_security_profile=3))
    gateways = await every_partition(api)
    try:
        status, body = await api.call("PATCH", "/api/v1/stations/CP-1", {"security_profile": 1})
        assert status == 200 and body["pending_security_profile"] is None

        async def refreshed() -> bool:
            return sorted(p for p, params in revokes(gateways, "CP-1")
                          if params == {"reason": "pending_dropped", "close": False}) == list(range(PARTITIONS))

        assert await eventually(refreshed)
    finally:
        await stop(gateways)
    assert all(not params["close"] for _, params in revokes(gateways, "CP-1"))

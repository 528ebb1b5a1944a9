"""A station's credentials (ADR 017, docs/security.md "REST resources"): password rotation,
raising the security profile, the certificates the CA issued it, its trust anchors.

Every station command goes the way `POST /stations/{id}/commands` goes (`send_and_wait`:
the owning gateway's partition, the request waits for the answer); a gateway outcome
(offline, not supported, timeout) is the same HTTP error as there.

- Rotation (`POST .../password`) stores the new password as *pending* first: the gateway
  accepts it alongside the current one from then on, so a station that switches at once
  is never locked out. A station that refuses it, or is offline, never got it: the
  pending password is dropped and the answer is 409. A timeout keeps it (the station may
  have applied it and the answer been lost; it still gets in with either). Every change
  of what a gateway must accept is followed by a revocation that closes nothing
  (`close=False`): the gateways only drop the station from their auth caches and read the
  stored station again.
- Raising the profile: 1.6 ChangeConfiguration `SecurityProfile`; 2.0.1 SetNetworkProfile,
  then NetworkConfigurationPriority, then Reset OnIdle, each step's answer shown; the
  first refusal stops the sequence (409). The new profile is *pending* until the station
  connects with it (the gateway promotes it).
- Certificates are the certificates processor's documents (services/certificates/
  documents.py); the API writes only a revocation (compare-and-set on the revision it
  read), then revokes the station's connection on every gateway.
- Trust anchors: the station's own list (GetInstalledCertificateIds; a 1.6 station is
  asked once per type), stored as the `installed_certificates` document so that a
  DeleteCertificate can name a stored entry by its serial number.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import ApiError, conflict, not_found, validation_error
from services.api.routes_commands import result_error, send_and_wait
from services.api.routes_stations import hash_station_password, revoke
from services.common.routing import broadcast_revoke
from services.api.validation import MISSING, Validator, read_json
from services.api.views import station_security_profile
from services.certificates.documents import EXPIRED, INSTALLED, ISSUED, Certificate, Certificates, revoked, to_api
from services.common import kinds, passwords
from services.common.events import CommandResult
from services.common.ocpp.commands import CERTIFICATE_TYPES
from services.common.store.port import Station
from services.common.timeutil import to_ocpp
from services.sessions.documents import station_status_from_doc

__all__ = [
    "TRUST_ANCHOR_TYPES_16",
    "answer_status",
    "installed_items",
    "setup",
]

log = logging.getLogger("csms.api.security")

# A station answer that means "done" (RebootRequired: applied at the next reboot).
_APPLIED = ("Accepted", "RebootRequired")
# The trust anchor types a 1.6 station (security whitepaper) knows, in the API's names.
TRUST_ANCHOR_TYPES_16 = ("CSMSRootCertificate", "ManufacturerRootCertificate")
_HASH_FIELDS = ("hash_algorithm", "issuer_name_hash", "issuer_key_hash", "serial_number")
_MAX_PEM = 5500  # OCPP 2.0.1 InstallCertificate `certificate` maxLength
_MAX_URL = 512   # OCPP 2.0.1 NetworkConnectionProfile `ocppCsmsUrl` maxLength


# -- pure helpers -----------------------------------------------------------------------

def _response(result: CommandResult) -> dict[str, Any]:
    try:
        out = json.loads(result.response_json or "{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def answer_status(command_type: str, result: CommandResult) -> str:
    """The station's answer to one step. SetVariables answers per variable (the result's
    own status is Accepted whatever they say): the first variable's attributeStatus."""
    if command_type == "SetVariables" and result.ocpp_action:
        items = _response(result).get("set_variable_result")
        if isinstance(items, list) and items and isinstance(items[0], dict):
            status = items[0].get("attribute_status")
            if isinstance(status, str) and status:
                return status
    return result.status


def _is_2x(version: str) -> bool:
    """"2.0.1", "2.1" (or the subprotocol spelling "ocpp2.0.1"); "" = not known."""
    return version.lower().removeprefix("ocpp").startswith("2")


def _version_lacks(result: CommandResult) -> bool:
    """The gateway could not express the command in the station's OCPP version (it was
    never sent): NotSupported without an OCPP action."""
    return result.status == "NotSupported" and not result.ocpp_action


def _hash_item(certificate_type: str, data: object) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        return None
    if not all(isinstance(data.get(k), str) for k in _HASH_FIELDS):
        return None
    return {"certificate_type": certificate_type, **{k: data[k] for k in _HASH_FIELDS}}


def installed_items(response: dict[str, Any], asked_type: str | None) -> list[dict[str, Any]]:
    """The trust anchors in a GetInstalledCertificateIds answer (snake_case): 1.6 lists
    `certificate_hash_data` of the one type asked; 2.x `certificate_hash_data_chain`, each
    with its type (a chain's child certificates are not trust anchors: left out). An
    unreadable entry is skipped."""
    out: list[dict[str, Any]] = []
    chain = response.get("certificate_hash_data_chain")
    if isinstance(chain, list):
        for entry in chain:
            if isinstance(entry, dict):
                kind = entry.get("certificate_type")
                kind = "CSMSRootCertificate" if kind == "CentralSystemRootCertificate" else kind
                item = _hash_item(str(kind or ""), entry.get("certificate_hash_data"))
                if item is not None:
                    out.append(item)
    flat = response.get("certificate_hash_data")
    if isinstance(flat, list):
        for data in flat:
            item = _hash_item(asked_type or "", data)
            if item is not None:
                out.append(item)
    return out


def _shown(c: Certificate, now: Any) -> dict[str, Any]:
    """The REST view; a certificate past its validity shows as expired even before the
    processor records it."""
    view = to_api(c)
    if c.status in (ISSUED, INSTALLED) and c.not_after <= now:
        view["status"] = EXPIRED
    return view


# -- shared steps -----------------------------------------------------------------------

async def _load(ctx: ApiContext, station_id: str) -> Station:
    station = await ctx.stations.get_station(station_id)
    if station is None:
        raise not_found("station", station_id)
    return station


async def _version(ctx: ApiContext, station_id: str) -> str:
    """The OCPP version the station last connected with ("" when never seen)."""
    doc = await ctx.documents.get_doc(kinds.STATION_STATUS, station_id)
    if doc is None:
        return ""
    try:
        return station_status_from_doc(doc).ocpp_version
    except (KeyError, TypeError, ValueError):
        return ""


def _checked(command_type: str, result: CommandResult) -> tuple[str, CommandResult]:
    error = result_error(command_type, result, {"status": result.status, "command_id": result.command_id})
    if error is not None:
        raise error
    return answer_status(command_type, result), result


async def _command(ctx: ApiContext, station_id: str, command_type: str, params: dict[str, Any]) -> tuple[str, CommandResult]:
    """(the station's answer, the result); a gateway outcome raises its ApiError."""
    result = await send_and_wait(ctx, station_id, command_type, params, ctx.settings.command_timeout_s)
    return _checked(command_type, result)


Step = tuple[str, dict[str, Any]]


async def _versioned(ctx: ApiContext, station_id: str, v16: Step, v2x: Step) -> tuple[str, str, CommandResult]:
    """(command type sent, the station's answer, the result) of the step its OCPP version
    has. The version the API last saw (the station status document, written by the
    sessions processor a moment after the connection) picks the first try; when the
    gateway says the station's version lacks it, the other one is sent."""
    first, second = (v2x, v16) if _is_2x(await _version(ctx, station_id)) else (v16, v2x)
    command_type, params = first
    result = await send_and_wait(ctx, station_id, command_type, params, ctx.settings.command_timeout_s)
    if _version_lacks(result):
        command_type, params = second
        result = await send_and_wait(ctx, station_id, command_type, params, ctx.settings.command_timeout_s)
    status, result = _checked(command_type, result)
    return command_type, status, result


async def _refresh(ctx: ApiContext, station_id: str, reason: str) -> None:
    """Every gateway re-reads the station (a pending password or profile changed); the
    socket stays open."""
    await broadcast_revoke(ctx.bus, station_id, reason=reason, close=False, issuer="api", clock=ctx.clock)


async def _read_body(request: web.Request) -> dict[str, Any]:
    """An optional JSON object body (empty = {})."""
    if not await request.read():
        return {}
    return await read_json(request)


# -- password rotation ----------------------------------------------------------------

async def _drop_pending(ctx: ApiContext, station_id: str, pending_hash: str) -> None:
    """Forget the pending password if it is still the one this request stored."""
    current = await ctx.stations.get_station(station_id)
    if current is not None and current.pending_password_hash == pending_hash:
        await ctx.stations.put_station(
            dataclasses.replace(current, pending_password_hash="", pending_password_fingerprint="")
        )
        await _refresh(ctx, station_id, "password_rotation")


async def rotate_password(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station = await _load(ctx, request.match_info["id"])
    v = Validator(await _read_body(request), allowed={"password"})
    given = v.string("password", min_len=passwords.MIN_LENGTH, max_len=passwords.MAX_LENGTH)
    v.done()
    generated = given is MISSING
    password = passwords.generate_password() if generated else str(given)
    slow, fingerprint = await hash_station_password(ctx, station.id, password)
    await ctx.stations.put_station(
        dataclasses.replace(station, pending_password_hash=slow, pending_password_fingerprint=fingerprint)
    )
    await _refresh(ctx, station.id, "password_rotation")  # before the station can use it
    # 1.6 security whitepaper: AuthorizationKey is sent hex-encoded; the station decodes it and
    # uses the decoded text as its Basic-auth password
    v16: Step = ("ChangeConfiguration", {"key": "AuthorizationKey", "value": password.encode().hex()})
    v2x: Step = ("SetVariables", {"variables": [
        {"component": "SecurityCtrlr", "variable": "BasicAuthPassword", "value": password},
    ]})
    try:
        _, status, _ = await _versioned(ctx, station.id, v16, v2x)
    except ApiError as exc:
        if (exc.body or {}).get("status") not in ("Timeout", "Unknown"):  # not delivered: the station never got it
            await _drop_pending(ctx, station.id, slow)
        raise
    log.info("station password rotation station=%s status=%s", station.id, status)
    if status not in _APPLIED:
        await _drop_pending(ctx, station.id, slow)
        raise ApiError(409, f"the station refused the new password ({status})", body={"status": status})
    out: dict[str, Any] = {"status": status, "pending": True}
    if generated:
        out["password"] = password  # shown once; only its hash is kept
    return web.json_response(out)


# -- security profile ---------------------------------------------------------------

async def raise_profile(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station = await _load(ctx, request.match_info["id"])
    v = Validator(await read_json(request), allowed={"profile", "ocpp_csms_url", "configuration_slot"})
    profile = v.integer("profile", required=True, choices=(2, 3))
    url = v.string("ocpp_csms_url", max_len=_MAX_URL)
    slot = v.integer("configuration_slot", minimum=0, maximum=2**31 - 1)
    if profile is not MISSING and profile <= station_security_profile(station):
        v.fail("profile", f"must be higher than the station's profile {station_security_profile(station)} (raising only)")
    if url is not MISSING and not url.startswith("wss://"):
        v.fail("ocpp_csms_url", "must be a wss:// URL (profiles 2 and 3 use TLS)")
    if profile == 2 and not station.password_hash:
        v.fail("profile", "profile 2 authenticates with a password and the station has none")
    v.done()
    steps: list[dict[str, str]] = []
    chosen = 1 if slot is MISSING else slot
    plan_2x: list[Step] = [
        ("SetNetworkProfile", {"configuration_slot": chosen, "connection_data": {
            "ocpp_csms_url": url, "security_profile": profile, "ocpp_interface": "Wired0", "message_timeout": 30,
        }}),
        ("SetVariables", {"variables": [
            {"component": "OCPPCommCtrlr", "variable": "NetworkConfigurationPriority", "value": str(chosen)},
        ]}),
        ("Reset", {"reset_type": "OnIdle"}),
    ]

    def refused(command_type: str, status: str) -> ApiError:
        log.info("station security profile %d refused station=%s step=%s status=%s",
                 profile, station.id, command_type, status)
        return ApiError(409, f"the station refused {command_type} ({status})",
                        body={"status": status, "steps": steps, "pending_security_profile": None})

    plan = plan_2x
    if not _is_2x(await _version(ctx, station.id)):
        # 1.6, or not known yet: the gateway knows, and says so when 1.6 is not what it speaks
        command_type, params = "ChangeConfiguration", {"key": "SecurityProfile", "value": str(profile)}
        result = await send_and_wait(ctx, station.id, command_type, params, ctx.settings.command_timeout_s)
        if not _version_lacks(result):
            status, result = _checked(command_type, result)
            steps.append({"action": result.ocpp_action or command_type, "status": status})
            if status not in _APPLIED:
                raise refused(command_type, status)
            plan = []
    if plan and url is MISSING:
        raise validation_error({"ocpp_csms_url": "is required for an OCPP 2.x station (the wss:// URL to use)"})
    for command_type, params in plan:
        status, result = await _command(ctx, station.id, command_type, params)
        steps.append({"action": result.ocpp_action or command_type, "status": status})
        if status not in _APPLIED and not (command_type == "Reset" and status == "Scheduled"):
            raise refused(command_type, status)
    current = await ctx.stations.get_station(station.id)
    if current is None:
        raise not_found("station", station.id)
    await ctx.stations.put_station(dataclasses.replace(current, pending_security_profile=profile))
    await _refresh(ctx, station.id, "security_profile_pending")
    log.info("station security profile %d pending station=%s", profile, station.id)
    return web.json_response({"status": "Accepted", "steps": steps, "pending_security_profile": profile})


# -- certificates -----------------------------------------------------------------

async def list_certificates(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station = await _load(ctx, request.match_info["id"])
    found = await Certificates(ctx.documents).of_station(station.id)
    now = ctx.clock()
    return web.json_response({"items": [_shown(c, now) for c in found]})


async def renew_certificate(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station = await _load(ctx, request.match_info["id"])
    status, _ = await _command(ctx, station.id, "TriggerMessage",
                               {"requested_message": "SignChargingStationCertificate"})
    log.info("station certificate renewal asked station=%s status=%s", station.id, status)
    return web.json_response({"status": status}, status=202)


async def revoke_certificate(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station = await _load(ctx, request.match_info["id"])
    serial = request.match_info["serial"]
    v = Validator(await _read_body(request), allowed={"reason"})
    reason = v.string("reason", max_len=64)
    v.done()
    certificates = Certificates(ctx.documents)
    for _ in range(5):  # the processor may write between our read and our write: read again
        c = await certificates.get(serial)
        if c is None or c.station_id != station.id:
            raise not_found("certificate", serial)
        updated = revoked(c, reason="unspecified" if reason is MISSING else reason, now=ctx.clock())
        if updated is c:
            break  # already revoked
        stored = await certificates.put(updated)
        if stored is not None:
            c = stored
            break
    else:
        raise conflict(f"certificate {serial!r} kept changing; retry")
    await revoke(ctx, station.id, "certificate")
    log.info("station certificate revoked station=%r serial=%r", station.id, serial)
    return web.json_response(_shown(c, ctx.clock()))


# -- trust anchors ------------------------------------------------------------------

def _anchors_doc(station_id: str, items: list[dict[str, Any]], at: str) -> dict[str, Any]:
    return {"station_id": station_id, "items": items, "retrieved_at": at}


def _anchors_view(doc: dict[str, Any] | None) -> dict[str, Any]:
    if doc is None:
        return {"items": [], "retrieved_at": None}
    items = doc.get("items")
    return {"items": items if isinstance(items, list) else [], "retrieved_at": doc.get("retrieved_at")}


async def list_trust_anchors(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station = await _load(ctx, request.match_info["id"])
    cached = request.query.get("cached", "false")
    if cached not in ("true", "false"):
        raise validation_error({"cached": "must be true or false"})
    if cached == "true":
        return web.json_response(_anchors_view(await ctx.documents.get_doc(kinds.INSTALLED_CERTIFICATES, station.id)))
    asks: list[tuple[str | None, dict[str, Any]]]
    if _is_2x(await _version(ctx, station.id)):
        asks = [(None, {})]  # every type in one call
    else:
        asks = [(kind, {"certificate_types": [kind]}) for kind in TRUST_ANCHOR_TYPES_16]
    items: list[dict[str, Any]] = []
    for asked, params in asks:
        status, result = await _command(ctx, station.id, "GetInstalledCertificateIds", params)
        if status == "Accepted":
            items.extend(installed_items(_response(result), asked))
    doc = _anchors_doc(station.id, items, to_ocpp(ctx.clock()))
    await ctx.documents.put_doc(kinds.INSTALLED_CERTIFICATES, station.id, doc, parent=station.id)
    return web.json_response(_anchors_view(doc))


async def install_trust_anchor(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station = await _load(ctx, request.match_info["id"])
    v = Validator(await read_json(request), allowed={"certificate_type", "certificate"})
    kind = v.string("certificate_type", required=True, choices=CERTIFICATE_TYPES)
    pem = v.string("certificate", required=True, max_len=_MAX_PEM)
    if isinstance(pem, str) and "-----BEGIN CERTIFICATE-----" not in pem:
        v.fail("certificate", "must be a PEM certificate (-----BEGIN CERTIFICATE-----)")
    v.done()
    status, _ = await _command(ctx, station.id, "InstallCertificate", {"certificate_type": kind, "certificate": pem})
    log.info("station trust anchor install station=%r type=%r status=%r", station.id, kind, status)
    return web.json_response({"status": status})


async def delete_trust_anchor(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station = await _load(ctx, request.match_info["id"])
    serial = request.match_info["serial_number"]
    doc = await ctx.documents.get_doc(kinds.INSTALLED_CERTIFICATES, station.id)
    items = _anchors_view(doc)["items"]
    entry = next((i for i in items if isinstance(i, dict) and str(i.get("serial_number", "")).lower() == serial.lower()),
                 None)
    if entry is None:
        raise not_found("trust anchor", serial)
    status, _ = await _command(ctx, station.id, "DeleteCertificate", {k: entry[k] for k in _HASH_FIELDS})
    log.info("station trust anchor delete station=%r serial=%r status=%r", station.id, serial, status)
    if status == "Accepted" and doc is not None:
        rest = [i for i in items if i is not entry]
        await ctx.documents.put_doc(kinds.INSTALLED_CERTIFICATES, station.id,
                                    _anchors_doc(station.id, rest, str(doc.get("retrieved_at") or "")), parent=station.id)
    return web.json_response({"status": status})


def setup(app: web.Application) -> None:
    base = f"{API_PREFIX}/stations/{{id}}"
    app.router.add_post(f"{base}/password", rotate_password)
    app.router.add_post(f"{base}/security-profile", raise_profile)
    app.router.add_get(f"{base}/certificates", list_certificates)
    app.router.add_post(f"{base}/certificates/renew", renew_certificate)
    app.router.add_post(f"{base}/certificates/{{serial}}/revoke", revoke_certificate)
    app.router.add_get(f"{base}/trust-anchors", list_trust_anchors)
    app.router.add_post(f"{base}/trust-anchors", install_trust_anchor)
    app.router.add_delete(f"{base}/trust-anchors/{{serial_number}}", delete_trust_anchor)

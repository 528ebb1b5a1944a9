"""Shared by the station-operations end-to-end tests (tests/e2e/test_station_operations_e2e.py,
embedded) and their distributed twin (tests/integration/test_station_operations_distributed.py):
reading a station's history, state, reports and logs through the REST API of issue 9, and the
station -> CSMS messages of both OCPP versions as hand-built payloads with what each must become.

Every payload here is valid against the OCA schemas the gateway enforces; every expectation is
the pinned REST contract's (event bodies by their events.proto names, data in snake_case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Protocol, TypeVar
from urllib.parse import quote

import aiohttp
import jsonschema

from services.common.timeutil import parse_ocpp, to_ocpp, utcnow
from tests.support.ocpp_raw import RawStation
from tests.support.waiting import eventually

VENDOR = "com.e2e.ops"           # configured in CSMS_DATATRANSFER_VENDORS
OTHER_VENDOR = "com.unknown.vendor"
TOKEN = "E2EOPSTOKEN1"
V16, V201 = "ocpp1.6", "ocpp2.0.1"
WAIT = 20.0                      # seconds a fold may take before a test gives up
T = TypeVar("T")
Json = dict[str, Any]


class Api(Protocol):
    """What the helpers need of a running CSMS: tests/e2e `Server` and tests/integration `Cluster`."""

    @property
    def api_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...

    async def api(self, method: str, path: str, json: Any = None,
                  expect: int | tuple[int, ...] | None = None) -> tuple[int, Any]: ...



async def until(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = WAIT,
                detail: Callable[[], object] | None = None) -> T:
    """`eventually` for probes that answer None for "not yet": the value, typed without None."""
    value = await eventually(probe, timeout, interval=0.1, what=what, detail=detail)
    assert value is not None
    return value


def now_z(delta_s: float = 0.0) -> str:
    return to_ocpp(utcnow() + timedelta(seconds=delta_s))


# -- API helpers ---------------------------------------------------------------------------

_OPENAPI: dict[str, Json] = {}   # api_url -> the OpenAPI document it serves


def _fits(template: str, path: str) -> bool:
    """`/api/v1/stations/{id}/events` fits `/api/v1/stations/CP1/events`."""
    want, got = template.split("/"), path.split("/")
    return len(want) == len(got) and all(w == g or (w.startswith("{") and w.endswith("}") and g) for w, g in zip(want, got))


async def openapi_checked(server: Api, method: str, path: str, status: int, body: Any) -> None:
    """`body` is what the served OpenAPI document says `method path` answers with `status`
    (views are closed: `additionalProperties: false`), so the document and the real answers
    cannot drift apart. Paths the document does not describe are a failure too."""
    doc = _OPENAPI.get(server.api_url)
    if doc is None:
        _, doc = await server.api("GET", "/api/v1/openapi.json", expect=200)
        assert isinstance(doc, dict)
        _OPENAPI[server.api_url] = doc
    bare = path.split("?", 1)[0]
    template = bare if bare in doc["paths"] else next((t for t in doc["paths"] if _fits(t, bare)), None)
    assert template is not None, f"{bare} is not in the OpenAPI document"
    operation = doc["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not in the OpenAPI document"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {template}: {status} is not a documented answer"
    schema = ((response.get("content") or {}).get("application/json") or {}).get("schema")
    if schema is None:
        return
    errors = sorted(jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).iter_errors(body), key=str)
    assert not errors, f"{method} {path} -> {status} does not match {template} in the OpenAPI document: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])


async def get_json(server: Api, path: str) -> Any:
    _, body = await server.api("GET", path, expect=200)
    await openapi_checked(server, "GET", path, 200, body)
    return body


async def post_json(server: Api, path: str, json: Any, expect: int) -> Any:
    """POST, expecting `expect`, the answer checked against the OpenAPI document."""
    _, body = await server.api("POST", path, json, expect=expect)
    await openapi_checked(server, "POST", path, expect, body)
    return body


async def station(server: Api, sid: str) -> Json:
    body = await get_json(server, f"/api/v1/stations/{sid}")
    assert isinstance(body, dict)
    return body


async def events(server: Api, sid: str, types: str | None = None, **params: Any) -> list[Json]:
    query = {**({"type": types} if types else {}), **{k: str(v) for k, v in params.items()}}
    qs = "&".join(f"{k}={quote(v, safe=',')}" for k, v in query.items())
    body = await get_json(server, f"/api/v1/stations/{sid}/events" + (f"?{qs}" if qs else ""))
    items = body["items"]
    assert isinstance(items, list)
    return items


async def event_where(server: Api, sid: str, body_type: str, action: str | None = None,
                      timeout: float = WAIT, where: Json | None = None, **data: Any) -> Json:
    """The newest `body_type` event of `sid` (sent as `action`) whose data has `where` and
    `data` (`where` for keys that clash with this function's parameters)."""
    data = {**(where or {}), **data}
    async def probe() -> Json | None:
        for item in await events(server, sid, body_type, limit=200):
            assert item["type"] == body_type, item
            if action is not None and item["action"] != action:
                continue
            if matches(item["data"], data):
                return item
        return None

    async def seen() -> str:
        return f"history of {sid}: {await events(server, sid, limit=50)}"

    return await until(probe, f"{body_type} {action or ''} {data} in {sid}'s history", timeout, seen)


async def station_where(server: Api, sid: str, check: Callable[[Json], object], what: str, timeout: float = WAIT) -> Json:
    async def probe() -> Json | None:
        body = await station(server, sid)
        return body if check(body) else None

    async def seen() -> str:
        return f"station {sid}: {await station(server, sid)}"

    return await until(probe, what, timeout, seen)


BOOT16 = {"chargePointVendor": "E2EVendor", "chargePointModel": "E2E-16", "chargePointSerialNumber": "SN16",
          "firmwareVersion": "1.2.3"}
BOOT201 = {"chargingStation": {"vendorName": "E2EVendor", "model": "E2E-201", "serialNumber": "SN201",
                               "firmwareVersion": "4.5.6"}, "reason": "PowerUp"}


async def boot(st: RawStation) -> Json:
    result = await st.call("BootNotification", BOOT16 if st.protocol == V16 else BOOT201)
    assert result["status"] == "Accepted", result
    return result


def matches(actual: object, expected: object) -> bool:
    """`expected` is contained in `actual`: dict keys recursively, list items position by
    position (the actual list may be longer), anything else equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and matches(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) >= len(expected) and all(matches(a, e) for a, e in zip(actual, expected))
    return actual == expected


def assert_ts(value: object) -> None:
    """A timestamp the CSMS serves: UTC, `Z`, milliseconds."""
    assert isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value), value


def assert_item_shape(item: Json, body_type: str, action: str) -> None:
    assert item["type"] == body_type and item["action"] == action, item
    assert set(item) >= {"event_id", "type", "action", "received_at", "station_time", "gateway_id", "data"}, item
    assert_ts(item["received_at"])
    assert isinstance(item["data"], dict), item


@dataclass
class Case:
    """One station -> CSMS message: what to send, what the answer must hold, which event
    body it becomes and which of its data fields the history must show."""
    action: str
    payload: Json
    answer: Json                 # keys the CALLRESULT must have with these values
    body: str                    # event body name (the `type` filter)
    data: Json                   # keys the history item's data must have with these values
    station_time: str | None = None


def check_answer(case: Case, result: Json) -> None:
    assert matches(result, case.answer), f"{case.action}: answer {result}, expected at least {case.answer}"


async def send_all(st: RawStation, cases: list[Case]) -> None:
    for case in cases:
        result = await st.call(case.action, case.payload)
        check_answer(case, result)


async def check_history(server: Api, sid: str, cases: list[Case], timeout: float = WAIT) -> None:
    for case in cases:
        item = await event_where(server, sid, case.body, case.action, timeout, where=case.data)
        assert_item_shape(item, case.body, case.action)
        assert item["gateway_id"], item   # a station's message names the gateway that took it
        if case.station_time is not None:
            assert item["station_time"] is not None and parse_ocpp(item["station_time"]) == parse_ocpp(case.station_time), item


async def no_generic_notifications(server: Api, sid: str) -> None:
    """No station -> CSMS message of 1.6 / 2.0.1 becomes an untyped `Notification`."""
    generic = await events(server, sid, "Notification", limit=50)
    assert generic == [], generic


def cases_16(status_at: str) -> list[Case]:
    """Every 1.6 station -> CSMS message after boot and heartbeat."""
    return [
        Case("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": status_at,
                                    "info": "ok", "vendorErrorCode": "V0"},
             {}, "ConnectorStatus", {"evse_id": 1, "status": "Available", "info": "ok"}, station_time=status_at),
        Case("Authorize", {"idTag": TOKEN}, {"idTagInfo": {"status": "Accepted"}}, "Authorization",
             {"id_token": TOKEN, "status": "Accepted"}),
        Case("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": now_z(), "sampledValue": [
            {"value": "231.5", "measurand": "Voltage", "unit": "V", "phase": "L1", "context": "Sample.Periodic"}]}]},
             {}, "MeterValues", {"connector_id": 1, "samples": [{"measurand": "Voltage", "value": 231.5, "unit": "V", "phase": "L1"}]}),
        Case("DataTransfer", {"vendorId": VENDOR, "messageId": "Ping", "data": "{\"n\": 1}"}, {"status": "Accepted"},
             "DataTransfer", {"vendor_id": VENDOR, "message_id": "Ping", "status": "Accepted"}),
        Case("DataTransfer", {"vendorId": OTHER_VENDOR, "messageId": "Ping"}, {"status": "UnknownVendorId"},
             "DataTransfer", {"vendor_id": OTHER_VENDOR, "status": "UnknownVendorId"}),
        Case("DiagnosticsStatusNotification", {"status": "Uploading"}, {}, "LogStatus", {"status": "Uploading", "diagnostics": True}),
        Case("FirmwareStatusNotification", {"status": "Downloading"}, {}, "FirmwareStatus", {"status": "Downloading"}),
        Case("SecurityEventNotification", {"type": "SettingSystemTime", "timestamp": status_at, "techInfo": "ntp sync"}, {},
             "SecurityEvent", {"type": "SettingSystemTime", "tech_info": "ntp sync"}, station_time=status_at),
        Case("LogStatusNotification", {"status": "Uploading", "requestId": 77}, {}, "LogStatus",
             {"status": "Uploading", "request_id": 77}),
        Case("SignedFirmwareStatusNotification", {"status": "SignatureVerified", "requestId": 55}, {}, "FirmwareStatus",
             {"status": "SignatureVerified", "request_id": 55}),
        Case("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----"},
             {"status": "Rejected"}, "CertificateSigningRequest", {"status": "Rejected"}),
    ]


SCHEDULE: Json = {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.0}]}


def cases_201(t0: str) -> list[Case]:
    """2.0.1 station -> CSMS messages, up to the external charging limit."""
    schedule = SCHEDULE
    return [
        Case("StatusNotification", {"timestamp": t0, "connectorStatus": "Available", "evseId": 1, "connectorId": 1}, {},
             "ConnectorStatus", {"evse_id": 1, "connector_id": 1, "status": "Available"}, station_time=t0),
        Case("MeterValues", {"evseId": 1, "meterValue": [{"timestamp": t0, "sampledValue": [
            {"value": 4200.0, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}}]}]}, {},
             "MeterValues", {"evse_id": 1, "samples": [{"measurand": "Power.Active.Import", "value": 4200.0, "unit": "W"}]}),
        Case("DataTransfer", {"vendorId": VENDOR, "messageId": "Hello", "data": {"a": [1, 2]}}, {"status": "Accepted"},
             "DataTransfer", {"vendor_id": VENDOR, "message_id": "Hello", "status": "Accepted"}),
        Case("DataTransfer", {"vendorId": OTHER_VENDOR}, {"status": "UnknownVendorId"},
             "DataTransfer", {"vendor_id": OTHER_VENDOR, "status": "UnknownVendorId"}),
        Case("FirmwareStatusNotification", {"status": "Installing", "requestId": 3}, {}, "FirmwareStatus",
             {"status": "Installing", "request_id": 3}),
        Case("LogStatusNotification", {"status": "Uploading", "requestId": 4}, {}, "LogStatus",
             {"status": "Uploading", "request_id": 4}),
        Case("SecurityEventNotification", {"type": "FirmwareUpdated", "timestamp": t0, "techInfo": "4.5.6"}, {},
             "SecurityEvent", {"type": "FirmwareUpdated", "tech_info": "4.5.6"}, station_time=t0),
        Case("NotifyEvent", {"generatedAt": t0, "seqNo": 0, "tbc": False, "eventData": [{
            "eventId": 901, "timestamp": t0, "trigger": "Alerting", "actualValue": "Faulted", "techCode": "E42",
            "eventNotificationType": "HardWiredNotification",
            "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}}, "variable": {"name": "AvailabilityState"}}]},
             {}, "EventReport", {"seq_no": 0, "tbc": False}),
        Case("NotifyMonitoringReport", {"requestId": 12, "seqNo": 0, "generatedAt": t0, "tbc": False, "monitor": [{
            "component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"},
            "variableMonitoring": [{"id": 1, "transaction": False, "value": 22000.0, "type": "UpperThreshold", "severity": 4}]}]},
             {}, "MonitoringReportPart", {"request_id": 12, "tbc": False}),
        Case("ReservationStatusUpdate", {"reservationId": 31, "reservationUpdateStatus": "Expired"}, {}, "ReservationStatus",
             {"reservation_id": 31, "status": "Expired"}),
        Case("NotifyChargingLimit", {"evseId": 1, "chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": True},
                                     "chargingSchedule": [schedule]}, {}, "ChargingLimitSet", {"source": "EMS", "evse_id": 1}),
    ]


def more_201(t0: str) -> list[Case]:
    """The rest of the 2.0.1 station -> CSMS messages (after the limit was seen folded)."""
    schedule = SCHEDULE
    return [
        Case("ClearedChargingLimit", {"chargingLimitSource": "EMS", "evseId": 1}, {}, "ChargingLimitCleared",
             {"source": "EMS", "evse_id": 1}),
        Case("ReportChargingProfiles", {"requestId": 21, "chargingLimitSource": "CSO", "evseId": 1, "tbc": False, "chargingProfile": [{
            "id": 5, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
            "chargingSchedule": [{**schedule, "startSchedule": t0}]}]}, {}, "ChargingProfilesReport",
             {"request_id": 21, "source": "CSO", "evse_id": 1, "tbc": False}),
        Case("NotifyEVChargingNeeds", {"evseId": 1, "maxScheduleTuples": 3, "chargingNeeds": {
            "requestedEnergyTransfer": "AC_three_phase", "departureTime": now_z(3600),
            "acChargingParameters": {"energyAmount": 20000, "evMinCurrent": 6, "evMaxCurrent": 32, "evMaxVoltage": 400}}},
             {"status": "Rejected"}, "EvChargingNeeds", {"evse_id": 1, "requested_energy_transfer": "AC_three_phase", "status": "Rejected"}),
        Case("NotifyEVChargingSchedule", {"timeBase": t0, "evseId": 1, "chargingSchedule": schedule}, {}, "EvChargingSchedule",
             {"evse_id": 1}),
        Case("NotifyDisplayMessages", {"requestId": 41, "tbc": False, "messageInfo": [{
            "id": 7, "priority": "NormalCycle", "message": {"format": "UTF8", "language": "en", "content": "Welcome"}}]},
             {}, "DisplayMessagesReport", {"request_id": 41, "tbc": False}),
        Case("NotifyCustomerInformation", {"data": "no data kept for this customer", "seqNo": 0, "generatedAt": t0,
                                           "requestId": 51, "tbc": False}, {}, "CustomerInformationPart",
             {"request_id": 51, "data": "no data kept for this customer", "seq_no": 0}),
        Case("PublishFirmwareStatusNotification", {"status": "Published", "location": ["http://local/fw.bin"], "requestId": 61},
             {}, "PublishFirmwareStatus", {"status": "Published", "request_id": 61, "locations": ["http://local/fw.bin"]}),
        Case("GetCertificateStatus", {"ocspRequestData": {"hashAlgorithm": "SHA256", "issuerNameHash": "a" * 64,
                                                          "issuerKeyHash": "b" * 64, "serialNumber": "01",
                                                          "responderURL": ""}},  # no URL: nothing to ask
             {"status": "Failed"}, "CertificateStatusRequest", {"hash_algorithm": "SHA256", "serial_number": "01", "status": "Failed"}),
        Case("Get15118EVCertificate", {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install",
                                       "exiRequest": "AAAA"}, {"status": "Failed"}, "EvCertificateRequest",
             {"action": "Install", "status": "Failed"}),
        Case("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----",
                                 "certificateType": "ChargingStationCertificate"}, {"status": "Rejected"},
             "CertificateSigningRequest", {"certificate_type": "ChargingStationCertificate", "status": "Rejected"}),
    ]


def report_part(request_id: int, seq_no: int, tbc: bool, entries: list[tuple[str, str, str, str]]) -> Json:
    """One NotifyReport: entries (component, variable, value, mutability)."""
    return {
        "requestId": request_id, "generatedAt": now_z(), "seqNo": seq_no, "tbc": tbc,
        "reportData": [{
            "component": {"name": comp},
            "variable": {"name": var},
            "variableAttribute": [{"type": "Actual", "value": value, "mutability": mut, "persistent": True, "constant": False}],
            "variableCharacteristics": {"dataType": "integer", "unit": "s", "supportsMonitoring": False},
        } for comp, var, value, mut in entries],
    }


REPORT_PARTS = [
    [("OCPPCommCtrlr", "HeartbeatInterval", "300", "ReadWrite"), ("OCPPCommCtrlr", "OfflineThreshold", "600", "ReadWrite")],
    [("TxCtrlr", "EVConnectionTimeOut", "120", "ReadWrite"), ("SampledDataCtrlr", "TxUpdatedInterval", "60", "ReadWrite")],
    [("SecurityCtrlr", "SecurityProfile", "1", "ReadOnly")],
]


async def all_pages(server: Api, path: str, limit: int, max_pages: int = 100) -> list[Json]:
    """Every item of a paged list, following `next` (at most `max_pages` pages)."""
    sep = "&" if "?" in path else "?"
    items: list[Json] = []
    cursor: str | None = None
    for _ in range(max_pages):
        url = f"{path}{sep}limit={limit}" + (f"&cursor={quote(cursor)}" if cursor else "")
        body = await get_json(server, url)
        assert len(body["items"]) <= limit, body
        items += body["items"]
        cursor = body["next"]
        if not cursor:
            return items
    raise AssertionError(f"{path}: more than {max_pages} pages")


async def check_report_inventory(server: Api, sid: str, request_id: int, parts: list[list[tuple[str, str, str, str]]],
                                 timeout: float = WAIT) -> list[Json]:
    """The report is complete with every part and item, and the inventory holds exactly its
    entries (besides those other sources wrote, e.g. a NotifyEvent's value): all of them."""
    expected = {(c, v): (value, mut) for part in parts for c, v, value, mut in part}

    async def complete() -> Json | None:
        _, report = await server.api("GET", f"/api/v1/stations/{sid}/reports/{request_id}")
        return report if report and report.get("status") == "complete" else None

    report = await until(complete, f"report {request_id} of {sid} complete", timeout)
    assert report["parts"] == len(parts) and report["items"] == len(expected), report
    assert_ts(report["completed_at"])
    # The device-model stage writes the report document before the inventory (services/
    # stations/device_model.py), so "complete" can be read a moment before the inventory:
    # wait for it rather than read once.
    async def inventory() -> list[Json] | None:
        items = await all_pages(server, f"/api/v1/stations/{sid}/variables", 2)
        got = {(i["component"], i["variable"]): (i["value"], i["mutability"]) for i in items if i["source"] == "report"}
        assert got == expected, items
        return items

    items = await until(inventory, f"the inventory of report {request_id} of {sid}", timeout)
    one = next(i for i in items if i["variable"] == "HeartbeatInterval")
    assert one["attribute_type"] == "Actual" and one["unit"] == "s" and one["data_type"] == "integer" and one["source"] == "report", one
    filtered = await get_json(server, f"/api/v1/stations/{sid}/variables?component=OCPPCommCtrlr&variable=OfflineThreshold")
    assert [(i["component"], i["variable"], i["value"]) for i in filtered["items"]] == [("OCPPCommCtrlr", "OfflineThreshold", "600")]
    return items


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (an interval ending when another starts does
    not overlap it)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    most = current = 0
    for _, step in points:
        current += step
        most = max(most, current)
    return most


async def download(server: Api, path: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.api_key}"}) as http:
        async with http.get(f"{server.api_url}{path}") as r:
            return r.status, await r.read(), dict(r.headers)


async def log_file_when_ready(server: Api, sid: str, rid: int, timeout: float = WAIT) -> tuple[bytes, dict[str, str]]:
    async def probe() -> tuple[bytes, dict[str, str]] | None:
        status, content, headers = await download(server, f"/api/v1/stations/{sid}/logs/{rid}")
        assert status in (200, 409), (status, content[:200])
        return (content, headers) if status == 200 else None

    return await until(probe, f"log {rid} of {sid} downloadable", timeout)


# Firmware statuses after which a station's update is over, one way or the other.
FIRMWARE_DONE = frozenset({"Installed", "DownloadFailed", "InstallationFailed", "InstallVerificationFailed",
                           "InvalidSignature", "InvalidCertificate", "RevokedCertificate"})


async def firmware_span(server: Api, sid: str, version: str, timeout: float = WAIT) -> tuple[datetime, datetime]:
    """From the UpdateFirmware the station was sent (its CommandIssued row) to when its
    outcome was known from its own messages: a final firmware status, or a boot into
    another version than `version` (a station that comes back with its old firmware)."""
    async def probe() -> tuple[datetime, datetime] | None:
        issued = [e for e in await events(server, sid, "CommandIssued", limit=50) if e["data"].get("ocpp_action") == "UpdateFirmware"]
        assert len(issued) == 1, issued
        start = parse_ocpp(issued[0]["received_at"])
        ends = [parse_ocpp(e["received_at"]) for e in await events(server, sid, "FirmwareStatus", limit=50)
                if e["data"]["status"] in FIRMWARE_DONE]
        ends += [parse_ocpp(e["received_at"]) for e in await events(server, sid, "StationBooted", limit=50)
                 if e["data"]["firmware_version"] != version]
        ends = [t for t in ends if t >= start]
        return (start, min(ends)) if ends else None

    return await until(probe, f"the end of {sid}'s firmware update in its history", timeout)


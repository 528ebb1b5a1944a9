"""Station operations tested against an independent charge point: SAP's
e-mobility-charging-stations-simulator (Node.js), not our own `csms simulate`.

Our tests drive the CSMS with clients we wrote from our reading of OCPP; a second,
independent implementation catches the places where both sides share a misreading. This
driver starts `csms run` (memory bus + SQLite in a temporary directory, loopback ports),
registers one OCPP 1.6 and one OCPP 2.0.1 station through the REST API, starts the
simulator with those two stations pointed at it (HTTP basic auth, the simulator's own
templates with our ids and passwords), and then does, through the REST API only, what an
operator would: commands (GetConfiguration, ChangeConfiguration, GetVariables,
SetVariables, TriggerMessage of every kind the simulator answers, DataTransfer), a
configuration/device-model report, a firmware update followed through its status
notifications, a log/diagnostics request, and the history, command list and availability
views. Every step is a row of the summary: what was asked, what the station answered,
what the CSMS shows, and OK / FAIL / MISSING (the endpoint is not there: 404/405 on the
route itself) / INFO (recorded, no verdict).

It never builds the simulator: `--sim-dist` is a built copy (its dist/ with its
node_modules beside it), see bench/outside/README.md. Station templates and the
simulator configuration are written into that dist/assets directory (the simulator reads
them only from there) and removed at the end.

Not part of the product; stdlib only, so it runs with any Python 3.11.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
Json = Any

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")
TS_OK = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# REST keys whose values are not instants even though a station may put one there
_NOT_INSTANTS = {"value", "values_list", "data", "payload", "response", "request_json"}

ID16 = "SAPSIM16"
ID201 = "SAPSIM201"
PASSWORD = "outside-test-password-0123456789"
VENDOR16 = "Ovomaltin"  # the simulator answers DataTransfer Accepted only for its own vendor
FIRMWARE16 = "1.0.0"
FIRMWARE201 = "1.10.1"
_FIRMWARE_FINAL = ("Installed", "DownloadFailed", "InstallationFailed", "InvalidSignature", "InstallVerificationFailed")


# -- small HTTP client --------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Json
    text: str

    def short(self, limit: int = 160) -> str:
        return _clip(f"{self.status} {self.text}", limit)


def _clip(s: str, limit: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


class Api:
    def __init__(self, base: str, key: str) -> None:
        self.base = base.rstrip("/")
        self.key = key
        self.log: list[str] = []

    def call(self, method: str, path: str, body: Json = None, timeout: float = 60.0) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            return Reply(0, None, f"transport error: {e}")
        text = raw.decode("utf-8", "replace")
        try:
            parsed: Json = json.loads(text) if text else None
        except ValueError:
            parsed = None
        self.log.append(f"{method} {path} {'' if body is None else json.dumps(body)} -> {status} {_clip(text, 600)}")
        return Reply(status, parsed, text)

    def get(self, path: str) -> Reply:
        return self.call("GET", path)

    def post(self, path: str, body: Json, timeout: float = 60.0) -> Reply:
        return self.call("POST", path, body, timeout)


class SimUi:
    """The simulator's own HTTP UI server (`/ui/0.0.1/<procedure>`): it makes a station send
    a message of our choosing (station -> CSMS DataTransfer, MeterValues outside a
    transaction, SecurityEventNotification, StatusNotification)."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.base = f"http://127.0.0.1:{port}/ui/0.0.1"
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.hash_ids: dict[str, str] = {}

    def call(self, procedure: str, payload: dict[str, Any]) -> Json:
        req = urllib.request.Request(f"{self.base}/{procedure}", data=json.dumps(payload).encode(), method="POST")
        req.add_header("Authorization", self.auth)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:  # a command the station answered "not Accepted" is a 400
            text = e.read().decode("utf-8", "replace")
            try:
                return json.loads(text)
            except ValueError:
                return {"status": "failure", "http": e.code, "body": text}
        except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError) as e:
            return {"status": "failure", "error": str(e)}

    def station(self, station_id: str, procedure: str, payload: dict[str, Any]) -> Json:
        if station_id not in self.hash_ids:
            listed = self.call("listChargingStations", {})
            for cs in (listed or {}).get("chargingStations", []) if isinstance(listed, dict) else []:
                info = cs.get("stationInfo") or {}
                self.hash_ids[str(info.get("chargingStationId"))] = str(info.get("hashId"))
        hash_id = self.hash_ids.get(station_id)
        if hash_id is None:
            return {"status": "failure", "error": f"{station_id} not listed by the simulator"}
        return self.call(procedure, {"hashIds": [hash_id], **payload})


def route_missing(r: Reply) -> bool:
    """404/405 from the router itself (not a 404 about a resource the route knows)."""
    if r.status == 405:
        return True
    if r.status != 404:
        return False
    text = r.text.lower()
    return not any(w in text for w in ("station", "report", "log", "command", "campaign", "not found:"))


# -- results -----------------------------------------------------------------------


@dataclass
class Row:
    station: str
    step: str
    request: str
    answer: str
    csms: str
    verdict: str
    note: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    bugs: list[str] = field(default_factory=list)

    def add(self, station: str, step: str, request: str, answer: str, csms: str, verdict: str, note: str = "") -> Row:
        row = Row(station, step, _clip(request, 90), _clip(answer, 110), _clip(csms, 150), verdict, note)
        self.rows.append(row)
        print(f"[{verdict:7}] {station} {step}: {row.answer} | {row.csms}" + (f" ({note})" if note else ""), flush=True)
        return row

    def table(self) -> str:
        head = ("station", "step", "request", "station answered", "CSMS shows", "verdict")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = (r.station, r.step, r.request, r.answer, r.csms + (f" — {r.note}" if r.note else ""), r.verdict)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        lines.append("")
        lines.append("totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        return "\n".join(lines)


def field_of(d: Json, camel: str) -> Json:
    """A field of a station's answer as the API relays it: snake_case (camelCase accepted)."""
    if not isinstance(d, dict):
        return None
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
    return d.get(snake, d.get(camel))


def until(fn: Callable[[], T | None], timeout: float, every: float = 0.5) -> T | None:
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value is not None:
            return value
        if time.monotonic() >= end:
            return None
        time.sleep(every)


def bad_timestamps(value: Json, path: str = "") -> list[str]:
    """Every instant the API serves must be UTC `Z` with milliseconds (the contract)."""
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k in _NOT_INSTANTS:
                continue
            out += bad_timestamps(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += bad_timestamps(v, f"{path}[{i}]")
    elif isinstance(value, str) and TS_RE.match(value) and not TS_OK.match(value):
        out.append(f"{path}={value}")
    return out


# -- processes ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)  # its own session: the process and its workers
        except ProcessLookupError:
            return
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def start(name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Proc:
    fh = open(log, "wb")
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    fh.close()
    return Proc(name, p, log)


# -- simulator configuration ------------------------------------------------------------


def _load_template(dist: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((dist / "assets" / "station-templates" / name).read_text())
    return data


def station_templates(dist: Path, strict: bool = True) -> dict[str, dict[str, Any]]:
    common = {
        "fixedName": True,
        "supervisionPassword": PASSWORD,
        "supervisionUrlOcppConfiguration": False,
        "autoRegister": False,
        "ocppStrictCompliance": strict,
        "ocppPersistentConfiguration": False,
        "stationInfoPersistentConfiguration": False,
        "automaticTransactionGeneratorPersistentConfiguration": False,
        "resetTime": 3,
        "registrationMaxRetries": -1,
        "idTagsFile": "idtags.json",
    }
    t16 = _load_template(dist, "virtual-simple.station-template.json")
    t16.update(common)
    t16.update({"baseName": ID16, "supervisionUser": ID16, "firmwareVersion": FIRMWARE16, "ocppVersion": "1.6",
                "firmwareUpgrade": {"versionUpgrade": {"step": 1}, "reset": True}})
    t16["AutomaticTransactionGenerator"]["enable"] = False
    t201 = _load_template(dist, "keba-ocpp2.station-template.json")
    t201.update(common)
    t201.pop("supervisionUrls", None)
    t201.update({"baseName": ID201, "supervisionUser": ID201, "firmwareVersion": FIRMWARE201})
    t201["AutomaticTransactionGenerator"]["enable"] = False
    # The simulator reports these keys as variable names in NotifyReport; over 50 characters,
    # its own schema check then refuses to send that part (the report would never complete).
    keys = t201["Configuration"]["configurationKey"]
    t201["Configuration"]["configurationKey"] = [k for k in keys if len(k["key"]) <= 50]
    return {"csms-outside-16.station-template.json": t16, "csms-outside-201.station-template.json": t201}


def sim_config(ocpp_url: str, work: Path, templates: list[str], ui_port: int, ui_password: str) -> dict[str, Any]:
    return {
        "$schemaVersion": 1,
        "supervisionUrls": [ocpp_url],
        "supervisionUrlDistribution": "round-robin",
        "log": {"enabled": True, "file": str(work / "sim-combined.log"), "errorFile": str(work / "sim-error.log"),
                "statisticsInterval": 0, "level": "debug", "console": False, "rotate": False},
        "worker": {"processType": "workerSet", "elementsPerWorker": "all"},
        "performanceStorage": {"enabled": False, "type": "none"},
        "uiServer": {"enabled": True, "type": "http", "options": {"host": "127.0.0.1", "port": ui_port},
                     "authentication": {"enabled": True, "type": "basic-auth", "username": "outside", "password": ui_password}},
        "persistState": False,
        "stationTemplateUrls": [{"file": f, "numberOfStations": 1} for f in templates],
    }


# -- the checks ------------------------------------------------------------------------


class Run:
    def __init__(self, api: Api, res: Results, versions: list[str], ui: SimUi) -> None:
        self.api = api
        self.ui = ui
        self.res = res
        self.versions = versions
        self.stations = {"1.6": ID16, "2.0.1": ID201}

    # helpers
    def station(self, sid: str) -> Json:
        r = self.api.get(f"/stations/{sid}")
        return r.body if r.status == 200 else None

    def command(self, sid: str, body: dict[str, Any], timeout: float = 40.0) -> Reply:
        body = {"timeout": 15, **body}
        return self.api.post(f"/stations/{sid}/commands", body, timeout=timeout)

    def events(self, sid: str, types: str, since: str | None = None, limit: int = 50) -> Reply:
        q = {"type": types, "limit": str(limit)}
        if since:
            q["since"] = since
        return self.api.get(f"/stations/{sid}/events?" + urllib.parse.urlencode(q))

    def bug(self, text: str) -> None:
        if text not in self.res.bugs:
            self.res.bugs.append(text)

    def check_ts(self, sid: str, where: str, body: Json) -> None:
        bad = bad_timestamps(body)
        if bad:
            self.bug(f"{where}: instants not UTC Z milliseconds: {', '.join(bad[:4])}")

    def connected(self, sid: str) -> bool:
        st = self.station(sid)
        if st is None:
            return False
        conn = st.get("connection")
        if isinstance(conn, dict):
            return bool(conn.get("connected"))
        return bool(st.get("connected"))

    # steps
    def connect(self, version: str, timeout: float) -> bool:
        sid = self.stations[version]
        t0 = time.monotonic()
        ok = until(lambda: True if self.connected(sid) and self._booted(sid) else None, timeout)
        st = self.station(sid) or {}
        boot = st.get("boot") or st.get("last_boot") or {}
        took = time.monotonic() - t0
        self.res.add(sid, "connect+boot", f"simulator OCPP {version}, basic auth",
                     f"BootNotification vendor={boot.get('vendor')} model={boot.get('model')} fw={boot.get('firmware_version')}",
                     f"connected={st.get('connection', {}).get('connected') if isinstance(st.get('connection'), dict) else st.get('connected')} "
                     f"ocpp_version={st.get('ocpp_version')} after {took:.1f}s",
                     "OK" if ok else "FAIL")
        if st:
            self.check_ts(sid, f"GET /stations/{sid}", st)
        return bool(ok)

    def _booted(self, sid: str) -> bool | None:
        st = self.station(sid) or {}
        return True if (st.get("boot") or st.get("last_boot")) else None

    def station_view(self, version: str) -> None:
        sid = self.stations[version]
        st = self.station(sid) or {}
        wanted = ("connection", "last_heartbeat", "boot", "evses", "availability", "firmware", "log",
                  "security_profile", "outage", "meters", "charging_limits", "last_disconnect")
        missing = [k for k in wanted if k not in st]
        conn = st.get("connection") if isinstance(st.get("connection"), dict) else {}
        evses = st.get("evses") or []
        statuses = {f"{e.get('id')}/{c.get('id')}": c.get("status") for e in evses if isinstance(e, dict)
                    for c in e.get("connectors", []) if isinstance(c, dict)}
        shows = (f"evses={statuses or st.get('connectors')} sec_profile={st.get('security_profile')} "
                 f"since={conn.get('since') if conn else None} remote={conn.get('remote') if conn else None} "
                 f"outage={st.get('outage')}")
        verdict = "MISSING" if missing else "OK"
        note = f"absent fields: {','.join(missing)}" if missing else ""
        if not missing:
            if st.get("security_profile") not in (1,):
                verdict = "FAIL"
                note = "security_profile should be 1 (basic auth over ws)"
                self.bug(f"GET /stations/{sid}: security_profile={st.get('security_profile')!r}, expected 1 for basic auth over ws://")
            if version == "1.6":
                want = {"1/1": "Available", "2/2": "Preparing", "3/3": "Faulted"}
                got = {k: v for k, v in statuses.items() if k in want}
                if got != want:
                    verdict = "FAIL"
                    note = f"connector statuses {got} != the station's {want}"
                    self.bug(f"GET /stations/{sid} evses: {got}, the station sent {want} (StatusNotification per connector)")
        self.res.add(sid, "GET station", f"GET /stations/{sid}", "-", shows, verdict, note)

    def commands_16(self) -> None:
        sid = ID16
        r = self.command(sid, {"type": "GetConfiguration"})
        keys = (field_of((r.body or {}).get("response"), "configurationKey") or []) if r.status == 200 else []
        self.res.add(sid, "GetConfiguration (all)", '{"type":"GetConfiguration"}', f"{len(keys)} keys",
                     r.short(80), "OK" if r.status == 200 and len(keys) > 5 else "FAIL")
        r = self.command(sid, {"type": "GetConfiguration", "keys": ["HeartbeatInterval", "NoSuchKeyXYZ"]})
        resp = (r.body or {}).get("response", {})
        ck = field_of(resp, "configurationKey") or []
        ok = r.status == 200 and field_of(resp, "unknownKey") == ["NoSuchKeyXYZ"] and len(ck) == 1
        hb = [k.get("value") for k in ck if k.get("key") == "HeartbeatInterval"]
        self.res.add(sid, "GetConfiguration (keys)", "keys=[HeartbeatInterval,NoSuchKeyXYZ]",
                     f"HeartbeatInterval={hb} unknownKey={field_of(resp, 'unknownKey')}", r.short(60), "OK" if ok else "FAIL")
        r = self.command(sid, {"type": "ChangeConfiguration", "key": "MeterValueSampleInterval", "value": "45"})
        st = (r.body or {}).get("status")
        r2 = self.command(sid, {"type": "GetConfiguration", "keys": ["MeterValueSampleInterval"]})
        val = [k.get("value") for k in field_of((r2.body or {}).get("response"), "configurationKey") or []]
        self.res.add(sid, "ChangeConfiguration", "MeterValueSampleInterval=45", f"{st}; read back {val}",
                     r.short(60), "OK" if st == "Accepted" and val == ["45"] else "FAIL")
        r = self.command(sid, {"type": "ChangeConfiguration", "key": "SupportedFeatureProfiles", "value": "Core"})
        st = (r.body or {}).get("status")
        self.res.add(sid, "ChangeConfiguration read-only", "SupportedFeatureProfiles=Core", str(st), r.short(60),
                     "OK" if st == "Rejected" else "FAIL")
        r = self.command(sid, {"type": "ChangeConfiguration", "key": "NoSuchKeyXYZ", "value": "1"})
        st = (r.body or {}).get("status")
        # ConfigurationStatus NotSupported is the station's answer about the key, not a CALLERROR
        answered = ((r.body or {}).get("response") or {}).get("status")
        ok = st == "NotSupported" and r.status == 200
        self.res.add(sid, "ChangeConfiguration unknown", "NoSuchKeyXYZ=1", f"status={answered}", r.short(150),
                     "OK" if ok else "FAIL", "" if ok else "expected 200 with the station's status NotSupported")
        if r.status == 400 and answered == "NotSupported":
            self.bug(f"POST /stations/{sid}/commands {{\"type\": \"ChangeConfiguration\", \"key\": \"NoSuchKeyXYZ\", \"value\": \"1\"}} "
                     f"-> 400 {_clip(r.text, 220)}. The station answered ChangeConfiguration.conf {{\"status\": \"NotSupported\"}} "
                     "(OCPP 1.6 ConfigurationStatus: the key is not supported), a normal answer; the API treats it like a "
                     "CALLERROR NotSupported (routes_commands._STATUS_HTTP) and says the command is not supported. "
                     "Same for any answer whose status enum has NotSupported (1.6 SendLocalList UpdateStatus, "
                     "2.0.1 GetBaseReport/GetReport GenericDeviceModelStatus). Expected 200 with status NotSupported.")

    def commands_201(self) -> None:
        sid = ID201
        var = {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval"}
        r = self.command(sid, {"type": "GetVariables", "variables": [var, {"component": "NoSuchCtrlr", "variable": "X"}]})
        results = field_of((r.body or {}).get("response"), "getVariableResult") or []
        summary = [(x.get("component", {}).get("name"), field_of(x, "attributeStatus"), field_of(x, "attributeValue"))
                   for x in results]
        self.res.add(sid, "GetVariables", "OCPPCommCtrlr.HeartbeatInterval, NoSuchCtrlr.X", str(summary), r.short(60),
                     "OK" if r.status == 200 and len(results) == 2 else "FAIL")
        r = self.command(sid, {"type": "SetVariables", "variables": [
            {"component": "SampledDataCtrlr", "variable": "TxUpdatedInterval", "value": "45"}]})
        results = field_of((r.body or {}).get("response"), "setVariableResult") or []
        st = [field_of(x, "attributeStatus") for x in results]
        self.res.add(sid, "SetVariables", "SampledDataCtrlr.TxUpdatedInterval=45", str(st), r.short(60),
                     "OK" if st == ["Accepted"] else "FAIL")

    def triggers(self, version: str) -> None:
        sid = self.stations[version]
        kinds16 = [("BootNotification", "StationBooted"), ("StatusNotification", "ConnectorStatus"),
                   ("Heartbeat", None), ("MeterValues", "MeterValues"),
                   ("FirmwareStatusNotification", "FirmwareStatus"), ("DiagnosticsStatusNotification", "LogStatus")]
        kinds201 = [("BootNotification", "StationBooted"), ("StatusNotification", "ConnectorStatus"),
                    ("Heartbeat", None), ("MeterValues", "MeterValues"),
                    ("FirmwareStatusNotification", "FirmwareStatus"), ("LogStatusNotification", "LogStatus")]
        for msg, etype in kinds16 if version == "1.6" else kinds201:
            before = self.station(sid) or {}
            t_before = _now_iso()
            body: dict[str, Any] = {"type": "TriggerMessage", "requested_message": msg}
            if msg in ("StatusNotification", "MeterValues"):
                body["evse_id" if version != "1.6" else "connector_id"] = 1
                if version != "1.6":
                    body["connector_id"] = 1
            r = self.command(sid, body)
            status = (r.body or {}).get("status")
            if msg == "BootNotification" and version != "1.6":
                # F06.FR.17: a 2.0.1 station already Accepted answers a BootNotification trigger Rejected
                self.res.add(sid, f"Trigger {msg}", json.dumps(body), str(status), r.short(80),
                             "OK" if status == "Rejected" else "FAIL", "F06.FR.17: Rejected once Accepted")
                continue
            if status != "Accepted":
                self.res.add(sid, f"Trigger {msg}", json.dumps(body), str(status), r.short(80), "FAIL")
                continue
            if etype is None:
                def hb_moved() -> str | None:
                    st = self.station(sid) or {}
                    now = st.get("last_heartbeat")
                    return now if now and now != before.get("last_heartbeat") else None
                got = until(hb_moved, 10)
                self.res.add(sid, f"Trigger {msg}", json.dumps(body), str(status),
                             f"last_heartbeat {before.get('last_heartbeat')} -> {got}",
                             "OK" if got else ("MISSING" if "last_heartbeat" not in before else "FAIL"))
                continue

            def seen(et: str = etype) -> Json:
                e = self.events(sid, et, since=t_before)
                if e.status != 200:
                    return e
                items = (e.body or {}).get("items", [])
                return e if items else None
            e = until(seen, 12 if (version, msg) != ("1.6", "MeterValues") else 4)
            if e is None and (version, msg) == ("1.6", "MeterValues"):
                self.res.add(sid, f"Trigger {msg}", json.dumps(body), str(status), "no MeterValues event", "INFO",
                             "the 1.6 simulator sends a triggered MeterValues only during a transaction")
                continue
            if e is None:
                self.res.add(sid, f"Trigger {msg}", json.dumps(body), str(status),
                             f"no {etype} event in GET /events since {t_before}", "FAIL")
                self.bug(f"{sid}: TriggerMessage {msg} Accepted, but GET /stations/{sid}/events?type={etype}&since=... shows nothing within 12 s")
                continue
            if e.status != 200:
                self.res.add(sid, f"Trigger {msg}", json.dumps(body), str(status), f"GET /events -> {e.short(80)}",
                             "MISSING" if route_missing(e) else "FAIL")
                continue
            items = e.body.get("items", [])
            self.check_ts(sid, "GET /events", e.body)
            first = items[0]
            self.res.add(sid, f"Trigger {msg}", json.dumps(body), str(status),
                         f"{len(items)}x {etype}: action={first.get('action')} data={json.dumps(first.get('data'))}", "OK")

    def datatransfer(self, version: str) -> None:
        sid = self.stations[version]
        vendor = VENDOR16 if version == "1.6" else "Keba AG"
        r = self.command(sid, {"type": "DataTransfer", "vendor_id": vendor, "message_id": "ping", "data": "hello"})
        st = (r.body or {}).get("status")
        want = "Accepted" if version == "1.6" else "UnknownVendorId"  # the 2.0.1 simulator knows no vendor
        self.res.add(sid, "DataTransfer CSMS->station", f"vendor_id={vendor}", str(st), r.short(70),
                     "OK" if st == want else "FAIL", f"simulator {version} answers {want} by design")
        r = self.command(sid, {"type": "DataTransfer", "vendor_id": "com.unknown.vendor"})
        st = (r.body or {}).get("status")
        self.res.add(sid, "DataTransfer unknown vendor", "vendor_id=com.unknown.vendor", str(st), r.short(70),
                     "OK" if st == "UnknownVendorId" else "FAIL")

    def station_initiated(self, version: str) -> None:
        """Messages the station sends on its own, made to happen through the simulator's UI."""
        sid = self.stations[version]
        now = _now_iso()
        if version == "1.6":
            for vendor, want in ((VENDOR16, "Accepted"), ("com.not.configured", "UnknownVendorId")):
                t0 = _now_iso()
                u = self.ui.station(sid, "dataTransfer", {"vendorId": vendor, "messageId": "outside", "data": '{"probe":1}'})
                failed = (u or {}).get("responsesFailed") or []
                answer = failed[0].get("commandResponse", {}).get("status") if failed else (
                    "Accepted" if (u or {}).get("status") == "success" else json.dumps(u))
                def same(d: dict[str, Any], w: str = want, vd: str = vendor) -> bool:
                    return bool(d.get("vendor_id") == vd and d.get("status") == w)
                self.expect_event(sid, f"DataTransfer station->CSMS {vendor}", f"UI dataTransfer vendorId={vendor}",
                                  f"CSMS answered {answer}", "DataTransfer", t0, same,
                                  ok_answer=answer == want, note=f"CSMS_DATATRANSFER_VENDORS={VENDOR16},...: expect {want}")
            mv: dict[str, Any] = {"connectorId": 1, "meterValue": [{"timestamp": now, "sampledValue": [
                {"value": "1234", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]}
        else:
            t0 = _now_iso()
            u = self.ui.station(sid, "securityEventNotification", {"type": "SettingSystemTime", "timestamp": now,
                                                                     "techInfo": "outside test"})
            self.expect_event(sid, "SecurityEventNotification", "UI securityEventNotification SettingSystemTime",
                              str((u or {}).get("status")), "SecurityEvent", t0,
                              lambda d: d.get("type") == "SettingSystemTime", ok_answer=(u or {}).get("status") == "success")
            t0 = _now_iso()
            u = self.ui.station(sid, "notifyCustomerInformation", {"data": "outside customer data", "seqNo": 0,
                                                                     "generatedAt": now, "requestId": 4242, "tbc": False})
            self.expect_event(sid, "NotifyCustomerInformation", "UI notifyCustomerInformation requestId=4242",
                              str((u or {}).get("status")), "CustomerInformationPart", t0,
                              lambda d: d.get("request_id") == 4242, ok_answer=(u or {}).get("status") == "success")
            mv = {"evseId": 1, "meterValue": [{"timestamp": now, "sampledValue": [
                {"value": 2345, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}]}]}
        t0 = _now_iso()
        u = self.ui.station(sid, "meterValues", mv)
        value = 1234.0 if version == "1.6" else 2345.0

        def metered() -> Json:
            st = self.station(sid) or {}
            m = [x for x in st.get("meters") or [] if x.get("measurand") == "Energy.Active.Import.Register"
                 and x.get("evse_id") == 1 and x.get("value") == value]
            return m or None
        m = until(metered, 10)
        self.res.add(sid, "MeterValues outside a transaction", "UI meterValues evse/connector 1 Energy=%g Wh" % value,
                     str((u or {}).get("status")), f"GET station .meters: {json.dumps(m) if m else 'not shown in 10 s'}",
                     "OK" if m else "FAIL")
        if not m:
            self.bug(f"{sid}: a MeterValues outside a transaction (Energy.Active.Import.Register {value:g} Wh, evse 1) "
                     "is not shown in GET /stations/{id} .meters within 10 s")
        self.check_ts(sid, "GET station meters", m)
        self.outage(version, t0)

    def outage(self, version: str, t0: str) -> None:
        """Every connector Faulted -> an open outage (cause faulted); back in service -> closed."""
        sid = self.stations[version]
        down: list[dict[str, Any]]
        up: list[dict[str, Any]]
        if version == "1.6":  # connector 3 is Faulted from the template
            down = [{"connectorId": c, "errorCode": "GroundFailure", "status": "Faulted"} for c in (1, 2)]
            up = [{"connectorId": 1, "errorCode": "NoError", "status": "Available"},
                  {"connectorId": 2, "errorCode": "NoError", "status": "Preparing"}]
        else:
            down = [{"timestamp": _now_iso(), "connectorStatus": "Faulted", "evseId": 1, "connectorId": 1}]
            up = [{"timestamp": _now_iso(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1}]
        for payload in down:
            self.ui.station(sid, "statusNotification", payload)

        def opened() -> Json:
            o = (self.station(sid) or {}).get("outage")
            return o if isinstance(o, dict) and o.get("cause") == "faulted" else None
        o = until(opened, 10)
        self.res.add(sid, "outage opens", "UI statusNotification: every connector Faulted", "-",
                     f"GET station .outage={json.dumps(o)}", "OK" if o else "FAIL")
        time.sleep(1.0)
        for payload in up:
            if version != "1.6":
                payload["timestamp"] = _now_iso()
            self.ui.station(sid, "statusNotification", payload)
        closed = until(lambda: True if (self.station(sid) or {}).get("outage") is None else None, 10)
        a = self.api.get(f"/stations/{sid}/availability?" + urllib.parse.urlencode({"from": t0}))
        outs = [x for x in (a.body or {}).get("outages", []) if x.get("cause") == "faulted"] if a.status == 200 else []
        ok = bool(closed) and any(x.get("end") and (x.get("duration_s") or 0) >= 0.5 for x in outs)
        self.res.add(sid, "outage closes", "UI statusNotification: back in service", "-",
                     f"outage={'null' if closed else 'still open'}; availability since t0: {outs} "
                     f"uptime={(a.body or {}).get('uptime_percent')} failures={(a.body or {}).get('failures')}",
                     "OK" if ok else ("MISSING" if route_missing(a) else "FAIL"))

    def expect_event(self, sid: str, step: str, request: str, answer: str, etype: str, since: str,
                     match: Callable[[dict[str, Any]], bool], *, ok_answer: bool, note: str = "") -> None:
        def seen() -> Json:
            e = self.events(sid, etype, since=since)
            items = [i for i in (e.body or {}).get("items", []) if match(i.get("data") or {})] if e.status == 200 else []
            return items or None
        items = until(seen, 10)
        if items:
            self.check_ts(sid, "GET /events", items)
        self.res.add(sid, step, request, answer,
                     f"{etype} event: {json.dumps(items[0].get('data')) if items else 'none in 10 s'}",
                     "OK" if items and ok_answer else "FAIL", note)

    def reports(self, version: str) -> None:
        sid = self.stations[version]
        body: dict[str, Any] = {} if version == "1.6" else {"report_base": "FullInventory"}
        r = self.api.post(f"/stations/{sid}/reports", body)
        if route_missing(r):
            self.res.add(sid, "report", f"POST /reports {json.dumps(body)}", "-", r.short(60), "MISSING")
            return
        b = r.body or {}
        rid = b.get("request_id")
        self.res.add(sid, "report", f"POST /reports {json.dumps(body)}", str(b.get("status")), r.short(150),
                     "OK" if r.status == 202 and rid is not None and b.get("status") == "Accepted" else "FAIL")
        if r.status != 202:
            self.bug(f"POST /stations/{sid}/reports {json.dumps(body)} -> {r.status} {_clip(r.text, 200)}; expected 202")
            return

        def done() -> Reply | None:
            g = self.api.get(f"/stations/{sid}/reports/{rid}")
            if route_missing(g):
                return g
            return g if g.status == 200 and (g.body or {}).get("status") in ("complete", "rejected") else None
        g = until(done, 30) or self.api.get(f"/stations/{sid}/reports/{rid}")
        gb = g.body or {}
        self.res.add(sid, "report status", f"GET /reports/{rid}", "-", g.short(160),
                     "OK" if g.status == 200 and gb.get("status") == "complete" and (gb.get("items") or 0) > 0 else
                     ("MISSING" if route_missing(g) else "FAIL"))
        if g.status == 200:
            self.check_ts(sid, "GET /reports/{id}", gb)
        v = self.api.get(f"/stations/{sid}/variables?limit=500")
        if route_missing(v):
            self.res.add(sid, "inventory", "GET /variables", "-", v.short(60), "MISSING")
            return
        items = (v.body or {}).get("items", []) if v.status == 200 else []
        if v.status == 200:
            self.check_ts(sid, "GET /variables", v.body)
        if version == "1.6":  # after ChangeConfiguration MeterValueSampleInterval=45 (commands_16)
            probe = [i for i in items if i.get("variable") == "MeterValueSampleInterval"]
            want = "45"
        else:  # the simulator's OCPPCommCtrlr.HeartbeatInterval is the CSMS's boot interval
            probe = [i for i in items if i.get("component") == "OCPPCommCtrlr" and i.get("variable") == "HeartbeatInterval"]
            want = "300"
        shows = (f"{len(items)} items (report said {gb.get('items')}); {probe[0].get('component') if probe else ''}."
                 f"{probe[0].get('variable') if probe else ''}="
                 f"{[(i.get('attribute_type'), i.get('value'), i.get('mutability'), i.get('data_type'), i.get('source')) for i in probe]}")
        ok = v.status == 200 and len(items) > 5 and any(i.get("value") == want for i in probe)
        self.res.add(sid, "inventory", "GET /variables?limit=500", "-", shows, "OK" if ok else "FAIL")

    def inventory_update(self, version: str) -> None:
        sid = self.stations[version]
        if version == "1.6":
            # after a report, a ChangeConfiguration must update the inventory (source change_configuration)
            self.command(sid, {"type": "ChangeConfiguration", "key": "MeterValueSampleInterval", "value": "60"})

            def updated() -> Json:
                vv = self.api.get(f"/stations/{sid}/variables?" + urllib.parse.urlencode({"variable": "MeterValueSampleInterval"}))
                its = (vv.body or {}).get("items", []) if vv.status == 200 else []
                return its if its and its[0].get("value") == "60" else None
            its = until(updated, 10)
            self.res.add(sid, "inventory after ChangeConfiguration", "MeterValueSampleInterval=60", "Accepted",
                         str([(i.get("value"), i.get("source")) for i in its]) if its else "value not updated in 10 s",
                         "OK" if its else "FAIL")
        else:
            self.command(sid, {"type": "SetVariables", "variables": [
                {"component": "SampledDataCtrlr", "variable": "TxUpdatedInterval", "value": "60"}]})

            def updated201() -> Json:
                vv = self.api.get(f"/stations/{sid}/variables?" + urllib.parse.urlencode(
                    {"component": "SampledDataCtrlr", "variable": "TxUpdatedInterval"}))
                its = (vv.body or {}).get("items", []) if vv.status == 200 else []
                return its if any(i.get("value") == "60" for i in its) else None
            its = until(updated201, 10)
            self.res.add(sid, "inventory after SetVariables", "TxUpdatedInterval=60", "Accepted",
                         str([(i.get("attribute_type"), i.get("value"), i.get("source")) for i in its]) if its else "value not updated in 10 s",
                         "OK" if its else "FAIL")

    def firmware(self, version: str, timeout: float) -> None:
        sid = self.stations[version]
        body = {"location": "http://127.0.0.1:9/firmware/outside-test.bin"}
        t0 = _now_iso()
        r = self.api.post(f"/stations/{sid}/firmware", body)
        if route_missing(r):
            self.res.add(sid, "firmware", "POST /firmware", "-", r.short(60), "MISSING")
            return
        b = r.body or {}
        self.res.add(sid, "firmware request", f"POST /firmware {json.dumps(body)}", str(b.get("status")), r.short(150),
                     "OK" if r.status == 202 and b.get("status") == "Accepted" else "FAIL")
        if r.status != 202:
            return
        seen: list[str] = []

        def installed() -> str | None:
            st = self.station(sid) or {}
            fw = st.get("firmware") or {}
            s = fw.get("status")
            if s and (not seen or seen[-1] != s):
                seen.append(s)
            return s if s in _FIRMWARE_FINAL else None
        final = until(installed, timeout, every=0.5)
        st = self.station(sid) or {}
        self.check_ts(sid, f"GET /stations/{sid} firmware", st.get("firmware"))
        self.res.add(sid, "firmware status (GET station)", "poll GET /stations/{id} .firmware", "-",
                     f"statuses seen {seen}; firmware={json.dumps(st.get('firmware'))}",
                     "OK" if final == "Installed" else "FAIL")
        e = self.events(sid, "FirmwareStatus", since=t0)
        items = (e.body or {}).get("items", []) if e.status == 200 else []
        hist = [(i.get("action"), (i.get("data") or {}).get("status"), (i.get("data") or {}).get("request_id")) for i in reversed(items)]
        self.res.add(sid, "firmware history", "GET /events?type=FirmwareStatus", "-", f"{hist}",
                     "OK" if items else ("MISSING" if route_missing(e) else "FAIL"))
        if version == "1.6" and final == "Installed":
            # the simulator resets after Installed (firmwareUpgrade.reset) and boots again
            installed_at = next((i.get("received_at") for i in items if (i.get("data") or {}).get("status") == "Installed"), t0)

            def rebooted() -> Json:
                e = self.events(sid, "StationBooted", since=installed_at)
                its = (e.body or {}).get("items", []) if e.status == 200 else []
                return its[0] if its else None
            boot_ev = until(rebooted, 90)
            st = self.station(sid) or {}
            boot = st.get("boot") or st.get("last_boot") or {}
            sent = (boot_ev or {}).get("data", {}).get("firmware_version")
            ok = bool(boot_ev) and boot.get("firmware_version") == sent and bool(st.get("connection", {}).get("connected"))
            self.res.add(sid, "firmware reboot", "station resets after Installed",
                         f"BootNotification firmwareVersion={sent}" if boot_ev else "no boot in 90 s",
                         f"boot.firmware_version={boot.get('firmware_version')} reason={boot.get('reason')!r} "
                         f"connected={st.get('connection', {}).get('connected')} last_disconnect={st.get('last_disconnect')}",
                         "OK" if ok and st.get("last_disconnect") else "FAIL",
                         "the simulator reboots into the same version" if sent == FIRMWARE16 else "")
            if (st.get("last_disconnect") or {}).get("close_code") == 0:
                self.bug(f"GET /stations/{sid} .last_disconnect.close_code=0 after the simulator's reset: it closes with a "
                         "Close frame without a status code (ws close() with no code); RFC 6455 §7.1.5 names that 1005 "
                         "(\"no status received\"), and 0 is no close code (services/gateway/ownership.py stores "
                         "int(conn.close_code or 0))")

    def campaign(self, timeout: float) -> None:
        """A firmware campaign over both stations (max_in_flight 2, no target version).

        ADR 016 §5: a station is done when Installed and rebooted into the target version,
        "or Installed with no version to check". The 2.0.1 simulator reports Installed and
        does not reboot; the 1.6 one reboots into the same version string."""
        ids = [self.stations[v] for v in ("1.6", "2.0.1") if v in self.versions]
        body = {"id": "outside-campaign", "stations": ids, "location": "http://127.0.0.1:9/firmware/campaign.bin",
                "max_in_flight": 2, "stop_on_failure_ratio": 1.0}
        r = self.api.post("/firmware-campaigns", body)
        if route_missing(r):
            self.res.add("campaign", "create", "POST /firmware-campaigns", "-", r.short(60), "MISSING")
            return
        self.res.add("campaign", "create", f"POST /firmware-campaigns stations={ids} max_in_flight=2, no version", "-",
                     r.short(150), "OK" if r.status == 201 else "FAIL")
        if r.status != 201:
            return
        max_in_flight = 0
        seen: list[str] = []
        installed_since: dict[str, float] = {}

        def settled() -> Json:
            nonlocal max_in_flight
            c = self.api.get("/firmware-campaigns/outside-campaign").body or {}
            prog = c.get("progress") or {}
            max_in_flight = max(max_in_flight, int(prog.get("in_flight") or 0))
            stations = c.get("stations") or []
            state = ",".join(f"{x.get('station_id')}:{x.get('status')}/{x.get('firmware_status')}" for x in stations)
            if not seen or seen[-1] != state:
                seen.append(state)
            if c.get("status") in ("completed", "halted", "cancelled") and not prog.get("in_flight"):
                return c
            now = time.monotonic()
            for x in stations:  # Installed and still in flight: 90 s for the 1.6 reboot (15-30 s) and the controller
                if x.get("status") == "in_flight" and x.get("firmware_status") == "Installed":
                    installed_since.setdefault(str(x.get("station_id")), now)
                else:
                    installed_since.pop(str(x.get("station_id")), None)
            waiting = [x for x in stations if x.get("status") in ("pending", "in_flight")]
            if waiting and all(now - installed_since.get(str(x.get("station_id")), now) >= 90 for x in waiting) \
                    and all(str(x.get("station_id")) in installed_since for x in waiting):
                return c
            return None
        c = until(settled, timeout, every=1.0) or (self.api.get("/firmware-campaigns/outside-campaign").body or {})
        self.check_ts("campaign", "GET /firmware-campaigns/{id}", c)
        prog = c.get("progress") or {}
        self.res.add("campaign", "progress", "poll GET /firmware-campaigns/outside-campaign", "-",
                     f"status={c.get('status')} progress={prog} max in_flight seen={max_in_flight}",
                     "OK" if max_in_flight <= 2 else "FAIL", f"states: {' -> '.join(seen)}")
        for x in c.get("stations") or []:
            sid = str(x.get("station_id"))
            ok = x.get("status") == "succeeded"
            stuck = x.get("status") == "in_flight" and x.get("firmware_status") == "Installed"
            same_version = x.get("status") == "failed" and x.get("reason") in ("old_version", "other_version")
            self.res.add(sid, "campaign station", "expected per ADR 016 §5: Installed, no version to check -> succeeded",
                         f"firmware_status={x.get('firmware_status')}",
                         f"status={x.get('status')} reason={x.get('reason')} attempts={x.get('attempts')}",
                         "OK" if ok else ("INFO" if same_version else "FAIL"),
                         "rebooted into the same version: the issue says failed, ADR 016 §5 done" if same_version else "")
            if stuck:
                self.bug(f"firmware campaign without a version: {sid} reported Installed, no reboot followed within "
                         "90 s (valid: a 2.0.1 station that needs none sends Installed as its last status) and it stays "
                         "in_flight, holding a max_in_flight slot, until "
                         "CSMS_CAMPAIGN_STATION_TIMEOUT_S (1 h) fails it as \"timeout\"; ADR 016 §5 says a station is done "
                         "when \"Installed with no version to check\" (services/stations/domain/campaigns.py _follow "
                         "requires a boot into a version other than the one before)")
            elif x.get("status") == "failed" and x.get("reason") in ("old_version", "other_version"):
                self.bug(f"firmware campaign without a version: {sid} reported Installed, rebooted into the same "
                         f"version string, and was failed {x.get('reason')!r}; ADR 016 §5 counts \"Installed with no "
                         "version to check\" as done, the issue text (\"a station that reboots into the old version "
                         "counts as failed\") supports the code: the two documents disagree")
        cr = self.api.post("/firmware-campaigns/outside-campaign/cancel", {})
        cb = cr.body or {}
        if c.get("status") in ("running", "halted"):
            self.res.add("campaign", "cancel", "POST /firmware-campaigns/outside-campaign/cancel", "-",
                         f"{cr.status} status={cb.get('status')} progress={cb.get('progress')}",
                         "OK" if cr.status == 200 and cb.get("status") == "cancelled" else "FAIL")
        k = self.api.get("/kpis/availability")
        kb = k.body or {}
        self.check_ts("kpis", "GET /kpis/availability", kb)
        self.res.add("kpis", "availability", "GET /kpis/availability", "-",
                     f"stations={kb.get('stations')} uptime={kb.get('uptime_percent')} failures={kb.get('failures')} "
                     f"mtbf_s={kb.get('mtbf_s')} mttr_s={kb.get('mttr_s')}",
                     "OK" if k.status == 200 and kb.get("stations") == len(ids) else ("MISSING" if route_missing(k) else "FAIL"))

    def logs(self, version: str) -> None:
        sid = self.stations[version]
        body = {"log_type": "DiagnosticsLog"}
        t0 = _now_iso()
        r = self.api.post(f"/stations/{sid}/logs", body)
        if route_missing(r):
            self.res.add(sid, "logs", "POST /logs", "-", r.short(60), "MISSING")
            return
        b = r.body or {}
        rid = b.get("request_id")
        self.res.add(sid, "log request", f"POST /logs {json.dumps(body)}", str(b.get("status")), r.short(170),
                     "OK" if r.status == 202 else "FAIL",
                     "1.6 GetDiagnostics answer has no status; fileName absent = nothing to upload" if version == "1.6" else "")
        if r.status != 202:
            return
        # 1.6 simulator: only ftp:// uploads; an http location gets DiagnosticsStatusNotification UploadFailed.
        # 2.0.1 simulator: pretends (LogStatusNotification Uploading, Uploaded) without sending a byte.
        want = "UploadFailed" if version == "1.6" else "Uploaded"

        def final() -> str | None:
            st = self.station(sid) or {}
            s = (st.get("log") or {}).get("status")
            return s if s == want else None
        got = until(final, 20)
        st = self.station(sid) or {}
        self.check_ts(sid, f"GET /stations/{sid} log", st.get("log"))
        shown_type = (st.get("log") or {}).get("log_type")
        if shown_type != body["log_type"]:
            self.bug(f"GET /stations/{sid} .log.log_type={shown_type!r} after POST /stations/{sid}/logs "
                     f"{json.dumps(body)}, while GET /stations/{sid}/logs lists the same request as "
                     f"{body['log_type']!r} (contract: log_type DiagnosticsLog|SecurityLog; stations/domain/fold.py "
                     "writes \"Diagnostics\" for 1.6 GetDiagnostics)")
        self.res.add(sid, "log status (GET station)", "poll GET /stations/{id} .log", "-",
                     f"log={json.dumps(st.get('log'))}", "OK" if got else "FAIL",
                     "simulator uploads only by FTP" if version == "1.6" else "simulator reports Uploaded without uploading")
        e = self.events(sid, "LogStatus", since=t0)
        items = (e.body or {}).get("items", []) if e.status == 200 else []
        hist = [(i.get("action"), (i.get("data") or {}).get("status"), (i.get("data") or {}).get("request_id")) for i in reversed(items)]
        self.res.add(sid, "log history", "GET /events?type=LogStatus", "-", str(hist),
                     "OK" if items else ("MISSING" if route_missing(e) else "FAIL"))
        lst = self.api.get(f"/stations/{sid}/logs")
        lit = [i for i in (lst.body or {}).get("items", []) if i.get("request_id") == rid] if lst.status == 200 else []
        self.res.add(sid, "log list", "GET /logs", "-", lst.short(170) if not lit else json.dumps(lit[0]),
                     "OK" if lit and lit[0].get("received") is False else ("MISSING" if route_missing(lst) else "FAIL"))
        f = self.api.get(f"/stations/{sid}/logs/{rid}")
        self.res.add(sid, "log download", f"GET /logs/{rid}", "-", f.short(120),
                     "OK" if f.status in (404, 409) and not route_missing(f) else ("MISSING" if route_missing(f) else "FAIL"),
                     "nothing was uploaded: 409 (not yet)" if f.status == 409 else "")

    def history(self, version: str) -> None:
        sid = self.stations[version]
        e = self.api.get(f"/stations/{sid}/events?limit=200")
        if route_missing(e):
            self.res.add(sid, "history", "GET /events", "-", e.short(60), "MISSING")
        else:
            items = (e.body or {}).get("items", []) if e.status == 200 else []
            types: dict[str, int] = {}
            for i in items:
                types[i.get("type")] = types.get(i.get("type"), 0) + 1
            recv = [i.get("received_at") for i in items]
            newest_first = all(a >= b for a, b in zip(recv, recv[1:]) if a and b)
            self.check_ts(sid, "GET /events", e.body)
            self.res.add(sid, "history", "GET /events?limit=200", "-", f"{len(items)} events {types}",
                         "OK" if items and newest_first else "FAIL", "" if newest_first else "not newest first")
        c = self.api.get(f"/stations/{sid}/commands?limit=100")
        if route_missing(c):
            self.res.add(sid, "command list", "GET /commands", "-", c.short(60), "MISSING")
        else:
            items = (c.body or {}).get("items", []) if c.status == 200 else []
            self.check_ts(sid, "GET /stations/{id}/commands", c.body)
            acts = [f"{i.get('ocpp_action') or i.get('command_type')}:{i.get('status')}" for i in items]
            self.res.add(sid, "command list", "GET /commands?limit=100", "-", f"{len(items)}: {acts[:12]}",
                         "OK" if items else "FAIL")
        a = self.api.get(f"/stations/{sid}/availability")
        if route_missing(a):
            self.res.add(sid, "availability", "GET /availability", "-", a.short(60), "MISSING")
        else:
            ab = a.body or {}
            self.check_ts(sid, "GET /availability", ab)
            outs = ab.get("outages") or []
            chain = [f"{o.get('cause')} {o.get('duration_s')}s" for o in outs]
            # outages that end exactly when the next begins: one continuous down time, counted as several failures
            joined = sum(1 for x, y in zip(outs, outs[1:]) if x.get("end") and x.get("end") == y.get("start"))
            self.res.add(sid, "availability", "GET /availability", "-",
                         f"uptime={ab.get('uptime_percent')} failures={ab.get('failures')} mtbf_s={ab.get('mtbf_s')} "
                         f"mttr_s={ab.get('mttr_s')} outages={chain}",
                         "OK" if a.status == 200 else "FAIL",
                         f"{joined} outage(s) end where the next begins (a change of cause while down counts as a new failure)"
                         if joined else "")


def _now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


# -- main -----------------------------------------------------------------------------


def sim_log_findings(work: Path) -> list[str]:
    """What the simulator logged as an error or a schema violation of a CSMS message."""
    out: list[str] = []
    for name in ("sim-error.log", "sim-combined.log"):
        p = work / name
        if not p.exists():
            continue
        for line in p.read_text(errors="replace").splitlines():
            low = line.lower()
            if not (low.startswith("error") or "pdu is invalid" in low or "formatviolation" in low):
                continue
            if any(w in low for w in ("econnrefused", "abnormally closed", "connection retry")):
                continue  # the simulator started before or outlived the CSMS
            out.append(_clip(line, 300))
        if out:
            break
    return out[:40]


@dataclass
class Csms:
    """A `csms run` on free loopback ports (memory bus, SQLite in the work directory)."""

    proc: Proc
    api: Api
    ocpp_port: int
    api_port: int
    metrics_port: int

    @property
    def ocpp_url(self) -> str:
        return f"ws://127.0.0.1:{self.ocpp_port}/ocpp"


def start_csms(csms_root: Path, work: Path, extra_env: dict[str, str] | None = None) -> Csms:
    """Starts `csms run` and waits until its API answers; the caller stops `.proc`."""
    csms = csms_root / ".venv" / "bin" / "csms"
    ocpp_port, api_port, metrics_port = free_port(), free_port(), free_port()
    key = "outside-" + base64.b32encode(os.urandom(10)).decode().lower()
    env = dict(os.environ)
    env.update({
        "CSMS_BUS_URL": "memory://", "CSMS_STORE_URL": f"sqlite:///{work / 'csms.db'}",
        "CSMS_STATE_DIR": str(work / "state"), "CSMS_FILES_DIR": str(work / "files"),
        "CSMS_API_KEY": key, "CSMS_AUTH_PEPPER": "outside-test-pepper", "CSMS_HOST": "127.0.0.1",
        "CSMS_OCPP_PORT": str(ocpp_port), "CSMS_API_PORT": str(api_port), "CSMS_METRICS_PORT": str(metrics_port),
        "CSMS_DATATRANSFER_VENDORS": f"{VENDOR16},com.csms.outside", "CSMS_LOG_LEVEL": "INFO",
        "CSMS_UPLOAD_BASE_URL": f"http://127.0.0.1:{ocpp_port}",
    })
    env.update(extra_env or {})
    run = start("csms", [str(csms), "run"], env, work, work / "csms-run.log")
    api = Api(f"http://127.0.0.1:{api_port}/api/v1", key)
    out = Csms(run, api, ocpp_port, api_port, metrics_port)

    def ready() -> bool | None:
        if run.popen.poll() is not None:
            raise RuntimeError(f"csms run exited {run.popen.returncode}:\n{run.tail(40)}")
        r = api.get("/stations?limit=1")
        return True if r.status == 200 else None
    try:
        if not until(ready, 60):
            raise RuntimeError(f"csms run not ready in 60 s:\n{run.tail(40)}")
    except BaseException:
        run.stop()
        raise
    print(f"csms run ready: ocpp {out.ocpp_url} api http://127.0.0.1:{api_port}", flush=True)
    return out


def write_sim_assets(dist: Path, work: Path, templates: dict[str, dict[str, Any]], ocpp_url: str,
                     written: list[Path], idtags: list[str] | None = None) -> SimUi:
    """The station templates, `idtags.json` (when absent) and `config.json` in dist/assets (the
    simulator reads them only from there); every file written is appended to `written`."""
    for name, template in templates.items():
        path = dist / "assets" / "station-templates" / name
        path.write_text(json.dumps(template, indent=2))
        written.append(path)
    tags = dist / "assets" / "idtags.json"
    if not tags.exists():
        tags.write_text(json.dumps(idtags or ["OUTSIDE0001", "OUTSIDE0002"]))
        written.append(tags)
    config = dist / "assets" / "config.json"
    ui_port, ui_password = free_port(), base64.b32encode(os.urandom(10)).decode()
    config.write_text(json.dumps(sim_config(ocpp_url, work, list(templates), ui_port, ui_password), indent=2))
    written.append(config)
    shutil.rmtree(dist / "assets" / "configurations", ignore_errors=True)
    return SimUi(ui_port, "outside", ui_password)


def start_simulator(node: str, dist: Path, work: Path) -> Proc:
    senv = dict(os.environ)
    senv["NODE_ENV"] = "production"
    return start("simulator", [node, str(dist / "start.js")], senv, work, work / "simulator.out")


def remove_sim_assets(dist: Path, written: list[Path]) -> None:
    for path in written:
        path.unlink(missing_ok=True)
    shutil.rmtree(dist / "assets" / "configurations", ignore_errors=True)


def report(res: Results, work: Path, rc: int, api: Api | None = None, api_log: bool = False,
           json_out: str | None = None, title: str = "csms vs e-mobility-charging-stations-simulator") -> int:
    """Prints the summary table, the CSMS-side findings, `csms run` errors and the simulator's
    own errors; writes `json_out`; the exit code (1 when a row FAILs)."""
    findings = sim_log_findings(work)
    csms_errors = [ln for ln in (work / "csms-run.log").read_text(errors="replace").splitlines()
                   if " ERROR " in ln or "Traceback" in ln] if (work / "csms-run.log").exists() else []
    combined = work / "sim-combined.log"
    if combined.exists():
        text = combined.read_text(errors="replace")
        checked = text.count("received response payload") + text.count("received request payload")
        bad = [ln for ln in findings if "pdu is invalid" in ln.lower() or "formatviolation" in ln.lower()]
        res.add("simulator", "schema check", "ocppStrictCompliance: every CSMS PDU validated against the OCA schemas",
                f"{checked} CSMS requests/responses received", f"{len(bad)} invalid PDU lines in its log",
                "INFO" if bad else "OK", "see the simulator log lines below" if bad else "")
    print(f"\n## Summary: {title}\n")
    print(res.table())
    print("\n## Findings (CSMS side)\n")
    for b in res.bugs or ["none"]:
        print(f"- {b}")
    print(f"\n## csms run log: {len(csms_errors)} ERROR/Traceback lines")
    for ln in csms_errors[:15]:
        print("  " + _clip(ln, 300))
    print(f"\n## simulator log: {len(findings)} error/validation lines (first 20)")
    for ln in findings[:20]:
        print("  " + ln)
    print(f"\nlogs: {work}/csms-run.log, {work}/sim-combined.log, {work}/simulator.out")
    if api_log and api is not None:
        print("\n## REST calls")
        for ln in api.log:
            print(ln)
    if json_out:
        Path(json_out).write_text(json.dumps({"rows": [r.__dict__ for r in res.rows], "bugs": res.bugs,
                                              "simulator_log": findings, "csms_errors": csms_errors[:50]}, indent=2))
    if any(r.verdict == "FAIL" for r in res.rows):
        rc = rc or 1
    return rc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sim-dist", required=True, help="the simulator's built dist/ directory (start.js)")
    p.add_argument("--node", required=True, help="a Node.js >= 22 binary")
    p.add_argument("--csms-root", default=str(ROOT))
    p.add_argument("--versions", default="1.6,2.0.1")
    p.add_argument("--firmware-timeout", type=float, default=240.0)
    p.add_argument("--work", help="working directory (default: a new temporary one)")
    p.add_argument("--json-out")
    p.add_argument("--lenient", action="store_true",
                   help="the simulator's ocppStrictCompliance off: it sends (and accepts) PDUs its schemas refuse")
    p.add_argument("--api-log", action="store_true", help="print every REST call at the end")
    a = p.parse_args()
    versions = [v.strip() for v in a.versions.split(",") if v.strip()]
    dist = Path(a.sim_dist).resolve()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="csms-outside-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work dir {work}", flush=True)

    res = Results()
    procs: list[Proc] = []
    written: list[Path] = []
    api: Api | None = None
    rc = 1
    try:
        csms = start_csms(Path(a.csms_root), work)
        procs.append(csms.proc)
        api = csms.api

        ids = {"1.6": ID16, "2.0.1": ID201}
        for v in versions:
            r = api.post("/stations", {"id": ids[v], "password": PASSWORD})
            res.add(ids[v], "register", "POST /stations", "-", r.short(100), "OK" if r.status == 201 else "FAIL")

        templates = station_templates(dist, strict=not a.lenient)
        chosen = {n: t for n, t in templates.items()
                  if ("16" in n and "1.6" in versions) or ("201" in n and "2.0.1" in versions)}
        ui = write_sim_assets(dist, work, chosen, csms.ocpp_url, written)
        sim = start_simulator(a.node, dist, work)
        procs.append(sim)

        checks = Run(api, res, versions, ui)
        for v in list(versions):
            if not checks.connect(v, 60):
                print(f"--- simulator output ---\n{sim.tail(40)}\n--- csms ---\n{csms.proc.tail(30)}", flush=True)
                versions.remove(v)  # a station that is not registered answers nothing: skip its steps
        for v in versions:
            checks.station_view(v)
        if "2.0.1" in versions:
            # first: after some SetVariables the simulator reports variable names over 50
            # characters, and its own schema check then drops those NotifyReport parts
            checks.reports("2.0.1")
            checks.commands_201()
            checks.inventory_update("2.0.1")
        if "1.6" in versions:
            checks.commands_16()
            checks.reports("1.6")
            checks.inventory_update("1.6")
        for v in versions:
            checks.triggers(v)
            checks.datatransfer(v)
            checks.station_initiated(v)
            checks.logs(v)
        for v in reversed(versions):  # 2.0.1 is quick; 1.6 takes minutes and reboots
            checks.firmware(v, a.firmware_timeout)
        checks.campaign(a.firmware_timeout * 1.5)
        for v in versions:
            checks.history(v)
        rc = 0
    except Exception as exc:  # noqa: BLE001 - report what broke, then the table so far
        print(f"ABORTED: {type(exc).__name__}: {exc}", flush=True)
    finally:
        for proc in reversed(procs):
            proc.stop()
        remove_sim_assets(dist, written)
    return report(res, work, rc, api, a.api_log, a.json_out)


if __name__ == "__main__":
    sys.exit(main())

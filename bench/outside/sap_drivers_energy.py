"""Drivers-and-energy features (issue 10, ADR 018) tested against an independent charge
point: SAP's e-mobility-charging-stations-simulator, as far as it implements them.

Our own tests speak both sides of these exchanges; here the station side is someone
else's reading of OCPP. The simulator (checked in its source, not assumed) handles, for
OCPP 1.6: ReserveNow / CancelReservation (and puts `reservationId` in StartTransaction
when the idTag holds the connector's reservation), SetChargingProfile /
ClearChargingProfile / GetCompositeSchedule (only when `SmartCharging` is in
SupportedFeatureProfiles; otherwise SetChargingProfile answers `NotSupported`),
SendLocalList / GetLocalListVersion, and DataTransfer (`UnknownVendorId` for any vendor
but its own). For OCPP 2.0.1 it has SendLocalList / GetLocalListVersion but no handler for
ReserveNow, SetChargingProfile, GetChargingProfiles, GetCompositeSchedule or CostUpdated:
it answers those with a CALLERROR NotImplemented, which makes it the "station that
rejects profiles" of ADR 018 §5 without any configuration.

Three stations on one site: SAPSIM16 (1.6, takes profiles, the costmsg flag on),
SAPSIM16N (1.6 without SmartCharging: SetChargingProfile `NotSupported`) and SAPSIM201
(2.0.1: NotImplemented). The scenarios, each a row of the table: local lists both
versions (Full then Differential, confirmed by GetLocalListVersion); reservations
(Accepted, the station's refusals, Used by a remote start with the reserved idTag,
Expired, Cancelled, a 2.0.1 CALLERROR); operator profiles (recorded, filtered, cleared,
the composite schedule the station computes); smart charging with a site limit over the
three (the rejecting stations marked once, never asked again, the site within its limit);
cost messages (1.6 costmsg DataTransfer RunningCost / FinalCost, 2.0.1 CostUpdated).

The processes, templates and the summary are those of sap_station_ops.py (imported).
Not part of the product; stdlib only.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sap_station_ops import (  # noqa: E402 - the sibling module, stdlib only
    ID16,
    ID201,
    PASSWORD,
    ROOT,
    Api,
    Json,
    Proc,
    Reply,
    Results,
    Run,
    _clip,
    _now_iso,
    bad_timestamps,
    remove_sim_assets,
    report,
    start_csms,
    start_simulator,
    station_templates,
    until,
    write_sim_assets,
)

ID16N = "SAPSIM16N"
SITE = "outside-site"
SITE_LIMIT_A = 70  # the two rejecting stations are reserved 32 A each before their first reading
TOKENS = ["OUTSIDE0001", "OUTSIDE0002", "OUTSIDE0003", "OUTSIDE0004"]
COSTMSG = "org.openchargealliance.costmsg"

# Faster loops than production so a run takes minutes, not hours.
RUN_ENV = {
    "CSMS_RESERVATION_TICK_S": "2",
    "CSMS_LOCAL_LIST_TICK_S": "1",
    "CSMS_COST_UPDATE_INTERVAL_S": "5",
}


def templates(dist: Path, strict: bool) -> dict[str, dict[str, Any]]:
    """sap_station_ops' two templates, turned AC with Current.Import in the meter values (the
    allocator reserves a rejecting station's session at its draw), a local list enabled, and
    a third 1.6 station without the SmartCharging profile."""
    base = station_templates(dist, strict)
    t16 = base["csms-outside-16.station-template.json"]
    t201 = base["csms-outside-201.station-template.json"]
    t16.update({"currentOutType": "AC", "voltageOut": 230, "numberOfPhases": 3, "power": 66240,
                "powerSharedByConnectors": False})
    for cid, conn in t16["Connectors"].items():
        if cid != "0":
            conn["maximumPower"] = 22080
            conn["MeterValues"] = [{"unit": "Wh", "context": "Sample.Periodic"},
                                   {"unit": "A", "measurand": "Current.Import", "context": "Sample.Periodic"}]
    _set_key(t16, "MeterValuesSampledData", "Energy.Active.Import.Register,Current.Import")
    _set_key(t16, "MeterValueSampleInterval", "10")
    _set_key(t16, "LocalAuthListEnabled", "true")
    t16n = copy.deepcopy(t16)
    t16n.update({"baseName": ID16N, "supervisionUser": ID16N})
    for cid, conn in t16n["Connectors"].items():
        if cid != "0":
            conn["bootStatus"] = "Available"
    _set_key(t16n, "SupportedFeatureProfiles", "Core,FirmwareManagement,LocalAuthListManagement,RemoteTrigger,Reservation")
    _set_key(t201, "LocalAuthListCtrlr.Enabled", "true")
    _set_key(t201, "SampledDataCtrlr.TxUpdatedInterval", "10")
    return {"csms-outside-16.station-template.json": t16, "csms-outside-16n.station-template.json": t16n,
            "csms-outside-201.station-template.json": t201}


def _set_key(template: dict[str, Any], key: str, value: str) -> None:
    keys: list[dict[str, Any]] = template["Configuration"]["configurationKey"]
    for k in keys:
        if k["key"] == key:
            k["value"] = value
            return
    keys.append({"key": key, "readonly": False, "value": value})


def _in(seconds: float) -> str:
    t = time.time() + seconds
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class Drivers:
    def __init__(self, api: Api, res: Results, run: Run, csms_log: Path) -> None:
        self.api = api
        self.res = res
        self.run = run
        self.csms_log = csms_log
        self.sessions: dict[str, Json] = {}  # station -> {"transaction_id", "session_id", "connector"}

    # helpers
    def ok(self, cond: bool) -> str:
        return "OK" if cond else "FAIL"

    def ts(self, where: str, body: Json) -> None:
        bad = bad_timestamps(body)
        if bad:
            self.run.bug(f"{where}: instants not UTC Z milliseconds: {', '.join(bad[:4])}")

    def connector_status(self, sid: str, connector: int) -> str | None:
        st = self.run.station(sid) or {}
        for e in st.get("evses") or []:
            for c in e.get("connectors", []) if isinstance(e, dict) else []:
                if isinstance(c, dict) and (c.get("id") == connector or e.get("id") == connector):
                    return str(c.get("status"))
        return None

    def commands_of(self, sid: str, types: tuple[str, ...]) -> list[Json]:
        r = self.api.get(f"/stations/{sid}/commands?limit=200")
        items = (r.body or {}).get("items", []) if r.status == 200 else []
        out = [i for i in items if i.get("command_type") in types or i.get("ocpp_action") in types]
        return list(reversed(out))  # oldest first

    def reservation(self, rid: Json) -> Json:
        r = self.api.get(f"/reservations/{rid}")
        return r.body if r.status == 200 else None

    def reservation_in(self, rid: Json, statuses: tuple[str, ...], timeout: float) -> Json:
        return until(lambda: (lambda b: b if b and b.get("status") in statuses else None)(self.reservation(rid)), timeout)

    def metric(self, name: str, label: str) -> float | None:
        req = urllib.request.Request(self.api.base.rsplit("/api/", 1)[0] + "/metrics")  # `csms run`: on the API port
        req.add_header("Authorization", f"Bearer {self.api.key}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read().decode()
        except OSError:
            return None
        for ln in text.splitlines():
            if ln.startswith(name + "{") and label in ln:
                return float(ln.rsplit(" ", 1)[1])
        return None

    def allocation_lines(self) -> list[str]:
        try:
            lines = self.csms_log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [ln for ln in lines if f"site={SITE} allocation after" in ln]

    # -- setup -------------------------------------------------------------------------
    def setup(self) -> None:
        r = self.api.post("/tariffs", {"id": "outside", "currency": "EUR", "price_per_kwh": "0.30",
                                       "session_fee": "0.50", "tax_rate": "0.19", "default": True})
        self.res.add("-", "tariff", "POST /tariffs (default)", "-", r.short(80), self.ok(r.status == 201))
        r = self.api.post("/sites", {"id": SITE, "grid_limit_a": SITE_LIMIT_A, "phases": 3})
        self.res.add("-", "site", f"POST /sites grid_limit_a={SITE_LIMIT_A}", "-", r.short(80), self.ok(r.status == 201))
        for t in TOKENS:
            r = self.api.post("/tokens", {"id_token": t, "status": "Accepted", "group_id": "outside"})
            if r.status != 201:
                self.res.add("-", "token", f"POST /tokens {t}", "-", r.short(80), "FAIL")

    def register(self, sid: str) -> None:
        r = self.api.post("/stations", {"id": sid, "password": PASSWORD, "site_id": SITE, "max_current_a": 32,
                                        "phases": 3, "cost_messages": sid == ID16})
        self.res.add(sid, "register", "POST /stations site_id, max_current_a 32" + (", cost_messages" if sid == ID16 else ""),
                     "-", r.short(100), self.ok(r.status == 201))

    # -- local authorization lists -------------------------------------------------------
    def local_list(self, sid: str) -> None:
        entries = [{"id_token": "OUTSIDE0001"}, {"id_token": "OUTSIDE0002"},
                   {"id_token": "BLOCKED0001", "status": "Blocked"}]
        for n, body in enumerate([{"entries": entries},
                                  {"entries": entries[:2] + [{"id_token": "OUTSIDE0003", "expires_at": _in(86400)}]}]):
            r = self.api.call("PUT", f"/stations/{sid}/local-list", body)
            want = (r.body or {}).get("desired_version")

            def synced() -> Json:
                g = self.api.get(f"/stations/{sid}/local-list")
                b = g.body or {}
                return b if b.get("status") in ("in_sync", "failed") and b.get("desired_version") == want else None
            view = until(synced, 45, 1.0) or (self.api.get(f"/stations/{sid}/local-list").body or {})
            self.ts(f"GET /stations/{sid}/local-list", view)
            sent = [(field_or(c, "update_type"), c.get("status")) for c in self.commands_of(sid, ("SendLocalList",))]
            ok = r.status in (200, 201) and view.get("status") == "in_sync" and view.get("confirmed_version") == want
            self.res.add(sid, f"local list {'Full' if n == 0 else 'Differential'}",
                         f"PUT /local-list {len(body['entries'])} entries",
                         f"SendLocalList {sent[-2:] if n else sent[-1:]}",
                         f"status={view.get('status')} desired={want} confirmed={view.get('confirmed_version')} "
                         f"max_per_message={view.get('max_per_message')}({view.get('max_per_message_source')}) "
                         f"error={view.get('last_error')}", self.ok(ok))
        r = self.run.command(sid, {"type": "GetLocalListVersion"})
        resp = (r.body or {}).get("response")
        version = field_of_any(resp, "listVersion") if sid != ID201 else field_of_any(resp, "versionNumber")
        self.res.add(sid, "GetLocalListVersion", '{"type":"GetLocalListVersion"}', f"version={version}",
                     r.short(60), self.ok(r.status == 200 and version == want))

    # -- reservations ---------------------------------------------------------------------
    def reserve(self, sid: str, where: dict[str, int], token: str, seconds: float) -> Reply:
        return self.api.post("/reservations", {"station_id": sid, **where, "id_token": token, "expires_at": _in(seconds)})

    def reservations(self) -> None:
        # Accepted, and the station shows the connector Reserved
        r = self.reserve(ID16, {"connector_id": 1}, "OUTSIDE0001", 600)
        b = r.body or {}
        rid = b.get("id")
        self.ts("POST /reservations", b)
        shown = until(lambda: "Reserved" if self.connector_status(ID16, 1) == "Reserved" else None, 10)
        self.res.add(ID16, "reserve connector 1", "POST /reservations connector 1, +10 min", f"ReserveNow {b.get('status')}",
                     f"{r.status} id={rid} status={b.get('status')}; connector 1 {self.connector_status(ID16, 1)}",
                     self.ok(r.status == 201 and b.get("status") == "Accepted" and shown is not None))
        # the station's refusals: connector 2 Preparing, connector 3 Faulted
        for conn, want in ((2, "Occupied"), (3, "Faulted")):
            x = self.reserve(ID16, {"connector_id": conn}, "OUTSIDE0002", 600)
            xb = x.body or {}
            self.res.add(ID16, f"reserve connector {conn}", f"connector {conn} ({'Preparing' if conn == 2 else 'Faulted'})",
                         f"ReserveNow {xb.get('status')}", f"{x.status} status={xb.get('status')} note={xb.get('note')}",
                         self.ok(x.status == 201 and xb.get("status") == want), f"expected {want}")
        # Used: a remote start with the reserved idTag on that connector
        if rid is not None:
            s = self.run.command(ID16, {"type": "RemoteStart", "id_token": "OUTSIDE0001", "connector_id": 1})
            used = self.reservation_in(rid, ("Used",), 30) or self.reservation(rid) or {}

            def with_reservation() -> Json:  # the sessions processor writes it on its own time
                g = self.api.get(f"/sessions/{used.get('session_id')}")
                return g.body if g.status == 200 and (g.body or {}).get("reservation_id") is not None else None
            sb = (until(with_reservation, 15) if used.get("session_id") else None) or {}
            ok = used.get("status") == "Used" and sb.get("reservation_id") == rid
            self.res.add(ID16, "reservation Used", f"RemoteStart OUTSIDE0001 connector 1 ({(s.body or {}).get('status')})",
                         "StartTransaction with reservationId",
                         f"status={used.get('status')} tx={used.get('transaction_id')} "
                         f"session.reservation_id={sb.get('reservation_id')} history={[h.get('status') for h in used.get('history', [])]}",
                         self.ok(ok))
            if used.get("session_id"):
                self.sessions[ID16] = {"transaction_id": used.get("transaction_id"), "session_id": used.get("session_id")}
        # Expired (the CSMS decides: 1.6 has no ReservationStatusUpdate)
        x = self.reserve(ID16N, {"connector_id": 1}, "OUTSIDE0002", 12)
        xb = x.body or {}
        exp = self.reservation_in(xb.get("id"), ("Expired",), 40) if xb.get("id") else None
        free = until(lambda: "Available" if self.connector_status(ID16N, 1) == "Available" else None, 30)
        self.res.add(ID16N, "reservation Expired", "connector 1, +12 s", f"ReserveNow {xb.get('status')}",
                     f"status={(exp or self.reservation(xb.get('id')) or {}).get('status')}; "
                     f"connector 1 back to {self.connector_status(ID16N, 1)}",
                     self.ok(xb.get("status") == "Accepted" and exp is not None),
                     "" if free else "the station kept the connector Reserved after expiry")
        # Cancelled, then a second DELETE on the final reservation
        x = self.reserve(ID16N, {"connector_id": 2}, "OUTSIDE0003", 600)
        xid = (x.body or {}).get("id")
        d = self.api.call("DELETE", f"/reservations/{xid}")
        after = self.reservation(xid) or {}
        self.res.add(ID16N, "reservation Cancelled", f"DELETE /reservations/{xid}", f"CancelReservation {(d.body or {}).get('status')}",
                     f"{d.status} status={after.get('status')}", self.ok(d.status == 200 and after.get("status") == "Cancelled"))
        d2 = self.api.call("DELETE", f"/reservations/{xid}")
        self.res.add(ID16N, "cancel again", f"DELETE /reservations/{xid}", "- (nothing sent)", d2.short(100),
                     self.ok(d2.status == 409 and (d2.body or {}).get("status") == "Cancelled"))
        # 2.0.1: the simulator has no ReserveNow handler
        x = self.reserve(ID201, {"evse_id": 1}, "OUTSIDE0004", 600)
        xb = x.body or {}
        self.res.add(ID201, "reserve (no handler)", "POST /reservations evse 1", "CALLERROR NotImplemented",
                     f"{x.status} status={xb.get('status')} note={_clip(str(xb.get('note')), 80)}",
                     self.ok(x.status == 201 and xb.get("status") == "Rejected" and "NotImplemented" in str(xb.get("note"))))
        # the driver's view
        t = self.api.get("/tokens/OUTSIDE0001/reservations")
        items = (t.body or {}).get("items", []) if t.status == 200 else []
        self.ts("GET /tokens/{id}/reservations", t.body)
        self.res.add("-", "token reservations", "GET /tokens/OUTSIDE0001/reservations", "-",
                     f"{t.status} {[(i.get('id'), i.get('status')) for i in items]}",
                     self.ok(t.status == 200 and any(i.get("id") == rid for i in items)))
        lst = self.api.get(f"/reservations?station_id={ID16N}")
        st = [i.get("status") for i in (lst.body or {}).get("items", [])] if lst.status == 200 else []
        self.res.add("-", "reservation list", f"GET /reservations?station_id={ID16N}", "-", f"{lst.status} {st}",
                     self.ok(st == ["Cancelled", "Expired"]), "newest first")

    # -- sessions for smart charging / costs ----------------------------------------------
    def start_sessions(self) -> None:
        for sid, body in ((ID16N, {"connector_id": 3, "id_token": "OUTSIDE0003"}),
                          (ID201, {"evse_id": 1, "id_token": "OUTSIDE0004"})):
            r = self.run.command(sid, {"type": "RemoteStart", **body})

            def active() -> Json:
                q = self.api.get("/sessions?" + urllib.parse.urlencode({"station_id": sid, "status": "active"}))
                items = (q.body or {}).get("items", []) if q.status == 200 else []
                return items[0] if items else None
            s = until(active, 30)
            self.res.add(sid, "session start", f"RemoteStart {body}", str((r.body or {}).get("status")),
                         f"session={None if s is None else s.get('id')} tx={None if s is None else s.get('transaction_id')}",
                         self.ok(s is not None))
            if s is not None:
                self.sessions[sid] = {"transaction_id": s.get("transaction_id"), "session_id": s.get("id")}

    # -- smart charging ------------------------------------------------------------------
    def smart_charging(self) -> None:
        def measured() -> str | None:  # until both rejecting stations' sessions have a reading
            lines = self.allocation_lines()
            return lines[-1] if lines and lines[-1].count("(uncontrollable, measured") == 2 else None
        until(measured, 60, 2.0)
        for sid, marks in ((ID16N, "NotSupported"), (ID201, "NotImplemented")):
            cmds = self.commands_of(sid, ("SetChargingLimit", "SetChargingProfile"))
            seen = [f"{purpose_of(c)}:{(c.get('response') or {}).get('status') or c.get('status')}"
                    f"{'/' + str(c.get('error_code')) if c.get('error_code') else ''}" for c in cmds]
            tx = [n for n, c in enumerate(cmds) if purpose_of(c) == "TxProfile"]
            failsafe = [n for n, c in enumerate(cmds) if purpose_of(c) == "TxDefaultProfile"]
            refused_tx = [n for n in tx if cmds[n].get("status") != "Accepted"]
            refused_fs = [n for n in failsafe if cmds[n].get("status") != "Accepted"]
            if refused_fs:
                # ADR 018 §5: the refused fail-safe marks the station before its first
                # session, so the session is never sent a TxProfile.
                self.res.add(sid, "fail-safe refused: marked, no TxProfile", "the fail-safe TxDefaultProfile after its boot",
                             f"SetChargingProfile (TxDefaultProfile) → {marks}", f"{len(cmds)} profile command(s) {seen}",
                             self.ok(not tx), "no TxProfile sent" if not tx else f"{len(tx)} TxProfile(s) after the refusal")
            else:
                self.res.add(sid, "TxProfile refused: not asked again", f"a session under the site limit {SITE_LIMIT_A} A",
                             f"SetChargingProfile → {marks}", f"{len(cmds)} profile command(s) {seen}",
                             self.ok(len(refused_tx) == 1 and tx[-1] == refused_tx[0]),
                             "one TxProfile, refused, none after" if len(tx) == 1 else f"{len(tx)} TxProfiles")
        alloc = self.api.get(f"/sites/{SITE}/allocation")
        view = alloc.body if alloc.status == 200 and isinstance(alloc.body, dict) else {}
        unmarked = sorted({ID16N, ID201} - {m.get("station_id") for m in view.get("stations_without_profiles", [])})
        uncontrolled = sorted(x.get("station_id") for x in view.get("sessions", []) if not x.get("controllable"))
        self.res.add("-", "site allocation view", f"GET /sites/{SITE}/allocation", "-",
                     f"{alloc.status} total {view.get('total_a')} A of {view.get('limit_a')} A, over_limit "
                     f"{view.get('over_limit')}, uncontrollable {uncontrolled}",
                     self.ok(alloc.status == 200 and not unmarked and not view.get("over_limit")
                             and uncontrolled == sorted([ID16N, ID201])),
                     "both rejecting stations listed without profiles" if not unmarked else f"not listed: {unmarked}")
        # the station that takes profiles: its TxProfile in the CSMS record is the allocator's last decision
        rec = self.api.get(f"/stations/{ID16}/charging-profiles?purpose=TxProfile")
        items = (rec.body or {}).get("items", []) if rec.status == 200 else []
        self.ts(f"GET /stations/{ID16}/charging-profiles", rec.body)
        mine = [i for i in items if i.get("source") == "smart_charging"]
        limit = _first_limit(mine[0]) if mine else None
        lines = self.allocation_lines()
        sent = [float(m) for ln in lines for m in re.findall(rf"{ID16}/1=([0-9.]+) A", ln.split("|| profiles:", 1)[-1])]
        self.res.add(ID16, "TxProfile of smart charging", "GET /charging-profiles?purpose=TxProfile",
                     f"{len(self.commands_of(ID16, ('SetChargingLimit',)))} SetChargingLimit",
                     f"record: {[(i.get('id'), i.get('transaction_id'), _first_limit(i)) for i in mine]}; limits sent {sent}",
                     self.ok(limit is not None and bool(sent) and abs(sent[-1] - limit) < 0.05),
                     "the record holds the last limit sent")
        c = self.api.get(f"/stations/{ID16}/composite-schedule?duration=300&evse_id=1")
        self.composite_row(ID16, "composite schedule evse 1 (TxProfile)", "?duration=300&evse_id=1", c)
        allocated = self.metric("csms_smart_charging_allocated_amps", f'site="{SITE}"')
        last = lines[-1].split("allocation after", 1)[1] if lines else "no allocation line"
        # reserved at the measured draw + 1 A (at most max_current_a), at max_current_a before a reading
        reserves = re.findall(r"reserve ([0-9.]+) A for (\w+)/\d+ \(uncontrollable(?:, measured ([0-9.]+) A)?", last)
        at_draw = all(abs(float(x) - (min(float(m) + 1, 32) if m else 32)) <= 0.11 for x, _, m in reserves)
        self.res.add("-", "site allocation", f"site {SITE} {SITE_LIMIT_A} A: {ID16} + 2 rejecting stations",
                     f"csms_smart_charging_allocated_amps={allocated}", _clip(last, 150),
                     self.ok(allocated is not None and allocated <= SITE_LIMIT_A and "OVER LIMIT" not in last
                             and len(reserves) == 2 and at_draw),
                     "rejecting stations reserved at their draw + 1 A (32 A before a reading)")

    def composite_row(self, sid: str, step: str, request: str, c: Reply) -> None:
        """The CSMS's composite schedule against the station's own answer (the command record)."""
        cb = c.body or {}
        periods = (cb.get("schedule") or {}).get("periods")
        self.ts(f"GET /stations/{sid}/composite-schedule", cb)
        def recorded() -> Json:  # the stations processor records the answer on its own time
            r = self.api.get(f"/commands/{cb.get('command_id')}")
            return (r.body or {}).get("response") if r.status == 200 and (r.body or {}).get("response") else None
        resp = (until(recorded, 10) if cb.get("command_id") else None) or {}
        sched = field_of_any(resp, "chargingSchedule") or {}
        raw_periods = field_of_any(sched, "chargingSchedulePeriod")
        relayed = periods is not None and raw_periods is not None and len(periods) == len(raw_periods)
        self.res.add(sid, step, request, f"{cb.get('status')}, {None if raw_periods is None else len(raw_periods)} period(s)",
                     f"{c.status} start={(cb.get('schedule') or {}).get('schedule_start')} periods={(periods or [])[:3]}",
                     self.ok(c.status == 200 and cb.get("status") == "Accepted" and relayed),
                     "the simulator composes no period (its own limitation)" if relayed and not periods else "")

    # -- operator profiles ------------------------------------------------------------------
    def operator_profiles(self) -> None:
        profile = {"chargingProfileId": 901, "stackLevel": 1, "chargingProfilePurpose": "ChargePointMaxProfile",
                   "chargingProfileKind": "Absolute",
                   "chargingSchedule": {"startSchedule": _now_iso(), "chargingRateUnit": "A",
                                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 30.0}]}}
        r = self.run.command(ID16, {"type": "SetChargingProfile", "connector_id": 0, "charging_profile": profile})
        st = (r.body or {}).get("status")

        def recorded() -> Json:
            g = self.api.get(f"/stations/{ID16}/charging-profiles")
            items = (g.body or {}).get("items", []) if g.status == 200 else []
            hit = [i for i in items if i.get("id") == 901]
            return hit[0] if hit else None
        rec = until(recorded, 10)
        self.res.add(ID16, "SetChargingProfile (operator)", "ChargePointMaxProfile id 901 30 A, connector 0", str(st),
                     f"record: {None if rec is None else (rec.get('purpose'), rec.get('source'), rec.get('evse_id'), _first_limit(rec))}",
                     self.ok(st == "Accepted" and rec is not None and rec.get("source") == "operator"))
        g = self.api.get(f"/stations/{ID16}/charging-profiles?purpose=ChargingStationMaxProfile")
        ids = [i.get("id") for i in (g.body or {}).get("items", [])] if g.status == 200 else []
        self.res.add(ID16, "filter by 2.0.1 purpose name", "?purpose=ChargingStationMaxProfile", "-", f"{g.status} ids={ids}",
                     self.ok(ids == [901]), "the 1.6 and 2.0.1 names of the station maximum match each other")
        g = self.api.get(f"/stations/{ID16}/charging-profiles?source=station")
        gb = g.body or {}
        self.res.add(ID16, "profiles source=station (1.6)", "?source=station", "- (1.6 cannot report)",
                     f"{g.status} source={gb.get('source')} note={_clip(str(gb.get('note')), 60)} n={len(gb.get('items') or [])}",
                     self.ok(g.status == 200 and gb.get("source") == "csms" and bool(gb.get("note"))))
        c = self.api.get(f"/stations/{ID16}/composite-schedule?duration=600&evse_id=0")
        self.composite_row(ID16, "composite schedule evse 0", "?duration=600&evse_id=0", c)
        r = self.run.command(ID16, {"type": "ClearChargingProfile", "id": 901})
        gone = until(lambda: True if recorded() is None else None, 10)
        self.res.add(ID16, "ClearChargingProfile (operator)", "id 901", str((r.body or {}).get("status")),
                     "removed from the record" if gone else "still recorded",
                     self.ok((r.body or {}).get("status") == "Accepted" and bool(gone)))
        # 2.0.1: no handler for GetChargingProfiles / GetCompositeSchedule
        g = self.api.get(f"/stations/{ID201}/charging-profiles?source=station")
        self.res.add(ID201, "profiles source=station (no handler)", "?source=station", "CALLERROR NotImplemented", g.short(140),
                     self.ok(g.status == 409 and "NotImplemented" in g.text))
        c = self.api.get(f"/stations/{ID201}/composite-schedule?duration=600&evse_id=1")
        self.res.add(ID201, "composite schedule (no handler)", "?duration=600&evse_id=1", "CALLERROR NotImplemented",
                     c.short(140), self.ok(c.status in (200, 409) and (c.body or {}).get("error_code") == "NotImplemented"))

    # -- cost messages --------------------------------------------------------------------
    def costs_running(self) -> None:
        for sid, kind in ((ID16, "RunningCost"), (ID201, "CostUpdated")):
            sess = self.sessions.get(sid) or {}

            def sent() -> Json:
                r = self.api.get(f"/sessions/{sess.get('session_id')}")
                cu = (r.body or {}).get("cost_update") if r.status == 200 else None
                return cu if cu and cu.get("kind") == kind else None
            cu = until(sent, 40, 1.0) if sess else None
            cmds = self.commands_of(sid, ("DataTransfer", "CostUpdated"))
            answers = [f"{c.get('status')}:{(c.get('response') or {}).get('status') or c.get('error_code') or ''}" for c in cmds][-3:]
            self.res.add(sid, f"running cost ({kind})", "session with a tariff, CSMS_COST_UPDATE_INTERVAL_S=5",
                         f"{answers}", f"cost_update={cu}",
                         self.ok(cu is not None and (cu.get("count") or 0) >= 1),
                         "the simulator knows no costmsg vendor: UnknownVendorId" if sid == ID16 else "no CostUpdated handler")

    def stop_sessions(self) -> None:
        for sid, sess in self.sessions.items():
            tx = sess.get("transaction_id")
            r = self.run.command(sid, {"type": "RemoteStop", "transaction_id": int(tx) if sid != ID201 and str(tx).isdigit() else tx})

            def done() -> Json:
                g = self.api.get(f"/sessions/{sess.get('session_id')}")
                b = g.body or {}
                return b if b.get("status") == "completed" else None
            s = until(done, 30) or {}
            self.res.add(sid, "session stop", f"RemoteStop {tx}", str((r.body or {}).get("status")),
                         f"status={s.get('status')} cost={s.get('cost')}", self.ok(bool(s)))
        if ID16 in self.sessions:
            sess = self.sessions[ID16]

            def final() -> Json:
                r = self.api.get(f"/sessions/{sess.get('session_id')}")
                cu = (r.body or {}).get("cost_update") if r.status == 200 else None
                return cu if cu and cu.get("kind") == "FinalCost" else None
            cu = until(final, 30, 1.0)
            self.res.add(ID16, "final cost (FinalCost)", "after StopTransaction and the CDR", "DataTransfer costmsg FinalCost",
                         f"cost_update={cu}", self.ok(cu is not None))
            rec = self.api.get(f"/stations/{ID16}/charging-profiles?purpose=TxProfile")
            left = [(i.get("id"), i.get("transaction_id")) for i in (rec.body or {}).get("items", [])
                    if str(i.get("transaction_id")) == str(sess.get("transaction_id"))]
            self.res.add(ID16, "TxProfile after the transaction", "GET /charging-profiles?purpose=TxProfile", "-",
                         f"profiles of tx {sess.get('transaction_id')}: {left}", self.ok(not left))


def _first_limit(profile: Json) -> float | None:
    try:
        return float(profile["schedules"][0]["periods"][0]["limit"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def purpose_of(command: Json) -> Json:
    """The chargingProfilePurpose of a SetChargingProfile as sent (1.6 csChargingProfiles, 2.x chargingProfile)."""
    payload = (command or {}).get("payload") or {}
    profile = payload.get("csChargingProfiles") or payload.get("chargingProfile") or {}
    return profile.get("chargingProfilePurpose")


def field_of_any(d: Json, camel: str) -> Json:
    if not isinstance(d, dict):
        return None
    return d.get(camel, d.get(re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()))


def field_or(command: Json, name: str) -> Json:
    payload = (command or {}).get("payload") or {}
    return payload.get(name, payload.get(re.sub(r"_(\w)", lambda m: m.group(1).upper(), name)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sim-dist", required=True, help="the simulator's built dist/ directory (start.js)")
    p.add_argument("--node", required=True, help="a Node.js >= 22 binary")
    p.add_argument("--csms-root", default=str(ROOT))
    p.add_argument("--work", help="working directory (default: a new temporary one)")
    p.add_argument("--json-out")
    p.add_argument("--lenient", action="store_true", help="the simulator's ocppStrictCompliance off")
    p.add_argument("--api-log", action="store_true", help="print every REST call at the end")
    a = p.parse_args()
    dist = Path(a.sim_dist).resolve()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="csms-outside-drivers-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work dir {work}", flush=True)

    res = Results()
    procs: list[Proc] = []
    written: list[Path] = []
    api: Api | None = None
    rc = 1
    try:
        csms = start_csms(Path(a.csms_root), work, RUN_ENV)
        procs.append(csms.proc)
        api = csms.api
        ui = write_sim_assets(dist, work, templates(dist, strict=not a.lenient), csms.ocpp_url, written, TOKENS)
        run = Run(api, res, ["1.6", "2.0.1"], ui)
        run.stations = {"1.6": ID16, "1.6-N": ID16N, "2.0.1": ID201}
        d = Drivers(api, res, run, work / "csms-run.log")
        d.setup()
        for sid in (ID16, ID16N, ID201):
            d.register(sid)
        procs.append(start_simulator(a.node, dist, work))
        if not all(run.connect(v, 90) for v in ("1.6", "1.6-N", "2.0.1")):
            raise RuntimeError("a station did not connect")
        for sid in (ID16, ID201):
            d.local_list(sid)
        d.reservations()
        d.start_sessions()
        d.smart_charging()
        d.operator_profiles()
        d.costs_running()
        d.stop_sessions()
        rc = 0
    except Exception as exc:  # noqa: BLE001 - report what broke, then the table so far
        print(f"ABORTED: {type(exc).__name__}: {exc}", flush=True)
    finally:
        for proc in reversed(procs):
            proc.stop()
        remove_sim_assets(dist, written)
    return report(res, work, rc, api, a.api_log, a.json_out,
                  title="drivers and energy: csms vs e-mobility-charging-stations-simulator")


if __name__ == "__main__":
    sys.exit(main())

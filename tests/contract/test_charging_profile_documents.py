"""The charging profiles fold (ADR 018 §4) on every store adapter (SQLite always, Cassandra
with CSMS_INFRA=1): the documents it writes read back the same, a batch handed twice
changes nothing, and a station's reports list by parent."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from services.common import events as ev
from services.common import kinds
from services.common.store.port import Store
from services.stations.charging_profile_documents import profiles_from_doc, report_from_doc, report_profiles
from services.stations.drivers.charging_profiles import ChargingProfilesFold

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def _env(station: str, body: ev.Body, at: float = 0.0) -> ev.Envelope:
    return ev.Envelope(str(uuid.uuid4()), station, T0 + timedelta(seconds=at), body, ocpp_version="2.0.1")


def _result(command_type: str, request: dict[str, Any], status: str = "Accepted") -> ev.CommandResult:
    return ev.CommandResult(str(uuid.uuid4()), command_type, status, json.dumps({"status": status}),
                            ocpp_action=command_type, request_json=json.dumps(request))


def _profile(pid: int, evse: int, purpose: str = "TxDefaultProfile", tx: str | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"id": pid, "stackLevel": pid, "chargingProfilePurpose": purpose,
                         "chargingProfileKind": "Absolute", "validTo": "2099-01-01T00:00:00.000Z",
                         "chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "startSchedule": "2026-12-01T10:00:00Z",
                                               "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.5}]}]}
    if tx is not None:
        p["transactionId"] = tx
    return {"evseId": evse, "chargingProfile": p}


async def test_charging_profiles_fold_on_the_store(store: Store) -> None:
    station = "CP" + secrets.token_hex(5)
    fold = ChargingProfilesFold(store, lambda: T0)
    batch = [
        _env(station, _result("SetChargingProfile", _profile(1, 1))),
        _env(station, _result("SetChargingLimit", _profile(2, 2, "TxProfile", "T-1")), 1),
        _env(station, _result("SetChargingProfile", _profile(3, 0, "ChargingStationMaxProfile")), 2),
        _env(station, _result("ClearChargingProfile", {"chargingProfileId": 3}), 3),
        _env(station, ev.TransactionEnded("T-9", evse_id=2), 4),
        _env(station, _result("GetChargingProfiles", {"requestId": 5, "chargingProfile": {}}), 5),
        _env(station, ev.ChargingProfilesReport(5, "CSO", 1, True, (ev.ChargingProfile(1, 1, "TxDefaultProfile", "Absolute"),)), 6),
        _env(station, ev.ChargingProfilesReport(5, "CSO", 2, False, (ev.ChargingProfile(2, 2, "TxProfile", "Absolute"),)), 7),
    ]
    for _ in range(2):  # handed twice
        await fold.apply(batch)
        doc = await store.get_doc(kinds.CHARGING_PROFILES, station)
        assert doc is not None and doc["version"] == 1
        record = {p.id: p for p in profiles_from_doc(doc).profiles}
        assert sorted(record) == [1, 2]
        assert record[1].source == "operator" and record[2].source == "smart_charging"
        assert record[2].valid_to == datetime(2099, 1, 1, tzinfo=timezone.utc)
        assert record[2].schedules[0].periods[0].limit == 16.5
        report = report_from_doc(await store.get_doc(kinds.CHARGING_PROFILES_REPORT, f"{station}/5") or {})
        assert report.complete and [p.id for p in report_profiles(report)] == [1, 2] and report.version == 1
    listed = await store.list_docs(kinds.CHARGING_PROFILES_REPORT, parent=station)
    assert [d["request_id"] for d in listed] == [5]
    await fold.apply([_env(station, ev.TransactionEnded("T-1", evse_id=2), 8)])
    doc = await store.get_doc(kinds.CHARGING_PROFILES, station)
    assert doc is not None and doc["version"] == 2 and [p["id"] for p in doc["profiles"]] == [1]

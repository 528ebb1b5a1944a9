"""The charging profile rules (services/stations/domain/charging_profiles.py): a request read
into a profile in 1.6 and 2.0.1, OCPP's replacement rules, clearing by id / criteria / all,
TxProfiles ending with their transaction, expiry, the bound per station; and the documents
reading back what they were written from."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from services.common import events as ev
from services.stations.charging_profile_documents import (
    ProfilesReport,
    ReportPart,
    StationProfiles,
    profiles_from_doc,
    profiles_to_doc,
    report_from_doc,
    report_to_doc,
)
from services.stations.domain.charging_profiles import (
    InstalledProfile,
    clear,
    clear_request,
    end_transaction,
    install,
    profile_of_report,
    profile_of_set_request,
    source_of_issuer,
    unexpired,
)

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def req16(pid: int, *, connector: int = 1, purpose: str = "TxProfile", stack: int = 0, tx: int | None = None,
          valid_to: str | None = None) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {"startSchedule": "2026-12-01T10:00:00.000Z", "chargingRateUnit": "A", "duration": 3600,
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0, "numberPhases": 3},
                                                        {"startPeriod": 1800, "limit": 8}]},
    }
    if tx is not None:
        profile["transactionId"] = tx
    if valid_to is not None:
        profile["validTo"] = valid_to
    return {"connectorId": connector, "csChargingProfiles": profile}


def req201(pid: int, *, evse: int = 1, purpose: str = "TxDefaultProfile", stack: int = 0,
           tx: str | None = None) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "id": pid, "stackLevel": stack, "chargingProfilePurpose": purpose, "chargingProfileKind": "Recurring",
        "recurrencyKind": "Daily", "validFrom": "2026-12-01T00:00:00Z",
        "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "minChargingRate": 1.5,
                              "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000, "phaseToUse": 2}]}],
    }
    if tx is not None:
        profile["transactionId"] = tx
    return {"evseId": evse, "chargingProfile": profile}


def read(request: dict[str, Any], *, source: str = "operator", at: datetime = T0, cid: str = "c") -> InstalledProfile:
    return profile_of_set_request(request, source=source, installed_at=at, command_id=cid)


def ids(profiles: tuple[InstalledProfile, ...]) -> list[int]:
    return sorted(p.id for p in profiles)


def test_a_16_request_reads_into_a_profile() -> None:
    p = read(req16(5, connector=2, tx=77, valid_to="2026-12-02T00:00:00Z"), cid="cmd-1")
    assert (p.evse_id, p.id, p.purpose, p.stack_level, p.kind) == (2, 5, "TxProfile", 0, "Absolute")
    assert p.transaction_id == "77" and p.valid_to == datetime(2026, 12, 2, tzinfo=UTC) and p.valid_from is None
    (s,) = p.schedules
    assert s.charging_rate_unit == "A" and s.duration == 3600 and s.start_schedule == T0 and s.id is None
    assert [(x.start_period, x.limit, x.number_phases) for x in s.periods] == [(0, 16.0, 3), (1800, 8.0, None)]
    assert p.source == "operator" and p.command_id == "cmd-1" and p.installed_at == T0


def test_a_201_request_reads_into_a_profile() -> None:
    p = read(req201(9, evse=0, tx=None), source="smart_charging")
    assert (p.evse_id, p.id, p.purpose, p.kind, p.recurrency_kind) == (0, 9, "TxDefaultProfile", "Recurring", "Daily")
    assert p.valid_from == datetime(2026, 12, 1, tzinfo=UTC) and p.transaction_id is None
    (s,) = p.schedules
    assert (s.id, s.charging_rate_unit, s.min_charging_rate) == (1, "W", 1.5)
    assert s.periods[0].limit == 11000.0 and s.periods[0].phase_to_use == 2


@pytest.mark.parametrize("bad", [
    {},
    {"connectorId": 1, "csChargingProfiles": "x"},
    {"connectorId": 1, "csChargingProfiles": {"chargingProfileId": "one"}},
    {"evseId": 1, "chargingProfile": {"id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
                                      "chargingProfileKind": "Absolute", "chargingSchedule": [{"chargingRateUnit": "A"}]}},
    {"evseId": -1, "chargingProfile": req201(1)["chargingProfile"]},
    {"evseId": 1, "chargingProfile": {**req201(1)["chargingProfile"], "validTo": "not a time"}},
])
def test_a_request_that_is_not_a_profile_is_a_value_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        read(bad)


def test_the_same_id_replaces_whatever_its_evse() -> None:
    first = install((), read(req16(5, connector=1)))
    again = install(first, read(req16(5, connector=2, stack=3, purpose="TxDefaultProfile"), cid="c2"))
    assert len(again) == 1 and again[0].evse_id == 2 and again[0].command_id == "c2"


def test_the_same_purpose_and_stack_level_on_the_same_evse_replaces() -> None:
    a = install((), read(req201(1, evse=1, stack=2)))
    b = install(a, read(req201(2, evse=1, stack=2)))
    assert ids(b) == [2]
    # another EVSE, another stack level or another purpose: kept side by side
    c = install(b, read(req201(3, evse=2, stack=2)))
    d = install(c, read(req201(4, evse=1, stack=3)))
    e = install(d, read(req201(5, evse=1, stack=2, purpose="TxProfile", tx="t")))
    assert ids(e) == [2, 3, 4, 5]
    # the two versions' names of the station maximum are one purpose
    f = install((), read(req16(6, connector=0, purpose="ChargePointMaxProfile")))
    g = install(f, read(req201(7, evse=0, purpose="ChargingStationMaxProfile")))
    assert ids(g) == [7]


def test_at_most_the_limit_the_oldest_installed_go_first() -> None:
    profiles: tuple[InstalledProfile, ...] = ()
    for n in range(12):
        profiles = install(profiles, read(req201(n, evse=n + 1), at=T0 + timedelta(seconds=n)), limit=10)
    assert ids(profiles) == list(range(2, 12))


def test_clear_by_id_by_criteria_and_all() -> None:
    profiles: tuple[InstalledProfile, ...] = ()
    for pid, evse, purpose, stack in [(1, 1, "TxDefaultProfile", 0), (2, 1, "TxProfile", 1), (3, 2, "TxDefaultProfile", 0),
                                      (4, 0, "ChargingStationMaxProfile", 0)]:
        profiles = install(profiles, read(req201(pid, evse=evse, purpose=purpose, stack=stack, tx="t" if purpose == "TxProfile" else None)))
    # 2.0.1 by id: only that one, whatever criteria come with it
    assert ids(clear(profiles, clear_request({"chargingProfileId": 2, "chargingProfileCriteria": {"evseId": 2}}))) == [1, 3, 4]
    # 2.0.1 criteria: all must match
    assert ids(clear(profiles, clear_request({"chargingProfileCriteria": {"evseId": 1, "stackLevel": 0}}))) == [2, 3, 4]
    assert ids(clear(profiles, clear_request({"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile"}}))) == [2, 4]
    # 1.6 spelling: connectorId 0 is the station-wide ones only; its max profile name matches 2.0.1's
    assert ids(clear(profiles, clear_request({"connectorId": 0}))) == [1, 2, 3]
    assert ids(clear(profiles, clear_request({"chargingProfilePurpose": "ChargePointMaxProfile"}))) == [1, 2, 3]
    assert ids(clear(profiles, clear_request({"id": 3}))) == [1, 2, 4]
    # no criteria at all: every profile
    assert clear(profiles, clear_request({})) == ()
    with pytest.raises(ValueError):
        clear_request({"chargingProfileId": "x"})


def test_txprofiles_end_with_their_transaction() -> None:
    profiles = install((), read(req16(1, connector=1, tx=42)))
    profiles = install(profiles, read(req16(2, connector=2, tx=43)))
    profiles = install(profiles, read(req16(3, connector=3)))  # a TxProfile without a transaction id
    profiles = install(profiles, read(req16(4, connector=1, purpose="TxDefaultProfile", tx=42)))
    assert ids(end_transaction(profiles, "42")) == [2, 3, 4]
    assert ids(end_transaction(profiles, "99", evse_id=3)) == [1, 2, 4]
    assert ids(end_transaction(profiles, "99")) == [1, 2, 3, 4]


def test_expired_profiles_are_dropped() -> None:
    profiles = install((), read(req16(1, valid_to="2026-12-01T10:00:00Z")))
    profiles = install(profiles, read(req16(2, connector=2, valid_to="2026-12-01T10:00:01Z")))
    profiles = install(profiles, read(req16(3, connector=3)))
    assert ids(unexpired(profiles, T0)) == [2, 3]


def test_issuers_name_the_source() -> None:
    assert source_of_issuer("api") == "operator"
    assert source_of_issuer("smart_charging") == "smart_charging"
    assert source_of_issuer("campaigns") == "campaigns"


def test_documents_read_back_what_they_were_written_from() -> None:
    profiles = install((), read(req16(1, tx=5, valid_to="2027-01-01T00:00:00Z")))
    profiles = install(profiles, read(req201(2, evse=3)))
    state = StationProfiles("CP-1", profiles, {"c9": "campaigns"}, version=3, updated_at=T0)
    assert profiles_from_doc(profiles_to_doc(state)) == state
    reported = profile_of_report(ev.ChargingProfile(
        4, 1, "TxProfile", "Absolute", transaction_id="tx", schedules=(ev.ChargingSchedule(
            "A", id=1, start_schedule=T0, periods=(ev.SchedulePeriod(0, 6.0, 1),)),)), evse_id=1, source="CSO")
    report = ProfilesReport("CP-1", 77, (ReportPart("e1", 1, "CSO", True, (reported,)),), command_id="c",
                            station_status="Accepted", updated_at=T0, version=2)
    assert report_from_doc(report_to_doc(report)) == report
    assert reported.schedules[0].periods[0].number_phases == 1 and reported.installed_at is None

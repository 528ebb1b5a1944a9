"""The charging profiles fold of the `stations-drivers` stage (ADR 018 §4): every profile
the CSMS installed on a station, and the profiles a station reports.

Events (told apart by their `ce_type` header; the others are never decoded):
- CommandResult of `SetChargingProfile` (an operator's, through the REST API) or
  `SetChargingLimit` (smart charging's), status Accepted: the profile of the OCPP request
  that was sent (`request_json`) is recorded in the station's CHARGING_PROFILES document
  (services/stations/domain/charging_profiles.py has the replacement rules);
- CommandResult of `ClearChargingProfile`, Accepted or Unknown (the station had nothing
  that matched): what the request matched is removed from the record;
- CommandIssued of those two command types, when its issuer implies another source than
  the command type does (`SetChargingProfile` is the operator's, `SetChargingLimit` smart
  charging's): the issuer is remembered until the result arrives, so the profile's
  `source` names it;
- TransactionEnded: the TxProfiles of that transaction are dropped;
- ChargingProfilesReport (2.0.1 ReportChargingProfiles) and the CommandResult of
  GetChargingProfiles: the station's list, assembled by request id in a
  CHARGING_PROFILES_REPORT document (parts kept by the event that carried them, so a
  redelivered part is not counted twice; complete at the part with tbc false, or at once
  when the station answered NoProfiles).

Profiles past their `valid_to` are dropped whenever a station's record is written. Every
rule is idempotent (a redelivered batch gives the same record). An event the fold cannot
read (a request that is not a profile) is logged, counted
(`csms_charging_profiles_records_total{outcome="failed"}`) and skipped; store failures
propagate (the bus retries the batch).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import Counter

from services.common import events as ev
from services.common import kinds
from services.common.runtime import Runtime
from services.common.store.port import DocumentStore, DocWrite
from services.common.timeutil import Clock
from services.stations.charging_profile_documents import (
    MAX_ISSUERS,
    MAX_REPORT_PROFILES,
    ProfilesReport,
    ReportPart,
    StationProfiles,
    profiles_from_doc,
    profiles_to_doc,
    report_doc_id,
    report_from_doc,
    report_to_doc,
)
from services.stations.domain.charging_profiles import (
    clear,
    clear_request,
    default_source,
    end_transaction,
    install,
    profile_of_report,
    profile_of_set_request,
    source_of_issuer,
    unexpired,
)
from services.stations.drivers.fold import Fold, ce_type

__all__ = ["CE_TYPES", "CLEAR_COMMAND", "GET_COMMAND", "ChargingProfilesFold", "build"]

log = logging.getLogger("csms.stations.drivers.charging_profiles")

CLEAR_COMMAND = "ClearChargingProfile"
GET_COMMAND = "GetChargingProfiles"
_CLEARED = frozenset({"Accepted", "Unknown"})  # Unknown: nothing on the station matched
# A GetChargingProfiles answer after which parts may still come.
_OPEN = frozenset({"Accepted", "Timeout", "Unknown"})
CE_TYPES = frozenset(ce_type(t) for t in (ev.CommandIssued, ev.CommandResult, ev.TransactionEnded,
                                          ev.ChargingProfilesReport))

RECORDS = Counter(
    "csms_charging_profiles_records_total",
    "Events of the charging profiles fold, by outcome (applied; ignored: not about profiles; "
    "failed: could not be read, logged and skipped; dropped: report profiles past the limit)",
    ["outcome"],
)


def _loads(text: str) -> dict[str, Any]:
    if not text:
        return {}
    value = orjson.loads(text)
    if not isinstance(value, dict):
        raise ValueError("the request is not a JSON object")
    return value


def _request_id(body: ev.CommandResult) -> int | None:
    try:
        value = _loads(body.request_json).get("requestId")
    except ValueError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_get(body: ev.CommandResult) -> bool:
    return body.command_type == GET_COMMAND or body.ocpp_action == GET_COMMAND


def _about_profiles(body: ev.Body) -> bool:
    """Whether the event can change a station's CHARGING_PROFILES record (decided before
    any read: the other events cost nothing)."""
    if isinstance(body, ev.CommandIssued):
        default = default_source(body.command_type)
        return default is not None and bool(body.issuer) and source_of_issuer(body.issuer) != default
    if isinstance(body, ev.CommandResult):
        if default_source(body.command_type) is not None:
            return body.status == "Accepted" and bool(body.request_json)
        return body.command_type == CLEAR_COMMAND and body.status in _CLEARED and bool(body.request_json)
    return isinstance(body, ev.TransactionEnded)


def _fold_profiles(state: StationProfiles, env: ev.Envelope) -> StationProfiles:
    """One event applied to a station's record (raises ValueError for one it cannot read)."""
    body = env.body
    if isinstance(body, ev.CommandIssued):
        issuers = dict(state.issuers)
        issuers[body.command_id] = source_of_issuer(body.issuer)
        while len(issuers) > MAX_ISSUERS:
            issuers.pop(next(iter(issuers)))
        return replace(state, issuers=issuers)
    if isinstance(body, ev.CommandResult):
        request = _loads(body.request_json)
        if body.command_type == CLEAR_COMMAND:
            return replace(state, profiles=clear(state.profiles, clear_request(request)))
        issuers = dict(state.issuers)
        source = issuers.pop(body.command_id, None) or default_source(body.command_type) or ""
        new = profile_of_set_request(request, source=source, installed_at=env.received_at, command_id=body.command_id)
        return replace(state, profiles=install(state.profiles, new), issuers=issuers)
    if isinstance(body, ev.TransactionEnded):
        evse = body.evse_id or body.connector_id
        return replace(state, profiles=end_transaction(state.profiles, body.transaction_id, evse))
    return state


def _later(report: ProfilesReport, at: datetime) -> datetime:
    return at if report.updated_at is None or at > report.updated_at else report.updated_at


def _fold_report(report: ProfilesReport, env: ev.Envelope) -> ProfilesReport:
    body = env.body
    at = env.received_at
    if isinstance(body, ev.CommandResult):
        if report.command_id == body.command_id and report.station_status == body.status:
            return report  # redelivered
        complete = report.complete or body.status not in _OPEN
        return replace(report, command_id=body.command_id, station_status=body.status, complete=complete,
                       completed_at=report.completed_at or (at if complete else None), updated_at=_later(report, at))
    if isinstance(body, ev.ChargingProfilesReport):
        if any(part.event_id == env.event_id for part in report.parts):
            return report  # redelivered
        room = max(0, MAX_REPORT_PROFILES - sum(len(p.profiles) for p in report.parts))
        profiles = tuple(profile_of_report(p, evse_id=body.evse_id, source=body.source) for p in body.profiles)
        dropped = max(0, len(profiles) - room)
        if dropped:
            RECORDS.labels("dropped").inc(dropped)
            log.warning("station=%s charging profiles report %d: %d profiles past %d not kept", env.station_id,
                        body.request_id, dropped, MAX_REPORT_PROFILES)
        part = ReportPart(env.event_id, body.evse_id, body.source, body.tbc, profiles[:room])
        complete = report.complete or not body.tbc
        return replace(report, parts=(*report.parts, part), complete=complete, dropped=report.dropped + dropped,
                       completed_at=report.completed_at or (at if complete else None), updated_at=_later(report, at))
    return report


class ChargingProfilesFold:
    """The fold on a document store and a clock (the clock only drops expired profiles)."""

    def __init__(self, docs: DocumentStore, clock: Clock) -> None:
        self._docs = docs
        self._clock = clock

    async def apply(self, envs: Sequence[ev.Envelope]) -> None:
        stations: dict[str, list[ev.Envelope]] = {}
        reports: dict[tuple[str, int], list[ev.Envelope]] = {}
        ignored = 0
        for env in envs:
            body = env.body
            if isinstance(body, ev.ChargingProfilesReport):
                reports.setdefault((env.station_id, body.request_id), []).append(env)
            elif isinstance(body, ev.CommandResult) and _is_get(body):
                rid = _request_id(body)
                if rid is None:
                    ignored += 1
                    continue
                reports.setdefault((env.station_id, rid), []).append(env)
            elif _about_profiles(body):
                stations.setdefault(env.station_id, []).append(env)
            else:
                ignored += 1
        if ignored:
            RECORDS.labels("ignored").inc(ignored)
        if stations:
            await self._profiles(stations)
        if reports:
            await self._reports(reports)

    async def _profiles(self, by_station: dict[str, list[ev.Envelope]]) -> None:
        docs = await self._docs.get_docs(kinds.CHARGING_PROFILES, list(by_station))
        now = self._clock()
        writes: list[DocWrite] = []
        for station_id, envs in by_station.items():
            doc = docs.get(station_id)
            try:
                before = profiles_from_doc(doc) if doc is not None else StationProfiles(station_id)
            except Exception:
                log.exception("station=%s charging profiles document unreadable; starting afresh", station_id)
                before = StationProfiles(station_id, version=int((doc or {}).get("version") or 0))
            state = before
            for env in envs:
                try:
                    state = _fold_profiles(state, env)
                except (ValueError, TypeError, KeyError) as exc:
                    RECORDS.labels("failed").inc()
                    log.error("station=%s %s %s (%s) cannot be applied to its charging profiles, skipped: %s",
                              station_id, env.type_name, env.event_id, getattr(env.body, "command_type", ""), exc)
                    continue
                RECORDS.labels("applied").inc()
            state = replace(state, profiles=unexpired(state.profiles, now))
            if state.profiles == before.profiles and dict(state.issuers) == dict(before.issuers):
                continue
            version = before.version + 1
            state = replace(state, version=version, updated_at=max(e.received_at for e in envs))
            writes.append(DocWrite(station_id, profiles_to_doc(state), parent=station_id, version=version))
        if writes:
            await self._docs.put_docs(kinds.CHARGING_PROFILES, writes)

    async def _reports(self, by_request: dict[tuple[str, int], list[ev.Envelope]]) -> None:
        docs = await self._docs.get_docs(kinds.CHARGING_PROFILES_REPORT,
                                         [report_doc_id(s, rid) for s, rid in by_request])
        writes: list[DocWrite] = []
        for (station_id, rid), envs in by_request.items():
            doc_id = report_doc_id(station_id, rid)
            doc = docs.get(doc_id)
            try:
                before = report_from_doc(doc) if doc is not None else ProfilesReport(station_id, rid)
            except Exception:
                log.exception("charging profiles report document %s unreadable; starting afresh", doc_id)
                before = ProfilesReport(station_id, rid, version=int((doc or {}).get("version") or 0))
            report = before
            for env in envs:
                report = _fold_report(report, env)
                RECORDS.labels("applied").inc()
            if report == before:
                continue
            version = before.version + 1
            report = replace(report, version=version)
            writes.append(DocWrite(doc_id, report_to_doc(report), parent=station_id, version=version))
        if writes:
            await self._docs.put_docs(kinds.CHARGING_PROFILES_REPORT, writes)


def build(rt: Runtime) -> Fold:
    fold = ChargingProfilesFold(rt.store, rt.clock)
    return Fold("charging_profiles", CE_TYPES, fold.apply)

"""Stage 2 of smart charging: apply a site's events to its state, send the limits.

Consumes `repartition.BY_SITE` (key = site id) in group `csms-smart-charging`, so one
consumer owns each site and applies its events in order: load the "site_state"
document, translate the envelope into a domain event, `apply` it (pure), save the
new state, send the resulting charging limits (`SetChargingLimit`, version-neutral:
the gateway builds the station's OCPP profile).

`SiteStage` holds the ports it uses, wired once (services/smart_charging/wiring.py): the
site states (`documents.SiteStates`), the API's site documents (`documents.Sites`), the
station lookups, the `LimitSender` (the command router) and the clock; and its own
per-process memory: when each site was last re-read.

Batches (ADR 015, `SiteStage.handle_batch`): a poll's records are grouped by site (each
site's order kept); the batch's states are read with one `get_docs`, each site's events
are applied in order in memory, and a site is written once per batch, only if its state
changed (a reading that moves no allocation writes nothing): `put_docs` for the sites
without commands, a fenced `put_doc` for those with an outbox, then the commands, then
the outboxes cleared. The commands of a site's events in one batch are merged like those
of one record (each session's last limit, lowering before raising). A state read back
unchanged is reused from memory instead of being rebuilt from its document
(`SiteStates`). Readings are decoded lean: ids, times and the `Current.Import` samples
only. A site with a site change in the batch is handled record by record, as before.

Site changes reach this stage on the same topic: `SiteUpdated` records of
csms.sites.v1 (ce_type `csms.sites.v1.SiteUpdated`, forwarded by the regrouping stage)
and, during an upgrade, the older `site:<id>` Notification envelopes. Both become a
`_SiteNotice`. A SiteUpdated carries the site's version: the state remembers the last
applied one (`site_version`) and a redelivered or replayed older change is ignored.

Gauges: `csms_smart_charging_site_limit_amps{site}` and `..._allocated_amps{site}` are
exported only by a site's current owner: `forget_unowned` (a periodic job of the
processor, services/smart_charging/wiring.py) removes them for the sites whose by-site
partition moved to another member in a rebalance, so the over-allocation alert never
compares a former owner's stale values.

A `SessionAbandoned` (the sessions processor closed a session its station never
ended) releases the session's current at once, exactly like a stop; a transaction
start whose token was refused is never managed (see repartition).

ADR 018 §5 (issue 10): `ChargingLimitSet` / `ChargingLimitCleared` (2.0.1
NotifyChargingLimit / ClearedChargingLimit) set and clear an outside limit on a station
or one EVSE: the limit in force now is read off the schedule (the last period started at
or before now; W -> A with the site's phases and CSMS_EV_VOLTAGE_V). An answer Rejected
or a CALLERROR (other than our own InvalidCommand) to one of our limits marks the
station as not taking profiles (`StationRejectsProfiles`, and the `charging_capability`
document, services/smart_charging/capability.py) until its next accepted boot
(`StationRebooted`, the document set back), or until a session starts on it more than
CSMS_SMART_CHARGING_REPROBE_H after the mark: then it is asked again (the same lifting of
the mark), so one refusal for a passing reason does not leave a station uncontrolled
until it happens to reboot. An `EvChargingNeeds` the gateway answered
Accepted becomes `ChargingNeeds` (AC/DC currents, energy, departure).

Delivery is at-least-once. The domain makes a replayed event a no-op; the state
write is versioned (a zombie owner after a rebalance cannot overwrite a newer
state: its write fails and the record is redelivered against the fresh state);
and the commands decided by an event are saved with the state (an outbox) and
sent afterwards, then the outbox is cleared. A crash in between leaves the outbox
in the document and the next delivery for the site sends it again (a repeated
limit with the same profile id, limit and start changes nothing at the station).
The document's fields are described in services/smart_charging/documents.py.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from services.common import codec, sites_codec, topics
from services.common import events as ev
from services.common.bus.port import Record
from services.common.errors import ConflictError
from services.common.store.port import Station
from services.common.telemetry import tracer
from services.common.timeutil import Clock, parse_ocpp, to_ocpp
from services.smart_charging import commands as cmds
from services.smart_charging.capability import Capabilities
from services.smart_charging.documents import SiteDoc, Sites, SiteStates, valid_phases
from services.smart_charging.domain import (
    DEFAULT_MIN_A,
    ActiveSession,
    ChargingNeeds,
    Event,
    ExternalLimitCleared,
    ExternalLimitSet,
    LimitChanged,
    MeterReading,
    ProfileCommand,
    ProfileRejected,
    SessionStarted,
    SessionStopped,
    SiteState,
    StationRebooted,
    StationRejectsProfiles,
    apply,
    session_key,
)
from services.smart_charging.repartition import (
    ACCEPTED_TOKEN_STATUSES,
    CURRENT_MEASURAND,
    SITE_HEADER,
    current_samples,
    site_of_notification,
)

__all__ = [
    "ALLOCATIONS",
    "ALLOCATED_AMPS",
    "CONSUMER_GROUP",
    "SITE_LIMIT_AMPS",
    "SITE_RECHECK_S",
    "SiteStage",
    "StationLookups",
]

log = logging.getLogger("csms.smart_charging")

CONSUMER_GROUP = topics.group("csms-smart-charging")
DEFAULT_MAX_A = Decimal(32)
SITE_RECHECK_S = 30.0  # re-read the site document this often (a SiteUpdated may be lost)
ISSUED_TTL = timedelta(minutes=15)
ISSUED_MAX = 500
REJECTED = frozenset({"Rejected", "NotSupported"})
# A Rejected with this code is our own fault (the gateway could not build the profile for
# this transaction): only that session is given up on, the station is not marked.
OUR_FAULT = "InvalidCommand"
DEFAULT_VOLTAGE_V = Decimal(230)
_NO_LIMIT_A = Decimal(100_000)

ALLOCATIONS = Counter("csms_smart_charging_allocations_total", "Site allocations computed (a site's limits re-decided)")
SITE_LIMIT_AMPS = Gauge(
    "csms_smart_charging_site_limit_amps", "Effective site limit in A per phase (grid limit, lowered by the outside cap)", ["site"]
)
ALLOCATED_AMPS = Gauge("csms_smart_charging_allocated_amps", "Current allocated to a site's sessions, A per phase", ["site"])
EVENTS_HANDLED = Counter(
    "csms_smart_charging_events_total",
    "Site events handled by smart charging, by outcome (allocated, updated, unchanged, failsafe, no_site, ...)",
    ["outcome"],
)
PROFILE_RESULTS = Counter(
    "csms_smart_charging_profile_results_total", "Stations' answers to smart-charging TxProfiles, by status", ["status"]
)


class StationLookups(Protocol):
    """What this stage reads of stations (the store's `StationStore`)."""

    async def get_station(self, station_id: str) -> Station | None: ...

    async def list_stations(self, *, site_id: str | None = None, limit: int = 1000) -> list[Station]: ...


# ------------------------------------------------------------------ the site document


@dataclass(frozen=True)
class _SiteNotice:
    """A site changed: from a csms.sites.v1 SiteUpdated, or a legacy notification."""

    site: dict[str, Any] | None  # the site document; None: read it from the store
    deleted: bool = False
    version: int = 0  # 0: unknown (legacy notification), always applied


def _amps(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        amps = Decimal(str(value))
    except InvalidOperation:
        return None
    return amps if amps.is_finite() and amps >= 0 else None


def _limit_event(site: dict[str, Any]) -> LimitChanged | None:
    grid = _amps(site.get("grid_limit_a"))
    if grid is None:
        return None
    external = _amps(site.get("external_limit_a"))
    if external is None:
        return LimitChanged(limit_a=grid, clear_external_cap=True)
    return LimitChanged(limit_a=grid, external_cap_a=external)


# ------------------------------------------------------------- envelope -> domain event


def _find(state: SiteState, station_id: str, evse_id: int, transaction_id: str) -> ActiveSession | None:
    if evse_id > 0:
        session = state.sessions.get(session_key(station_id, evse_id))
        if session is not None and (not transaction_id or str(session.transaction_id) == transaction_id):
            return session
    if transaction_id:
        for session in state.sessions.values():
            if session.station_id == station_id and str(session.transaction_id) == transaction_id:
                return session
    return None


def _reading(sd: SiteDoc, env: ev.Envelope, body: ev.MeterValues | ev.TransactionUpdated) -> MeterReading | None:
    samples = current_samples(body.samples)
    if not samples:
        return None
    session = _find(sd.state, env.station_id, body.evse_id or body.connector_id, body.transaction_id)
    if session is None:
        return None
    latest = max(s.timestamp for s in samples)
    amps = max(Decimal(str(max(s.value, 0.0))) for s in samples if s.timestamp == latest)
    # The sample time keeps offline-queued readings from undoing a newer decision; a
    # station clock running ahead of ours must not make a fresh reading look settled.
    measured_at = min(latest, env.received_at)
    return MeterReading(station_id=env.station_id, evse_id=session.evse_id, current_a=amps, measured_at=measured_at)


def _forget_limit(sd: SiteDoc, station_id: str, evse_id: int, transaction_id: str, limit_a: str) -> bool:
    """The station did not get this limit: forget it, so the next allocation re-sends."""
    key = session_key(station_id, evse_id)
    session = sd.state.sessions.get(key)
    if session is None or str(session.transaction_id) != transaction_id or session.limit_a is None:
        return False
    if limit_a and session.limit_a != Decimal(limit_a):
        return False  # a newer limit was decided since
    sessions = dict(sd.state.sessions)
    sessions[key] = replace(session, limit_a=None, limit_set_at=None)
    sd.state = replace(sd.state, sessions=sessions)
    return True



def _in_force(schedule: ev.ChargingSchedule, received_at: datetime, now: datetime) -> float | None:
    """The schedule's limit at `now`: its last period started at or before now (a schedule
    without a start runs from when it was received); None when none is (yet, or any more)."""
    base = schedule.start_schedule or received_at
    elapsed = (now - base).total_seconds()
    if elapsed < 0 or (schedule.duration and elapsed > schedule.duration):
        return None
    started = [p for p in schedule.periods if p.start_period <= elapsed]
    if not started:
        return None
    return max(started, key=lambda p: p.start_period).limit


def _limit_amps(env: ev.Envelope, body: ev.ChargingLimitSet, phases: int, voltage_v: Decimal, now: datetime) -> Decimal | None:
    """The lowest limit in force now over the message's schedules, in A per phase (W
    -> A = W / (V x phases)); None when no schedule gives one (logged)."""
    found: list[Decimal] = []
    for schedule in body.schedules:
        value = _in_force(schedule, env.received_at, now)
        if value is None or not math.isfinite(value) or value < 0:
            continue
        unit = schedule.charging_rate_unit.upper()
        if unit == "W":
            found.append(Decimal(str(value)) / (voltage_v * phases))
        elif unit == "A":
            found.append(Decimal(str(value)))
        else:
            log.warning("station=%s NotifyChargingLimit: unknown unit %r ignored", env.station_id, schedule.charging_rate_unit)
    if not found:
        return None
    # a limit beyond any grid connection limits nothing (and must not overflow the quantize)
    return min(min(found), _NO_LIMIT_A).quantize(Decimal("0.1"), rounding=ROUND_DOWN)


def _needs_event(env: ev.Envelope, body: ev.EvChargingNeeds, voltage_v: Decimal) -> ChargingNeeds | None:
    def amps(value: int) -> Decimal | None:
        return Decimal(value) if value > 0 else None

    ev_min = ev_max = None
    energy = 0
    if body.ac is not None:
        ev_min, ev_max, energy = amps(body.ac.ev_min_current), amps(body.ac.ev_max_current), body.ac.energy_amount
    elif body.dc is not None:
        ev_max, energy = amps(body.dc.ev_max_current), body.dc.energy_amount
    if body.evse_id <= 0:
        log.warning("station=%s EV charging needs without an EVSE: ignored", env.station_id)
        return None
    return ChargingNeeds(
        station_id=env.station_id, evse_id=body.evse_id, voltage_v=voltage_v, ev_min_a=ev_min, ev_max_a=ev_max,
        energy_wh=energy if energy > 0 else None, departure_at=body.departure_time,
    )


# ------------------------------------------------------------------------- handling


@dataclass
class _Step:
    """What handling one record decided."""

    sd: SiteDoc
    now: datetime
    commands: list[ProfileCommand] = field(default_factory=list)
    dirty: bool = False
    failsafes: list[cmds.PlannedCommand] = field(default_factory=list)

    marks: list[tuple[str, str]] = field(default_factory=list)  # (station, reason): write its capability

    def apply(self, event: Event) -> None:
        before = self.sd.state
        try:
            self.sd.state, produced = apply(before, event, self.now)
        except ValueError as exc:  # permanent (bad station data): redelivering cannot help
            log.error("site=%s %s not applied: %s", before.site_id, type(event).__name__, exc)
            return
        self.commands.extend(produced)
        self.dirty = self.dirty or self.sd.state is not before


def _on_command_result(env: ev.Envelope, body: ev.CommandResult, step: _Step) -> None:
    sd = step.sd
    issued = sd.issued.get(body.command_id)
    if issued is None:
        if body.status != "Accepted":
            log.info(
                "station=%s %s %s answered %s (not a TxProfile of ours)",
                env.station_id, body.command_type, body.command_id, body.status,
            )
        return
    PROFILE_RESULTS.labels(body.status or "Unknown").inc()
    if issued.get("kind") == "failsafe":
        _on_failsafe_result(env, body, step)
        return
    if body.status == "Accepted":
        return
    del sd.issued[body.command_id]
    step.dirty = True
    evse_id, tx = int(issued["evse_id"]), str(issued["transaction_id"])
    if body.status in REJECTED and body.error_code == OUR_FAULT:
        log.warning(
            "station=%s TxProfile %s could not be built (%s): session %s is uncontrollable from now on",
            env.station_id, body.command_id, body.error_description, tx,
        )
        step.apply(ProfileRejected(env.station_id, evse_id, tx))
    elif body.status in REJECTED:
        _mark_rejecting(env, body, step, "TxProfile", _refusal(body))
    elif _forget_limit(sd, env.station_id, evse_id, tx, str(issued.get("limit_a", ""))):
        log.info("station=%s TxProfile %s not applied (%s): re-sent at the next allocation", env.station_id, body.command_id, body.status)


def _on_failsafe_result(env: ev.Envelope, body: ev.CommandResult, step: _Step) -> None:
    """The answer to the fail-safe TxDefaultProfile sent at boot. A station that refuses
    it (Rejected, NotSupported, a CALLERROR such as NotImplemented) takes no profiles:
    it is marked at once, so its first session is reserved instead of being sent a
    TxProfile it will refuse too (found with SAP's simulator, bench/outside)."""
    sd = step.sd
    del sd.issued[body.command_id]
    step.dirty = True
    if body.status in REJECTED and body.error_code != OUR_FAULT:
        _mark_rejecting(env, body, step, "the fail-safe TxDefaultProfile", _refusal(body) + ", fail-safe")


def _refusal(body: ev.CommandResult) -> str:
    return body.status + (f" ({body.error_code})" if body.error_code else "")


def _mark_rejecting(env: ev.Envelope, body: ev.CommandResult, step: _Step, what: str, reason: str) -> None:
    """Mark the station as not taking profiles (once: a second refusal changes nothing);
    its `charging_capability` document is written after the step (`step.marks`)."""
    already = env.station_id in step.sd.state.no_profiles
    step.apply(StationRejectsProfiles(env.station_id, reason))
    if not already and env.station_id in step.sd.state.no_profiles:
        log.warning(
            "station=%s rejected %s %s: %s; it is sent no profile until its next boot, "
            "its sessions are reserved at their measured draw",
            env.station_id, what, body.command_id, reason,
        )
        step.marks.append((env.station_id, reason))


def _plan(site_id: str, step: _Step) -> list[cmds.PlannedCommand]:
    sd, planned = step.sd, []
    for c in cmds.merge_commands(step.commands):
        try:
            p = cmds.tx_limit_command(c, step.now)
        except ValueError as exc:
            cmds.PROFILES_SENT.labels("error").inc()
            log.error("site=%s station=%s limit for %s not built: %s", site_id, c.station_id, c.transaction_id, exc)
            _forget_limit(sd, c.station_id, c.evse_id, str(c.transaction_id), str(c.limit_a))
            continue
        planned.append(p)
        # Only a session's latest TxProfile is correlated: an answer to one it replaced
        # cannot change anything (a newer limit was decided since), and `issued` stays
        # as small as the site's sessions instead of growing with their length.
        superseded = [k for k, v in sd.issued.items() if v.get("station_id") == p.station_id and v.get("evse_id") == p.evse_id]
        for k in superseded:
            del sd.issued[k]
        sd.issued[p.command_id] = {
            "station_id": p.station_id, "evse_id": p.evse_id, "transaction_id": p.transaction_id,
            "limit_a": p.limit_a, "at": to_ocpp(step.now),
        }
    if planned or (step.dirty and sd.issued):  # only what is written anyway
        _prune_issued(sd, step.now)
    return planned


def _prune_issued(sd: SiteDoc, now: datetime) -> None:
    horizon = now - ISSUED_TTL
    kept = [(k, v) for k, v in sd.issued.items() if parse_ocpp(str(v.get("at"))) >= horizon]
    sd.issued = dict(kept[-ISSUED_MAX:])


def _log_allocation(site_id: str, trigger: str, sd: SiteDoc, planned: Sequence[cmds.PlannedCommand]) -> None:
    allocation = sd.state.allocation
    if allocation is None:
        return
    sent = ", ".join(f"{p.station_id}/{p.evse_id}={p.limit_a} A" for p in planned) or "none"
    log.info(
        "site=%s allocation after %s: %s || profiles: %s",
        site_id, trigger, " | ".join(line.strip() for line in allocation.trace), sent,
    )


def _set_gauges(site_id: str, state: SiteState) -> None:
    SITE_LIMIT_AMPS.labels(site_id).set(float(state.effective_limit_a))
    # No allocation (no sessions yet) exports 0, never an earlier, higher value.
    allocated = state.allocation.total_a if state.allocation is not None else 0
    ALLOCATED_AMPS.labels(site_id).set(float(allocated))


def _remove_gauges(site_id: str) -> None:
    for gauge in (SITE_LIMIT_AMPS, ALLOCATED_AMPS):
        try:
            gauge.remove(site_id)
        except KeyError:
            pass


def _legacy_notice(env: ev.Envelope) -> _SiteNotice | None:
    """The `_SiteNotice` of a pre-ADR 015 `site:<id>` Notification (csms.events.v1),
    None for any other event. Its payload is the site document or {"id", "deleted"}."""
    if site_of_notification(env) is None or not isinstance(env.body, ev.Notification):
        return None
    try:
        payload = json.loads(env.body.payload_json or "{}")
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return _SiteNotice(site=None)  # unreadable: the store has the site
    return _SiteNotice(site=payload, deleted=bool(payload.get("deleted")))


# ------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class _Item:
    """A decoded by-site record: a station event (`env`), or a site change (`notice`;
    with `env` too for a legacy notification)."""

    env: ev.Envelope | None
    notice: _SiteNotice | None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_READING_BODIES: dict[str, type[ev.MeterValues] | type[ev.TransactionUpdated]] = {
    "meter_values": ev.MeterValues, "transaction_updated": ev.TransactionUpdated,
}
_READING_TYPES = frozenset(f"csms.events.v1.{cls.__name__}" for cls in _READING_BODIES.values())


def _decode_reading(value: bytes) -> ev.Envelope | None:
    """A MeterValues / TransactionUpdated envelope with only what this stage reads (ids,
    times, the `Current.Import` samples): most by-site records are readings, and building
    every sample of the full envelope was most of this stage's cost. None when the
    message is of another kind (then decoded in full)."""
    pb = codec.events_pb2.Event()
    pb.ParseFromString(value)
    field_name = pb.WhichOneof("body")
    cls = _READING_BODIES.get(field_name or "")
    if cls is None or field_name is None:
        return None
    body_pb = getattr(pb, field_name)
    samples = tuple(
        ev.MeterSample(
            timestamp=codec.get_timestamp(sp, "timestamp") or _EPOCH, value=sp.value, unit=sp.unit,
            measurand=CURRENT_MEASURAND, phase=sp.phase,
        )
        for sp in body_pb.samples
        if sp.measurand == CURRENT_MEASURAND
    )
    body = cls(transaction_id=body_pb.transaction_id, evse_id=body_pb.evse_id, connector_id=body_pb.connector_id, samples=samples)
    # What this stage does not read (station time, message id, sample context, ...) is left out.
    return ev.Envelope(
        event_id=pb.event_id, station_id=pb.station_id, received_at=codec.get_timestamp(pb, "received_at") or _EPOCH,
        body=body, gateway_id=pb.gateway_id, ocpp_version=pb.ocpp_version, action=pb.action,
    )


def _decode(record: Record) -> _Item | None:
    """None (logged) when the bytes can never be decoded."""
    ce_type = record.header("ce_type")
    if ce_type in _READING_TYPES:
        try:
            reading = _decode_reading(record.value)
        except Exception:
            reading = None  # decoded in full below (and logged there if it cannot be)
        if reading is not None:
            return _Item(reading, None)
    if ce_type == sites_codec.CE_TYPE:
        try:
            change = sites_codec.decode_site_updated(record.value)
        except ValueError as exc:
            log.error("undecodable SiteUpdated %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
            return None
        return _Item(None, _SiteNotice(site=change.site, deleted=change.deleted, version=change.version))
    try:
        env = codec.decode_event(record.value, codec.headers_dict(record.headers))
    except Exception as exc:
        log.error("undecodable by-site record %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
        return None
    return _Item(env, _legacy_notice(env))


@dataclass
class _SiteWork:
    """One site's share of a batch, once applied."""

    site_id: str
    sd: SiteDoc
    step: _Step
    outbox: list[cmds.PlannedCommand]
    planned: list[cmds.PlannedCommand]
    write: bool
    trigger: str | None


# ------------------------------------------------------------------------ the stage


class SiteStage:
    """Stage 2: `handle_batch` (and `handle_record`) apply by-site records to the sites'
    states and send the resulting limits."""

    def __init__(
        self,
        *,
        states: SiteStates,
        sites: Sites,
        stations: StationLookups,
        sender: cmds.LimitSender,
        clock: Clock,
        recheck_s: float = SITE_RECHECK_S,
        capabilities: Capabilities | None = None,
        voltage_v: Decimal = DEFAULT_VOLTAGE_V,
        reprobe: timedelta | None = None,
    ) -> None:
        self._capabilities = capabilities
        self._reprobe = reprobe  # None: a mark lasts until the station's next boot
        self._voltage_v = voltage_v
        self._states = states
        self._sites = sites
        self._stations = stations
        self._sender = sender
        self._clock = clock
        self.recheck_s = recheck_s
        self._checked: dict[str, float] = {}  # site id -> when its site document was last read (monotonic)
        # site id -> the by-site partition its records came from: the per-site gauges of a
        # site whose partition moved to another member are removed (`forget_unowned`)
        self._partition_of: dict[str, int] = {}

    async def consume(self, records: Sequence[Record]) -> None:
        """The processor shell's handler (it returns nothing)."""
        await self.handle_batch(records)

    async def handle_record(self, record: Record) -> str:
        """Handle one by-site record (a station event, or a site change); returns the outcome.
        Raises on transient failures (store, bus, a concurrent writer) so the record is
        redelivered."""
        outcomes = await self.handle_batch([record])
        return next(o for o, n in outcomes.items() if n)

    async def handle_batch(self, records: Sequence[Record]) -> dict[str, int]:
        """Handle a batch of by-site records (a poll's, each partition's in offset order);
        returns the count per outcome. Raises on transient failures (store, bus, a concurrent
        writer) so the batch is delivered again (the bus then replays it one record at a time
        if the failure was not an outage).

        The records are grouped by site, keeping each site's order. Sites with only station
        events (nearly all) are handled together: one `get_docs` for their states, each
        site's events applied in order to its state in memory, one versioned write per site
        whose state changed (`put_docs`, or a fenced `put_doc` when it has commands to send:
        a consumer that lost the site must not send them), then the commands, then the
        outboxes cleared. A reading that changes no allocation writes nothing. A site with a
        site change in the batch is handled record by record (rare)."""
        outcomes: dict[str, int] = {}
        groups: dict[str, list[_Item]] = {}
        for record in records:
            site_id = record.header(SITE_HEADER) or record.key.decode("utf-8", "replace")
            item = _decode(record)
            if item is None:
                outcomes["undecodable"] = outcomes.get("undecodable", 0) + 1
                continue
            group = groups.get(site_id)
            if group is None:
                group = groups[site_id] = []
                self._partition_of[site_id] = record.partition
            group.append(item)
        plain: dict[str, list[ev.Envelope]] = {}
        for site_id, items in groups.items():
            if any(item.notice is not None for item in items):
                for item in items:
                    outcome = await self._handle_one(site_id, item)
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
            else:
                plain[site_id] = [item.env for item in items if item.env is not None]
        if plain:
            await self._handle_sites(plain, outcomes)
        for outcome, n in outcomes.items():
            EVENTS_HANDLED.labels(outcome).inc(n)
        return outcomes

    # ---------------------------------------------------------- sites and stations

    def _mark_checked(self, site_id: str) -> None:
        self._checked[site_id] = time.monotonic()

    def _due_for_recheck(self, site_id: str) -> bool:
        last = self._checked.get(site_id)
        return last is None or time.monotonic() - last >= self.recheck_s

    def _new_site_doc(self, site_id: str, site: dict[str, Any] | None) -> SiteDoc | None:
        """The first state of a site that has none yet, from its site document (None: the
        site is unknown, deleted or has no valid limit: not managed)."""
        if site is None or site.get("deleted"):
            return None
        grid = _amps(site.get("grid_limit_a"))
        if grid is None:
            log.error("site %s has no valid grid_limit_a (%r): not managed", site_id, site.get("grid_limit_a"))
            return None
        self._mark_checked(site_id)
        state = SiteState(site_id=site_id, limit_a=grid, external_cap_a=_amps(site.get("external_limit_a")))
        return SiteDoc(state=state, phases=valid_phases(site.get("phases")))

    async def _load(self, site_id: str) -> SiteDoc | None:
        sd = await self._states.get(site_id)
        if sd is not None:
            return sd
        return self._new_site_doc(site_id, await self._sites.get(site_id))

    async def _session_started(self, sd: SiteDoc, env: ev.Envelope, body: ev.TransactionStarted) -> SessionStarted | None:
        evse_id = body.evse_id or body.connector_id
        if evse_id <= 0:
            log.warning("station=%s transaction %s started without an EVSE: not limited", env.station_id, body.transaction_id)
            return None
        station = await self._stations.get_station(env.station_id)
        max_a = DEFAULT_MAX_A
        if station is not None and station.max_current_a:
            max_a = _amps(station.max_current_a) or DEFAULT_MAX_A
        return SessionStarted(
            station_id=env.station_id,
            evse_id=evse_id,
            transaction_id=body.transaction_id,
            phases=valid_phases(station.phases if station is not None else None, sd.phases),
            max_a=max_a,
            priority=station.priority if station is not None else 0,
            min_a=min(DEFAULT_MIN_A, max_a),
        )

    async def _fail_safe(self, site_id: str, env: ev.Envelope, step: _Step) -> cmds.PlannedCommand:
        station = await self._stations.get_station(env.station_id)
        stations = await self._stations.list_stations(site_id=site_id, limit=10_000)
        station_max = _amps(station.max_current_a) if station is not None and station.max_current_a else None
        limit = cmds.fail_safe_limit(step.sd.state.effective_limit_a, len(stations), station_max)
        return cmds.fail_safe_command(env.station_id, limit, step.now)

    # ---------------------------------------------------------------- one event

    async def _on_event(self, site_id: str, env: ev.Envelope, step: _Step) -> None:
        sd, body = step.sd, env.body
        if isinstance(body, ev.TransactionStarted):
            if body.id_token_status not in ACCEPTED_TOKEN_STATUSES:
                # Refused token: nothing to limit or reserve (the stage before drops these too).
                log.info(
                    "station=%s transaction %s refused (%s): not managed",
                    env.station_id, body.transaction_id, body.id_token_status,
                )
                return
            started = await self._session_started(sd, env, body)
            if started is not None:
                await self._reprobe_if_due(site_id, env.station_id, step)
                step.apply(started)
        elif isinstance(body, (ev.TransactionEnded, ev.SessionAbandoned)):
            # A session the CSMS closed (abandoned) releases its current like a real stop.
            session = _find(sd.state, env.station_id, body.evse_id or body.connector_id, body.transaction_id)
            if session is not None:
                if isinstance(body, ev.SessionAbandoned):
                    log.info(
                        "site=%s station=%s session %s abandoned (%s): its %s A are released",
                        site_id, env.station_id, session.transaction_id, body.reason,
                        session.limit_a if session.controllable else session.max_a,
                    )
                step.apply(SessionStopped(env.station_id, session.evse_id, session.transaction_id))
        elif isinstance(body, (ev.MeterValues, ev.TransactionUpdated)):
            reading = _reading(sd, env, body)
            if reading is not None:
                step.apply(reading)
        elif isinstance(body, ev.CommandResult):
            _on_command_result(env, body, step)
            while step.marks:
                station_id, reason = step.marks.pop(0)
                if self._capabilities is not None:
                    await self._capabilities.mark_rejecting(station_id, step.now, reason)
        elif isinstance(body, ev.StationBooted) and body.registration_status == "Accepted":
            await self._on_booted(site_id, env, step)
        elif isinstance(body, ev.ChargingLimitSet):
            self._on_limit_set(site_id, env, body, step)
        elif isinstance(body, ev.ChargingLimitCleared):
            step.apply(ExternalLimitCleared(env.station_id, body.evse_id, body.source or "Other"))
        elif isinstance(body, ev.EvChargingNeeds):
            if body.status != "Accepted":
                return  # the gateway promised nothing: no schedule is owed
            needs = _needs_event(env, body, self._voltage_v)
            if needs is not None:
                log.info(
                    "site=%s station=%s EVSE %d EV needs: max %s A, min %s A, %s Wh by %s",
                    site_id, env.station_id, needs.evse_id, needs.ev_max_a, needs.ev_min_a, needs.energy_wh,
                    to_ocpp(needs.departure_at) if needs.departure_at is not None else "-",
                )
                step.apply(needs)

    async def _reprobe_if_due(self, site_id: str, station_id: str, step: _Step) -> None:
        """A session starts on a station marked longer ago than the reprobe interval: lift
        the mark (as a boot does), so the new session is sent a profile again."""
        mark = step.sd.state.no_profiles.get(station_id)
        if mark is None or self._reprobe is None or step.now - mark.since < self._reprobe:
            return
        step.apply(StationRebooted(station_id))
        if self._capabilities is not None:
            await self._capabilities.clear(station_id, step.now, reason="reprobe")
        log.info(
            "site=%s station=%s marked as not taking profiles since %s (%s): asked again at this session's start",
            site_id, station_id, to_ocpp(mark.since), mark.reason,
        )

    async def _on_booted(self, site_id: str, env: ev.Envelope, step: _Step) -> None:
        """An accepted boot: the fail-safe, and the station takes profiles again."""
        marked = env.station_id in step.sd.state.no_profiles
        step.apply(StationRebooted(env.station_id))
        cleared = False
        if self._capabilities is not None:
            cleared = await self._capabilities.clear_on_boot(env.station_id, step.now)
        if marked or cleared:
            log.info("site=%s station=%s booted: it is sent profiles again", site_id, env.station_id)
        failsafe = await self._fail_safe(site_id, env, step)
        # Remembered with the state (written before the fail-safe is sent) so that its
        # answer is correlated: a refusal marks the station (`_on_failsafe_result`). Only
        # the station's latest fail-safe is kept.
        for k in [k for k, v in step.sd.issued.items() if v.get("kind") == "failsafe" and v.get("station_id") == env.station_id]:
            del step.sd.issued[k]
        step.sd.issued[failsafe.command_id] = {
            "station_id": env.station_id, "kind": "failsafe", "evse_id": 0, "transaction_id": "",
            "limit_a": failsafe.limit_a, "at": to_ocpp(step.now),
        }
        step.dirty = True
        step.failsafes.append(failsafe)

    def _on_limit_set(self, site_id: str, env: ev.Envelope, body: ev.ChargingLimitSet, step: _Step) -> None:
        if body.evse_id < 0:
            log.warning("station=%s NotifyChargingLimit with EVSE %d: ignored", env.station_id, body.evse_id)
            return
        amps = _limit_amps(env, body, step.sd.phases, self._voltage_v, step.now)
        if amps is None:
            log.warning(
                "station=%s NotifyChargingLimit (%s, EVSE %d) has no limit in force now: ignored",
                env.station_id, body.source, body.evse_id,
            )
            return
        log.info(
            "site=%s station=%s outside limit %s A on %s (source %s)",
            site_id, env.station_id, amps, f"EVSE {body.evse_id}" if body.evse_id else "the station", body.source,
        )
        step.apply(ExternalLimitSet(env.station_id, body.evse_id, body.source or "Other", amps))

    async def _on_site_updated(self, site_id: str, notice: _SiteNotice, step: _Step) -> None:
        sd = step.sd
        site = notice.site
        if site is None:
            site = await self._sites.get(site_id) or {}
        self._mark_checked(site_id)
        if notice.version > sd.site_version:
            sd.site_version, step.dirty = notice.version, True
        phases = valid_phases(site.get("phases"), sd.phases)
        if phases != sd.phases:
            sd.phases, step.dirty = phases, True
        limit = _limit_event(site)
        if limit is not None:
            step.apply(limit)
        # A station may have left the site (or been deleted): its sessions are no longer ours.
        for station_id in sorted({s.station_id for s in sd.state.sessions.values()}):
            station = await self._stations.get_station(station_id)
            if station is None or station.site_id != site_id:
                for s in [s for s in sd.state.sessions.values() if s.station_id == station_id]:
                    log.info("site=%s station=%s left the site: its session %s is no longer managed", site_id, station_id, s.transaction_id)
                    step.apply(SessionStopped(station_id, s.evse_id, s.transaction_id))

    # ------------------------------------------------------------ sites of a batch

    async def _handle_sites(self, groups: dict[str, list[ev.Envelope]], outcomes: dict[str, int]) -> None:
        now = self._clock()
        states = await self._states.get_many(list(groups))
        missing = [site_id for site_id in groups if site_id not in states]
        due = [site_id for site_id in groups if site_id in states and self._due_for_recheck(site_id)]
        sites = await self._sites.get_many(missing + due) if missing or due else {}
        works: list[_SiteWork] = []
        for site_id, envs in groups.items():
            found = states.get(site_id)
            sd = found if found is not None else self._new_site_doc(site_id, sites.get(site_id))
            if sd is None:
                log.info("site %s unknown: %d event(s) dropped", site_id, len(envs))
                outcomes["no_site"] = outcomes.get("no_site", 0) + len(envs)
                continue
            recheck: dict[str, Any] | None = None
            if site_id in due:
                self._mark_checked(site_id)
                recheck = sites.get(site_id)
            with tracer.start_as_current_span(
                "smart_charging.site_events", attributes={"csms.site_id": site_id, "csms.records": len(envs)}
            ):
                works.append(await self._apply_site(site_id, sd, envs, recheck, now, outcomes))
        # One versioned write per changed site; a site with commands to send is fenced.
        await self._states.put_many([(w.site_id, w.sd) for w in works if w.write and not w.outbox], now)
        for w in works:
            if w.write and w.outbox and not await self._states.put(w.site_id, w.sd, now):
                raise ConflictError(f"site_state {w.site_id}: a newer version was written by another consumer")
        for w in works:
            if w.trigger is not None:
                ALLOCATIONS.inc()
                _log_allocation(w.site_id, w.trigger, w.sd, w.planned)
            _set_gauges(w.site_id, w.sd.state)
        cleared: list[tuple[str, SiteDoc]] = []
        sending = [w for w in works if w.outbox]
        if sending:  # each site's commands in order, the sites concurrently
            results = await self._sender.send_many([w.outbox for w in sending])
            for w, sent in zip(sending, results):
                for planned, result in zip(w.outbox, sent):
                    if result != "sent" and planned.kind == "tx":
                        _forget_limit(w.sd, planned.station_id, planned.evse_id, planned.transaction_id, planned.limit_a)
                w.sd.outbox = []
                w.sd.version += 1
                cleared.append((w.site_id, w.sd))
        await self._states.put_many(cleared, now)
        for w in works:
            self._states.remember(w.site_id, w.sd)
        failsafes = [[failsafe] for w in works for failsafe in w.step.failsafes]
        if failsafes:  # one per booted station: no order between them
            await self._sender.send_many(failsafes)

    async def _apply_site(
        self,
        site_id: str,
        sd: SiteDoc,
        envs: list[ev.Envelope],
        recheck: dict[str, Any] | None,
        now: datetime,
        outcomes: dict[str, int],
    ) -> _SiteWork:
        """Apply a site's events of one batch, in order, to its state (in memory); counts an
        outcome per event (failsafe, allocated, updated, unchanged)."""
        before = sd.state
        step = _Step(sd=sd, now=now, dirty=not sd.stored)
        pending = list(sd.outbox)  # left by an interrupted earlier delivery: send it again
        if pending:
            log.info("site=%s re-sending %d limit command(s) of an interrupted delivery", site_id, len(pending))
        trigger: str | None = None
        n_commands = n_failsafes = 0  # the re-read limit counts as part of the first event
        state = sd.state
        if recheck is not None:
            limit = _limit_event(recheck)
            if limit is not None:
                step.apply(limit)
                if sd.state.allocation is not state.allocation:
                    trigger = "site re-read"
        dirty_before = step.dirty
        for env in envs:
            step.dirty = False
            await self._on_event(site_id, env, step)
            changed = step.dirty or sd.state is not state
            if sd.state.allocation is not state.allocation:
                trigger = f"{env.type_name} station={env.station_id}"
            if len(step.failsafes) > n_failsafes:
                outcome = "failsafe"
            elif len(step.commands) > n_commands:
                outcome = "allocated"
            elif changed or dirty_before:
                outcome = "updated"
            else:
                outcome = "unchanged"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            step.dirty = step.dirty or dirty_before or changed
            dirty_before = False
            n_commands, n_failsafes, state = len(step.commands), len(step.failsafes), sd.state
        if sd.state.allocation is before.allocation:
            trigger = None
        planned = _plan(site_id, step)
        outbox = pending + planned
        write = step.dirty or bool(outbox)
        if write:
            sd.outbox = outbox
            sd.version += 1
        return _SiteWork(site_id, sd, step, outbox, planned, write, trigger)

    # ------------------------------------------------------ one record (site changes)

    async def _handle_one(self, site_id: str, item: _Item) -> str:
        env = item.env
        attributes = {"csms.site_id": site_id, "csms.event": "SiteUpdated" if env is None else env.type_name}
        if env is not None:
            attributes["csms.station_id"] = env.station_id
        with tracer.start_as_current_span("smart_charging.site_event", attributes=attributes):
            return await self._handle(site_id, env, item.notice)

    async def _handle(self, site_id: str, env: ev.Envelope | None, notice: _SiteNotice | None) -> str:
        """Apply a station event (`env`) or a site change (`notice`) to the site's state."""
        now = self._clock()
        if notice is not None and notice.deleted:
            return await self._on_site_deleted(site_id, notice)
        sd = await self._load(site_id)
        if sd is None:
            what = "SiteUpdated" if env is None else f"{env.type_name} of station={env.station_id}"
            log.info("site %s unknown: %s dropped", site_id, what)
            return "no_site"
        if notice is not None and notice.version and notice.version <= sd.site_version:
            log.info("site=%s SiteUpdated version %d already applied (at %d): ignored", site_id, notice.version, sd.site_version)
            return "stale"
        before = sd.state
        step = _Step(sd=sd, now=now, dirty=not sd.stored)
        pending = list(sd.outbox)  # left by an interrupted earlier delivery: send it again
        if pending:
            log.info("site=%s re-sending %d limit command(s) of an interrupted delivery", site_id, len(pending))
        if notice is None and self._due_for_recheck(site_id):
            self._mark_checked(site_id)
            site = await self._sites.get(site_id)
            limit = _limit_event(site) if site is not None else None
            if limit is not None:
                step.apply(limit)
        if notice is not None:
            await self._on_site_updated(site_id, notice, step)
            trigger = "SiteUpdated"
        else:
            assert env is not None
            await self._on_event(site_id, env, step)
            trigger = f"{env.type_name} station={env.station_id}"
        planned = _plan(site_id, step)
        outbox = pending + planned
        reallocated = sd.state.allocation is not before.allocation
        if step.dirty or outbox:
            sd.outbox = outbox
            sd.version += 1
            if not await self._states.put(site_id, sd, now):
                raise ConflictError(f"site_state {site_id}: a newer version was written by another consumer")
        if reallocated:
            ALLOCATIONS.inc()
            _log_allocation(site_id, trigger, sd, planned)
        _set_gauges(site_id, sd.state)
        if outbox:
            await self._send_all(sd, outbox)
            sd.outbox = []
            sd.version += 1
            if not await self._states.put(site_id, sd, now):
                log.warning("site=%s state changed under us after sending limits (rebalance?)", site_id)
        if step.failsafes:
            for failsafe in step.failsafes:
                await self._sender.send(failsafe)
            return "failsafe"
        if planned:
            return "allocated"
        return "updated" if step.dirty else "unchanged"

    async def _on_site_deleted(self, site_id: str, notice: _SiteNotice) -> str:
        """Drop the site's state, unless it already applied a newer change (the site was
        deleted and created again; this deletion is a redelivery)."""
        if notice.version:
            applied = await self._states.site_version(site_id)
            if applied is not None and applied >= notice.version:
                log.info("site=%s deletion version %d is older than the state's: ignored", site_id, notice.version)
                return "stale"
        await self._states.delete(site_id)
        self._checked.pop(site_id, None)
        _remove_gauges(site_id)
        log.info("site=%s deleted: its smart-charging state is dropped", site_id)
        return "site_deleted"

    def forget_unowned(self, owned: Collection[int] | None) -> list[str]:
        """Remove the per-site gauges of the sites whose by-site partition this member no
        longer holds (`owned`: its partitions now; None: it consumes nothing), so that
        after a rebalance only the site's new owner exports its limit and allocation (the
        over-allocation alert compares the two). Returns the sites forgotten."""
        held = frozenset(owned or ())
        gone = [site for site, partition in self._partition_of.items() if partition not in held]
        for site_id in gone:
            del self._partition_of[site_id]
            _remove_gauges(site_id)
        if gone:
            log.info("%d site(s) moved to another member: their gauges are removed", len(gone))
        return gone

    async def _send_all(self, sd: SiteDoc, outbox: Sequence[cmds.PlannedCommand]) -> None:
        for planned in outbox:
            result = await self._sender.send(planned)
            if result != "sent" and planned.kind == "tx":
                _forget_limit(sd, planned.station_id, planned.evse_id, planned.transaction_id, planned.limit_a)

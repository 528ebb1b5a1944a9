"""Thin shell around the sessions domain: decode, load, apply, save, publish — per batch.

`SessionsHandler` is the sessions processor's handler, built once per process by
services/sessions/wiring.py with the ports it uses: the repositories of the documents it
owns (services/sessions/repository.py), the station lookups (the tariff that applies and
the site), `publish` / `publish_many`, the clock, the plausibility rules and the billing
limits. `handle_batch(records)` is what the processor shell calls with each batch of
csms.events.v1 records (`Bus.subscribe_batch`, ADR 015); `handle_record` / `handle_event`
are a batch of one (tools and tests). `sweep_once(...)` (a function of its ports) is the
idle sweeper the shell runs periodically.

A batch, in record order (each station's records arrive in offset order):
- Every record is decoded; an undecodable one is logged, counted and skipped.
- The sessions of every session event of the batch are read with ONE `get_sessions`.
  Each session's events are applied in order in memory with `position=(partition,
  offset)`: a record at or below the session's applied mark is a redelivery and changes
  nothing. A step's new samples wait in memory; when a step asks for a rebuild (an
  out-of-order reading, a window that moved over counted readings), the pending samples
  are appended, the session's samples read once and folded again
  (`csms_sessions_rebuilds_total{reason}`).
- Then ONE `append_samples_many` for the sessions with new samples (the store packs
  several sessions' rows per request), ONE versioned `put_sessions` for
  all changed sessions (no read-before-write: the highest version wins), and ONE
  `publish_many`: one csms.sessions.v1 snapshot per session the batch touched (its
  latest state; the stored one when all its events were redeliveries, so a crash between
  the write and the publish loses nothing: consumers dedupe by (id, version)) and one
  csms.meter-values.v1 record per event that carried samples (a redelivered event's
  samples are published again: consumers dedupe by the sample key).
- Before applying: a transaction event naming only its EVSE takes the connector from
  the station status (`connector_from_status`), and one carrying a remoteStartId gets the
  matching RequestStartTransaction command (kind REMOTE_START, written here when the
  CommandIssued is processed) for its token and issuer. Both read through the batch, so
  an earlier record of the same batch counts.
- The tariff that applies to the station (services.billing.documents.resolve_tariff) and
  the station's site are cached for CSMS_TARIFF_CACHE_S (`StationLookups`): the domain
  opens and advances the session's price accumulator with that tariff; the snapshot
  carries the site.
- Lifecycle (domain/lifecycle.py): the station's open-sessions index (kind OPEN_SESSIONS)
  is read only when a session's index entry changes (opens, starts, moves, ends, is
  abandoned) or on a redelivery, never for an ordinary MeterValues, and written after
  the sessions. A TransactionStarted, a StationBooted and a ConnectorStatus "Available"
  are checked against the index as it stands at that record; each session they close
  (still open at that record) is published as a SessionAbandoned on csms.events.v1 after
  the index write (a deterministic event id: redeliveries publish the same event again,
  harmlessly), and applied when this processor consumes it.
- Station status (kind STATION_STATUS, one per station): the statuses of the batch's
  status events are read with one `get_statuses` (concurrent with the sessions'), the
  changed ones written with one versioned `put_statuses` (no read) alongside the
  sessions'. Command records (kind COMMAND) are the stations processor's (ADR 016); of
  the command events only a RequestStartTransaction's CommandIssued is read here (its
  REMOTE_START document).
- What an ISO 15118 EV said (EvChargingNeeds, EvChargingSchedule: 2.0.1 only, naming an
  EVSE) is kept on the EVSE's active session, found in the open-sessions index (read
  only for these); without one it is logged and counted
  (`csms_sessions_events_skipped_total{reason="no_active_session"}`) and skipped.
- The token index (kind TOKEN_SESSION, ADR 018): a session whose token, start or status
  changed gets its entry written (versioned, no read) before the session documents.
- A legacy session document (before ADR 015, with `meter_samples`) is upgraded on first
  touch: its samples are appended to the samples table and the session rebuilt from them.

Store and bus errors propagate: the bus retries the batch (for as long as it takes when
they are transient). The domain does not raise on schema-valid input; if it ever does (a
bug), the error is logged, counted in `csms_sessions_domain_errors_total{type}` and
re-raised: the bus replays the batch one record at a time and dead-letters only that
record after its bounded retries (docs/dead-letters.md). Nothing of a failed batch's
sessions has been written then (samples appended by a rebuild are idempotent rows).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, ParamSpec, Protocol, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from services.billing.documents import default_tariff_doc, resolve_tariff
from services.billing.domain import TariffError
from services.billing.domain.limits import BillingLimits
from services.billing.domain.running import StaleAccumulator, finish_price
from services.billing.domain.tariff import Tariff
from services.common import codec, topics
from services.common import events as ev
from services.common.bus.port import Header, Outgoing, Record
from services.common.store.port import Store
from services.common.timeutil import Clock
from services.sessions import codec as snapshots
from services.sessions import meter_values
from services.sessions.domain.lifecycle import (
    Abandon,
    IndexEntry,
    OpenSessions,
    RemoteStartCommand,
    abandon_envelope,
    abandons_for_boot,
    abandons_for_start,
    abandons_for_status,
    apply_remote_start,
    connector_from_status,
    index_entry,
    index_with,
    is_idle,
    remote_start_doc_id,
    remote_start_of,
    remote_start_ref,
)
from services.sessions.documents import token_session_inputs
from services.sessions.domain.ev_needs import EV_BODIES
from services.sessions.domain.session import (
    CLOCK_REASONS,
    Plausibility,
    RemoteStart,
    Sample,
    Session,
    apply,
    apply_ev_event,
    rebuild,
    session_ref,
)
from services.sessions.domain.station_status import STATUS_BODIES, StationStatus, apply_status
from services.sessions.repository import LifecycleRepository, SessionRepository, StationRecords, StoredSession

__all__ = [
    "SessionsHandler",
    "StationLookups",
    "TariffLookup",
    "Publish",
    "PublishMany",
    "sweep_once",
    "publish_snapshot",
    "running_total",
    "observe_batch",
    "GROUP",
]

log = logging.getLogger("csms.sessions.handlers")

GROUP = topics.group("csms-sessions")
SWEEP_SCAN = 100_000  # open-sessions documents read per sweep (one per station)
_YIELD_EVERY = 32
_SITE_PREFIX = "site:"  # station id of the old SiteUpdated notifications on csms.events.v1

EVENTS_PROCESSED = Counter(
    "csms_sessions_events_processed_total", "Events consumed by the sessions processor", ["type"]
)
EVENTS_SKIPPED = Counter(
    "csms_sessions_events_skipped_total", "Events skipped as undecodable or about nothing known", ["reason"]
)
DOMAIN_ERRORS = Counter(
    "csms_sessions_domain_errors_total",
    "Events the sessions domain raised on (a bug: re-raised, so the bus dead-letters the record)",
    ["type"],
)
REBUILDS = Counter(
    "csms_sessions_rebuilds_total",
    "Sessions folded again from all their stored samples (out-of-order readings, a moved window, legacy documents)",
    ["reason"],
)
SESSIONS_ACTIVE = Gauge(
    "csms_sessions_active", "Active sessions seen by this process (best effort, resets on restart)"
)
SEQ_GAPS = Counter("csms_sessions_seq_gaps_total", "Sessions in which a seqNo gap appeared")
ORPHANS = Counter("csms_sessions_orphans_total", "Sessions created by an event without its start")
SUSPECT = Counter("csms_sessions_suspect_total", "Sessions flagged suspect")
CLOCK_SUSPECT = Counter(
    "csms_sessions_clock_suspect_total",
    "Sessions in which a station time was replaced by the receive time, by reason "
    "(clock_before_floor, clock_ahead)",
    ["reason"],
)
HELD = Counter("csms_sessions_held_total", "Sessions that became held from CDR export, by reason", ["reason"])
ABANDONED = Counter(
    "csms_sessions_abandoned_total", "SessionAbandoned decisions published, by reason", ["reason"]
)
CLOCK_SKEW = Histogram(
    "csms_sessions_clock_skew_seconds",
    "Receive time minus station time, as an absolute value; direction=behind: station "
    "time earlier than receive time, ahead: later (offline-queued messages excluded)",
    ["direction"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
HANDLER_SECONDS = Histogram(
    "csms_sessions_handler_seconds",
    "Time to handle one record (a batch's time shared by its records: decode, load, apply, save, publish)",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SECONDS = Histogram(
    "csms_sessions_batch_seconds",
    "Time to handle one batch of csms.events.v1 records",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_RECORDS = Histogram(
    "csms_sessions_batch_records",
    "Records per batch handed to the sessions processor",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)


def observe_batch(records: Sequence[Record], seconds: float) -> None:
    """The batch metrics (the processor shell's `observe`)."""
    BATCH_SECONDS.observe(seconds)
    BATCH_RECORDS.observe(len(records))
    if records:
        share = seconds / len(records)
        for _ in records:
            HANDLER_SECONDS.observe(share)


# -- ports ---------------------------------------------------------------------------
class Publish(Protocol):
    async def __call__(
        self, topic: str, key: str, value: bytes, headers: Sequence[Header] = (), partition: int | None = None,
    ) -> None: ...


PublishMany = Callable[[Sequence[Outgoing]], Awaitable[None]]


class TariffLookup(Protocol):
    async def for_station(self, station_id: str) -> tuple[Tariff | None, str]:
        """(the tariff that applies to the station now or None, the station's site id or "")."""
        ...


# -- station lookups (tariff, site), cached briefly ------------------------------------
class StationLookups:
    """The tariff that applies to a station now (station, else site, else default:
    `services.billing.documents.resolve_tariff`) and the station's site id, cached for
    `ttl_s` seconds (CSMS_TARIFF_CACHE_S): a tariff edit reaches running sessions within
    that time; until then the accumulator keeps the tariff it was opened with (billing
    re-prices from the samples when the tariff that applies at the end differs). A stored
    tariff that does not parse is logged and treated as no tariff (billing reports it).
    One per process (built by the wiring)."""

    _MAX_ENTRIES = 200_000

    def __init__(self, store: Store, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl_s = max(float(ttl_s), 0.0)
        self.clock = clock
        self._cache: dict[str, tuple[float, Tariff | None, str]] = {}
        self._default: tuple[float, dict[str, Any] | None] | None = None

    async def for_station(self, station_id: str) -> tuple[Tariff | None, str]:
        now = self.clock()
        hit = self._cache.get(station_id)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        store = self.store
        station = await store.get_station(station_id)
        site_id = (station.site_id if station is not None else None) or ""

        async def default_doc() -> dict[str, Any] | None:
            # one listing of the tariffs per TTL for the whole process, not one per station
            if self._default is None or self._default[0] <= now:
                self._default = (now + self.ttl_s, await default_tariff_doc(store))
            return self._default[1]

        try:
            resolved = await resolve_tariff(store, station_id, site_id, station=station, default_doc=default_doc)
        except TariffError as exc:
            log.error("tariff for station %s does not parse (%s): sessions run without a price", station_id, exc)
            resolved = None
        tariff = resolved.tariff if resolved is not None else None
        if len(self._cache) >= self._MAX_ENTRIES:
            self._cache.clear()
        self._cache[station_id] = (now + self.ttl_s, tariff, site_id)
        return tariff, site_id

    def forget(self) -> None:
        self._cache.clear()
        self._default = None


# -- the handler ---------------------------------------------------------------------
class SessionsHandler:
    """The sessions processor's handler: its ports, bound once (see the module docstring)."""

    def __init__(
        self,
        *,
        sessions: SessionRepository,
        stations: StationRecords,
        lifecycle: LifecycleRepository,
        lookups: TariffLookup,
        publish: Publish,
        publish_many: PublishMany,
        clock: Clock,
        rules: Plausibility,
        limits: BillingLimits,
        idle_timeout: timedelta,
    ) -> None:
        self.sessions = sessions
        self.stations = stations
        self.lifecycle = lifecycle
        self.lookups = lookups
        self.publish = publish
        self.publish_many = publish_many
        self.clock = clock
        self.rules = rules
        self.limits = limits
        self.idle_timeout = idle_timeout
        # the labelled counter child of each event type, made once (labels() per record cost)
        self._processed: dict[str, Counter] = {}

    async def handle_batch(self, records: Sequence[Record]) -> None:
        """Handle one batch of csms.events.v1 records (each partition's in offset order)."""
        items: list[tuple[Record | None, ev.Envelope, str | None]] = []
        for record in records:
            try:
                env = codec.decode_event(record.value, codec.headers_dict(record.headers))
            except Exception:
                EVENTS_SKIPPED.labels(reason="undecodable").inc()
                log.exception("undecodable record %s[%d]@%d skipped", record.topic, record.partition, record.offset)
                continue
            items.append((record, env, record.header("traceparent")))
        if items:
            await _Batch(self, self.clock()).run(items)

    async def handle_record(self, record: Record) -> None:
        """Handle one csms.events.v1 record (a batch of one)."""
        await self.handle_batch((record,))

    async def handle_event(self, env: ev.Envelope, *, traceparent: str | None = None) -> None:
        """Handle one already decoded event without a record position (no redelivery mark)."""
        await _Batch(self, self.clock()).run([(None, env, traceparent)])

    async def sweep(self, now: datetime | None = None) -> int:
        """One idle sweep with this handler's ports (the processor's periodic job); returns
        how many sessions it abandoned."""
        n = await sweep_once(
            self.sessions, self.lifecycle, self.publish, now if now is not None else self.clock(), self.idle_timeout,
        )
        if n:
            log.info("sweeper abandoned %d idle session(s)", n)
        return n

    async def publish_snapshot(self, s: Session, *, traceparent: str | None = None) -> None:
        await publish_snapshot(s, self.lookups, self.publish, self.limits.max_duration, traceparent=traceparent)

    def processed(self, type_name: str) -> Counter:
        child = self._processed.get(type_name)
        if child is None:
            child = self._processed[type_name] = EVENTS_PROCESSED.labels(type=type_name)
        return child


# -- one batch ---------------------------------------------------------------------
@dataclass
class _Slot:
    """One session of the batch: as stored, as it stands now, and what waits to be written."""

    sid: str
    stored: Session | None
    cur: Session | None
    pending: list[Sample] = field(default_factory=list)
    changed: bool = False
    touched: bool = False
    traceparent: str | None = None
    rebuild: str = ""            # why the session must be folded again before it is written
    tariff: Tariff | None = None  # ... with this tariff


class _Batch:
    def __init__(self, h: SessionsHandler, now: datetime) -> None:
        self.h = h
        self.sessions = h.sessions
        self.stations = h.stations
        self.lifecycle = h.lifecycle
        self.lookups = h.lookups
        self.now = now
        self.rules = h.rules
        self.loaded: dict[str, StoredSession] = {}
        self.slots: dict[str, _Slot] = {}
        self.statuses: dict[str, StationStatus | None] = {}
        self.status_out: dict[str, StationStatus] = {}  # station statuses to write
        self.remote: dict[str, RemoteStartCommand | None] = {}
        self.other_sessions: dict[str, Session | None] = {}
        self.indexes: dict[str, tuple[OpenSessions | None, OpenSessions | None]] = {}  # station: (stored, now)
        self.meter_out: list[Outgoing] = []
        self.abandons: list[tuple[ev.Envelope, str]] = []

    async def run(self, items: list[tuple[Record | None, ev.Envelope, str | None]]) -> None:
        refs = [session_ref(env) for _, env, _ in items]
        ids = sorted({ref[0] for ref in refs if ref is not None})
        # the station statuses of the batch's status events, in the same read round
        stations = sorted({env.station_id for _, env, _ in items if isinstance(env.body, STATUS_BODIES)})
        status: Mapping[str, StationStatus]
        if ids and stations:
            self.loaded, status = await asyncio.gather(
                self.sessions.get_sessions(ids), self.stations.get_statuses(stations)
            )
        elif ids:
            self.loaded, status = await self.sessions.get_sessions(ids), {}
        elif stations:
            status = await self.stations.get_statuses(stations)
        else:
            status = {}
        for station_id in stations:
            self.statuses[station_id] = status.get(station_id)
        processed = self.h.processed
        for i, ((record, env, traceparent), ref) in enumerate(zip(items, refs)):
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                # let the event loop breathe: in one process (`csms run`) the gateway's
                # replies wait behind a batch that never awaits real I/O
                await asyncio.sleep(0)
            processed(env.type_name).inc()
            _observe_skew(env)
            if ref is not None:
                await self._session_event(record, env, ref[0], traceparent)
            elif isinstance(env.body, STATUS_BODIES):
                await self._status_event(env)
            elif isinstance(env.body, ev.CommandIssued) and env.body.ocpp_action == "RequestStartTransaction":
                await self._remote_start_issued(env)
            elif isinstance(env.body, EV_BODIES):
                await self._ev_event(record, env, traceparent)
        await self._flush()

    # -- sessions --
    async def _slot(self, sid: str, station_id: str) -> _Slot:
        slot = self.slots.get(sid)
        if slot is not None:
            return slot
        loaded = self.loaded.get(sid)
        stored = None if loaded is None else loaded.session
        slot = self.slots[sid] = _Slot(sid, stored, stored)
        if loaded is not None and loaded.legacy is not None:
            await self._upgrade_legacy(slot, loaded.legacy, station_id)
        return slot

    async def _upgrade_legacy(self, slot: _Slot, samples: Sequence[Sample], station_id: str) -> None:
        """A document from before ADR 015: its samples go to the samples table, the
        session is folded again from them and written back without them."""
        assert slot.cur is not None and slot.stored is not None
        slot.pending.extend(samples)
        slot.tariff, _ = await self.lookups.for_station(station_id)
        slot.rebuild = "legacy_document"
        await self._rebuild(slot)
        assert slot.cur is not None
        if slot.cur is slot.stored or slot.cur.version <= slot.stored.version:
            slot.cur = replace(slot.cur, version=slot.stored.version + 1)
        slot.changed = True
        log.info("legacy session document %s upgraded (%d samples)", slot.sid, len(samples))

    async def _session_event(self, record: Record | None, env: ev.Envelope, sid: str, traceparent: str | None) -> None:
        slot = await self._slot(sid, env.station_id)
        prev = slot.cur
        env = await self._with_connector(env, prev)
        remote = await self._remote_start(env)
        tariff, _ = await self.lookups.for_station(env.station_id)
        position = (record.partition, record.offset) if record is not None else None
        step = _guarded(env, apply, prev, env, self.now, self.rules, remote=remote, tariff=tariff, position=position)
        new = step.session
        if new is None:
            EVENTS_SKIPPED.labels(reason="unknown_session").inc()
            log.info("%s for unknown session %s station=%s skipped", env.type_name, sid, env.station_id)
            return
        slot.touched = True
        slot.traceparent = traceparent or slot.traceparent
        if step.changed:
            slot.cur, slot.changed = new, True
            if step.new_samples:
                slot.pending.extend(step.new_samples)
                self.meter_out.append(meter_values.outgoing(new, env, step.new_samples, traceparent=traceparent))
            if step.rebuild:
                # Later events of the batch may still be applied (their samples stay
                # complete): one fold per session and batch, before anything reads the
                # aggregates (an abandon decision) or writes them.
                slot.rebuild = slot.rebuild or step.rebuild
                slot.tariff = tariff
        else:
            slot.cur = new
            if position is not None and _redelivered(new, position):
                again = meter_values.redelivered_samples(env, self.rules)
                if again:
                    self.meter_out.append(meter_values.outgoing(new, env, again, traceparent=traceparent))
        assert slot.cur is not None
        await self._index_after(env, prev, slot.cur, step.changed)

    async def _ev_event(self, record: Record | None, env: ev.Envelope, traceparent: str | None) -> None:
        """NotifyEVChargingNeeds / NotifyEVChargingSchedule: kept on the active session of
        its EVSE (found in the station's open-sessions index); without one it is logged,
        counted and skipped."""
        evse_id = int(getattr(env.body, "evse_id", 0) or 0)
        sid = _session_on_evse(await self._index(env.station_id), evse_id)
        slot = None
        if sid is not None:
            if sid not in self.slots and sid not in self.loaded:
                self.loaded.update(await self.sessions.get_sessions([sid]))
            slot = await self._slot(sid, env.station_id)
        if slot is None or slot.cur is None or slot.cur.status != "active":
            EVENTS_SKIPPED.labels(reason="no_active_session").inc()
            log.info("%s for evse %d without an active session skipped station=%s event=%s",
                     env.type_name, evse_id, env.station_id, env.event_id)
            return
        position = (record.partition, record.offset) if record is not None else None
        new = _guarded(env, apply_ev_event, slot.cur, env, self.now, position=position)
        slot.touched = True
        slot.traceparent = traceparent or slot.traceparent
        if new is not slot.cur:
            slot.cur, slot.changed = new, True

    async def _rebuild(self, slot: _Slot) -> None:
        """Append the pending samples, read all of the session's samples (one partition
        range) and fold them again with the session's facts."""
        reason, slot.rebuild = slot.rebuild, ""
        if not reason or slot.cur is None:
            return
        REBUILDS.labels(reason=_reason_label(reason)).inc()
        await self._append(slot)
        samples = await self.sessions.read_samples(slot.sid)
        try:
            slot.cur = rebuild(slot.cur, samples, self.rules, tariff=slot.tariff, now=self.now)
        except Exception as exc:
            DOMAIN_ERRORS.labels(type="rebuild").inc()
            log.error("sessions domain failed rebuilding session %s (%s): %s: %s",
                      slot.sid, reason, type(exc).__name__, exc)
            raise
        slot.changed = True
        log.info("session %s rebuilt from %d samples (%s)", slot.sid, len(samples), reason)

    async def _append(self, slot: _Slot) -> None:
        if slot.pending:
            await self.sessions.append_samples(slot.sid, slot.pending)
            slot.pending = []

    async def _with_connector(self, env: ev.Envelope, old: Session | None) -> ev.Envelope:
        """A transaction event naming only its EVSE gets the connector from the station
        status, unless the session already knows its connector on that EVSE."""
        body = env.body
        if not isinstance(body, (ev.TransactionStarted, ev.TransactionUpdated, ev.TransactionEnded)):
            return env
        if body.evse_id == 0 or body.connector_id != 0:
            return env
        if old is not None and old.evse_id == body.evse_id and old.connector_id != 0:
            return env
        connector = connector_from_status(await self._status(env.station_id), body.evse_id)
        if connector == 0:
            return env
        return replace(env, body=replace(body, connector_id=connector))

    async def _remote_start(self, env: ev.Envelope) -> RemoteStart | None:
        rsid = int(getattr(env.body, "remote_start_id", 0) or 0)
        if not rsid:
            return None
        doc_id = remote_start_doc_id(env.station_id, rsid)
        if doc_id not in self.remote:
            self.remote[doc_id] = await self.lifecycle.get_remote_start(doc_id)
        command = self.remote[doc_id]
        if command is None:
            log.info("no RequestStartTransaction known for remoteStartId %d station=%s", rsid, env.station_id)
        return remote_start_of(command)

    # -- station status, remote starts --
    async def _status(self, station_id: str) -> StationStatus | None:
        if station_id not in self.statuses:
            self.statuses[station_id] = await self.stations.get_status(station_id)
        return self.statuses[station_id]

    async def _status_event(self, env: ev.Envelope) -> None:
        if env.station_id.startswith(_SITE_PREFIX):
            # A site notification from before csms.sites.v1 (still in the topic during an
            # upgrade) is not a station: no station-status document for it.
            return
        old = await self._status(env.station_id)
        new = _guarded(env, apply_status, old, env, self.now)
        if new is not None and new is not old:
            self.statuses[env.station_id] = self.status_out[env.station_id] = new  # written in _flush
        if isinstance(env.body, (ev.StationBooted, ev.ConnectorStatus)):
            await self._decide_on_status(env)

    async def _remote_start_issued(self, env: ev.Envelope) -> None:
        """A RequestStartTransaction sent: the REMOTE_START document its session will find
        (command records themselves are the stations processor's, ADR 016)."""
        doc_id = remote_start_ref(env)
        if doc_id is None:
            return
        if doc_id not in self.remote:
            self.remote[doc_id] = await self.lifecycle.get_remote_start(doc_id)
        current = self.remote[doc_id]
        rs = _guarded(env, apply_remote_start, current, env, self.now)
        if rs is not None and rs is not current:
            await self.lifecycle.put_remote_start(doc_id, rs)
            self.remote[doc_id] = rs

    # -- lifecycle --
    async def _index(self, station_id: str) -> OpenSessions | None:
        if station_id not in self.indexes:
            index = await self.lifecycle.get_open_sessions(station_id)
            self.indexes[station_id] = (index, index)
        return self.indexes[station_id][1]

    def _set_index(self, station_id: str, entries: Mapping[str, IndexEntry | None]) -> None:
        stored, current = self.indexes[station_id]
        new = index_with(current, station_id, entries, self.now)
        self.indexes[station_id] = (stored, new)

    async def _index_after(self, env: ev.Envelope, old: Session | None, new: Session, changed: bool) -> None:
        started = isinstance(env.body, ev.TransactionStarted)
        if not (started or not changed or _entry_inputs(old) != _entry_inputs(new)):
            return  # the hot path: a MeterValues / Updated that changes nothing the index keeps
        entry = index_entry(new)
        index = await self._index(new.station_id)
        decisions = abandons_for_start(index, new) if started else []
        self._set_index(new.station_id, {new.id: entry})
        await self._decide(new.station_id, decisions)

    async def _decide_on_status(self, env: ev.Envelope) -> None:
        if isinstance(env.body, ev.ConnectorStatus) and env.body.status.strip().lower() != "available":
            return
        index = await self._index(env.station_id)
        if index is None or not index.sessions:
            return
        if isinstance(env.body, ev.StationBooted):
            decisions = abandons_for_boot(index, env)
        else:
            decisions = abandons_for_status(index, env, self.rules)
        await self._decide(env.station_id, decisions)

    async def _decide(self, station_id: str, decisions: list[Abandon]) -> None:
        """Each decision whose session is open at this record becomes a SessionAbandoned
        (published after the writes); an entry whose session is no longer open (a crash
        between two writes) is dropped from the index."""
        stale: dict[str, IndexEntry | None] = {}
        for d in decisions:
            status, energy = await self._session_state(d.session_id)
            if status != "active":
                stale[d.session_id] = None
                continue
            self.abandons.append((abandon_envelope(station_id, d, energy, self.now), d.reason))
            log.warning("session %s tx=%s abandoned (%s) station=%s", d.session_id, d.transaction_id, d.reason, station_id)
        if stale:
            await self._index(station_id)
            self._set_index(station_id, stale)

    async def _session_state(self, sid: str) -> tuple[str | None, int]:
        slot = self.slots.get(sid)
        if slot is not None:
            await self._rebuild(slot)  # the energy in the decision must be the folded one
            s = slot.cur
        elif sid in self.loaded:
            s = self.loaded[sid].session
        else:
            if sid not in self.other_sessions:
                self.other_sessions[sid] = await self.sessions.get_session(sid)
            s = self.other_sessions[sid]
        return (None, 0) if s is None else (s.status, s.energy_wh)

    # -- the writes, then the publishes --
    async def _flush(self) -> None:
        slots = [s for s in self.slots.values() if s.cur is not None and (s.touched or s.changed)]
        for s in slots:
            await self._rebuild(s)
        pending = [s for s in slots if s.pending]
        if len(pending) == 1:
            await self._append(pending[0])
        elif pending:
            # one call for the batch: the store packs several sessions per request
            await self.sessions.append_samples_many([(s.sid, s.pending) for s in pending])
            for s in pending:
                s.pending = []
        changed = [s for s in slots if s.changed]
        changed_sessions = [s.cur for s in changed if s.cur is not None]
        # the token index first: a batch that fails after it is redelivered, and its
        # sessions then differ from the stored ones again (the same versioned entries)
        indexed = [
            s.cur for s in changed
            if s.cur is not None and (entry := token_session_inputs(s.cur)) is not None
            and entry != token_session_inputs(s.stored)
        ]
        if indexed:
            await self.sessions.put_token_sessions(indexed)
        writes = []
        if changed_sessions:
            writes.append(self.sessions.put_sessions(changed_sessions))
        if self.status_out:
            # versioned, no read: the highest version wins
            writes.append(self.stations.put_statuses(list(self.status_out.values())))
        if len(writes) == 1:
            await writes[0]
        elif writes:
            await asyncio.gather(*writes)
        for s in changed:
            assert s.cur is not None
            _count_transitions(s.stored, s.cur)
        out: list[Outgoing] = []
        max_duration = self.h.limits.max_duration
        for s in slots:
            assert s.cur is not None
            tariff, site_id = await self.lookups.for_station(s.cur.station_id)
            out.append(_snapshot(s.cur, site_id, running_total(s.cur, tariff, max_duration), s.traceparent))
        out.extend(self.meter_out)
        if out:
            await self.h.publish_many(out)
        for stored, current in self.indexes.values():
            if current is not None and current is not stored:
                await self.lifecycle.put_open_sessions(current)
        if self.abandons:
            await self.h.publish_many([
                (topics.EVENTS, e.station_id, codec.encode_event(e), codec.event_headers(e)) for e, _ in self.abandons
            ])
            for _, reason in self.abandons:
                ABANDONED.labels(reason=reason).inc()


def _redelivered(s: Session, position: tuple[int, int]) -> bool:
    """The domain's rule: at or below the session's applied mark on the same partition."""
    applied = s.applied
    return applied is not None and applied[0] == position[0] and position[1] <= applied[1]


def _session_on_evse(index: OpenSessions | None, evse_id: int) -> str | None:
    """The open session on the EVSE (the latest started when the index holds several)."""
    if index is None or evse_id <= 0:
        return None
    best: tuple[datetime, str] | None = None
    for sid, e in index.sessions.items():
        if e.evse_id == evse_id:
            key = (e.started_at or e.received_at, sid)
            if best is None or key > best:
                best = key
    return None if best is None else best[1]


def _entry_inputs(s: Session | None) -> tuple[Any, ...] | None:
    """What `index_entry` is made of (equal inputs, equal entries), without building it."""
    if s is None or s.status != "active":
        return None
    return (s.transaction_id, s.evse_id, s.connector_id,
            s.started_at if s.start_key is not None else None, s.received_at)


def _reason_label(reason: str) -> str:
    """A bounded label: the reason's leading identifier."""
    head = reason.split(":", 1)[0].split(" ", 1)[0].strip()
    return head[:40] or "unknown"


def _snapshot(s: Session, site_id: str, total: str, traceparent: str | None) -> Outgoing:
    return (
        topics.SESSIONS,
        s.station_id,
        snapshots.encode_session(s, site_id=site_id, running_total=total),
        snapshots.session_headers(s, traceparent=traceparent),
    )


def running_total(s: Session, tariff: Tariff | None, max_duration: timedelta) -> str:
    """The accumulator's price so far incl. tax, as of its last reading (or the end), for
    display; "" when there is none or the tariff that applies now is another one.
    `max_duration`: the billing limits' longest priced session."""
    acc = s.price
    if acc is None or tariff is None:
        return ""
    try:
        breakdown = finish_price(
            acc, tariff, now=max(acc.last_at, s.stopped_at or acc.last_at), stopped_at=s.stopped_at,
            charging_ended_at=s.charging_ended_at, end_wh=s.meter_stop_wh if s.stopped_at else None,
            max_duration=max_duration,
        )
    except StaleAccumulator:
        return ""
    except (ArithmeticError, ValueError) as exc:
        log.warning("running price of session %s not computed: %s: %s", s.id, type(exc).__name__, exc)
        return ""
    return f"{breakdown.total_incl_tax.amount:f}"


async def publish_snapshot(
    s: Session, lookups: TariffLookup, publish: Publish, max_duration: timedelta, *, traceparent: str | None = None,
) -> None:
    """Publish one session's csms.sessions.v1 snapshot (tools and tests)."""
    tariff, site_id = await lookups.for_station(s.station_id)
    await publish(*_snapshot(s, site_id, running_total(s, tariff, max_duration), traceparent))


# -- sweeper -------------------------------------------------------------------------
async def sweep_once(
    sessions: SessionRepository,
    lifecycle: LifecycleRepository,
    publish: Publish,
    now: datetime,
    idle_timeout: timedelta,
    *,
    scan: int = SWEEP_SCAN,
) -> int:
    """Publish SessionAbandoned(idle_timeout) for every open session that has not changed
    for `idle_timeout` (settings.session_idle_timeout_h); returns how many were published.
    Candidates come from the open-sessions indexes. Several processes may sweep at once
    (the sweeper runs in every sessions process and never writes the index: only the
    partition's owner does): the event ids are deterministic and applying one twice
    changes nothing."""
    count = 0
    for index in await lifecycle.list_open_sessions(scan):
        station_id = index.station_id
        sids = sorted(index.sessions)
        if not sids or not station_id:
            continue
        stored = await sessions.get_sessions(sids)
        for sid in sids:
            loaded = stored.get(sid)
            s = loaded.session if loaded is not None else None
            if s is None or not is_idle(s, now, idle_timeout):
                continue
            d = Abandon(sid, s.transaction_id, s.evse_id, s.connector_id, ev.ABANDONED_IDLE_TIMEOUT, None)
            env = abandon_envelope(station_id, d, s.energy_wh, now)
            await publish(topics.EVENTS, station_id, codec.encode_event(env), codec.event_headers(env))
            count += 1
            ABANDONED.labels(reason=d.reason).inc()
            log.warning("session %s tx=%s abandoned (%s) station=%s", sid, s.transaction_id, d.reason, station_id)
    return count


# -- helpers -------------------------------------------------------------------------
P = ParamSpec("P")
R = TypeVar("R")


def _guarded(env: ev.Envelope, fn: Callable[P, R], *args: P.args, **kw: P.kwargs) -> R:
    """The last line: the domain does not raise on schema-valid input. If it does (a
    bug), say which event, count it, and re-raise so the bus dead-letters the record
    after its bounded retries (replayable once fixed) instead of skipping it silently."""
    try:
        return fn(*args, **kw)
    except Exception as exc:
        DOMAIN_ERRORS.labels(type=env.type_name).inc()
        log.error(
            "sessions domain failed on event %s (%s) station=%s: %s: %s",
            env.event_id, env.type_name, env.station_id, type(exc).__name__, exc,
        )
        raise


def _count_transitions(old: Session | None, new: Session) -> None:
    was_active = old is not None and old.status == "active"
    if new.status == "active" and not was_active:
        SESSIONS_ACTIVE.inc()
    elif new.status != "active" and was_active:
        SESSIONS_ACTIVE.dec()
    if old is None and new.orphan:
        ORPHANS.inc()
        log.info("orphan session %s tx=%s station=%s", new.id, new.transaction_id, new.station_id)
    if new.seq_gaps and not (old and old.seq_gaps):
        SEQ_GAPS.inc()
        log.warning("seqNo gap in session %s tx=%s station=%s", new.id, new.transaction_id, new.station_id)
    if new.suspect and not (old and old.suspect):
        SUSPECT.inc()
        log.warning(
            "suspect session %s tx=%s reasons=%s station=%s",
            new.id, new.transaction_id, ",".join(sorted(new.suspect_reasons)), new.station_id,
        )
    before = old.suspect_reasons if old else frozenset()
    for reason in sorted((new.suspect_reasons & CLOCK_REASONS) - before):
        CLOCK_SUSPECT.labels(reason=reason).inc()
    held_before = old.hold_reasons if old else frozenset()
    for reason in sorted(new.hold_reasons - held_before):
        HELD.labels(reason=reason).inc()
        log.warning("session %s tx=%s held from export (%s) station=%s", new.id, new.transaction_id, reason, new.station_id)


def _observe_skew(env: ev.Envelope) -> None:
    if env.station_time is None or getattr(env.body, "offline", False) or isinstance(env.body, ev.SessionAbandoned):
        return
    delta = (env.received_at - env.station_time).total_seconds()
    (_SKEW_BEHIND if delta >= 0 else _SKEW_AHEAD).observe(abs(delta))


_SKEW_BEHIND = CLOCK_SKEW.labels(direction="behind")
_SKEW_AHEAD = CLOCK_SKEW.labels(direction="ahead")

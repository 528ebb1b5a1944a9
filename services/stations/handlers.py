"""The `stations-state` stage: a thin shell around the stations domain, per batch (ADR 016 §2).

`StationsStateHandler.handle_batch(records)` is what the processor shell calls with each
batch of csms.events.v1 records (group `csms-stations`):

- The CloudEvents `ce_type` header is read first: transaction events, heartbeats and
  SessionAbandoned are skipped without decoding, MeterValues of a transaction (the bulk of
  the topic) on a look at the protobuf, without building the event
  (`csms_stations_state_skipped_total{reason="irrelevant"}`). A record that does not decode
  is logged, counted (`reason="undecodable"`) and skipped: it never stops the consumer.
- The `StationOps` of every station with an event that can change it (`folds`: not
  transaction meter values, not commands other than firmware, log and availability ones)
  are read with ONE `get_ops`, the command records of every command event with ONE
  `get_commands` (concurrently).
- Events are folded in record order (each station's in offset order): `apply_command`
  into the command record, `apply_ops` into the station's state. A CommandResult from a
  gateway that did not yet fill `ocpp_action` / `request_json` is completed from its
  command record before the state fold (a ChangeAvailability result needs the request).
- Then ONE `append_station_events` with the history rows of the batch (every event but
  transaction traffic and heartbeats, plus an `Outage` row per outage the batch closed),
  ONE versioned `put_ops` with the changed states and ONE versioned `put_commands` with
  the changed records (no read-before-write: the highest version wins), concurrently;
  then ONE `publish` of the batch's accepted DataTransfers to csms.datatransfer.v1.
  History rows are idempotent by (station, time, event id), so a batch handled again
  (after a failed write or a crash before the commit) writes the same rows and publishes
  the same records again (consumers dedupe by ce_id).

Store and bus errors propagate: the bus retries the batch (for as long as it takes when
they are transient). The domain does not raise on schema-valid input; if it ever does (a
bug), the error is logged, counted in `csms_stations_state_domain_errors_total{type}` and
re-raised: the bus replays the batch one record at a time and dead-letters only that record
after its bounded retries (docs/dead-letters.md).

`prune_history(...)` is the periodic job that deletes history rows older than
CSMS_STATION_EVENTS_RETENTION_DAYS (SQLite; Cassandra rows expire by TTL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar

from prometheus_client import Counter, Histogram

from services.common import codec
from services.common import events as ev
from services.common.bus.port import Outgoing, Record
from services.common.store.port import StationEventLog, StationEventRow
from services.common.timeutil import Clock
from services.stations.codec import (
    METER_VALUES_CE_TYPE,
    NOT_IN_HISTORY,
    datatransfer_record,
    history_row,
    outage_row,
    transaction_meter_values,
)
from services.stations.domain.commands import COMMAND_BODIES, CommandRecord, apply_command
from services.stations.domain.fold import apply_ops, folds
from services.stations.domain.ops import StationOps
from services.stations.repository import CommandRepository, OpsRepository

__all__ = ["StationsStateHandler", "PublishMany", "observe_batch", "prune_history", "CE_TYPE_PREFIX"]

log = logging.getLogger("csms.stations.state")

CE_TYPE_PREFIX = "csms.events.v1."
_SITE_PREFIX = "site:"  # station id of the old SiteUpdated notifications on csms.events.v1
_YIELD_EVERY = 32

PublishMany = Callable[[Sequence[Outgoing]], Awaitable[None]]

EVENTS_PROCESSED = Counter(
    "csms_stations_state_events_total", "Events folded by the stations-state stage, by type", ["type"]
)
EVENTS_SKIPPED = Counter(
    "csms_stations_state_skipped_total",
    "Records the stations-state stage skipped: irrelevant (by ce_type, not decoded) or undecodable",
    ["reason"],
)
DOMAIN_ERRORS = Counter(
    "csms_stations_state_domain_errors_total",
    "Events the stations domain raised on (a bug: re-raised, so the bus dead-letters the record)",
    ["type"],
)
OUTAGES_CLOSED = Counter(
    "csms_stations_outages_closed_total", "Station outages that ended (logged as Outage history rows), by cause",
    ["cause"],
)
OUTAGES_OPENED = Counter("csms_stations_outages_opened_total", "Station outages that began, by cause", ["cause"])
DATATRANSFERS = Counter(
    "csms_stations_datatransfers_forwarded_total", "Accepted DataTransfer messages republished on csms.datatransfer.v1"
)
HISTORY_ROWS = Counter("csms_stations_history_rows_total", "Rows appended to the station history log")
HISTORY_PRUNED = Counter("csms_stations_history_pruned_total", "Station history rows deleted as older than the retention")
BATCH_SECONDS = Histogram(
    "csms_stations_state_batch_seconds",
    "Time to handle one batch of csms.events.v1 records in the stations-state stage",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_RECORDS = Histogram(
    "csms_stations_state_batch_records",
    "Records per batch handed to the stations-state stage",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)

_SKIP_TYPES = frozenset(CE_TYPE_PREFIX + name for name in NOT_IN_HISTORY)
_IRRELEVANT = EVENTS_SKIPPED.labels(reason="irrelevant")
_UNDECODABLE = EVENTS_SKIPPED.labels(reason="undecodable")


def observe_batch(records: Sequence[Record], seconds: float) -> None:
    """The batch metrics (the processor shell's `observe`)."""
    BATCH_SECONDS.observe(seconds)
    BATCH_RECORDS.observe(len(records))


class StationsStateHandler:
    """The stations-state stage's handler: its ports, bound once (see the module docstring)."""

    def __init__(
        self,
        *,
        ops: OpsRepository,
        commands: CommandRepository,
        history: StationEventLog,
        publish: PublishMany,
        clock: Clock,
    ) -> None:
        self.ops = ops
        self.commands = commands
        self.history = history
        self.publish = publish
        self.clock = clock
        self._processed: dict[str, Counter] = {}

    def _count(self, type_name: str) -> None:
        child = self._processed.get(type_name)
        if child is None:
            child = self._processed[type_name] = EVENTS_PROCESSED.labels(type=type_name)
        child.inc()

    def decode(self, records: Sequence[Record]) -> list[ev.Envelope]:
        """The batch's events this stage folds or logs, in record order. MeterValues of a
        transaction (history and state keep none) are told apart on the protobuf before
        their samples are built."""
        out: list[ev.Envelope] = []
        irrelevant = 0
        for record in records:
            ce_type = record.header("ce_type")
            if ce_type in _SKIP_TYPES:
                irrelevant += 1
                continue
            try:
                if ce_type == METER_VALUES_CE_TYPE and transaction_meter_values(record.value):
                    irrelevant += 1
                    continue
                env = codec.decode_event(record.value)
            except Exception:
                _UNDECODABLE.inc()
                log.exception("undecodable record %s[%d]@%d skipped", record.topic, record.partition, record.offset)
                continue
            if (
                env.type_name in NOT_IN_HISTORY
                or env.station_id.startswith(_SITE_PREFIX)
                or (isinstance(env.body, ev.MeterValues) and env.body.transaction_id)
            ):
                # no ce_type header (older producers), a site notification from before
                # csms.sites.v1, or transaction meter values under no (or another) header
                irrelevant += 1
                continue
            out.append(env)
        if irrelevant:
            _IRRELEVANT.inc(irrelevant)
        return out

    async def handle_batch(self, records: Sequence[Record]) -> None:
        """Handle one batch of csms.events.v1 records (each partition's in offset order)."""
        envs = self.decode(records)
        if envs:
            await self.handle_events(envs)

    async def handle_events(self, envs: Sequence[ev.Envelope]) -> None:
        """Fold already decoded events, in order (see the module docstring)."""
        now = self.clock()
        station_ids = list(dict.fromkeys(e.station_id for e in envs if folds(e)))
        command_ids = list(dict.fromkeys(e.body.command_id for e in envs if isinstance(e.body, COMMAND_BODIES)))
        stored_ops, stored_commands = await asyncio.gather(
            self.ops.get_ops(station_ids), self.commands.get_commands(command_ids)
        )
        states: dict[str, StationOps] = {sid: stored_ops.get(sid) or StationOps(sid) for sid in station_ids}
        records: dict[str, CommandRecord | None] = {cid: stored_commands.get(cid) for cid in command_ids}
        changed_states: set[str] = set()
        changed_records: set[str] = set()
        rows: list[StationEventRow] = []
        out: list[Outgoing] = []
        for i, env in enumerate(envs):
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)  # in `csms run` the gateway shares this loop
            self._count(env.type_name)
            row = history_row(env)
            if row is not None:
                rows.append(row)
            body = env.body
            fold_ops = folds(env)
            if isinstance(body, COMMAND_BODIES):
                old_record = records[body.command_id]
                record = _guarded(env, apply_command, old_record, env, now)
                if record is not None and record is not old_record:
                    records[body.command_id] = record
                    changed_records.add(body.command_id)
                env = _with_request(env, records[body.command_id])
            if fold_ops:
                sid = env.station_id
                old = states[sid]
                change = _guarded(env, apply_ops, old, env, now)
                if change.ops is not old:
                    states[sid] = change.ops
                    changed_states.add(sid)
                    if change.ops.outage is not None and change.ops.outage != old.outage:
                        OUTAGES_OPENED.labels(cause=change.ops.outage.cause).inc()
                if change.closed is not None:
                    rows.append(outage_row(sid, change.closed))
                    OUTAGES_CLOSED.labels(cause=change.closed.cause).inc()
            elif isinstance(body, ev.DataTransfer) and body.status == "Accepted":
                out.append(datatransfer_record(env))
        writes: list[Awaitable[None]] = []
        if rows:
            writes.append(self.history.append_station_events(rows))
        if changed_states:
            writes.append(self.ops.put_ops([states[sid] for sid in changed_states]))
        if changed_records:
            changed = [records[cid] for cid in changed_records]
            writes.append(self.commands.put_commands([r for r in changed if r is not None]))
        if len(writes) == 1:
            await writes[0]
        elif writes:
            await asyncio.gather(*writes)
        HISTORY_ROWS.inc(len(rows))
        if out:
            await self.publish(out)
            DATATRANSFERS.inc(len(out))


def _with_request(env: ev.Envelope, record: CommandRecord | None) -> ev.Envelope:
    """A CommandResult without its action and request (a gateway from before ADR 016),
    completed from the command record when its CommandIssued was seen."""
    body = env.body
    if not isinstance(body, ev.CommandResult) or body.request_json or record is None or record.issued_at is None:
        return env
    try:
        request = json.dumps(record.payload) if isinstance(record.payload, dict) else ""
    except (TypeError, ValueError):
        request = ""
    filled = dataclasses.replace(body, ocpp_action=body.ocpp_action or record.ocpp_action, request_json=request)
    return dataclasses.replace(env, body=filled)


async def prune_history(history: StationEventLog, clock: Clock, retention_days: float) -> int:
    """Delete history rows older than `retention_days` (0: keep for ever); how many went."""
    if retention_days <= 0:
        return 0
    older_than: datetime = clock() - timedelta(days=float(retention_days))
    n = await history.prune_station_events(older_than)
    if n:
        HISTORY_PRUNED.inc(n)
        log.info("pruned %d station history rows older than %s", n, older_than.isoformat())
    return n


P = ParamSpec("P")
R = TypeVar("R")


def _guarded(env: ev.Envelope, fn: Callable[P, R], *args: P.args, **kw: P.kwargs) -> R:
    """The last line: the domain does not raise on schema-valid input. If it does (a bug),
    say which event, count it, and re-raise so the bus dead-letters the record after its
    bounded retries (replayable once fixed) instead of skipping it silently."""
    try:
        return fn(*args, **kw)
    except Exception as exc:
        DOMAIN_ERRORS.labels(type=env.type_name).inc()
        log.error(
            "stations domain failed on event %s (%s) station=%s: %s: %s",
            env.event_id, env.type_name, env.station_id, type(exc).__name__, exc,
        )
        raise

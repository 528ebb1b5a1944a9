"""Thin runtime shell around the sessions domain: decode, load, apply, save, publish.

`handle_record(rt, record)` is a plain async function: the embedded worker
(`SessionsService`) and, later, Faust agents in the distributed mode call it.

- Session events: load doc "session"/<id>, `apply`, and if it changed
  `put_doc(..., parent=station_id, version=s.version)` — write first, publish the
  snapshot on csms.sessions.v1 after. If the event changed nothing (a redelivery,
  e.g. after a crash between the write and the publish, or after a publish
  failure), the stored snapshot is published again: consumers dedupe by
  (id, version), so that costs at most one identical extra record per redelivery
  and never loses one.
- A version-guarded `put_doc` returning False means a document with this version
  (or newer) is already stored: only another delivery of the same records (a
  zombie consumer after a rebalance) can have written it, and `apply` is
  deterministic, so there is nothing to reload or re-apply; we still publish.
- Station status → doc "station_status"/<station id>; command records → doc
  "command"/<command id> with parent = station id (late replies correlate there).
- Records of one station arrive in order on one partition, one at a time, so no
  locks are needed. Store and bus errors propagate: the bus redelivers the record.
  Undecodable records and events the domain rejects are logged, counted and
  skipped, so one bad record never blocks the other stations of its partition.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.common import codec, topics
from services.common import events as ev
from services.common.bus.port import Record
from services.sessions import codec as snapshots
from services.sessions.domain import (
    Session,
    apply,
    apply_command,
    apply_status,
    session_from_doc,
    session_ref,
    session_to_doc,
)
from services.sessions.domain.station_status import COMMAND_BODIES, STATUS_BODIES

__all__ = ["handle_record", "handle_event", "publish_snapshot", "GROUP"]

log = logging.getLogger("csms.sessions.handlers")

GROUP = "csms-sessions"

EVENTS_PROCESSED = Counter(
    "csms_sessions_events_processed_total", "Events consumed by the sessions processor", ["type"]
)
EVENTS_SKIPPED = Counter(
    "csms_sessions_events_skipped_total", "Events skipped as undecodable or rejected by the domain", ["reason"]
)
SESSIONS_ACTIVE = Gauge(
    "csms_sessions_active", "Active sessions seen by this process (best effort, resets on restart)"
)
SEQ_GAPS = Counter("csms_sessions_seq_gaps_total", "Sessions in which a seqNo gap appeared")
ORPHANS = Counter("csms_sessions_orphans_total", "Sessions created by an event without its start")
SUSPECT = Counter("csms_sessions_suspect_total", "Sessions flagged suspect")
CLOCK_SKEW = Histogram(
    "csms_sessions_clock_skew_seconds",
    "Receive time minus station time, as an absolute value; direction=behind: station "
    "time earlier than receive time, ahead: later (offline-queued messages excluded)",
    ["direction"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
HANDLER_SECONDS = Histogram(
    "csms_sessions_handler_seconds",
    "Time to handle one record (decode, load, apply, save, publish)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


async def handle_record(rt: Any, record: Record) -> None:
    """Handle one csms.events.v1 record. `rt` is a `services.common.runtime.Runtime`."""
    try:
        env = codec.decode_event(record.value, codec.headers_dict(record.headers))
    except Exception:
        EVENTS_SKIPPED.labels(reason="undecodable").inc()
        log.exception("undecodable record %s[%d]@%d skipped", record.topic, record.partition, record.offset)
        return
    await handle_event(rt, env, traceparent=record.header("traceparent"))


async def handle_event(rt: Any, env: ev.Envelope, *, traceparent: str | None = None) -> None:
    EVENTS_PROCESSED.labels(type=env.type_name).inc()
    _observe_skew(env)
    now: datetime = rt.clock()
    if session_ref(env) is not None:
        await _handle_session(rt, env, now, traceparent)
    elif isinstance(env.body, STATUS_BODIES):
        doc = await rt.store.get_doc("station_status", env.station_id)
        new = _guarded(apply_status, doc, env, now)
        if new is not None and new != doc:
            await rt.store.put_doc("station_status", env.station_id, new, version=new["version"])
    elif isinstance(env.body, COMMAND_BODIES):
        cid = env.body.command_id
        doc = await rt.store.get_doc("command", cid)
        new = _guarded(apply_command, doc, env, now)
        if new is not None and new != doc:
            await rt.store.put_doc("command", cid, new, parent=env.station_id, version=new["version"])


async def _handle_session(rt: Any, env: ev.Envelope, now: datetime, traceparent: str | None) -> None:
    ref = session_ref(env)
    assert ref is not None
    doc = await rt.store.get_doc("session", ref[0])
    old = session_from_doc(doc) if doc is not None else None
    new = _guarded(apply, old, env, now)
    if new is None:
        return
    if new is not old:
        written = await rt.store.put_doc(
            "session", new.id, session_to_doc(new), parent=new.station_id, version=new.version
        )
        if not written:
            log.info("session %s v%d already stored station=%s", new.id, new.version, new.station_id)
        _count_transitions(old, new)
    await publish_snapshot(rt, new, traceparent=traceparent)


async def publish_snapshot(rt: Any, s: Session, *, traceparent: str | None = None) -> None:
    await rt.bus.publish(
        topics.SESSIONS,
        s.station_id,
        snapshots.encode_session(s),
        snapshots.session_headers(s, traceparent=traceparent),
    )


def _guarded(fn: Any, state: Any, env: ev.Envelope, now: datetime) -> Any:
    try:
        return fn(state, env, now)
    except (ValueError, TypeError, KeyError, AttributeError):
        EVENTS_SKIPPED.labels(reason="rejected").inc()
        log.exception("event %s (%s) rejected station=%s", env.event_id, env.type_name, env.station_id)
        return None


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


def _observe_skew(env: ev.Envelope) -> None:
    if env.station_time is None or getattr(env.body, "offline", False):
        return
    delta = (env.received_at - env.station_time).total_seconds()
    CLOCK_SKEW.labels(direction="behind" if delta >= 0 else "ahead").observe(abs(delta))

"""Thin runtime shell around the sessions domain: decode, load, apply, save, publish.

`handle_record(rt, record)` is a plain async function: the embedded worker
(`SessionsService`) and, later, Faust agents in the distributed mode call it.

- Session events: load doc "session"/<id>, `apply` (with the plausibility rules built
  from the settings), and if it changed `put_doc(..., parent=station_id,
  version=s.version)` — write first, publish the snapshot on csms.sessions.v1 after. If
  the event changed nothing (a redelivery, e.g. after a crash between the write and
  the publish, or after a publish failure), the stored snapshot is published again:
  consumers dedupe by (id, version), so that costs at most one identical extra record
  per redelivery and never loses one.
- A version-guarded `put_doc` returning False means a document with this version
  (or newer) is already stored: only another delivery of the same records (a
  zombie consumer after a rebalance) can have written it, and `apply` is
  deterministic, so there is nothing to reload or re-apply; we still publish.
- Before applying: a transaction event naming only its EVSE takes the connector from
  the station status document (`connector_from_status`), and one carrying a
  remoteStartId gets the matching RequestStartTransaction command (doc "remote_start",
  written here when the CommandIssued is processed) for its token and issuer.
- Lifecycle (domain/lifecycle.py): after a session changes, the station's open-sessions
  index (doc "open_sessions"/<station>) is brought up to date — read and written only
  when the session's index entry changes (opens, starts, moves, ends, is abandoned) or
  on a redelivery, never for an ordinary MeterValues. A TransactionStarted, a
  StationBooted and a ConnectorStatus "Available" are checked against the index; each
  session they close is published as a SessionAbandoned on csms.events.v1 (a
  deterministic event id: redeliveries publish the same event again, harmlessly), and
  applied when this processor consumes it.
- Station status → doc "station_status"/<station id>; command records → doc
  "command"/<command id> with parent = station id (late replies correlate there).
- Records of one station arrive in order on one partition, one at a time, so no
  locks are needed. Store and bus errors propagate: the bus pauses and redelivers.
  Undecodable records are logged, counted and skipped. The domain does not raise on
  schema-valid input; if it ever does (a bug), the error is logged, counted in
  `csms_sessions_domain_errors_total{type}` and re-raised, so the bus retries a few
  times and then dead-letters the record (docs/dead-letters.md): it can be replayed
  once fixed, and the partition moves on.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.common import codec, topics
from services.common import events as ev
from services.common.bus.port import Record
from services.sessions import codec as snapshots
from services.sessions.domain import (
    INDEX_KIND,
    REMOTE_START_KIND,
    Abandon,
    Plausibility,
    RemoteStart,
    Session,
    abandon_envelope,
    abandons_for_boot,
    abandons_for_start,
    abandons_for_status,
    apply,
    apply_command,
    apply_remote_start,
    apply_status,
    connector_from_status,
    index_entry,
    index_with,
    is_idle,
    remote_start_doc_id,
    remote_start_from_doc,
    remote_start_ref,
    session_from_doc,
    session_ref,
    session_to_doc,
)
from services.sessions.domain.session import CLOCK_REASONS
from services.sessions.domain.station_status import COMMAND_BODIES, STATUS_BODIES

__all__ = ["handle_record", "handle_event", "publish_snapshot", "sweep_once", "rules_for", "GROUP"]

log = logging.getLogger("csms.sessions.handlers")

GROUP = topics.group("csms-sessions")
_RULES_KEY = "sessions.plausibility"
_SWEEP_SCAN = 100_000  # open-sessions documents read per sweep (one per station)

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
    "Time to handle one record (decode, load, apply, save, publish)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def rules_for(rt: Any) -> Plausibility:
    """The plausibility rules of this runtime's settings (built once, kept in rt.extras).
    Raises ValueError for a bad CSMS_CLOCK_FLOOR: the worker calls it at start."""
    rules = rt.extras.get(_RULES_KEY)
    if rules is None:
        rules = rt.extras[_RULES_KEY] = Plausibility.from_settings(rt.settings)
    return rules  # type: ignore[no-any-return]


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
        if isinstance(env.body, (ev.StationBooted, ev.ConnectorStatus)):
            await _decide_on_status(rt, env, now)
    elif isinstance(env.body, COMMAND_BODIES):
        cid = env.body.command_id
        doc = await rt.store.get_doc("command", cid)
        new = _guarded(apply_command, doc, env, now)
        if new is not None and new != doc:
            await rt.store.put_doc("command", cid, new, parent=env.station_id, version=new["version"])
        if isinstance(env.body, ev.CommandIssued) and env.body.ocpp_action == "RequestStartTransaction":
            await _record_remote_start(rt, env, now)


# -- sessions ----------------------------------------------------------------
async def _handle_session(rt: Any, env: ev.Envelope, now: datetime, traceparent: str | None) -> None:
    ref = session_ref(env)
    assert ref is not None
    rules = rules_for(rt)
    doc = await rt.store.get_doc("session", ref[0])
    old = session_from_doc(doc) if doc is not None else None
    env = await _with_connector(rt, env, old)
    remote = await _remote_start(rt, env)
    new = _guarded(apply, old, env, now, rules, remote=remote)
    if new is None:
        EVENTS_SKIPPED.labels(reason="unknown_session").inc()
        log.info("%s for unknown session %s station=%s skipped", env.type_name, ref[0], env.station_id)
        return
    if new is not old:
        written = await rt.store.put_doc(
            "session", new.id, session_to_doc(new), parent=new.station_id, version=new.version
        )
        if not written:
            log.info("session %s v%d already stored station=%s", new.id, new.version, new.station_id)
        _count_transitions(old, new)
    await publish_snapshot(rt, new, traceparent=traceparent)
    await _maintain_index(rt, env, old, new, now)


async def _with_connector(rt: Any, env: ev.Envelope, old: Session | None) -> ev.Envelope:
    """A transaction event naming only its EVSE gets the connector from the station
    status, unless the session already knows its connector on that EVSE."""
    body = env.body
    if not isinstance(body, (ev.TransactionStarted, ev.TransactionUpdated, ev.TransactionEnded)):
        return env
    if body.evse_id == 0 or body.connector_id != 0:
        return env
    if old is not None and old.evse_id == body.evse_id and old.connector_id != 0:
        return env
    status = await rt.store.get_doc("station_status", env.station_id)
    connector = connector_from_status(status, body.evse_id)
    if connector == 0:
        return env
    return replace(env, body=replace(body, connector_id=connector))


async def _remote_start(rt: Any, env: ev.Envelope) -> RemoteStart | None:
    rsid = int(getattr(env.body, "remote_start_id", 0) or 0)
    if not rsid:
        return None
    doc = await rt.store.get_doc(REMOTE_START_KIND, remote_start_doc_id(env.station_id, rsid))
    if doc is None:
        log.info("no RequestStartTransaction known for remoteStartId %d station=%s", rsid, env.station_id)
    return remote_start_from_doc(doc)


async def _record_remote_start(rt: Any, env: ev.Envelope, now: datetime) -> None:
    doc_id = remote_start_ref(env)
    if doc_id is None:
        return
    old = await rt.store.get_doc(REMOTE_START_KIND, doc_id)
    new = _guarded(apply_remote_start, old, env, now)
    if new is not None and new is not old:
        await rt.store.put_doc(REMOTE_START_KIND, doc_id, new, parent=env.station_id, version=new["version"])


# -- lifecycle ---------------------------------------------------------------
async def _maintain_index(rt: Any, env: ev.Envelope, old: Session | None, new: Session, now: datetime) -> None:
    started = isinstance(env.body, ev.TransactionStarted)
    entry = index_entry(new)
    if not (started or new is old or index_entry(old) != entry):
        return  # the hot path: a MeterValues / Updated that changes nothing the index keeps
    index = await rt.store.get_doc(INDEX_KIND, new.station_id)
    decisions = abandons_for_start(index, new) if started else []
    await _save_index(rt, new.station_id, index, {new.id: entry}, now)
    await _publish_abandons(rt, new.station_id, decisions, now)


async def _decide_on_status(rt: Any, env: ev.Envelope, now: datetime) -> None:
    if isinstance(env.body, ev.ConnectorStatus) and env.body.status.strip().lower() != "available":
        return
    index = await rt.store.get_doc(INDEX_KIND, env.station_id)
    if not (index or {}).get("sessions"):
        return
    if isinstance(env.body, ev.StationBooted):
        decisions = abandons_for_boot(index, env)
    else:
        decisions = abandons_for_status(index, env, rules_for(rt))
    await _publish_abandons(rt, env.station_id, decisions, now, index=index)


async def _save_index(
    rt: Any, station_id: str, index: dict[str, Any] | None, entries: dict[str, dict[str, Any] | None], now: datetime
) -> dict[str, Any] | None:
    new = index_with(index, station_id, entries, now)
    if new is not None and new is not index:
        await rt.store.put_doc(INDEX_KIND, station_id, new, parent=station_id, version=new["version"])
    return new


async def _publish_abandons(
    rt: Any, station_id: str, decisions: list[Abandon], now: datetime, *,
    index: dict[str, Any] | None = None, fix_index: bool = True, docs: dict[str, dict[str, Any]] | None = None,
) -> int:
    """Publish one SessionAbandoned per decision whose session is still open; returns how
    many. With `fix_index`, an entry whose session is no longer open (a crash between two
    writes) is dropped from the index. Only the partition's owner writes the index: the
    sweeper, which runs in every sessions process, passes fix_index=False."""
    stale: dict[str, dict[str, Any] | None] = {}
    published = 0
    for d in decisions:
        doc = (docs or {}).get(d.session_id) or await rt.store.get_doc("session", d.session_id)
        if doc is None or doc.get("status") != "active":
            stale[d.session_id] = None
            continue
        env = abandon_envelope(station_id, d, int(doc.get("energy_wh") or 0), now)
        await rt.bus.publish(topics.EVENTS, station_id, codec.encode_event(env), codec.event_headers(env))
        published += 1
        ABANDONED.labels(reason=d.reason).inc()
        log.warning(
            "session %s tx=%s abandoned (%s) station=%s", d.session_id, d.transaction_id, d.reason, station_id
        )
    if stale and fix_index:
        if index is None:
            index = await rt.store.get_doc(INDEX_KIND, station_id)
        await _save_index(rt, station_id, index, stale, now)
    return published


async def sweep_once(rt: Any, now: datetime) -> int:
    """Publish SessionAbandoned(idle_timeout) for every open session whose document has
    not changed for settings.session_idle_timeout_h; returns how many were published.
    Candidates come from the open-sessions index documents. Several processes may sweep
    at once: the event ids are deterministic and applying one twice changes nothing."""
    timeout = timedelta(hours=float(rt.settings.session_idle_timeout_h))
    count = 0
    for index in await rt.store.list_docs(INDEX_KIND, limit=_SWEEP_SCAN):
        station_id = str(index.get("station_id") or "")
        decisions, docs = [], {}
        for sid in sorted(index.get("sessions") or {}):
            doc = await rt.store.get_doc("session", sid)
            if is_idle(doc, now, timeout):
                assert doc is not None
                docs[sid] = doc
                decisions.append(Abandon(
                    sid, str(doc.get("transaction_id", "")), int(doc.get("evse_id") or 0),
                    int(doc.get("connector_id") or 0), ev.ABANDONED_IDLE_TIMEOUT, None,
                ))
        if decisions and station_id:
            count += await _publish_abandons(rt, station_id, decisions, now, fix_index=False, docs=docs)
    return count


async def publish_snapshot(rt: Any, s: Session, *, traceparent: str | None = None) -> None:
    await rt.bus.publish(
        topics.SESSIONS,
        s.station_id,
        snapshots.encode_session(s),
        snapshots.session_headers(s, traceparent=traceparent),
    )


def _guarded(fn: Any, state: Any, env: ev.Envelope, now: datetime, *args: Any, **kw: Any) -> Any:
    """The last line: the domain does not raise on schema-valid input. If it does (a
    bug), say which event, count it, and re-raise so the bus dead-letters the record
    after its bounded retries (replayable once fixed) instead of skipping it silently."""
    try:
        return fn(state, env, now, *args, **kw)
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
    CLOCK_SKEW.labels(direction="behind" if delta >= 0 else "ahead").observe(abs(delta))

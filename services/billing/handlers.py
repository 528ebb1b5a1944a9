"""The billing processor's handler: one `csms.sessions.v1` record in, at most one CDR out.

A plain async function of (runtime, record) so any consumer loop (the bus port's
`subscribe`, a faust agent) can drive it. Thin: decode, load, decide (pure domain),
save, publish.

Delivery is at-least-once and may be out of order, so:
- active sessions are ignored (their running cost is computed on read by the API);
- a snapshot whose version is not newer than the one the latest CDR priced is stale
  and dropped (ADR 005); the inputs fingerprint makes an identical redelivery a no-op;
- the CDR document is written first (versioned upsert, `published: false`), then the
  record is published, then the document is marked published. A crash in between
  leaves an unpublished head, which the next delivery for that session publishes
  (so `csms.cdrs.v1` is at-least-once too; consumers dedupe by `ce_id` = CDR id).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from prometheus_client import Counter, Histogram

from services.billing.adapters import (
    cdr_to_doc,
    head_from_doc,
    latest_cdr_doc,
    resolve_tariff,
    usage_from_snapshot,
)
from services.billing.codec import SESSION_CE_TYPE, SessionSnapshot, cdr_headers, decode_session, encode_cdr
from services.billing.domain import TariffError, decide_cdr
from services.common import topics
from services.common.bus.port import Record
from services.common.runtime import Runtime
from services.common.telemetry import tracer

__all__ = ["handle_session_record", "publish_cdr_doc", "CDRS_TOTAL", "UNPRICED_TOTAL", "HANDLER_SECONDS", "SNAPSHOTS_TOTAL"]

log = logging.getLogger("csms.billing")

CDRS_TOTAL = Counter("csms_billing_cdrs_total", "CDRs issued, by reason (initial, late_stop, ...)", ["reason"])
UNPRICED_TOTAL = Counter(
    "csms_billing_sessions_unpriced_total", "Completed sessions that got no CDR (no tariff applies, or it is invalid)"
)
HANDLER_SECONDS = Histogram(
    "csms_billing_handler_seconds",
    "Time to handle one csms.sessions.v1 record",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SNAPSHOTS_TOTAL = Counter(
    "csms_billing_snapshots_total",
    "csms.sessions.v1 records handled, by outcome (cdr, unchanged, stale, active, unpriced, ...)",
    ["outcome"],
)

# Sessions already reported as unpriced (bounded): one log line and one count per session,
# however often its snapshots are redelivered.
_UNPRICED_SEEN: OrderedDict[str, None] = OrderedDict()
_UNPRICED_SEEN_MAX = 10_000


def _first_time_unpriced(session_id: str) -> bool:
    if session_id in _UNPRICED_SEEN:
        _UNPRICED_SEEN.move_to_end(session_id)
        return False
    _UNPRICED_SEEN[session_id] = None
    if len(_UNPRICED_SEEN) > _UNPRICED_SEEN_MAX:
        _UNPRICED_SEEN.popitem(last=False)
    return True


async def publish_cdr_doc(rt: Runtime, doc: dict[str, Any], *, traceparent: str | None = None) -> None:
    """Publish a stored CDR document on csms.cdrs.v1, then mark it published."""
    station_id = str(doc.get("station_id") or "")
    await rt.bus.publish(topics.CDRS, station_id, encode_cdr(doc), cdr_headers(doc, traceparent=traceparent))
    # Unversioned upsert: keeps the stored version, only flips the outbox marker.
    await rt.store.put_doc("cdr", str(doc["id"]), {**doc, "published": True}, parent=str(doc["session_id"]))


async def handle_session_record(rt: Runtime, record: Record) -> str:
    """Handle one record; returns the outcome (also counted in csms_billing_snapshots_total).

    Raises only for transient failures (store or bus unavailable), so the bus redelivers.
    """
    t0 = time.perf_counter()
    try:
        outcome = await _handle(rt, record)
    finally:
        HANDLER_SECONDS.observe(time.perf_counter() - t0)
    SNAPSHOTS_TOTAL.labels(outcome).inc()
    return outcome


async def _handle(rt: Runtime, record: Record) -> str:
    ce_type = record.header("ce_type")
    if ce_type and ce_type != SESSION_CE_TYPE:
        log.debug("ignoring %s record on %s", ce_type, record.topic)
        return "ignored"
    try:
        snap = decode_session(record.value)
    except ValueError as exc:
        # Permanent: redelivering the same bytes cannot help. Count, log, move on.
        log.error("undecodable session snapshot %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
        return "undecodable"
    if not snap.completed:
        return "active"
    with tracer.start_as_current_span(
        "billing.session_completed",
        attributes={"csms.station_id": snap.station_id, "csms.session_id": snap.id, "csms.session_version": snap.version},
    ):
        return await _bill(rt, snap, record.header("traceparent"))


async def _bill(rt: Runtime, snap: SessionSnapshot, traceparent: str | None) -> str:
    head_doc = await latest_cdr_doc(rt.store, snap.id)
    head = head_from_doc(head_doc) if head_doc is not None else None
    if head_doc is not None and head is not None and not head.published:
        log.info("re-publishing CDR %s station=%s (previous attempt did not finish)", head_doc["id"], snap.station_id)
        await publish_cdr_doc(rt, head_doc, traceparent=traceparent)
    if head is not None and snap.version and head.session_version and snap.version <= head.session_version:
        log.debug(
            "stale snapshot %s v%d (CDR %d priced v%d) station=%s",
            snap.id, snap.version, head.version, head.session_version, snap.station_id,
        )
        return "stale"

    try:
        resolved = await resolve_tariff(rt.store, snap.station_id, snap.site_id)
    except TariffError as exc:
        if _first_time_unpriced(snap.id):
            UNPRICED_TOTAL.inc()
            log.error("session %s not billed: its tariff is invalid (%s) station=%s", snap.id, exc, snap.station_id)
        return "invalid_tariff"
    if resolved is None:
        if _first_time_unpriced(snap.id):
            UNPRICED_TOTAL.inc()
            log.warning(
                "session %s not billed: no tariff (station, site or default) station=%s", snap.id, snap.station_id
            )
        return "unpriced"

    usage = usage_from_snapshot(snap)
    if usage is None:
        if _first_time_unpriced(snap.id):
            UNPRICED_TOTAL.inc()
            log.warning("session %s not billed: it has no start or stop time station=%s", snap.id, snap.station_id)
        return "unpriceable"

    cdr = decide_cdr(head, snap.id, snap.station_id, resolved.tariff, usage, now=rt.clock())
    if cdr is None:
        return "unchanged"  # replay / redelivery: the latest CDR already reflects these inputs

    doc = cdr_to_doc(cdr, snap)
    written = await rt.store.put_doc("cdr", cdr.id, doc, parent=snap.id, version=cdr.version)
    if not written:
        # Another consumer (a rebalance overlap) stored this version first; it publishes it.
        log.info("CDR %s already stored, not publishing again station=%s", cdr.id, snap.station_id)
        return "conflict"
    await publish_cdr_doc(rt, doc, traceparent=traceparent)
    CDRS_TOTAL.labels(cdr.reason).inc()
    log.info(
        "CDR %s (%s) session=%s v%d energy_wh=%d total=%s incl_tax=%s tariff=%s (%s) station=%s",
        cdr.id, cdr.reason, snap.id, snap.version, cdr.energy_wh, cdr.total_cost, cdr.total_cost_incl_tax,
        resolved.tariff.id, resolved.source, snap.station_id,
    )
    return "cdr"

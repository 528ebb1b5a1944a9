"""The billing processor's handler: `csms.sessions.v1` records in, at most one CDR per
session snapshot out.

`BillingHandler` takes the ports it uses (ADR 010, consolidation): the CDR documents
(`CdrRepository`), the tariff that applies (`TariffLookup`), a session's stored register
readings (`ReadingsReader`), `publish`, a `clock`, the `BillingLimits` and the sessions
already reported as unbilled (`ReportedOnce`, one per process), all wired once by
`services.billing.wiring`. The processor consumes batches (`handle_batch`, ADR 015):
active snapshots are decoded and dropped without touching the store, and of several
snapshots of one session in a batch only the latest version is billed. Thin: decode,
load, decide (pure domain), save, publish.

Pricing (ADR 015): a completed snapshot carries the sessions processor's price
accumulator; when it was opened with the tariff that applies now (same id and
fingerprint) it is finished as it is (`finish_price`, no store read); otherwise the
session's stored samples are folded again (`csms_billing_priced_total{path}`).

Which sessions are billed (docs/billing-holds.md): "completed" and "abandoned" ones
(closed by the CSMS: priced up to their last sign of life with their last known
energy); never one whose token the CSMS refused at the start (`authorization` not
"" / "Accepted"): that is counted as outcome "refused_token" and logged once.

Held CDRs: a CDR whose session is on hold (clock suspect, implausible size) or which
is itself longer than CSMS_SESSION_MAX_DURATION_H or larger than
CSMS_SESSION_MAX_ENERGY_WH is stored with `hold_reasons` and NOT published on
csms.cdrs.v1 (outcome "held", csms_billing_cdrs_held_total{reason}). The outbox never
re-publishes a held document; a later, plausible version of the session's CDR (a real
stop arrived, the session's hold was lifted) is published normally.

Cost updates (ADR 018 §6, `services.billing.cost_updates`): after a batch is billed, the
latest snapshot of each session goes to `CostUpdates` (a flagged 1.6 station's SetUserPrice
on a new session's first record, running costs to the station of an active session at
most every CSMS_COST_UPDATE_INTERVAL_S, a 1.6 FinalCost at the end).

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

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol, Sequence

from prometheus_client import Counter, Histogram

from services.billing.codec import SESSION_CE_TYPE, SessionSnapshot, cdr_headers, decode_session, encode_cdr
from services.billing.cost_updates import CostUpdates
from services.billing.documents import (
    CdrHead,
    CdrRepository,
    ReadingsReader,
    TariffLookup,
    cdr_to_doc,
    head_from_doc,
)
from services.billing.domain import (
    REASON_HOLD_RELEASED,
    Cdr,
    RunningUsage,
    SessionUsage,
    StaleAccumulator,
    Tariff,
    TariffError,
    cdr_hold_reasons,
    decide_cdr,
    is_billable_status,
    refusal,
)
from services.billing.domain.limits import BillingLimits
from services.billing.snapshots import session_pricing
from services.common import topics
from services.common.bus.port import Header, Record
from services.common.telemetry import tracer
from services.common.timeutil import Clock

__all__ = [
    "BillingHandler",
    "Publish",
    "ReportedOnce",
    "latest_per_session",
    "CDRS_TOTAL",
    "CDRS_HELD_TOTAL",
    "UNPRICED_TOTAL",
    "HANDLER_SECONDS",
    "SNAPSHOTS_TOTAL",
    "PRICED_TOTAL",
]

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
    "csms.sessions.v1 records handled, by outcome (cdr, held, unchanged, stale, active, unpriced, refused_token, ...)",
    ["outcome"],
)
CDRS_HELD_TOTAL = Counter(
    "csms_billing_cdrs_held_total",
    "CDRs stored but held from export (csms.cdrs.v1), by reason (duration_exceeds_max, energy_exceeds_max, "
    "clock_suspect, ...); a CDR with several reasons counts once per reason",
    ["reason"],
)
PRICED_TOTAL = Counter(
    "csms_billing_priced_total",
    "Billable snapshots priced, by path: accumulator (the snapshot's running price, no store read) or "
    "samples (no accumulator, or the tariff that applies now differs: the stored samples folded again)",
    ["path"],
)

_BILL_CONCURRENCY = 32  # sessions of one batch billed at once


class Publish(Protocol):
    """Durably append a record (`Bus.publish`); raises BusUnavailable if it could not."""

    async def __call__(self, topic: str, key: str, value: bytes, headers: Sequence[Header] = ()) -> None: ...


class ReportedOnce:
    """Keys already reported (bounded, least recently seen forgotten first): one log line
    and one count per unbilled session, however often its snapshots are redelivered.
    One per processor, created when it is wired."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self._max = max(1, max_keys)
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, key: str) -> bool:
        """True the first time `key` is seen (then remembered), else False."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return True


def latest_per_session(snaps: Sequence[SessionSnapshot]) -> tuple[list[SessionSnapshot], int]:
    """The latest version of each session among `snaps` (first-seen order of the sessions),
    and how many older ones that left out."""
    latest: dict[str, SessionSnapshot] = {}
    for snap in snaps:
        seen = latest.get(snap.id)
        if seen is None or snap.version >= seen.version:
            latest[snap.id] = snap
    return list(latest.values()), len(snaps) - len(latest)


def _decode(record: Record) -> SessionSnapshot | str:
    """The snapshot a record carries, or the outcome of a record that carries none."""
    ce_type = record.header("ce_type")
    if ce_type and ce_type != SESSION_CE_TYPE:
        log.debug("ignoring %s record on %s", ce_type, record.topic)
        return "ignored"
    try:
        return decode_session(record.value)
    except ValueError as exc:
        # Permanent: redelivering the same bytes cannot help. Count, log, move on.
        log.error("undecodable session snapshot %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
        return "undecodable"


class BillingHandler:
    """`csms.sessions.v1` records in, CDRs stored and published (see the module docstring).

    Raises only for transient failures (store or bus unavailable), so the bus redelivers."""

    def __init__(
        self,
        *,
        cdrs: CdrRepository,
        tariffs: TariffLookup,
        readings: ReadingsReader,
        publish: Publish,
        clock: Clock,
        limits: BillingLimits,
        reported: ReportedOnce | None = None,
        concurrency: int = _BILL_CONCURRENCY,
        cost_updates: CostUpdates | None = None,
    ) -> None:
        self._cdrs = cdrs
        self._tariffs = tariffs
        self._readings = readings
        self._publish = publish
        self._clock = clock
        self._max_duration = limits.max_duration
        self._max_energy_wh = limits.max_energy_wh
        self._reported = reported if reported is not None else ReportedOnce()
        self._concurrency = max(1, concurrency)
        self._costs = cost_updates  # ADR 018 §6: running / final costs to the stations (None: off)

    async def handle_record(self, record: Record) -> str:
        """Handle one record; returns the outcome (also counted in csms_billing_snapshots_total)."""
        t0 = time.perf_counter()
        try:
            decoded = _decode(record)
            outcome = decoded if isinstance(decoded, str) else await self._handle(decoded, record.header("traceparent"))
        finally:
            HANDLER_SECONDS.observe(time.perf_counter() - t0)
        SNAPSHOTS_TOTAL.labels(outcome).inc()
        if self._costs is not None and not isinstance(decoded, str):
            await self._costs.handle([decoded])
        return outcome

    async def handle_batch(self, records: Sequence[Record]) -> list[str]:
        """Handle one poll's records (`subscribe_batch`): decode all, drop what is not billable
        without touching the store (active sessions: decode and drop), keep only each session's
        latest snapshot version (an older one of the same batch is counted `superseded`), bill
        those. Returns the outcomes of the snapshots billed or dropped, in that order.

        Raises only for transient failures: the bus retries the whole batch (idempotent: what
        was already billed is `stale` or `unchanged` the second time)."""
        t0 = time.perf_counter()
        outcomes: list[str] = []
        billable: list[SessionSnapshot] = []
        snapshots: list[SessionSnapshot] = []  # every decoded one: cost updates look at all of them
        trace: dict[str, str | None] = {}
        try:
            for record in records:
                decoded = _decode(record)
                if isinstance(decoded, str):
                    outcomes.append(decoded)
                    continue
                snapshots.append(decoded)
                dropped = self._not_billed(decoded)
                if dropped is not None:
                    outcomes.append(dropped)
                    continue
                billable.append(decoded)
                trace[f"{decoded.id}:{decoded.version}"] = record.header("traceparent")
            latest, superseded = latest_per_session(billable)
            outcomes.extend(["superseded"] * superseded)
            # Different sessions are independent (one CDR document each): bill them
            # concurrently, bounded, so a batch of stops is not a chain of store round trips.
            sem = asyncio.Semaphore(self._concurrency)

            async def one(snap: SessionSnapshot) -> str:
                async with sem:
                    return await self._handle(snap, trace.get(f"{snap.id}:{snap.version}"))

            results = await asyncio.gather(*(one(snap) for snap in latest), return_exceptions=True)
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            outcomes.extend(r for r in results if isinstance(r, str))
            if failed is not None:
                raise failed  # the bus retries the batch: what was billed is `stale`/`unchanged` then
            if self._costs is not None and snapshots:
                # After billing (a FinalCost tells the CDR's total); its own outcomes are counted
                # in csms_billing_cost_updates_total. Raises only a FinalCost's transient failure.
                await self._costs.handle(latest_per_session(snapshots)[0])
        finally:
            HANDLER_SECONDS.observe(time.perf_counter() - t0)
            for outcome in outcomes:
                SNAPSHOTS_TOTAL.labels(outcome).inc()
        return outcomes

    async def publish_cdr(self, doc: dict[str, Any], *, traceparent: str | None = None) -> None:
        """Publish a stored CDR document on csms.cdrs.v1, then mark it published."""
        station_id = str(doc.get("station_id") or "")
        await self._publish(topics.CDRS, station_id, encode_cdr(doc), cdr_headers(doc, traceparent=traceparent))
        await self._cdrs.mark_published(doc)

    # --- one snapshot -------------------------------------------------------------------

    def _not_billed(self, snap: SessionSnapshot) -> str | None:
        """The outcome of a snapshot that is never billed (no store access), else None."""
        if not is_billable_status(snap.status):
            return "active"
        refused = refusal(snap.authorization)
        if refused is not None:
            if self._reported.first_time(f"refused:{snap.id}"):
                log.warning(
                    "session %s not billed: its token was refused at the start (%s) station=%s",
                    snap.id, refused, snap.station_id,
                )
            return "refused_token"
        return None

    async def _handle(self, snap: SessionSnapshot, traceparent: str | None) -> str:
        dropped = self._not_billed(snap)
        if dropped is not None:
            return dropped
        with tracer.start_as_current_span(
            "billing.session_completed",
            attributes={
                "csms.station_id": snap.station_id, "csms.session_id": snap.id, "csms.session_version": snap.version,
            },
        ):
            return await self._bill(snap, traceparent)

    def _unpriced(self, snap: SessionSnapshot) -> bool:
        """Count and report an unbilled session the first time only."""
        if not self._reported.first_time(snap.id):
            return False
        UNPRICED_TOTAL.inc()
        return True

    async def _bill(self, snap: SessionSnapshot, traceparent: str | None) -> str:
        head_doc = await self._cdrs.latest(snap.id)
        head = head_from_doc(head_doc) if head_doc is not None else None
        if head_doc is not None and head is not None and not head.published and not head.held:
            log.info("re-publishing CDR %s station=%s (previous attempt did not finish)", head_doc["id"], snap.station_id)
            await self.publish_cdr(head_doc, traceparent=traceparent)
        if head is not None and snap.version and head.session_version and snap.version <= head.session_version:
            log.debug(
                "stale snapshot %s v%d (CDR %d priced v%d) station=%s",
                snap.id, snap.version, head.version, head.session_version, snap.station_id,
            )
            return "stale"

        try:
            resolved = await self._tariffs(snap.station_id, snap.site_id)
        except TariffError as exc:
            if self._unpriced(snap):
                log.error("session %s not billed: its tariff is invalid (%s) station=%s", snap.id, exc, snap.station_id)
            return "invalid_tariff"
        if resolved is None:
            if self._unpriced(snap):
                log.warning(
                    "session %s not billed: no tariff (station, site or default) station=%s", snap.id, snap.station_id
                )
            return "unpriced"

        usage, path = await session_pricing(snap, resolved.tariff, self._readings)
        if usage is None:
            if self._unpriced(snap):
                log.warning("session %s not billed: it has no start or stop time station=%s", snap.id, snap.station_id)
            return "unpriceable"

        try:
            cdr = self._decide(head, snap, resolved.tariff, usage)
        except StaleAccumulator as exc:  # folded with a shorter bound than billing's: fold the samples
            log.info("session %s: accumulator not usable (%s), re-pricing from the samples", snap.id, exc)
            usage, path = await session_pricing(dataclasses.replace(snap, price=None), resolved.tariff, self._readings)
            assert usage is not None
            cdr = self._decide(head, snap, resolved.tariff, usage)
        PRICED_TOTAL.labels(path).inc()
        if cdr is None and head is not None and head.held:
            # Same pricing inputs as a held CDR: exportable now only if nothing holds it any more.
            cdr = self._released(head, snap, resolved.tariff, usage)
        if cdr is None:
            return "unchanged"  # replay / redelivery: the latest CDR already reflects these inputs
        hold = self._hold_reasons(snap, cdr)

        doc = cdr_to_doc(cdr, snap, hold_reasons=hold)
        if not await self._cdrs.add(doc):
            # Another consumer (a rebalance overlap) stored this version first; it publishes it.
            log.info("CDR %s already stored, not publishing again station=%s", cdr.id, snap.station_id)
            return "conflict"
        CDRS_TOTAL.labels(cdr.reason).inc()
        if hold:
            for reason in hold:
                CDRS_HELD_TOTAL.labels(reason).inc()
            log.warning(
                "CDR %s (%s) session=%s v%d HELD from export (%s): energy_wh=%d total=%s %s..%s tariff=%s station=%s",
                cdr.id, cdr.reason, snap.id, snap.version, ",".join(hold), cdr.energy_wh, cdr.total_cost,
                doc["started_at"], doc["stopped_at"], resolved.tariff.id, snap.station_id,
            )
            return "held"
        await self.publish_cdr(doc, traceparent=traceparent)
        log.info(
            "CDR %s (%s) session=%s v%d energy_wh=%d total=%s incl_tax=%s tariff=%s (%s) priced_from=%s station=%s",
            cdr.id, cdr.reason, snap.id, snap.version, cdr.energy_wh, cdr.total_cost, cdr.total_cost_incl_tax,
            resolved.tariff.id, resolved.source, path, snap.station_id,
        )
        return "cdr"

    def _decide(
        self, head: CdrHead | None, snap: SessionSnapshot, tariff: Tariff, usage: SessionUsage | RunningUsage,
        reason_hint: str | None = None,
    ) -> Cdr | None:
        return decide_cdr(
            head, snap.id, snap.station_id, tariff, usage, now=self._clock(), reason_hint=reason_hint,
            max_duration=self._max_duration,
        )

    def _hold_reasons(self, snap: SessionSnapshot, cdr: Cdr) -> tuple[str, ...]:
        return cdr_hold_reasons(
            started_at=cdr.started_at,
            stopped_at=cdr.stopped_at,
            energy_wh=cdr.energy_wh,
            max_duration=self._max_duration,
            max_energy_wh=self._max_energy_wh,
            session_hold=snap.hold,
            session_reasons=snap.hold_reasons,
            clock_suspect=snap.clock_suspect,
        )

    def _released(
        self, head: CdrHead, snap: SessionSnapshot, tariff: Tariff, usage: SessionUsage | RunningUsage
    ) -> Cdr | None:
        """The next version of a held CDR with the same content, if nothing holds it now
        (the session's hold was lifted); None while it is still held."""
        again = self._decide(
            dataclasses.replace(head, inputs_fingerprint=""), snap, tariff, usage, reason_hint=REASON_HOLD_RELEASED
        )
        if again is None or self._hold_reasons(snap, again):
            return None
        return again

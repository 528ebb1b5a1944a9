"""A session's cost for the REST view.

Completed and abandoned sessions show their latest CDR (final, held or not). Active
ones, and ended ones not yet billed, are priced on the fly against the tariff that
applies (billing's `resolve_tariff`: station tariff, else site tariff, else the default
tariff). No tariff, no cost (null); a session whose token the CSMS refused is never
billed, so it has no cost either (null).

The arithmetic is billing's (ADR 015), not a copy: when the session's price accumulator
was opened with the tariff that applies now (same id and fingerprint), at the session's
start and energy anchor, the price is billing's `finish_price` on it: O(bands), no
sample read. Otherwise (no accumulator, the tariff was edited or reassigned since the
start) the session's kept register readings (billing's `stored_readings`, judged by the
sessions domain) are priced by billing's `price_session`. A document written before
ADR 015 carries its samples: those are used when the sample store has none.

Like the billing worker: the register ends at `energy_anchor_wh + energy_wh`; an
abandoned session ends at its last kept register reading (else when it was closed);
time is priced over at most `max_duration` (CSMS_SESSION_MAX_DURATION_H), so a station
clock in 1970 cannot make a list of sessions slow. What differs from a CDR is only the
end: a running session is priced up to now.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Mapping, Protocol

from services.billing.documents import default_tariff_doc, latest_cdr_doc, resolve_tariff, stored_readings
from services.billing.domain import (
    MAX_PRICED_DURATION,
    PriceBreakdown,
    SessionUsage,
    StaleAccumulator,
    Tariff,
    TariffError,
    accumulator_matches,
    finish_price,
    is_billable_status,
    price_session,
    refusal,
)
from services.common.store.port import DocumentStore, SampleStore, StationStore
from services.common.timeutil import to_ocpp
from services.sessions.documents import is_legacy_doc, legacy_samples
from services.sessions.domain import DEFAULT_RULES, Plausibility, Session, kept_register_readings

__all__ = ["PricingReads", "TariffCache", "session_cost", "session_price"]

log = logging.getLogger("csms.api.costs")

_MAX_REGISTER_WH = 10**15

Json = dict[str, Any]


class PricingReads(StationStore, DocumentStore, SampleStore, Protocol):
    """What pricing a session reads: the station (its tariff, its site), tariff, site and
    CDR documents, and the session's samples."""


class TariffCache:
    """The tariff that applies to a station (billing's `resolve_tariff`), memoized: one
    instance per request (a list of 100 sessions of a few stations costs a few store
    reads, not hundreds). None: no tariff applies, or the one that does is invalid."""

    def __init__(self, reads: PricingReads) -> None:
        self._reads = reads
        self._by_station: dict[str, Tariff | None] = {}
        self._default: dict[str, Any] | None = None
        self._default_read = False

    async def _default_doc(self) -> dict[str, Any] | None:
        if not self._default_read:
            self._default = await default_tariff_doc(self._reads)
            self._default_read = True
        return self._default

    async def for_station(self, station_id: str) -> Tariff | None:
        if station_id not in self._by_station:
            try:
                resolved = await resolve_tariff(self._reads, station_id, default_doc=self._default_doc)
            except TariffError as exc:
                log.warning("station %s: its tariff is invalid (%s): sessions shown without cost", station_id, exc)
                resolved = None
            self._by_station[station_id] = resolved.tariff if resolved is not None else None
        return self._by_station[station_id]


def _wh(value: int | None) -> int | None:
    return value if value is not None and 0 <= value <= _MAX_REGISTER_WH else None


def _anchor(s: Session) -> int | None:
    """The register energy counts from (sessions before the anchor existed: meterStart)."""
    anchor = _wh(s.energy_anchor_wh)
    return anchor if anchor is not None else _wh(s.meter_start_wh)


def _stop(s: Session, started: datetime) -> datetime | None:
    """The stop time; an abandoned session without one ends at its last kept register
    reading, else when the CSMS closed it (as the billing worker prices it)."""
    if s.stopped_at is not None or s.status != "abandoned":
        return s.stopped_at
    last = s.last_register
    if last is not None and last[0] >= started:
        return last[0]
    return s.abandoned_at or s.updated_at


async def _readings(
    reads: PricingReads, s: Session, doc: Mapping[str, Any], rules: Plausibility
) -> list[tuple[datetime, int]]:
    """The session's kept register readings: from the sample store, else (a document
    written before ADR 015) from the document's own samples."""
    readings = await stored_readings(reads, s.id, rules, doc=doc)
    if not readings and is_legacy_doc(doc):
        readings = kept_register_readings(s, legacy_samples(dict(doc)), rules)
    return readings


async def session_price(
    reads: PricingReads,
    s: Session,
    doc: Mapping[str, Any],
    tariff: Tariff,
    now: datetime,
    *,
    max_duration: timedelta = MAX_PRICED_DURATION,
    rules: Plausibility = DEFAULT_RULES,
) -> PriceBreakdown | None:
    """The price of session `s` (stored as `doc`) against `tariff` so far (see the module
    docstring); None when it cannot be priced (no time to start from)."""
    started = s.started_at or s.received_at
    stopped = _stop(s, started)
    anchor = _anchor(s)
    energy = _wh(s.energy_wh) or 0
    if anchor is not None and accumulator_matches(s.price, tariff, started, anchor):
        assert s.price is not None
        try:
            return finish_price(
                s.price, tariff, now=now, stopped_at=stopped, charging_ended_at=s.charging_ended_at,
                end_wh=anchor + energy, max_duration=max_duration,
            )
        except StaleAccumulator:
            pass  # folded with a shorter bound: price the samples
    if anchor is None:  # no register reading known: price the energy the session reports
        usage = SessionUsage(started_at=started, stopped_at=stopped, meter_start_wh=0, meter_stop_wh=energy)
    else:
        usage = SessionUsage(
            started_at=started,
            stopped_at=stopped,
            charging_ended_at=s.charging_ended_at,
            energy_samples=tuple(await _readings(reads, s, doc, rules)),
            meter_start_wh=anchor,
            meter_stop_wh=anchor + energy,
        )
    return price_session(tariff, usage, now, max_duration=max_duration)


def _cost_from_cdr(cdr: Mapping[str, Any]) -> Json:
    total = cdr.get("total_cost") or {}
    return {
        "amount": total.get("amount"),
        "currency": total.get("currency"),
        "incl_tax": cdr.get("total_cost_incl_tax"),
        "cdr_id": cdr.get("id"),
        "version": cdr.get("version"),
        "tariff_id": cdr.get("tariff_id"),
        "final": True,
    }


def _running_cost(tariff: Tariff, b: PriceBreakdown) -> Json:
    return {
        "amount": b.total_excl_tax.display(),
        "currency": b.currency,
        "incl_tax": b.total_incl_tax.to_dict(),
        "cdr_id": None,
        "version": None,
        "tariff_id": tariff.id,
        "final": False,
        "priced_until": to_ocpp(b.priced_until),
    }


async def session_cost(
    reads: PricingReads,
    s: Session,
    doc: Mapping[str, Any],
    now: datetime,
    tariffs: TariffCache,
    *,
    max_duration: timedelta = MAX_PRICED_DURATION,
    rules: Plausibility = DEFAULT_RULES,
) -> Json | None:
    """The `cost` of the session view (None: not priced)."""
    if refusal(s.authorization) is not None:
        return None  # never billed
    if is_billable_status(s.status):
        cdr = await latest_cdr_doc(reads, s.id)
        if cdr is not None:
            return _cost_from_cdr(cdr)
    if not s.station_id:
        return None
    tariff = await tariffs.for_station(s.station_id)
    if tariff is None:
        return None
    try:
        breakdown = await session_price(reads, s, doc, tariff, now, max_duration=max_duration, rules=rules)
        return None if breakdown is None else _running_cost(tariff, breakdown)
    except (TariffError, ValueError, ArithmeticError) as exc:
        log.warning("cannot price session %s station=%s: %s", s.id, s.station_id, exc)
        return None

"""A session's cost for the REST view.

Completed and abandoned sessions show their latest CDR (final, held or not). Active
ones, and ended ones not yet billed, are priced on the fly against the tariff that
applies: station tariff, else site tariff, else the default tariff. No tariff, no cost
(null); a session whose token the CSMS refused is never billed, so it has no cost either
(null).

One arithmetic with billing and the gateway (ADR 015): when the session document's
price accumulator was opened with the tariff that applies now (same id and fingerprint),
at the session's start and energy anchor, the price is `finish_price` on it: O(bands),
no sample read. Otherwise (no accumulator, the tariff was edited or reassigned since the
start) the session's stored samples are folded again (`price_session`), as billing does.
Documents written before ADR 015 carry their samples (`meter_samples`): those are used
when the sample store has none.

Like the billing worker: the register ends at `energy_anchor_wh + energy_wh`; samples
flagged `excluded` (or unusable as sent) never count; an abandoned session ends at its
last kept register reading (else when it was closed); time is priced over at most
`max_duration` (CSMS_SESSION_MAX_DURATION_H), so a station clock in 1970 cannot make a
list of sessions slow.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP
from typing import Any

from services.billing.documents import latest_cdr_doc, stored_readings, tariff_from_doc
from services.billing.domain import (
    MAX_PRICED_DURATION,
    PriceBreakdown,
    SessionUsage,
    StaleAccumulator,
    Tariff,
    TariffError,
    accumulator_from_dict,
    accumulator_matches,
    finish_price,
    is_billable_status,
    price_session,
    refusal,
)
from services.common.decimals import parse_decimal
from services.common.events import ENERGY_REGISTER
from services.common.store.port import Store
from services.common.timeutil import parse_ocpp, to_ocpp

__all__ = ["session_cost", "session_price", "TariffResolver", "usage_from_session", "find_default_tariff"]

log = logging.getLogger("csms.api.costs")

_MAX_SCAN = 1000


async def find_default_tariff(store: Store) -> dict[str, Any] | None:
    for doc in await store.list_docs("tariff", limit=_MAX_SCAN):
        if doc.get("default") is True:
            return doc
    return None


class TariffResolver:
    """Station tariff, else site tariff, else the default tariff (as the billing worker
    resolves them), memoized: one instance per request (a list of 100
    sessions of a few stations costs a few store reads, not hundreds)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_station: dict[str, dict[str, Any] | None] = {}
        self._default: dict[str, Any] | None = None
        self._default_loaded = False

    async def default(self) -> dict[str, Any] | None:
        if not self._default_loaded:
            self._default = await find_default_tariff(self.store)
            self._default_loaded = True
        return self._default

    async def for_station(self, station_id: str) -> dict[str, Any] | None:
        if station_id not in self._by_station:
            self._by_station[station_id] = await self._resolve(station_id)
        return self._by_station[station_id]

    async def _resolve(self, station_id: str) -> dict[str, Any] | None:
        station = await self.store.get_station(station_id)
        if station is not None and station.tariff_id:
            doc = await self.store.get_doc("tariff", station.tariff_id)
            if doc is not None:
                return doc
        if station is not None and station.site_id:
            site = await self.store.get_doc("site", station.site_id)
            if site and site.get("tariff_id"):
                doc = await self.store.get_doc("tariff", str(site["tariff_id"]))
                if doc is not None:
                    return doc
        return await self.default()


def _time(value: Any) -> datetime | None:
    if isinstance(value, str) and value:
        try:
            return parse_ocpp(value)
        except ValueError:
            return None
    return None


def _wh(sample: dict[str, Any]) -> int | None:
    if sample.get("measurand", ENERGY_REGISTER) not in ("", ENERGY_REGISTER) or sample.get("phase"):
        return None
    if sample.get("excluded") or sample.get("raw_value"):
        return None  # implausible or not a number as sent: kept for the record, never counted
    value = parse_decimal(sample.get("value"))
    if value is None:
        return None
    unit = sample.get("unit", "Wh")
    if unit == "kWh":
        value = value * 1000
    elif unit not in ("Wh", "", None):
        return None
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


def _sample_time(s: dict[str, Any]) -> datetime | None:
    return _time(s.get("timestamp") or s.get("at") or s.get("time"))


def _counted_samples(doc: dict[str, Any]) -> list[tuple[datetime, int]]:
    """The counted register readings of a document written before ADR 015 (samples inside)."""
    out: list[tuple[datetime, int]] = []
    for s in doc.get("meter_samples") or []:
        if not isinstance(s, dict):
            continue
        at, wh = _sample_time(s), _wh(s)
        if at is not None and wh is not None:
            out.append((at, wh))
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**15 else None


def _last_reading_at(doc: dict[str, Any]) -> datetime | None:
    last = doc.get("last_register")
    if isinstance(last, dict):
        return _time(last.get("at"))
    return max((at for at, _ in _counted_samples(doc)), default=None)


def _stop_of(doc: dict[str, Any], started: datetime) -> datetime | None:
    """The stop time; an abandoned session without one ends at its last kept register
    reading, else when the CSMS closed it (as the billing worker prices it)."""
    stopped = _time(doc.get("stopped_at"))
    if stopped is not None or doc.get("status") != "abandoned":
        return stopped
    last = _last_reading_at(doc)
    if last is not None and last >= started:
        return last
    return _time(doc.get("abandoned_at")) or _time(doc.get("updated_at"))


def _anchor(doc: dict[str, Any]) -> int | None:
    """The register energy counts from (documents before ADR 015: meterStart)."""
    anchor = _int(doc.get("energy_anchor_wh"))
    return anchor if anchor is not None else _int(doc.get("meter_start_wh"))


def usage_from_session(doc: dict[str, Any], readings: list[tuple[datetime, int]] | None = None) -> SessionUsage | None:
    """What `price_session` needs, read tolerantly from a session document; `readings`: the
    session's kept register readings (None: the document's own, if it has any)."""
    started = _time(doc.get("started_at")) or _time(doc.get("received_at"))
    if started is None:
        return None
    stopped = _stop_of(doc, started)
    energy = _int(doc.get("energy_wh")) or 0
    anchor = _anchor(doc)
    if anchor is None:  # no register reading known: price the energy the session reports
        return SessionUsage(started_at=started, stopped_at=stopped, meter_start_wh=0, meter_stop_wh=energy)
    samples = _counted_samples(doc) if readings is None else readings
    return SessionUsage(
        started_at=started,
        stopped_at=stopped,
        charging_ended_at=_time(doc.get("charging_ended_at")),
        energy_samples=tuple(samples),
        meter_start_wh=anchor,
        meter_stop_wh=anchor + energy,
    )


async def session_price(
    store: Store, doc: dict[str, Any], tariff: Tariff, now: datetime, *, max_duration: timedelta = MAX_PRICED_DURATION
) -> PriceBreakdown | None:
    """The running price of a session document against `tariff` (see the module docstring)."""
    started = _time(doc.get("started_at")) or _time(doc.get("received_at"))
    if started is None:
        return None
    anchor = _anchor(doc)
    raw = doc.get("price")
    if isinstance(raw, dict) and anchor is not None:
        try:
            acc = accumulator_from_dict(raw)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            acc = None
        if accumulator_matches(acc, tariff, started, anchor):
            assert acc is not None
            try:
                return finish_price(
                    acc, tariff, now=now, stopped_at=_stop_of(doc, started),
                    charging_ended_at=_time(doc.get("charging_ended_at")),
                    end_wh=anchor + (_int(doc.get("energy_wh")) or 0), max_duration=max_duration,
                )
            except StaleAccumulator:
                pass  # folded with a shorter bound: fold the samples
    session_id = str(doc.get("id") or "")
    readings = await stored_readings(store, session_id, doc=doc) if session_id else []
    usage = usage_from_session(doc, readings or None)
    return None if usage is None else price_session(tariff, usage, now, max_duration=max_duration)


def _cost_from_cdr(cdr: dict[str, Any]) -> dict[str, Any]:
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


def _running_cost(tariff: Tariff, b: PriceBreakdown) -> dict[str, Any]:
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
    store: Store,
    doc: dict[str, Any],
    now: datetime,
    tariffs: TariffResolver | None = None,
    *,
    max_duration: timedelta = MAX_PRICED_DURATION,
) -> dict[str, Any] | None:
    session_id = str(doc.get("id") or "")
    authorization = doc.get("authorization")
    if isinstance(authorization, str) and refusal(authorization) is not None:
        return None  # never billed
    if is_billable_status(str(doc.get("status") or "")) and session_id:
        cdr = await latest_cdr_doc(store, session_id)
        if cdr is not None:
            return _cost_from_cdr(cdr)
    station_id = doc.get("station_id")
    if not isinstance(station_id, str) or not station_id:
        return None
    tariff_doc = await (tariffs or TariffResolver(store)).for_station(station_id)
    if tariff_doc is None:
        return None
    try:
        tariff = tariff_from_doc(tariff_doc)
        breakdown = await session_price(store, doc, tariff, now, max_duration=max_duration)
        return None if breakdown is None else _running_cost(tariff, breakdown)
    except (TariffError, ValueError, ArithmeticError) as exc:
        log.warning("cannot price session %s station=%s: %s", session_id, station_id, exc)
        return None

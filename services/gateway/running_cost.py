"""Running cost for OCPP 2.0.1 TransactionEventResponse.totalCost.

Stations that display a cost show `totalCost` from each TransactionEventResponse
(incl. tax, the price the driver pays). The gateway prices the transaction so far with
the same arithmetic as billing and the REST API (ADR 015): a `PriceAccumulator` per
transaction, kept per connection (`RunningCosts`, at most `MAX_TRANSACTIONS`):

- opened at the Started event (its time, its first total register reading) with the
  tariff that applies (station -> site -> default, cached briefly);
- after a reconnect (an Updated / Ended of a transaction this connection did not see
  start), seeded once from the sessions processor's document: its accumulator when it
  was opened with the same tariff, else its start and energy anchor;
- advanced with each TransactionEvent's last total register reading (a reading older
  than the accumulator's is left out: this is a display, not the bill);
- finished at the event's time (`finish_price`; Ended: stopped there, the register at its
  last reading).

No float touches the amount (the response turns the rounded Decimal into a JSON number).
It is an estimate for display: the CDR, built by the billing processor from the complete
session, is the bill. Any problem here omits the field; it never delays or fails the answer.

`RunningCostPricer` reads what other services own only through the two ports it is
given (wired in `wiring.py`): the tariff that applies to a station (billing's
resolution) and the sessions processor's document of a transaction (the seed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from services.billing.codec import accumulator_from_dict
from services.billing.documents import ResolvedTariff
from services.billing.domain import (
    MAX_PRICED_DURATION,
    PriceAccumulator,
    Tariff,
    advance_price,
    finish_price,
    open_price,
    tariff_fingerprint,
)
from services.common.events import MeterSample
from services.common.timeutil import parse_ocpp
from services.gateway.meter import first_register_wh, last_register_wh

__all__ = ["MAX_TRANSACTIONS", "RunningCostPricer", "RunningCosts", "SessionSeedLookup", "TariffLookup"]

log = logging.getLogger("csms.gateway.running_cost")

MAX_TRANSACTIONS = 16  # per connection: a station has a few EVSEs

# station id -> the tariff that applies to it (None: none does)
TariffLookup = Callable[[str], Awaitable[ResolvedTariff | None]]
# (station id, transaction id) -> the sessions processor's document of it, if any
SessionSeedLookup = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]


def _ts(value: Any) -> datetime | None:
    try:
        return parse_ocpp(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**15 else None


@dataclass(slots=True)
class _Tx:
    acc: PriceAccumulator | None  # None: no register reading to open with yet
    started_at: datetime
    open_wh: int | None


class RunningCosts:
    """The accumulators of one connection's transactions (transaction id -> state)."""

    __slots__ = ("_txs",)

    def __init__(self) -> None:
        self._txs: dict[str, _Tx] = {}

    def __len__(self) -> int:
        return len(self._txs)

    def get(self, transaction_id: str) -> _Tx | None:
        return self._txs.get(transaction_id)

    def put(self, transaction_id: str, tx: _Tx) -> None:
        if transaction_id in self._txs or len(self._txs) < MAX_TRANSACTIONS:
            self._txs[transaction_id] = tx

    def pop(self, transaction_id: str) -> None:
        self._txs.pop(transaction_id, None)


def _last_reading(samples: tuple[MeterSample, ...], at: datetime) -> tuple[datetime, int] | None:
    """The event's last total register reading: (the event's time, Wh)."""
    wh = last_register_wh(samples)
    return None if wh is None else (at, wh)


def _seed(doc: Mapping[str, Any], tariff: Tariff, at: datetime) -> _Tx:
    """A transaction this connection did not see start: the sessions processor's view."""
    started = _ts(doc.get("started_at")) or at
    anchor = _int(doc.get("energy_anchor_wh"))
    if anchor is None:
        anchor = _int(doc.get("meter_start_wh"))
    raw = doc.get("price")
    if isinstance(raw, dict):
        try:
            acc = accumulator_from_dict(raw)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            acc = None
        if acc is not None and acc.tariff_id == tariff.id and acc.tariff_fingerprint == tariff_fingerprint(tariff):
            return _Tx(acc, acc.opened_at, acc.open_wh)
    return _Tx(None, started, anchor)


class RunningCostPricer:
    """Prices running transactions for TransactionEventResponse.totalCost.

    `tariffs`: the tariff of a station, cached here for `ttl_s` (at most `max_cached`
    stations); `seeds`: the sessions processor's document of a transaction. `max_span`:
    no estimate for a session longer than this (a station clock in 1970 would otherwise
    price decades; the CDR flags such sessions)."""

    __slots__ = ("_tariffs", "_seeds", "_max_span", "_max_duration", "_ttl_s", "_max_cached", "_cache", "_now")

    def __init__(
        self,
        tariffs: TariffLookup,
        seeds: SessionSeedLookup,
        *,
        max_span: timedelta | None = None,
        max_duration: timedelta = MAX_PRICED_DURATION,
        ttl_s: float = 30.0,
        max_cached: int = 50_000,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tariffs = tariffs
        self._seeds = seeds
        self._max_span = max_span
        self._max_duration = max_duration
        self._ttl_s = ttl_s
        self._max_cached = max_cached
        self._cache: dict[str, tuple[float, ResolvedTariff | None]] = {}
        self._now = now

    async def _tariff(self, station_id: str) -> ResolvedTariff | None:
        now = self._now()
        hit = self._cache.get(station_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        resolved = await self._tariffs(station_id)
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
        self._cache[station_id] = (now + self._ttl_s, resolved)
        return resolved

    async def total_cost(
        self,
        station_id: str,
        transaction_id: str,
        event_type: str,
        samples: tuple[MeterSample, ...],
        station_time: datetime,
        costs: RunningCosts,
    ) -> Decimal | None:
        """totalCost (incl. tax) of the transaction so far, None for a Started event or
        when it cannot be priced. `costs`: this connection's accumulators."""
        try:
            return await self._total_cost(station_id, transaction_id, event_type, samples, station_time, costs)
        except Exception:  # display only: never let pricing break the OCPP answer
            log.warning("station=%s tx=%s running cost unavailable", station_id, transaction_id, exc_info=True)
            return None

    async def _total_cost(
        self,
        station_id: str,
        transaction_id: str,
        event_type: str,
        samples: tuple[MeterSample, ...],
        station_time: datetime,
        costs: RunningCosts,
    ) -> Decimal | None:
        max_span, max_duration = self._max_span, self._max_duration
        resolved = await self._tariff(station_id)
        if resolved is None:
            costs.pop(transaction_id)
            return None
        tariff = resolved.tariff
        tx = costs.get(transaction_id)
        if event_type == "Started":
            first = first_register_wh(samples)
            acc = open_price(tariff, station_time, first, max_duration=max_duration) if first is not None else None
            costs.put(transaction_id, _Tx(acc, station_time, first))
            return None
        if tx is None or (tx.acc is not None and tx.acc.tariff_fingerprint != tariff_fingerprint(tariff)):
            tx = _seed(await self._seeds(station_id, transaction_id) or {}, tariff, station_time)
        if tx.acc is None:
            open_wh = tx.open_wh if tx.open_wh is not None else first_register_wh(samples)
            if open_wh is not None:
                tx.acc = open_price(tariff, min(tx.started_at, station_time), open_wh, max_duration=max_duration)
        if event_type == "Ended":
            costs.pop(transaction_id)
        else:
            costs.put(transaction_id, tx)
        acc = tx.acc
        reading = _last_reading(samples, station_time)
        if acc is None or reading is None:
            return None
        if max_span is not None and abs(station_time - acc.opened_at) > max_span:
            return None
        advanced = advance_price(acc, tariff, reading[0], reading[1], max_duration=max_duration)
        if advanced is not None:  # else older than what was seen: keep the estimate as it is
            tx.acc = acc = advanced
        ended = event_type == "Ended"
        breakdown = finish_price(
            acc,
            tariff,
            now=station_time,
            stopped_at=station_time if ended else None,
            end_wh=max(reading[1], acc.open_wh) if ended else None,
            max_duration=max_duration,
        )
        return breakdown.total_incl_tax.amount

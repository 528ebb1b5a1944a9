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
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable

from services.billing.documents import ResolvedTariff, resolve_tariff
from services.billing.domain import (
    MAX_PRICED_DURATION,
    PriceAccumulator,
    Tariff,
    accumulator_from_dict,
    advance_price,
    finish_price,
    open_price,
    tariff_fingerprint,
)
from services.common.events import MeterSample
from services.common.store.port import Store
from services.common.timeutil import parse_ocpp
from services.sessions.domain.session import session_id

__all__ = ["running_total_cost", "RunningCosts", "MAX_TRANSACTIONS"]

log = logging.getLogger("csms.gateway.running_cost")

_TTL_S = 30.0
_MAX_CACHED = 50_000
MAX_TRANSACTIONS = 16  # per connection: a station has a few EVSEs
_tariffs: dict[str, tuple[float, ResolvedTariff | None]] = {}


async def _tariff(store: Store, station_id: str) -> ResolvedTariff | None:
    now = time.monotonic()
    hit = _tariffs.get(station_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    resolved = await resolve_tariff(store, station_id)
    if len(_tariffs) >= _MAX_CACHED:
        _tariffs.clear()
    _tariffs[station_id] = (now + _TTL_S, resolved)
    return resolved


def _ts(value: Any) -> datetime | None:
    try:
        return parse_ocpp(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**15 else None


@dataclass
class _Tx:
    acc: PriceAccumulator | None  # None: no register reading to open with yet
    started_at: datetime
    open_wh: int | None


class RunningCosts:
    """The accumulators of one connection's transactions (transaction id -> state)."""

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


def _first_wh(samples: Iterable[MeterSample]) -> int | None:
    # imported here: services.gateway.actions imports this module (v201)
    from services.gateway.actions.meter import first_register_wh

    return first_register_wh(samples)


def _last_reading(samples: Iterable[MeterSample], at: datetime) -> tuple[datetime, int] | None:
    """The event's last total register reading: (the event's time, Wh)."""
    from services.gateway.actions.meter import last_register_wh

    wh = last_register_wh(samples)
    return None if wh is None else (at, wh)


async def _seed(store: Store, station_id: str, transaction_id: str, tariff: Tariff, at: datetime) -> _Tx:
    """A transaction this connection did not see start: the sessions processor's view."""
    doc = await store.get_doc("session", session_id(station_id, transaction_id)) or {}
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


async def running_total_cost(
    store: Store,
    station_id: str,
    transaction_id: str,
    event_type: str,
    samples: tuple[MeterSample, ...],
    station_time: datetime,
    costs: RunningCosts,
    max_span: timedelta | None = None,
    max_duration: timedelta = MAX_PRICED_DURATION,
) -> Decimal | None:
    """totalCost (incl. tax) of the transaction so far, None for a Started event or when
    it cannot be priced. `costs`: this connection's accumulators. `max_span`: no estimate
    for a session longer than this (a station clock in 1970 would otherwise price decades;
    the CDR flags such sessions)."""
    try:
        resolved = await _tariff(store, station_id)
        if resolved is None:
            costs.pop(transaction_id)
            return None
        tariff = resolved.tariff
        tx = costs.get(transaction_id)
        if event_type == "Started":
            first = _first_wh(samples)
            acc = open_price(tariff, station_time, first, max_duration=max_duration) if first is not None else None
            costs.put(transaction_id, _Tx(acc, station_time, first))
            return None
        if tx is None or (tx.acc is not None and tx.acc.tariff_fingerprint != tariff_fingerprint(tariff)):
            tx = await _seed(store, station_id, transaction_id, tariff, station_time)
        if tx.acc is None:
            open_wh = tx.open_wh if tx.open_wh is not None else _first_wh(samples)
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
    except Exception:  # display only: never let pricing break the OCPP answer
        log.warning("station=%s tx=%s running cost unavailable", station_id, transaction_id, exc_info=True)
        return None

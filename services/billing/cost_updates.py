"""Cost updates (ADR 018 §6): billing tells the station the running cost of a session.

Billing reads every `csms.sessions.v1` record (one per meter value), so cost updates are
event-driven: `CostUpdates.handle` takes the latest snapshot of each session of a batch,
after billing has billed them, and for

- an **active** session with a tariff, at most once per `CSMS_COST_UPDATE_INTERVAL_S`
  (0 = never): a 2.0.1 / 2.1 station gets `CostUpdated` {totalCost (incl. tax),
  transactionId}; a 1.6 station whose `cost_messages` flag is set gets the Open Charge
  Alliance's 1.6 pricing extension, `DataTransfer` vendorId `org.openchargealliance.costmsg`
  messageId `RunningCost`, data a JSON string {transactionId, timestamp, meterValue (Wh),
  cost, state ("Charging" | "Idle"), chargingPrice {kWhPrice, hourPrice, flatFee},
  idlePrice? {graceMinutes, hourPrice}} (prices incl. tax, the band in force now);
- a **completed** session on a 1.6 station with the flag: `FinalCost` {transactionId,
  cost, priceText} with the CDR's total incl. tax, once (whatever the interval);
- a **new active** session on a 1.6 station with the flag: `SetUserPrice` {idToken,
  priceText} once, on the first record billing reads of it (whatever the interval): the
  driver's price, human readable, built from the tariff that applies (prices incl. tax,
  the band in force now), e.g. "0.357 EUR/kWh, 7.14 EUR/h after 15 min idle (incl.
  tax)". The first RunningCost goes one interval later, so the station has the price
  first. Why here and not at Authorize: billing is where the tariff and the flag are
  already at hand, with the once-per-session document below; and a 1.6 transaction need
  not begin with an Authorize (local list, cache, remote start), while every one reaches
  billing as a session record. A session that already had a cost message (billing
  restarted late, the flag turned on mid-session) gets none: it is too late to matter.

The price is billing's arithmetic, not a copy: the snapshot's price accumulator finished
now (`finish_price`) when it was opened with the tariff that applies now, else the
session's kept register readings priced by `price_session` (the REST API's running cost
does the same, services/api/costs.py).

What was sent is remembered per session in a `cost_update` document (id = session id):
kind, total_cost {amount, currency}, sent_at, command_id, count (commands routed), state
("sent" | "sending" | "offline" | "unroutable"). It is written with compare-and-set on
its version BEFORE the command is produced, so a redelivered batch or a second billing
replica that read the same version does not send again (the loser skips). The boundary
is at-least-once: a FinalCost whose send failed after its "sending" write (bus down,
crash) is sent again by the next delivery of the session's completed record.

SetUserPrice is remembered in the same document, under `user_price` {state, sent_at,
command_id, price_text} (the cost fields are left alone, so the session's `cost_update`
still shows only costs), written with the same compare-and-set: "sending" before the
command is produced, "sent" after. A send that did not finish (bus down, crash) or found
the station offline is tried again by the next record of the session, until a cost
message has gone; whether a session's user price is settled is kept in memory (bounded),
so the records after the first read nothing for it.

The hot path: "is this session due?" is answered from memory (the next due time per
session, bounded) without a store read. A session seen for the first time (a new
transaction, a restart, a rebalance) is due one interval later: the first update of a
transaction goes one interval after billing first sees it; when due, the document is
read (what another replica or an earlier process sent counts). The station (its flag) and the tariff that
applies are cached for a few seconds per station. A station that is offline or
unroutable is logged and the document says so: the next record of the session tries
again. Running-cost problems never fail a batch (logged, counted); a FinalCost's
transient failure (store or bus) propagates so the bus redelivers the batch.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Protocol

from prometheus_client import Counter

from services.billing.codec import SessionSnapshot
from services.billing.documents import ReadingsReader, ResolvedTariff, TariffSource, cost_update_view, latest_cdr_doc, resolve_tariff
from services.billing.domain import (
    MAX_PRICED_DURATION,
    Money,
    PriceBreakdown,
    SessionUsage,
    StaleAccumulator,
    Tariff,
    TariffError,
    accumulator_matches,
    finish_price,
    price_session,
    refusal,
)
from services.billing.domain.money import minor_units, quantum, round_amount
from services.billing.domain.values import plausible_register_wh
from services.common import kinds
from services.common.routing import Offline, Routed, Sent
from services.common.store.port import Station
from services.common.timeutil import Clock, parse_ocpp, to_ocpp

__all__ = [
    "COSTMSG_VENDOR",
    "COST_UPDATES_TOTAL",
    "CostUpdates",
    "FINAL_COST",
    "ISSUER",
    "RUNNING_COST",
    "COST_UPDATED",
    "SET_USER_PRICE",
    "set_user_price_data",
    "user_price_text",
    "cost_update_view",
    "running_price",
    "running_cost_data",
    "final_cost_data",
]

log = logging.getLogger("csms.billing.cost_updates")

ISSUER = "billing"
COSTMSG_VENDOR = "org.openchargealliance.costmsg"
COST_UPDATED = "CostUpdated"  # 2.0.1 / 2.1 command
RUNNING_COST = "RunningCost"  # 1.6 DataTransfer messageId
FINAL_COST = "FinalCost"  # 1.6 DataTransfer messageId
SET_USER_PRICE = "SetUserPrice"  # 1.6 DataTransfer messageId
RUNNING_TTL = timedelta(seconds=60)
USER_PRICE_TTL = timedelta(seconds=60)  # a price shown a minute late is no longer "before charging"
FINAL_TTL = timedelta(seconds=300)
_FOREVER = datetime.max.replace(tzinfo=timezone.utc)  # "never again" for a session

COST_UPDATES_TOTAL = Counter(
    "csms_billing_cost_updates_total",
    "Cost updates considered for a session record, by kind (CostUpdated, RunningCost, FinalCost, SetUserPrice) and "
    "outcome (sent, offline, unroutable, lost: another consumer wrote first, unchanged, disabled, no_tariff, late, "
    "error, ...)",
    ["kind", "outcome"],
)


class Sender(Protocol):
    """`CommandRouter.send` (issuer "billing")."""

    async def send(self, station_id: str, command_type: str, params: Mapping[str, Any], *, ttl: timedelta,
                   command_id: str | None = None) -> Routed: ...


class CostStore(TariffSource, Protocol):
    """What cost updates read and write (a `Store` qualifies): the station, tariffs, sites,
    CDRs and the `cost_update` documents."""

    async def put_doc_if(self, kind: str, doc_id: str, doc: dict[str, Any], *, parent: str = "",
                         expected_version: int | None, version: int) -> bool: ...
    async def put_doc(self, kind: str, doc_id: str, doc: dict[str, Any], *, parent: str = "",
                      version: int | None = None) -> bool: ...


# --- pure parts ---------------------------------------------------------------------------


def _anchor(snap: SessionSnapshot) -> int | None:
    anchor = snap.energy_anchor_wh if snap.energy_anchor_wh is not None else snap.meter_start_wh
    return anchor if plausible_register_wh(anchor) else None


async def running_price(
    snap: SessionSnapshot, tariff: Tariff, readings: ReadingsReader, now: datetime,
    *, max_duration: timedelta = MAX_PRICED_DURATION,
) -> PriceBreakdown | None:
    """The price of an active session so far (None: no time to start from). The
    accumulator path reads nothing; the samples path reads the kept register readings."""
    started = snap.started_at or snap.received_at
    if started is None:
        return None
    anchor = _anchor(snap)
    energy = snap.energy_wh if plausible_register_wh(snap.energy_wh) else 0
    if anchor is not None and accumulator_matches(snap.price, tariff, started, anchor):
        assert snap.price is not None
        try:
            return finish_price(
                snap.price, tariff, now=now, stopped_at=None, charging_ended_at=snap.charging_ended_at,
                end_wh=anchor + energy, max_duration=max_duration,
            )
        except StaleAccumulator:
            pass  # folded with a shorter bound: price the samples
    if anchor is None:
        usage = SessionUsage(started_at=started, stopped_at=None, meter_start_wh=0, meter_stop_wh=energy)
    else:
        usage = SessionUsage(
            started_at=started, stopped_at=None, charging_ended_at=snap.charging_ended_at,
            energy_samples=tuple(await readings(snap.id)), meter_start_wh=anchor, meter_stop_wh=anchor + energy,
        )
    return price_session(tariff, usage, now, max_duration=max_duration)


def _number(value: Decimal) -> float | int:
    """A JSON number for the costmsg data (the extension's fields are numbers). Amounts are
    rounded to the currency or to 4 places, so the shortest float repr is the decimal."""
    return int(value) if value == value.to_integral_value() else float(value)


def _incl_tax(price: Decimal, tariff: Tariff) -> Decimal:
    return (price * (1 + tariff.tax_rate)).quantize(Decimal("0.0001")).normalize()


def _tx_id_16(transaction_id: str) -> int | None:
    try:
        value = int(transaction_id)
    except ValueError:
        return None
    return value if -(2**31) <= value < 2**31 else None


def running_cost_data(snap: SessionSnapshot, tariff: Tariff, b: PriceBreakdown, now: datetime) -> str | None:
    """The `data` string of a costmsg RunningCost (None: the transaction id is not a 1.6 integer)."""
    tx = _tx_id_16(snap.transaction_id)
    if tx is None:
        return None
    band = tariff.band_index_at(now)
    anchor = _anchor(snap) or 0
    if snap.last_register is not None:
        meter = snap.last_register[1]
    else:
        meter = anchor + (snap.energy_wh if plausible_register_wh(snap.energy_wh) else 0)
    data: dict[str, Any] = {
        "transactionId": tx,
        "timestamp": to_ocpp(now),
        "meterValue": int(meter),
        "cost": _number(b.total_incl_tax.amount),
        "state": "Idle" if snap.charging_ended_at is not None else "Charging",
        "chargingPrice": {
            "kWhPrice": _number(_incl_tax(tariff.energy_price(band), tariff)),
            "hourPrice": _number(_incl_tax(tariff.time_price(band) * 60, tariff)),
            "flatFee": _number(_incl_tax(tariff.session_fee, tariff)),
        },
    }
    if tariff.idle_fee_per_minute > 0:
        data["idlePrice"] = {
            "graceMinutes": tariff.idle_grace_minutes,
            "hourPrice": _number(_incl_tax(tariff.idle_fee_per_minute * 60, tariff)),
        }
    return json.dumps(data, separators=(",", ":"))


def final_cost_data(transaction_id: str, total: Money) -> str | None:
    """The `data` string of a costmsg FinalCost (None: not a 1.6 integer transaction id)."""
    tx = _tx_id_16(transaction_id)
    if tx is None:
        return None
    return json.dumps(
        {"transactionId": tx, "cost": _number(total.amount), "priceText": f"Total {total.display()} {total.currency} incl. tax"},
        separators=(",", ":"),
    )


def _price_shown(price: Decimal, currency: str) -> str:
    """A unit price for the driver: as precise as the tariff (at most 4 places), never fewer
    places than the currency has: "0.357", "2.00", "30" (JPY)."""
    if price.as_tuple().exponent > -minor_units(currency):  # type: ignore[operator]
        price = price.quantize(quantum(currency))
    return f"{price:f}"


def user_price_text(tariff: Tariff, now: datetime) -> str:
    """The costmsg SetUserPrice `priceText`: what the driver pays under `tariff`, incl. tax,
    with the time-of-day band in force `now`; e.g. "0.357 EUR/kWh, 1.19 EUR per session,
    7.14 EUR/h after 15 min idle (incl. tax)"."""
    cur = tariff.currency
    band = tariff.band_index_at(now)
    parts: list[str] = []
    if (kwh := _incl_tax(tariff.energy_price(band), tariff)) > 0:
        parts.append(f"{_price_shown(kwh, cur)} {cur}/kWh")
    if (hour := _incl_tax(tariff.time_price(band) * 60, tariff)) > 0:
        parts.append(f"{_price_shown(hour, cur)} {cur}/h")
    if (fee := _incl_tax(tariff.session_fee, tariff)) > 0:
        parts.append(f"{_price_shown(fee, cur)} {cur} per session")
    if (idle := _incl_tax(tariff.idle_fee_per_minute * 60, tariff)) > 0:
        grace = tariff.idle_grace_minutes
        parts.append(f"{_price_shown(idle, cur)} {cur}/h " + (f"after {grace} min idle" if grace else "idle"))
    if tariff.min_price is not None and tariff.min_price > 0:
        parts.append(f"at least {round_amount(tariff.min_price * (1 + tariff.tax_rate), cur):f} {cur}")
    if tariff.max_price is not None:
        parts.append(f"at most {round_amount(tariff.max_price * (1 + tariff.tax_rate), cur):f} {cur}")
    if not parts:
        return "Free of charge"
    text = ", ".join(parts) + (" (incl. tax)" if tariff.tax_rate > 0 else "")
    return text + (", time-of-day prices apply" if tariff.bands else "")


def set_user_price_data(id_token: str, price_text: str) -> str:
    """The `data` string of a costmsg SetUserPrice."""
    return json.dumps({"idToken": id_token, "priceText": price_text}, separators=(",", ":"))


# --- the controller -----------------------------------------------------------------------


def _put_bounded(entries: "OrderedDict[str, Any]", key: str, value: Any, limit: int) -> None:
    """Set `key` as the newest entry; the oldest go beyond `limit`."""
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > limit:
        entries.popitem(last=False)


@dataclass(frozen=True, slots=True)
class _StationInfo:
    station: Station | None
    resolved: ResolvedTariff | None
    until: datetime
    tariff_read: bool = True  # False: `resolved` was not looked up (the flag was all that was asked)


def _is_16(ocpp_version: str) -> bool:
    return ocpp_version == "1.6"


def _is_2x(ocpp_version: str) -> bool:
    return ocpp_version.startswith("2.")


def _doc_version(doc: Mapping[str, Any] | None) -> int | None:
    if doc is None:
        return None
    v = doc.get("version")
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else 0


def _sent_at(doc: Mapping[str, Any]) -> datetime | None:
    try:
        raw = doc.get("sent_at")
        return parse_ocpp(raw) if isinstance(raw, str) and raw else None
    except ValueError:
        return None


class CostUpdates:
    """Sends running and final costs for the session snapshots billing reads (see the
    module docstring). One per billing processor; not shared between processes."""

    def __init__(
        self,
        *,
        store: CostStore,
        readings: ReadingsReader,
        sender: Sender,
        clock: Clock,
        interval_s: float,
        max_duration: timedelta = MAX_PRICED_DURATION,
        station_ttl_s: float = 10.0,
        max_sessions: int = 100_000,
        max_stations: int = 50_000,
    ) -> None:
        self._store = store
        self._readings = readings
        self._sender = sender
        self._clock = clock
        self._interval = timedelta(seconds=max(0.0, interval_s))
        self._max_duration = max_duration
        self._station_ttl = timedelta(seconds=max(0.0, station_ttl_s))
        self._max_sessions = max(1, max_sessions)
        self._max_stations = max(1, max_stations)
        self._due: OrderedDict[str, datetime] = OrderedDict()  # session id -> next time a send may happen
        self._priced: OrderedDict[str, None] = OrderedDict()  # sessions whose SetUserPrice is settled
        self._stations: dict[str, _StationInfo] = {}

    @property
    def running_enabled(self) -> bool:
        return self._interval > timedelta(0)

    # --- memory ---------------------------------------------------------------------

    def _remember(self, session_id: str, due: datetime) -> None:
        _put_bounded(self._due, session_id, due, self._max_sessions)

    def _settle(self, session_id: str) -> None:
        _put_bounded(self._priced, session_id, None, self._max_sessions)

    def _not_due(self, session_id: str, now: datetime) -> bool:
        due = self._due.get(session_id)
        return due is not None and now < due

    async def _station(self, station_id: str, site_id: str, now: datetime, *, tariff: bool = True) -> _StationInfo:
        """The station and (`tariff`) the tariff that applies to it, cached for a few seconds.
        `tariff=False`: only the station (its flag) is needed, so no tariff is read yet."""
        info = self._stations.get(station_id)
        fresh = info is not None and now < info.until
        if info is not None and fresh and (info.tariff_read or not tariff):
            return info
        if info is not None and fresh:
            station, until = info.station, info.until
        else:
            station, until = await self._store.get_station(station_id), now + self._station_ttl
        resolved: ResolvedTariff | None = None
        if tariff:
            try:
                resolved = await resolve_tariff(self._store, station_id, site_id, station=station)
            except TariffError as exc:
                log.warning("station %s: its tariff is invalid (%s): no cost updates", station_id, exc)
        info = _StationInfo(station, resolved, until, tariff)
        if len(self._stations) >= self._max_stations:
            self._stations.clear()
        self._stations[station_id] = info
        return info

    # --- entry point ----------------------------------------------------------------

    async def handle(self, snaps: Sequence[SessionSnapshot]) -> list[str]:
        """Cost updates for the latest snapshot of each session. Returns the outcomes.
        Raises only a FinalCost's transient failure (after handling the others)."""
        outcomes: list[str] = []
        failed: BaseException | None = None
        for snap in snaps:
            if snap.status == "active":
                if _is_16(snap.ocpp_version) and snap.id not in self._priced:
                    try:
                        priced = await self._user_price(snap)
                    except Exception:
                        log.warning("session %s station=%s: SetUserPrice failed: the next record tries again",
                                    snap.id, snap.station_id, exc_info=True)
                        priced = "error"
                    COST_UPDATES_TOTAL.labels(SET_USER_PRICE, priced).inc()
                if not self.running_enabled:
                    continue
                try:
                    outcome, kind = await self._running(snap)
                except Exception:
                    log.warning("session %s station=%s: cost update failed", snap.id, snap.station_id, exc_info=True)
                    self._remember(snap.id, self._clock() + self._interval)
                    outcome, kind = "error", "running"
            elif snap.completed and _is_16(snap.ocpp_version):
                self._priced.pop(snap.id, None)
                try:
                    outcome, kind = await self._final(snap)
                except Exception as exc:
                    log.warning("session %s station=%s: FinalCost failed (%s): the batch is redelivered",
                                snap.id, snap.station_id, exc)
                    failed = failed or exc
                    outcome, kind = "error", FINAL_COST
            else:
                self._due.pop(snap.id, None)  # ended: nothing more to send
                self._priced.pop(snap.id, None)
                continue
            COST_UPDATES_TOTAL.labels(kind, outcome).inc()
            outcomes.append(outcome)
        if failed is not None:
            raise failed
        return outcomes

    # --- running costs ----------------------------------------------------------------

    async def _running(self, snap: SessionSnapshot) -> tuple[str, str]:
        now = self._clock()
        if self._not_due(snap.id, now):  # the hot path: memory only
            return "not_due", "running"
        if snap.id not in self._due:
            # First seen (a new transaction, or after a restart): the first update goes one
            # interval later, so a short transaction is not chatted to and this reads nothing.
            self._remember(snap.id, now + self._interval)
            return "first_seen", "running"
        if refusal(snap.authorization) is not None:
            self._remember(snap.id, _FOREVER)
            return "refused_token", "running"
        if _is_2x(snap.ocpp_version):
            kind = COST_UPDATED
        elif _is_16(snap.ocpp_version):
            kind = RUNNING_COST
        else:
            self._remember(snap.id, now + self._interval)
            return "unknown_version", "running"
        info = await self._station(snap.station_id, snap.site_id, now)
        if kind == RUNNING_COST and (info.station is None or not info.station.cost_messages):
            self._remember(snap.id, now + self._interval)  # the flag is looked at again then
            return "disabled", kind
        if info.resolved is None:
            self._remember(snap.id, now + self._interval)
            return "no_tariff", kind
        doc = await self._store.get_doc(kinds.COST_UPDATE, snap.id)
        if doc is not None:
            if doc.get("kind") == FINAL_COST:
                self._remember(snap.id, _FOREVER)
                return "ended", kind
            sent_at = _sent_at(doc)
            if doc.get("state") in ("sent", "sending") and sent_at is not None and now < sent_at + self._interval:
                self._remember(snap.id, sent_at + self._interval)
                return "not_due", kind
        tariff = info.resolved.tariff
        breakdown = await running_price(snap, tariff, self._readings, now, max_duration=self._max_duration)
        if breakdown is None:
            self._remember(snap.id, now + self._interval)
            return "unpriceable", kind
        total = breakdown.total_incl_tax
        if (doc is not None and doc.get("state") == "sent" and doc.get("kind") == kind
                and doc.get("total_cost") == total.to_dict()):
            self._remember(snap.id, now + self._interval)
            return "unchanged", kind
        if kind == COST_UPDATED:
            params: dict[str, Any] = {"total_cost": f"{total.amount:f}", "transaction_id": snap.transaction_id}
            command_type = COST_UPDATED
        else:
            data = running_cost_data(snap, tariff, breakdown, now)
            if data is None:
                log.warning("session %s station=%s: transaction id %r is not a 1.6 integer: no RunningCost",
                            snap.id, snap.station_id, snap.transaction_id)
                self._remember(snap.id, _FOREVER)
                return "bad_transaction_id", kind
            params = {"vendor_id": COSTMSG_VENDOR, "message_id": RUNNING_COST, "data": data}
            command_type = "DataTransfer"
        outcome = await self._write_and_send(snap, doc, kind, total, now, command_type, params, RUNNING_TTL)
        if outcome in ("sent", "lost"):
            self._remember(snap.id, now + self._interval)
        else:
            self._remember(snap.id, now)  # offline: the next record tries again
        return outcome, kind

    # --- the driver's price (1.6 SetUserPrice) ---------------------------------------------

    async def _user_price(self, snap: SessionSnapshot) -> str:
        """SetUserPrice for a new active session of a flagged 1.6 station, once. Settled
        (not looked at again by this process) unless the station was not reached."""
        now = self._clock()
        if refusal(snap.authorization) is not None or not snap.id_token:
            self._settle(snap.id)
            return "refused_token" if snap.id_token else "no_token"
        info = await self._station(snap.station_id, snap.site_id, now, tariff=False)
        if info.station is None or not info.station.cost_messages:
            self._settle(snap.id)
            return "disabled"
        info = await self._station(snap.station_id, snap.site_id, now)
        if info.resolved is None:
            self._settle(snap.id)
            return "no_tariff"
        doc = await self._store.get_doc(kinds.COST_UPDATE, snap.id)
        if doc is not None:
            if doc.get("kind"):  # a cost message went already: the price comes too late
                self._settle(snap.id)
                return "late"
            previous = doc.get("user_price")
            if isinstance(previous, Mapping) and previous.get("state") == "sent":
                self._settle(snap.id)
                return "done"
        text = user_price_text(info.resolved.tariff, now)
        before = _doc_version(doc)
        version = (before or 0) + 1
        command_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"csms:set-user-price:{snap.id}:{version}"))
        user_price = {"state": "sending", "sent_at": to_ocpp(now), "command_id": command_id, "price_text": text}
        new: dict[str, Any] = {
            **(doc or {}),
            "id": snap.id, "session_id": snap.id, "station_id": snap.station_id, "transaction_id": snap.transaction_id,
            "user_price": user_price, "version": version,
        }
        if not await self._store.put_doc_if(kinds.COST_UPDATE, snap.id, new, parent=snap.station_id,
                                            expected_version=before, version=version):
            log.info("session %s: SetUserPrice already written by another consumer, not sending", snap.id)
            self._settle(snap.id)
            return "lost"
        params = {"vendor_id": COSTMSG_VENDOR, "message_id": SET_USER_PRICE,
                  "data": set_user_price_data(snap.id_token, text)}
        routed = await self._sender.send(snap.station_id, "DataTransfer", params, ttl=USER_PRICE_TTL,
                                         command_id=command_id)
        state = "sent" if isinstance(routed, Sent) else "offline" if isinstance(routed, Offline) else "unroutable"
        if isinstance(routed, Sent):
            log.info("SetUserPrice %r to station=%s session=%s (command %s)", text, snap.station_id, snap.id, command_id)
            self._settle(snap.id)
        else:
            log.info("SetUserPrice for session %s not sent: station=%s %s (%s)", snap.id, snap.station_id, state,
                     routed.reason)
        await self._store.put_doc_if(
            kinds.COST_UPDATE, snap.id, {**new, "user_price": {**user_price, "state": state}, "version": version + 1},
            parent=snap.station_id, expected_version=version, version=version + 1,
        )
        return state

    # --- final cost (1.6) ---------------------------------------------------------------

    async def _final(self, snap: SessionSnapshot) -> tuple[str, str]:
        now = self._clock()
        if self._due.get(snap.id) is _FOREVER:
            return "done", FINAL_COST
        if refusal(snap.authorization) is not None:
            self._remember(snap.id, _FOREVER)
            return "refused_token", FINAL_COST
        info = await self._station(snap.station_id, snap.site_id, now)
        if info.station is None or not info.station.cost_messages:
            self._remember(snap.id, _FOREVER)
            return "disabled", FINAL_COST
        doc = await self._store.get_doc(kinds.COST_UPDATE, snap.id)
        if doc is not None and doc.get("kind") == FINAL_COST and doc.get("state") != "sending":
            self._remember(snap.id, _FOREVER)
            return "done", FINAL_COST
        cdr = await latest_cdr_doc(self._store, snap.id)
        incl = cdr.get("total_cost_incl_tax") if cdr is not None else None
        if not isinstance(incl, Mapping):
            self._remember(snap.id, _FOREVER)
            return "no_cost", FINAL_COST  # not billed (no tariff, refused): nothing to tell
        try:
            total = Money(Decimal(str(incl.get("amount"))), str(incl.get("currency")))
        except (ArithmeticError, ValueError, TypeError):
            log.error("session %s: CDR %s has an unusable total %r: no FinalCost", snap.id, cdr and cdr.get("id"), incl)
            self._remember(snap.id, _FOREVER)
            return "no_cost", FINAL_COST
        data = final_cost_data(snap.transaction_id, total)
        if data is None:
            self._remember(snap.id, _FOREVER)
            return "bad_transaction_id", FINAL_COST
        params = {"vendor_id": COSTMSG_VENDOR, "message_id": FINAL_COST, "data": data}
        outcome = await self._write_and_send(snap, doc, FINAL_COST, total, now, "DataTransfer", params, FINAL_TTL,
                                             final=True)
        self._remember(snap.id, _FOREVER)
        return outcome, FINAL_COST

    # --- write, then send ---------------------------------------------------------------

    async def _write_and_send(
        self, snap: SessionSnapshot, doc: Mapping[str, Any] | None, kind: str, total: Money, now: datetime,
        command_type: str, params: Mapping[str, Any], ttl: timedelta, *, final: bool = False,
    ) -> str:
        before = _doc_version(doc)
        count = int(doc.get("count") or 0) if doc is not None else 0
        if final and doc is not None and doc.get("kind") == FINAL_COST:
            count -= 1  # a FinalCost left "sending": the same send again
        command_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"csms:cost-update:{snap.id}:{count + 1}"))
        new: dict[str, Any] = {
            "id": snap.id,
            "session_id": snap.id,
            "station_id": snap.station_id,
            "transaction_id": snap.transaction_id,
            "kind": kind,
            "total_cost": total.to_dict(),
            "sent_at": to_ocpp(now),
            "command_id": command_id,
            "count": count + 1,
            "state": "sending" if final else "sent",
            "session_version": snap.version,
        }
        if doc is not None and isinstance(doc.get("user_price"), Mapping):
            new["user_price"] = dict(doc["user_price"])  # the driver's price (SetUserPrice) stays on record
        version = (before or 0) + 1
        new["version"] = version
        if not await self._store.put_doc_if(kinds.COST_UPDATE, snap.id, new, parent=snap.station_id,
                                            expected_version=before, version=version):
            log.info("session %s: %s already written by another consumer, not sending", snap.id, kind)
            return "lost"
        routed = await self._sender.send(snap.station_id, command_type, params, ttl=ttl, command_id=command_id)
        if isinstance(routed, Sent):
            log.info("%s %s to station=%s session=%s tx=%s (command %s)", kind, total, snap.station_id, snap.id,
                     snap.transaction_id, command_id)
            if final:
                await self._store.put_doc_if(kinds.COST_UPDATE, snap.id, {**new, "state": "sent", "version": version + 1},
                                             parent=snap.station_id, expected_version=version, version=version + 1)
            return "sent"
        state = "offline" if isinstance(routed, Offline) else "unroutable"
        log.info("%s for session %s not sent: station=%s %s (%s)", kind, snap.id, snap.station_id, state, routed.reason)
        await self._store.put_doc_if(
            kinds.COST_UPDATE, snap.id, {**new, "state": state, "count": count, "version": version + 1},
            parent=snap.station_id, expected_version=version, version=version + 1,
        )
        return state

"""Between the pure billing domain and the outside: snapshots, documents, the store.

- `session_pricing`: what a completed or abandoned `csms.sessions.v1` snapshot is priced
  with (ADR 015). The snapshot's price accumulator when it was opened with the tariff that
  applies now (same id and fingerprint) at the session's start and energy anchor: a
  `RunningUsage`, finished without reading anything. Otherwise the session's stored
  samples are folded again (`usage_from_snapshot` with `register_readings`): a
  `SessionUsage`. Either way: excluded samples never count; an abandoned session ends at
  its last sign of life with its last known energy; the register ends at
  `energy_anchor_wh + energy_wh`.
- `cdr_to_doc` / `cdr_from_doc`: the stored CDR document (kind "cdr", parent = session
  id) and back. The document is `cdr_to_dict(cdr)` (the REST shape) plus
  `currency`, `session_version`, the session's token/connector (for OCPI),
  `clock_suspect`, `hold_reasons` (non-empty: held from export), a
  `published` flag (outbox marker) and `exact`: the unrounded breakdown and the
  full-precision instants, so `cdr_from_doc` rebuilds the very `Cdr` that was priced
  (documents without `exact` are rebuilt from the display values, as OCPI needs).
- `resolve_tariff`: station tariff -> the station's site tariff -> the default tariff.
- `latest_cdr_doc` / `CdrHead`: what `decide_cdr` needs of the latest stored CDR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

from services.billing.codec import SessionSnapshot
from services.billing.domain import (
    BandLine,
    Cdr,
    Money,
    PriceBreakdown,
    RunningUsage,
    SessionUsage,
    Tariff,
    accumulator_matches,
    cdr_to_dict,
    tariff_from_dict,
)
from services.common.decimals import parse_decimal
from services.common.events import ENERGY_REGISTER
from services.common.store.port import MeterRow, Store
from services.common.timeutil import parse_ocpp

__all__ = [
    "ResolvedTariff",
    "CdrHead",
    "SessionTiming",
    "session_timing",
    "session_pricing",
    "register_readings",
    "stored_readings",
    "usage_from_snapshot",
    "running_usage_from_snapshot",
    "cdr_to_doc",
    "cdr_from_doc",
    "head_from_doc",
    "hold_reasons_of",
    "latest_cdr_doc",
    "resolve_tariff",
    "default_tariff_doc",
    "tariff_from_doc",
]

log = logging.getLogger("csms.billing.adapters")

UTC = timezone.utc
_MAX_SCAN = 1000
_MAX_REGISTER_WH = 10**15  # a terawatt-hour register; beyond is not a reading (services.common.decimals)
_TARIFF_KEYS = frozenset({
    "id", "currency", "price_per_kwh", "price_per_minute", "session_fee", "idle_fee_per_minute",
    "idle_grace_minutes", "tax_rate", "bands", "min_price", "max_price", "timezone", "default",
})


# --- snapshot -> pricing inputs ----------------------------------------------------------


def _sample_wh(value: object, unit: str) -> int | None:
    """An energy register reading as integer Wh (Decimal from its shortest repr, never float
    math); None when it is not a usable number (not finite, negative, beyond 1e15: no register)."""
    d = parse_decimal(value)
    if d is None or d < 0:
        return None
    if unit == "kWh":
        d = d * 1000
    elif unit not in ("Wh", ""):
        return None
    wh = int(d.to_integral_value(rounding=ROUND_HALF_UP))
    return wh if _plausible_wh(wh) else None


def _plausible_wh(value: int | None) -> bool:
    return value is not None and 0 <= value <= _MAX_REGISTER_WH


def register_readings(rows: Iterable[MeterRow]) -> list[tuple[datetime, int]]:
    """The total energy register readings among stored samples that may count: a number as
    sent (no `raw_value`), the total (no phase), in Wh or kWh, 0 .. 1e15 Wh. (Whether a
    reading is an implausible jump is the sessions processor's judgement: `stored_readings`
    asks it when the session's document is at hand.)"""
    out: list[tuple[datetime, int]] = []
    for r in rows:
        if r.raw_value or r.phase or r.measurand not in ("", ENERGY_REGISTER):
            continue
        wh = _sample_wh(r.value, r.unit)
        if wh is not None:
            out.append((r.timestamp, wh))
    return out


async def stored_readings(
    store: Store, session_id: str, rules: Any = None, *, doc: Mapping[str, Any] | None = None
) -> list[tuple[datetime, int]]:
    """The session's kept total-register readings, read back from the sample store: judged
    by the sessions domain (`kept_register_readings`: jumps and the session window) with the
    session's stored facts (`doc`, else read), else (no session document) filtered by
    `register_readings`."""
    rows = await store.read_samples(session_id)
    if not rows:
        return []
    if doc is None:
        doc = await store.get_doc("session", session_id)
    if doc is not None:
        try:
            from services.sessions.domain import kept_register_readings, sample_from_row, session_from_doc

            session = session_from_doc(dict(doc))
            samples = [sample_from_row(r) for r in rows]
            if rules is None:
                return kept_register_readings(session, samples)
            return kept_register_readings(session, samples, rules)
        except (ImportError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
            log.warning("session %s: stored facts unusable for judging samples (%s): filtering them", session_id, exc)
    return register_readings(rows)


@dataclass(frozen=True, slots=True)
class SessionTiming:
    """The priced window of a billable snapshot and the register's two ends."""

    started_at: datetime
    stopped_at: datetime
    charging_ended_at: datetime | None
    open_wh: int  # the register energy counts from (0 when unknown)
    end_wh: int  # open_wh + the session's energy


def _abandoned_end(snap: SessionSnapshot, started: datetime) -> datetime | None:
    """Where an abandoned session's pricing ends: its stop if it has one, else the last
    counted register reading (its last sign of life), else when the CSMS closed it."""
    if snap.stopped_at is not None:
        return snap.stopped_at
    last = snap.last_register[0] if snap.last_register is not None else None
    if last is not None and last >= started:
        return last
    return snap.abandoned_at or snap.updated_at


def session_timing(snap: SessionSnapshot) -> SessionTiming | None:
    """The window and register ends of a completed or abandoned snapshot; None if it
    cannot be priced (no times)."""
    started = snap.started_at or snap.received_at
    if started is None:
        return None
    stopped = _abandoned_end(snap, started) if snap.abandoned else (snap.stopped_at or snap.updated_at)
    if stopped is None:
        return None
    # The register energy counts from: the sessions processor's anchor (trusted meterStart,
    # else the first kept reading); a snapshot without it (older producers): meterStart.
    anchor = snap.energy_anchor_wh if snap.energy_anchor_wh is not None else snap.meter_start_wh
    open_wh = anchor if _plausible_wh(anchor) else 0
    assert open_wh is not None
    energy = snap.energy_wh if _plausible_wh(snap.energy_wh) else 0
    end_wh = open_wh + energy if open_wh + energy <= _MAX_REGISTER_WH else open_wh
    return SessionTiming(started, stopped, snap.charging_ended_at, open_wh, end_wh)


def usage_from_snapshot(
    snap: SessionSnapshot, readings: Sequence[tuple[datetime, int]] = ()
) -> SessionUsage | None:
    """The samples path: the snapshot's window with the session's kept register readings
    (`stored_readings`); None if it cannot be priced (no times)."""
    timing = session_timing(snap)
    if timing is None:
        return None
    return SessionUsage(
        started_at=timing.started_at,
        stopped_at=timing.stopped_at,
        charging_ended_at=timing.charging_ended_at,
        energy_samples=tuple(readings),
        meter_start_wh=timing.open_wh,
        meter_stop_wh=timing.end_wh,
    )


def running_usage_from_snapshot(snap: SessionSnapshot, tariff: Tariff) -> RunningUsage | None:
    """The accumulator path: the snapshot's price accumulator finished as it is, when it was
    opened with `tariff` (same id and fingerprint) at the session's start and energy anchor;
    None otherwise (no accumulator, another tariff, another opening: fold the samples)."""
    timing = session_timing(snap)
    if timing is None or not accumulator_matches(snap.price, tariff, timing.started_at, timing.open_wh):
        return None
    assert snap.price is not None
    return RunningUsage(
        acc=snap.price,
        started_at=timing.started_at,
        stopped_at=timing.stopped_at,
        charging_ended_at=timing.charging_ended_at,
        end_wh=timing.end_wh,
    )


async def session_pricing(
    store: Store, snap: SessionSnapshot, tariff: Tariff, rules: Any = None
) -> tuple[SessionUsage | RunningUsage | None, str]:
    """(what to price, "accumulator" | "samples"); (None, "") if it cannot be priced."""
    running = running_usage_from_snapshot(snap, tariff)
    if running is not None:
        return running, "accumulator"
    if session_timing(snap) is None:
        return None, ""
    readings = await stored_readings(store, snap.id, rules)
    return usage_from_snapshot(snap, readings), "samples"


# --- CDR <-> document --------------------------------------------------------------------


def _iso_us(dt: datetime) -> str:
    """Microsecond instant with a 4-digit year (strftime writes year 1 as "1")."""
    dt = dt.astimezone(UTC)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}."
        f"{dt.microsecond:06d}Z"
    )


def _dec(value: Decimal) -> str:
    return f"{value:f}"


def _exact_breakdown(b: PriceBreakdown) -> dict[str, Any]:
    return {
        "currency": b.currency,
        "energy_wh": b.energy_wh,
        "energy_cost": _dec(b.energy_cost.amount),
        "time_cost": _dec(b.time_cost.amount),
        "idle_cost": _dec(b.idle_cost.amount),
        "session_fee": _dec(b.session_fee.amount),
        "subtotal": _dec(b.subtotal.amount),
        "tax": _dec(b.tax.amount),
        "total_excl_tax": _dec(b.total_excl_tax.amount),
        "total_incl_tax": _dec(b.total_incl_tax.amount),
        "tax_rate": _dec(b.tax_rate),
        "charging_seconds": _dec(b.charging_seconds),
        "parking_seconds": _dec(b.parking_seconds),
        "idle_seconds": _dec(b.idle_seconds),
        "charging_ended_at": _iso_us(b.charging_ended_at),
        "priced_until": _iso_us(b.priced_until),
        "suspect": b.suspect,
        "clamp": b.clamp,
        "capped": b.capped,
        "lines": [
            {
                "label": line.label,
                "band_index": line.band_index,
                "started_at": _iso_us(line.started_at),
                "ended_at": _iso_us(line.ended_at),
                "energy_wh": _dec(line.energy_wh),
                "seconds": _dec(line.seconds),
                "price_per_kwh": _dec(line.price_per_kwh),
                "price_per_minute": _dec(line.price_per_minute),
                "energy_cost": _dec(line.energy_cost.amount),
                "time_cost": _dec(line.time_cost.amount),
            }
            for line in b.lines
        ],
    }


def cdr_to_doc(
    cdr: Cdr,
    snap: SessionSnapshot | None = None,
    *,
    published: bool = False,
    hold_reasons: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The stored document: the REST shape plus what re-publishing and OCPI need.
    A non-empty `hold_reasons` marks a held CDR (stored, never published as it is)."""
    doc = cdr_to_dict(cdr)
    doc.update(
        clock_suspect=snap.clock_suspect if snap is not None else False,
        hold_reasons=list(hold_reasons),
        currency=cdr.total_cost.currency,
        session_version=snap.version if snap is not None else 0,
        transaction_id=snap.transaction_id if snap is not None else "",
        id_token=snap.id_token if snap is not None else "",
        evse_id=snap.evse_id if snap is not None else 0,
        connector_id=snap.connector_id if snap is not None else 0,
        published=published,
        exact={
            "started_at": _iso_us(cdr.started_at),
            "stopped_at": _iso_us(cdr.stopped_at),
            "created_at": _iso_us(cdr.created_at),
            "breakdown": _exact_breakdown(cdr.breakdown),
        },
    )
    return doc


def _d(value: Any, default: str = "0") -> Decimal:
    d = Decimal(str(value if value is not None else default))
    if not d.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    return d


def _money(value: Any, currency: str) -> Money:
    if isinstance(value, Mapping):
        return Money(_d(value.get("amount")), str(value.get("currency") or currency))
    return Money(_d(value), currency)


def _seconds(a: datetime, b: datetime) -> Decimal:
    delta = b - a
    return Decimal((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) / 1_000_000


def _breakdown_exact(e: Mapping[str, Any]) -> PriceBreakdown:
    cur = str(e["currency"])
    lines = tuple(
        BandLine(
            label=str(raw["label"]),
            band_index=raw.get("band_index"),
            started_at=parse_ocpp(raw["started_at"]),
            ended_at=parse_ocpp(raw["ended_at"]),
            energy_wh=_d(raw["energy_wh"]),
            seconds=_d(raw["seconds"]),
            price_per_kwh=_d(raw["price_per_kwh"]),
            price_per_minute=_d(raw["price_per_minute"]),
            energy_cost=Money(_d(raw["energy_cost"]), cur),
            time_cost=Money(_d(raw["time_cost"]), cur),
        )
        for raw in e.get("lines") or []
    )
    return PriceBreakdown(
        currency=cur,
        energy_wh=int(e["energy_wh"]),
        energy_cost=Money(_d(e["energy_cost"]), cur),
        time_cost=Money(_d(e["time_cost"]), cur),
        idle_cost=Money(_d(e["idle_cost"]), cur),
        session_fee=Money(_d(e["session_fee"]), cur),
        subtotal=Money(_d(e["subtotal"]), cur),
        tax=Money(_d(e["tax"]), cur),
        total_excl_tax=Money(_d(e["total_excl_tax"]), cur),
        total_incl_tax=Money(_d(e["total_incl_tax"]), cur),
        tax_rate=_d(e["tax_rate"]),
        lines=lines,
        charging_seconds=_d(e["charging_seconds"]),
        parking_seconds=_d(e["parking_seconds"]),
        idle_seconds=_d(e["idle_seconds"]),
        charging_ended_at=parse_ocpp(e["charging_ended_at"]),
        priced_until=parse_ocpp(e["priced_until"]),
        suspect=bool(e.get("suspect", False)),
        clamp=e.get("clamp"),
        capped=bool(e.get("capped", False)),
    )


def _breakdown_display(doc: Mapping[str, Any], total: Money, incl: Money, stopped: datetime) -> PriceBreakdown:
    """Rebuilt from the REST shape alone: rounded amounts, 3-decimal kWh, ms instants."""
    cur = total.currency
    b: Mapping[str, Any] = doc.get("breakdown") or {}
    lines = []
    for raw in b.get("lines") or []:
        start, end = parse_ocpp(raw["started_at"]), parse_ocpp(raw["ended_at"])
        lines.append(
            BandLine(
                label=str(raw.get("label", "base")),
                band_index=None,
                started_at=start,
                ended_at=end,
                energy_wh=_d(raw.get("kwh")) * 1000,
                seconds=_seconds(start, end),
                price_per_kwh=_d(raw.get("price_per_kwh")),
                price_per_minute=_d(raw.get("price_per_minute")),
                energy_cost=_money(raw.get("energy_cost"), cur),
                time_cost=_money(raw.get("time_cost"), cur),
            )
        )
    charging_end = lines[-1].ended_at if lines else stopped
    parking = max(_seconds(charging_end, stopped), Decimal(0))
    return PriceBreakdown(
        currency=cur,
        energy_wh=int(doc.get("energy_wh") or b.get("energy_wh") or 0),
        energy_cost=_money(b.get("energy_cost"), cur),
        time_cost=_money(b.get("time_cost"), cur),
        idle_cost=_money(b.get("idle_cost"), cur),
        session_fee=_money(b.get("session_fee"), cur),
        subtotal=total,
        tax=incl - total,
        total_excl_tax=total,
        total_incl_tax=incl,
        tax_rate=_d(b.get("tax_rate")),
        lines=tuple(lines),
        charging_seconds=sum((line.seconds for line in lines), Decimal(0)),
        parking_seconds=parking,
        idle_seconds=_d(b.get("idle_minutes")) * 60,
        charging_ended_at=charging_end,
        priced_until=stopped,
        suspect=bool(b.get("suspect", False)),
        clamp=b.get("clamp"),
        capped=bool(b.get("capped", False)),
    )


def cdr_from_doc(doc: Mapping[str, Any]) -> Cdr:
    """The `Cdr` a stored document describes (for `cdr_to_ocpi`, re-publishing, re-rating).

    Exact when the document has `exact` (everything this worker writes); otherwise
    rebuilt from the rounded REST values. Raises KeyError / ValueError / TypeError /
    ArithmeticError for a document that is not a CDR.
    """
    exact: Mapping[str, Any] = doc.get("exact") or {}
    total = _money(doc["total_cost"], str(doc.get("currency") or "EUR"))
    incl = _money(doc.get("total_cost_incl_tax") or doc["total_cost"], total.currency)

    def instant(name: str) -> datetime:
        return parse_ocpp(str(exact.get(name) or doc[name]))

    started, stopped = instant("started_at"), instant("stopped_at")
    created = instant("created_at") if (exact.get("created_at") or doc.get("created_at")) else stopped
    if exact.get("breakdown"):
        breakdown = _breakdown_exact(exact["breakdown"])
    else:
        breakdown = _breakdown_display(doc, total, incl, stopped)
    return Cdr(
        id=str(doc["id"]),
        session_id=str(doc["session_id"]),
        station_id=str(doc.get("station_id") or ""),
        version=int(doc.get("version") or 1),
        reason=str(doc.get("reason") or "initial"),
        energy_wh=int(doc.get("energy_wh") if doc.get("energy_wh") is not None else breakdown.energy_wh),
        started_at=started,
        stopped_at=stopped,
        total_cost=total,
        total_cost_incl_tax=incl,
        tariff_id=str(doc.get("tariff_id") or ""),
        breakdown=breakdown,
        created_at=created,
        inputs_fingerprint=str(doc.get("inputs_fingerprint") or ""),
    )


# --- the latest stored CDR -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CdrHead:
    """Enough of the latest stored CDR for `decide_cdr` (satisfies `PreviousCdr`)."""

    session_id: str
    version: int
    stopped_at: datetime
    inputs_fingerprint: str
    session_version: int = 0
    published: bool = True
    hold_reasons: tuple[str, ...] = ()

    @property
    def held(self) -> bool:
        """Held from export: never published as it is (a later version may be)."""
        return bool(self.hold_reasons)


def hold_reasons_of(doc: Mapping[str, Any]) -> tuple[str, ...]:
    raw = doc.get("hold_reasons")
    return tuple(str(r) for r in raw) if isinstance(raw, (list, tuple)) else ()


def head_from_doc(doc: Mapping[str, Any]) -> CdrHead:
    exact: Mapping[str, Any] = doc.get("exact") or {}
    return CdrHead(
        session_id=str(doc["session_id"]),
        version=int(doc["version"]),
        stopped_at=parse_ocpp(str(exact.get("stopped_at") or doc["stopped_at"])),
        inputs_fingerprint=str(doc.get("inputs_fingerprint") or ""),
        session_version=int(doc.get("session_version") or 0),
        published=doc.get("published", True) is not False,
        hold_reasons=hold_reasons_of(doc),
    )


async def latest_cdr_doc(store: Store, session_id: str) -> dict[str, Any] | None:
    """The highest version among the session's CDR documents."""
    docs = await store.list_docs("cdr", parent=session_id, limit=_MAX_SCAN)
    return max(docs, key=lambda d: int(d.get("version") or 0), default=None)


# --- tariffs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedTariff:
    tariff: Tariff
    source: str  # "station" | "site" | "default"


def tariff_from_doc(doc: Mapping[str, Any]) -> Tariff:
    """Parse a stored tariff (bookkeeping fields the API may add are ignored)."""
    return tariff_from_dict({k: v for k, v in doc.items() if k in _TARIFF_KEYS})


async def _tariff_doc(store: Store, tariff_id: str | None) -> dict[str, Any] | None:
    return await store.get_doc("tariff", tariff_id) if tariff_id else None


async def default_tariff_doc(store: Store) -> dict[str, Any] | None:
    """The tariff document marked default, if any (lists the tariffs)."""
    return await _default_tariff_doc(store)


async def _default_tariff_doc(store: Store) -> dict[str, Any] | None:
    for doc in await store.list_docs("tariff", limit=_MAX_SCAN):
        if doc.get("default") is True:
            return doc
    return None


_UNREAD: Any = object()


async def resolve_tariff(
    store: Store,
    station_id: str,
    site_hint: str = "",
    *,
    station: Any = _UNREAD,
    default_doc: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
) -> ResolvedTariff | None:
    """Station tariff, else its site's tariff, else the default tariff; None: nothing applies.

    A tariff id that points at a deleted tariff falls through to the next level. A
    stored tariff that does not parse raises `TariffError` (an operator must fix it;
    a silently different price would be worse). A caller that already read the station
    passes it (`station=`, None when missing); one that caches the default tariff passes
    `default_doc` (listing the tariffs to find the default reads every bucket).
    """
    if station is _UNREAD:
        station = await store.get_station(station_id)
    if station is not None and (doc := await _tariff_doc(store, station.tariff_id)) is not None:
        return ResolvedTariff(tariff_from_doc(doc), "station")
    site_id = (station.site_id if station is not None else None) or site_hint or None
    if site_id:
        site = await store.get_doc("site", site_id)
        tariff_id = site.get("tariff_id") if site else None
        if isinstance(tariff_id, str) and (doc := await _tariff_doc(store, tariff_id)) is not None:
            return ResolvedTariff(tariff_from_doc(doc), "site")
    doc = await (default_doc() if default_doc is not None else _default_tariff_doc(store))
    return ResolvedTariff(tariff_from_doc(doc), "default") if doc is not None else None


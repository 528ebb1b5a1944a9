"""Billing's documents: what it stores and what other services read of it (ADR 010).

The billing processor writes the CDR documents (kind CDR, parent = session id); the API
writes the tariffs, whose shape is billing's. Other services read both through this
module only (`services.billing.documents`; the pure values are `services.billing.domain`):

- tariffs: `tariff_from_doc`, `resolve_tariff` (station tariff -> the station's site
  tariff -> the default tariff), `default_tariff_doc`; `StoreTariffs` is the
  `TariffLookup` port over a store.
- CDRs: `cdr_public_dict` / `breakdown_to_dict` (the REST shape; `cdr_to_dict` adds the
  inputs fingerprint), `cdr_to_doc` /
  `cdr_from_doc` (the stored document and back: the REST shape plus `currency`,
  `session_version`, the session's token/connector (for OCPI), `clock_suspect`,
  `hold_reasons` (non-empty: held from export), a `published` flag (outbox marker) and
  `exact`: the unrounded breakdown and the full-precision instants, so `cdr_from_doc`
  rebuilds the very `Cdr` that was priced; documents without `exact` are rebuilt from the
  display values, as OCPI needs); `CdrHead` / `head_from_doc` / `latest_cdr_doc`: what
  `decide_cdr` needs of the latest stored CDR; `CdrDocuments` is the `CdrRepository` port.
- a session's stored register readings (`stored_readings`, `register_readings`), judged
  by the sessions domain as the sessions processor judges them; `SessionReadings` is the
  `ReadingsReader` port.

Instants: `to_ocpp` (milliseconds) in the REST shape, `to_iso_us` (microseconds) in
`exact` (services.common.timeutil).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from enum import Enum
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol

from services.billing.codec import SessionSnapshot
from services.billing.domain import (
    BandLine,
    Cdr,
    Money,
    PriceBreakdown,
    Tariff,
)
from services.billing.codec import tariff_from_dict
from services.billing.domain.money import PRICING_CONTEXT
from services.billing.domain.values import plausible_register_wh
from services.common import kinds
from services.common.decimals import parse_decimal
from services.common.events import ENERGY_REGISTER
from services.common.store.port import MeterRow, Station
from services.common.timeutil import parse_ocpp, to_iso_us, to_ocpp
from services.sessions.documents import sample_from_row, session_from_doc
from services.sessions.domain import Plausibility, kept_register_readings


__all__ = [
    "cost_update_view",
    "ResolvedTariff",
    "TariffLookup",
    "TariffSource",
    "StoreTariffs",
    "tariff_from_doc",
    "default_tariff_doc",
    "resolve_tariff",
    "breakdown_to_dict",
    "cdr_to_dict",
    "cdr_public_dict",
    "cdr_to_doc",
    "cdr_from_doc",
    "CdrHead",
    "head_from_doc",
    "hold_reasons_of",
    "latest_cdr_doc",
    "CdrRepository",
    "CdrDocuments",
    "Reading",
    "ReadingsReader",
    "SampleSource",
    "SessionReadings",
    "register_readings",
    "stored_readings",
]

log = logging.getLogger("csms.billing.documents")

_MAX_SCAN = 1000
_WH_PER_KWH = 1000
_TARIFF_KEYS = frozenset({
    "id", "currency", "price_per_kwh", "price_per_minute", "session_fee", "idle_fee_per_minute",
    "idle_grace_minutes", "tax_rate", "bands", "min_price", "max_price", "timezone", "default",
})

Reading = tuple[datetime, int]  # (time, total energy register Wh)


# --- tariffs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedTariff:
    tariff: Tariff
    source: str  # "station" | "site" | "default"


class TariffSource(Protocol):
    """What resolving a tariff reads (a `Store` qualifies)."""

    async def get_station(self, station_id: str) -> Station | None: ...
    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None: ...
    async def list_docs(self, kind: str, *, parent: str | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...


class TariffLookup(Protocol):
    """The tariff that applies to a station (`resolve_tariff`); None: none applies.
    Raises `TariffError` for a stored tariff that does not parse."""

    async def __call__(self, station_id: str, site_id: str = "") -> ResolvedTariff | None: ...


def tariff_from_doc(doc: Mapping[str, Any]) -> Tariff:
    """Parse a stored tariff (bookkeeping fields the API may add are ignored)."""
    return tariff_from_dict({k: v for k, v in doc.items() if k in _TARIFF_KEYS})


async def _tariff_doc(store: TariffSource, tariff_id: str | None) -> dict[str, Any] | None:
    return await store.get_doc(kinds.TARIFF, tariff_id) if tariff_id else None


async def default_tariff_doc(store: TariffSource) -> dict[str, Any] | None:
    """The tariff document marked default, if any (lists the tariffs)."""
    for doc in await store.list_docs(kinds.TARIFF, limit=_MAX_SCAN):
        if doc.get("default") is True:
            return doc
    return None


class _Unread(Enum):
    UNREAD = "unread"


_UNREAD = _Unread.UNREAD  # `station=` left out: read it


async def resolve_tariff(
    store: TariffSource,
    station_id: str,
    site_hint: str = "",
    *,
    station: Station | None | _Unread = _UNREAD,
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
        site = await store.get_doc(kinds.SITE, site_id)
        tariff_id = site.get("tariff_id") if site else None
        if isinstance(tariff_id, str) and (doc := await _tariff_doc(store, tariff_id)) is not None:
            return ResolvedTariff(tariff_from_doc(doc), "site")
    doc = await (default_doc() if default_doc is not None else default_tariff_doc(store))
    return ResolvedTariff(tariff_from_doc(doc), "default") if doc is not None else None


class StoreTariffs:
    """`TariffLookup` over a store: every call reads (tariffs change under the processor)."""

    def __init__(self, store: TariffSource) -> None:
        self._store = store

    async def __call__(self, station_id: str, site_id: str = "") -> ResolvedTariff | None:
        return await resolve_tariff(self._store, station_id, site_id)


# --- CDR -> REST shape -----------------------------------------------------------------------


def _fixed(value: Decimal, places: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=PRICING_CONTEXT):f}"


def breakdown_to_dict(b: PriceBreakdown) -> dict[str, Any]:
    """API shape. Amounts are display-rounded strings; the per-component amounts
    may not add up to the totals (the totals are rounded once from exact parts)."""
    with localcontext(PRICING_CONTEXT):
        return {
            "currency": b.currency,
            "energy_wh": b.energy_wh,
            "energy_kwh": _fixed(Decimal(b.energy_wh) / _WH_PER_KWH, 3),
            "charging_minutes": _fixed(b.charging_seconds / 60, 2),
            "parking_minutes": _fixed(b.parking_seconds / 60, 2),
            "idle_minutes": _fixed(b.idle_seconds / 60, 2),
            "energy_cost": b.energy_cost.display(),
            "time_cost": b.time_cost.display(),
            "idle_cost": b.idle_cost.display(),
            "session_fee": b.session_fee.display(),
            "subtotal": b.total_excl_tax.display(),
            "tax_rate": f"{b.tax_rate:f}",
            "tax": b.tax_display.display(),
            "total_excl_tax": b.total_excl_tax.display(),
            "total_incl_tax": b.total_incl_tax.display(),
            "clamp": b.clamp,
            "suspect": b.suspect,
            "capped": b.capped,
            "lines": [
                {
                    "label": line.label,
                    "started_at": to_ocpp(line.started_at),
                    "ended_at": to_ocpp(line.ended_at),
                    "kwh": _fixed(line.kwh, 3),
                    "minutes": _fixed(line.minutes, 2),
                    "price_per_kwh": f"{line.price_per_kwh:f}",
                    "price_per_minute": f"{line.price_per_minute:f}",
                    "energy_cost": line.energy_cost.display(),
                    "time_cost": line.time_cost.display(),
                    "cost": line.cost.display(),
                }
                for line in b.lines
            ],
        }


def cdr_to_dict(cdr: Cdr) -> dict[str, Any]:
    """The REST shape as stored: `cdr_public_dict` plus the replay-detection fingerprint."""
    return {**cdr_public_dict(cdr), "inputs_fingerprint": cdr.inputs_fingerprint}


def cdr_public_dict(cdr: Cdr) -> dict[str, Any]:
    """The priced CDR as the REST API shows it (the API's CDR view starts from this)."""
    return {
        "id": cdr.id,
        "session_id": cdr.session_id,
        "station_id": cdr.station_id,
        "version": cdr.version,
        "reason": cdr.reason,
        "energy_wh": cdr.energy_wh,
        "started_at": to_ocpp(cdr.started_at),
        "stopped_at": to_ocpp(cdr.stopped_at),
        "tariff_id": cdr.tariff_id,
        "total_cost": cdr.total_cost.to_dict(),
        "total_cost_incl_tax": cdr.total_cost_incl_tax.to_dict(),
        "breakdown": breakdown_to_dict(cdr.breakdown),
        "created_at": to_ocpp(cdr.created_at),
    }


# --- CDR <-> document ------------------------------------------------------------------------


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
        "charging_ended_at": to_iso_us(b.charging_ended_at),
        "priced_until": to_iso_us(b.priced_until),
        "suspect": b.suspect,
        "clamp": b.clamp,
        "capped": b.capped,
        "lines": [
            {
                "label": line.label,
                "band_index": line.band_index,
                "started_at": to_iso_us(line.started_at),
                "ended_at": to_iso_us(line.ended_at),
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
            "started_at": to_iso_us(cdr.started_at),
            "stopped_at": to_iso_us(cdr.stopped_at),
            "created_at": to_iso_us(cdr.created_at),
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
    energy_wh = doc.get("energy_wh")
    return Cdr(
        id=str(doc["id"]),
        session_id=str(doc["session_id"]),
        station_id=str(doc.get("station_id") or ""),
        version=int(doc.get("version") or 1),
        reason=str(doc.get("reason") or "initial"),
        energy_wh=breakdown.energy_wh if energy_wh is None else int(energy_wh),
        started_at=started,
        stopped_at=stopped,
        total_cost=total,
        total_cost_incl_tax=incl,
        tariff_id=str(doc.get("tariff_id") or ""),
        breakdown=breakdown,
        created_at=created,
        inputs_fingerprint=str(doc.get("inputs_fingerprint") or ""),
    )


# --- the latest stored CDR -------------------------------------------------------------------


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


class _CdrDocs(Protocol):
    async def put_doc(
        self, kind: str, doc_id: str, doc: dict[str, Any], *, parent: str = "", version: int | None = None
    ) -> bool: ...
    async def list_docs(self, kind: str, *, parent: str | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...


async def latest_cdr_doc(store: _CdrDocs, session_id: str) -> dict[str, Any] | None:
    """The highest version among the session's CDR documents."""
    docs = await store.list_docs(kinds.CDR, parent=session_id, limit=_MAX_SCAN)
    return max(docs, key=lambda d: int(d.get("version") or 0), default=None)


class CdrRepository(Protocol):
    """The billing processor's CDR documents (outbox: stored first, published, then marked)."""

    async def latest(self, session_id: str) -> dict[str, Any] | None: ...

    async def add(self, doc: dict[str, Any]) -> bool:
        """Store a new version (versioned upsert); False: this or a later version is stored."""
        ...

    async def mark_published(self, doc: Mapping[str, Any]) -> None: ...


class CdrDocuments:
    """`CdrRepository` over the document store."""

    def __init__(self, store: _CdrDocs) -> None:
        self._store = store

    async def latest(self, session_id: str) -> dict[str, Any] | None:
        return await latest_cdr_doc(self._store, session_id)

    async def add(self, doc: dict[str, Any]) -> bool:
        return await self._store.put_doc(
            kinds.CDR, str(doc["id"]), doc, parent=str(doc["session_id"]), version=int(doc["version"])
        )

    async def mark_published(self, doc: Mapping[str, Any]) -> None:
        # Unversioned upsert: keeps the stored version, only flips the outbox marker.
        await self._store.put_doc(kinds.CDR, str(doc["id"]), {**doc, "published": True}, parent=str(doc["session_id"]))


# --- a session's stored register readings ------------------------------------------------------


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
    return wh if plausible_register_wh(wh) else None


def register_readings(rows: Iterable[MeterRow]) -> list[Reading]:
    """The total energy register readings among stored samples that may count: a number as
    sent (no `raw_value`), the total (no phase), in Wh or kWh, 0 .. 1e15 Wh. (Whether a
    reading is an implausible jump is the sessions processor's judgement: `stored_readings`
    asks it when the session's document is at hand.)"""
    out: list[Reading] = []
    for r in rows:
        if r.raw_value or r.phase or r.measurand not in ("", ENERGY_REGISTER):
            continue
        wh = _sample_wh(r.value, r.unit)
        if wh is not None:
            out.append((r.timestamp, wh))
    return out


class SampleSource(Protocol):
    """What reading a session's samples back reads (a `Store` qualifies)."""

    async def read_samples(
        self, session_id: str, *, after: tuple[datetime, str, str] | None = None, limit: int | None = None
    ) -> list[MeterRow]: ...
    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None: ...


async def stored_readings(
    store: SampleSource, session_id: str, rules: Plausibility | None = None, *, doc: Mapping[str, Any] | None = None
) -> list[Reading]:
    """The session's kept total-register readings, read back from the sample store: judged
    by the sessions domain (`kept_register_readings`: jumps and the session window) with the
    session's stored facts (`doc`, else read), else (no session document) filtered by
    `register_readings`."""
    rows = await store.read_samples(session_id)
    if not rows:
        return []
    if doc is None:
        doc = await store.get_doc(kinds.SESSION, session_id)
    if doc is not None:
        try:
            session = session_from_doc(dict(doc))
            samples = [sample_from_row(r) for r in rows]
            if rules is None:
                return kept_register_readings(session, samples)
            return kept_register_readings(session, samples, rules)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            log.warning("session %s: stored facts unusable for judging samples (%s): filtering them", session_id, exc)
    return register_readings(rows)


class ReadingsReader(Protocol):
    """A session's kept total-register readings (`stored_readings`)."""

    async def __call__(self, session_id: str) -> list[Reading]: ...


class SessionReadings:
    """`ReadingsReader` over the sample store, judged with the sessions processor's rules
    (None: its defaults)."""

    def __init__(self, store: SampleSource, rules: Plausibility | None = None) -> None:
        self._store = store
        self._rules = rules

    async def __call__(self, session_id: str) -> list[Reading]:
        return await stored_readings(self._store, session_id, self._rules)


def cost_update_view(doc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The session answer's `cost_update` (None: nothing sent for the session)."""
    if not doc or not isinstance(doc.get("total_cost"), Mapping):
        return None
    total = doc["total_cost"]
    return {
        "total_cost": {"amount": str(total.get("amount") or "0"), "currency": str(total.get("currency") or "")},
        "sent_at": doc.get("sent_at"),
        "kind": str(doc.get("kind") or ""),
        "count": int(doc.get("count") or 0),
        "state": str(doc.get("state") or ""),
    }

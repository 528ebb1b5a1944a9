"""Wire formats of the billing processor: session snapshots in, CDRs out.

`csms.sessions.v1` (protobuf `csms.sessions.v1.Session`) is decoded here into a
plain `SessionSnapshot`, without depending on the sessions processor's code: the
published schema is the contract. Fields billing decides on: `status` (completed /
abandoned are billed), `authorization` (a refused token is never billed),
`hold` / `hold_reasons` / `clock_suspect` (the CDR is held from export), and, since
ADR 015, the bounded aggregates instead of the samples: the price accumulator (`price`),
the register energy counts from (`energy_anchor_wh`) and the last kept register reading
(an abandoned session's last sign of life). Numbers the schema marks `optional` are None
when absent, never 0. `csms.cdrs.v1` records (protobuf `csms.billing.v1.Cdr`) are encoded
from the stored CDR document, so a CDR that is re-published after a crash carries exactly
the bytes of the first attempt. OCPI 2.2.1 (`cdr_to_ocpi`, `tariff_to_ocpi`) is billing's
other wire format: the objects a roaming partner receives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Mapping, Sequence

from google.protobuf.message import Message

from services.billing.domain import Cdr, Money, Tariff, TariffBand, TariffError
from services.billing.domain.money import minor_units
from services.billing.domain.money import PRICING_CONTEXT
from services.billing.domain.running import PriceAccumulator, accumulator_consistent
from services.billing.domain.values import aware_utc, wh_value
from services.common.decimals import parse_decimal
from services.common.codec import cdrs_pb2, cloudevent_headers, get_timestamp, sessions_pb2, set_timestamp, timestamp_value
from services.common.timeutil import parse_ocpp, to_iso_us, to_ocpp

__all__ = [
    "tariff_from_dict",
    "tariff_to_dict",
    "accumulator_from_dict",
    "accumulator_from_pb",
    "accumulator_to_dict",
    "accumulator_to_pb",
    "SESSION_CE_TYPE",
    "CDR_CE_TYPE",
    "CDR_CE_SOURCE",
    "Reading",
    "SessionSnapshot",
    "decode_session",
    "encode_session",
    "encode_cdr",
    "decode_cdr",
    "cdr_headers",
    "cdr_to_ocpi",
    "tariff_to_ocpi",
]

SESSION_CE_TYPE = "csms.sessions.v1.Session"
CDR_CE_TYPE = "csms.billing.v1.Cdr"
CDR_CE_SOURCE = "/csms/billing"

UTC = timezone.utc
Reading = tuple[datetime, int]  # (time, register Wh)


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """One `csms.sessions.v1.Session` message: the facts and aggregates of a session."""

    id: str
    station_id: str
    status: str  # "active" | "completed" | "abandoned"
    version: int
    transaction_id: str = ""
    id_token: str = ""
    energy_wh: int = 0
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    received_at: datetime | None = None
    charging_ended_at: datetime | None = None
    updated_at: datetime | None = None
    evse_id: int = 0
    connector_id: int = 0
    meter_start_wh: int | None = None  # None: the station sent none
    meter_stop_wh: int | None = None
    stop_reason: str = ""
    orphan: bool = False
    suspect: bool = False
    ocpp_version: str = ""
    site_id: str = ""
    authorization: str = ""  # token status answered at the start; "" unknown
    clock_suspect: bool = False
    suspect_reasons: tuple[str, ...] = ()
    hold: bool = False
    hold_reasons: tuple[str, ...] = ()
    abandoned_at: datetime | None = None
    abandon_reason: str = ""
    station_started_at: datetime | None = None
    station_stopped_at: datetime | None = None
    remote_start_id: int = 0
    issued_by: str = ""
    # aggregates (ADR 015)
    sample_count: int = 0
    excluded_count: int = 0
    first_sample_at: datetime | None = None
    last_sample_at: datetime | None = None
    first_register: Reading | None = None  # first kept total energy register reading
    last_register: Reading | None = None  # last kept total energy register reading
    price: PriceAccumulator | None = None  # the running price (tariff pinned at the start)
    energy_anchor_wh: int | None = None  # the register energy counts from

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def abandoned(self) -> bool:
        return self.status == "abandoned"


def _optional_int(pb: Message, name: str) -> int | None:
    return int(getattr(pb, name)) if pb.HasField(name) else None


def _reading(pb: Message, name: str) -> Reading | None:
    if not pb.HasField(name):
        return None
    msg = getattr(pb, name)
    at = get_timestamp(msg, "at")
    return None if at is None else (at, int(msg.wh))


def decode_session(data: bytes) -> SessionSnapshot:
    """Raises `ValueError` for bytes that are not a session snapshot. A snapshot of the
    former shape (with samples, field 19) decodes too: the samples are skipped."""
    pb = sessions_pb2.Session()
    try:
        pb.ParseFromString(data)
    except Exception as exc:  # google.protobuf.message.DecodeError
        raise ValueError(f"not a csms.sessions.v1.Session: {exc}") from None
    if not pb.id or not pb.station_id:
        raise ValueError("session snapshot without id or station_id")
    try:
        return _decoded(pb)
    except (OverflowError, ArithmeticError) as exc:  # a timestamp beyond datetime's range
        raise ValueError(f"session snapshot {pb.id} has an unusable value: {exc}") from None


def _decoded(pb: sessions_pb2.Session) -> SessionSnapshot:
    return SessionSnapshot(
        id=pb.id,
        station_id=pb.station_id,
        status=pb.status,
        version=int(pb.version),
        transaction_id=pb.transaction_id,
        id_token=pb.id_token,
        energy_wh=int(pb.energy_wh),
        started_at=get_timestamp(pb, "started_at"),
        stopped_at=get_timestamp(pb, "stopped_at"),
        received_at=get_timestamp(pb, "received_at"),
        charging_ended_at=get_timestamp(pb, "charging_ended_at"),
        updated_at=get_timestamp(pb, "updated_at"),
        evse_id=int(pb.evse_id),
        connector_id=int(pb.connector_id),
        meter_start_wh=_optional_int(pb, "meter_start_wh"),
        meter_stop_wh=_optional_int(pb, "meter_stop_wh"),
        stop_reason=pb.stop_reason,
        orphan=pb.orphan,
        suspect=pb.suspect,
        ocpp_version=pb.ocpp_version,
        site_id=pb.site_id,
        authorization=pb.authorization,
        clock_suspect=pb.clock_suspect,
        suspect_reasons=tuple(pb.suspect_reasons),
        hold=pb.hold,
        hold_reasons=tuple(pb.hold_reasons),
        abandoned_at=get_timestamp(pb, "abandoned_at"),
        abandon_reason=pb.abandon_reason,
        station_started_at=get_timestamp(pb, "station_started_at"),
        station_stopped_at=get_timestamp(pb, "station_stopped_at"),
        remote_start_id=int(pb.remote_start_id),
        issued_by=pb.issued_by,
        sample_count=int(pb.sample_count),
        excluded_count=int(pb.excluded_count),
        first_sample_at=get_timestamp(pb, "first_sample_at"),
        last_sample_at=get_timestamp(pb, "last_sample_at"),
        first_register=_reading(pb, "first_register"),
        last_register=_reading(pb, "last_register"),
        price=accumulator_from_pb(pb.price) if pb.HasField("price") else None,
        energy_anchor_wh=_optional_int(pb, "energy_anchor_wh"),
    )


_TIMES = (
    "started_at", "stopped_at", "received_at", "charging_ended_at", "updated_at",
    "abandoned_at", "station_started_at", "station_stopped_at", "first_sample_at", "last_sample_at",
)


def encode_session(snap: SessionSnapshot) -> bytes:
    """The inverse of `decode_session` (tools and tests; the sessions processor has its own)."""
    pb = sessions_pb2.Session(
        id=snap.id,
        station_id=snap.station_id,
        transaction_id=snap.transaction_id,
        id_token=snap.id_token,
        status=snap.status,
        energy_wh=snap.energy_wh,
        evse_id=snap.evse_id,
        connector_id=snap.connector_id,
        stop_reason=snap.stop_reason,
        orphan=snap.orphan,
        suspect=snap.suspect,
        version=snap.version,
        ocpp_version=snap.ocpp_version,
        site_id=snap.site_id,
        authorization=snap.authorization,
        clock_suspect=snap.clock_suspect,
        suspect_reasons=list(snap.suspect_reasons),
        hold=snap.hold,
        hold_reasons=list(snap.hold_reasons),
        abandon_reason=snap.abandon_reason,
        remote_start_id=snap.remote_start_id,
        issued_by=snap.issued_by,
        sample_count=snap.sample_count,
        excluded_count=snap.excluded_count,
    )
    for name in ("meter_start_wh", "meter_stop_wh", "energy_anchor_wh"):
        value = getattr(snap, name)
        if value is not None:
            setattr(pb, name, value)
    for name in _TIMES:
        value = getattr(snap, name)
        if value is not None:
            getattr(pb, name).SetInParent()
            set_timestamp(getattr(pb, name), value)
    for name in ("first_register", "last_register"):
        reading = getattr(snap, name)
        if reading is not None:
            msg = getattr(pb, name)
            msg.at.SetInParent()
            set_timestamp(msg.at, reading[0])
            msg.wh = reading[1]
    if snap.price is not None:
        accumulator_to_pb(snap.price, pb.price)
    return pb.SerializeToString()


# --- CDRs ------------------------------------------------------------------------------


def _exact_time(doc: Mapping[str, Any], name: str) -> datetime:
    """Full-precision instant from the document (falls back to the millisecond form)."""
    exact = doc.get("exact") or {}
    return parse_ocpp(str(exact.get(name) or doc[name]))


def _money_pb(value: Mapping[str, Any], msg: Any) -> None:
    msg.amount = str(value["amount"])
    msg.currency = str(value["currency"])


def encode_cdr(doc: Mapping[str, Any]) -> bytes:
    """`csms.billing.v1.Cdr` bytes for a stored CDR document (see documents.cdr_to_doc)."""
    pb = cdrs_pb2.Cdr(
        id=str(doc["id"]),
        session_id=str(doc["session_id"]),
        station_id=str(doc.get("station_id") or ""),
        version=int(doc["version"]),
        reason=str(doc.get("reason") or ""),
        energy_wh=int(doc.get("energy_wh") or 0),
        tariff_id=str(doc.get("tariff_id") or ""),
        breakdown_json=json.dumps(doc.get("breakdown") or {}, sort_keys=True, separators=(",", ":")),
        inputs_fingerprint=str(doc.get("inputs_fingerprint") or ""),
        currency=str(doc.get("currency") or doc["total_cost"]["currency"]),
        session_version=int(doc.get("session_version") or 0),
        clock_suspect=bool(doc.get("clock_suspect", False)),
        hold_reasons=[str(r) for r in doc.get("hold_reasons") or ()],
    )
    _money_pb(doc["total_cost"], pb.total_cost)
    _money_pb(doc["total_cost_incl_tax"], pb.total_cost_incl_tax)
    for name in ("started_at", "stopped_at", "created_at"):
        getattr(pb, name).SetInParent()
        set_timestamp(getattr(pb, name), _exact_time(doc, name))
    return pb.SerializeToString()


def decode_cdr(data: bytes) -> dict[str, Any]:
    """A `csms.cdrs.v1` record as a dict (for consumers and tests)."""
    pb = cdrs_pb2.Cdr()
    pb.ParseFromString(data)

    def ts(name: str) -> str | None:
        value = get_timestamp(pb, name)
        return None if value is None else to_ocpp(value)

    return {
        "id": pb.id,
        "session_id": pb.session_id,
        "station_id": pb.station_id,
        "version": int(pb.version),
        "reason": pb.reason,
        "energy_wh": int(pb.energy_wh),
        "started_at": ts("started_at"),
        "stopped_at": ts("stopped_at"),
        "tariff_id": pb.tariff_id,
        "total_cost": {"amount": pb.total_cost.amount, "currency": pb.total_cost.currency},
        "total_cost_incl_tax": {"amount": pb.total_cost_incl_tax.amount, "currency": pb.total_cost_incl_tax.currency},
        "breakdown": json.loads(pb.breakdown_json) if pb.breakdown_json else {},
        "created_at": ts("created_at"),
        "inputs_fingerprint": pb.inputs_fingerprint,
        "currency": pb.currency,
        "session_version": int(pb.session_version),
        "clock_suspect": pb.clock_suspect,
        "hold_reasons": list(pb.hold_reasons),
    }


def cdr_headers(doc: Mapping[str, Any], *, traceparent: str | None = None) -> Sequence[tuple[str, bytes]]:
    """CloudEvents attributes (binary content mode) of a `csms.cdrs.v1` record."""
    return cloudevent_headers(
        str(doc["id"]), CDR_CE_TYPE, CDR_CE_SOURCE, _exact_time(doc, "created_at"), str(doc.get("station_id") or ""),
        traceparent=traceparent,
    )


# --- OCPI 2.2.1 ------------------------------------------------------------------------
# The Tariff and CDR objects billing hands to a roaming partner. JSON numbers at this edge
# only: amounts are rounded Decimals first, then float().

_OCPI_DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")


def _num(value: Decimal, places: int) -> float:
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=PRICING_CONTEXT)
    return float(q)


def _hours(seconds: Decimal) -> float:
    return _num(PRICING_CONTEXT.divide(seconds, Decimal(3600)), 6)


def _price(excl: Money, incl: Money | None = None) -> dict[str, float]:
    out = {"excl_vat": float(excl.rounded().amount)}
    if incl is not None:
        out["incl_vat"] = float(incl.rounded().amount)
    return out


def _components(kwh: Decimal | None, minute: Decimal | None, vat: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if kwh is not None:
        out.append({"type": "ENERGY", "price": float(kwh), "vat": vat, "step_size": 1})
    if minute is not None:
        out.append({"type": "TIME", "price": float(minute * 60), "vat": vat, "step_size": 1})
    return out


def tariff_to_ocpi(tariff: Tariff, *, country_code: str, party_id: str, last_updated: datetime) -> dict[str, Any]:
    """OCPI 2.2.1 Tariff. Band elements first (with restrictions), then the base.
    The idle grace period has no OCPI equivalent and is not expressed."""
    vat = float(tariff.tax_rate * 100)
    elements: list[dict[str, Any]] = []
    for band in tariff.bands:
        comps = _components(band.price_per_kwh, band.price_per_minute, vat)
        if not comps:
            continue
        restrictions: dict[str, Any] = {}
        if band.start != band.end:
            restrictions.update(start_time=band.start, end_time=band.end)
        if band.days_of_week is not None:
            restrictions["day_of_week"] = [_OCPI_DAYS[d] for d in band.days_of_week]
        elements.append({"price_components": comps, "restrictions": restrictions})
    base = _components(tariff.price_per_kwh, tariff.price_per_minute, vat)
    if tariff.session_fee:
        base.append({"type": "FLAT", "price": float(tariff.session_fee), "vat": vat, "step_size": 1})
    if tariff.idle_fee_per_minute:
        parking_per_hour = float(tariff.idle_fee_per_minute * 60)
        base.append({"type": "PARKING_TIME", "price": parking_per_hour, "vat": vat, "step_size": 1})
    elements.append({"price_components": base})
    out: dict[str, Any] = {
        "country_code": country_code,
        "party_id": party_id,
        "id": tariff.id,
        "currency": tariff.currency,
        "elements": elements,
        "last_updated": to_ocpp(last_updated),
    }
    for key, value in (("min_price", tariff.min_price), ("max_price", tariff.max_price)):
        if value is not None:
            m = Money(value, tariff.currency)
            out[key] = _price(m, m * (1 + tariff.tax_rate))
    return out


def cdr_to_ocpi(
    cdr: Cdr,
    *,
    country_code: str,
    party_id: str,
    token_uid: str = "UNKNOWN",
    token_type: str = "RFID",
    contract_id: str | None = None,
    evse_uid: str | None = None,
    connector_id: str = "1",
    tariff: Tariff | None = None,
) -> dict[str, Any]:
    """OCPI 2.2.1 CDR object. One charging period per band line (ENERGY kWh, TIME
    hours), plus a PARKING_TIME period when the car stayed after charging."""
    b = cdr.breakdown
    periods: list[dict[str, Any]] = [
        {
            "start_date_time": to_ocpp(line.started_at),
            "dimensions": [
                {"type": "ENERGY", "volume": _num(line.kwh, 3)},
                {"type": "TIME", "volume": _hours(line.seconds)},
            ],
            "tariff_id": cdr.tariff_id,
        }
        for line in b.lines
    ]
    if b.parking_seconds > 0:
        periods.append(
            {
                "start_date_time": to_ocpp(b.charging_ended_at),
                "dimensions": [{"type": "PARKING_TIME", "volume": _hours(b.parking_seconds)}],
                "tariff_id": cdr.tariff_id,
            }
        )
    rate = 1 + b.tax_rate
    out: dict[str, Any] = {
        "country_code": country_code,
        "party_id": party_id,
        "id": cdr.id,
        "start_date_time": to_ocpp(cdr.started_at),
        "end_date_time": to_ocpp(cdr.stopped_at),
        "session_id": cdr.session_id,
        "cdr_token": {
            "country_code": country_code,
            "party_id": party_id,
            "uid": token_uid,
            "type": token_type,
            "contract_id": contract_id or token_uid,
        },
        "auth_method": "AUTH_REQUEST",
        "cdr_location": {
            "id": cdr.station_id,
            "evse_uid": evse_uid or cdr.station_id,
            "evse_id": evse_uid or cdr.station_id,
            "connector_id": connector_id,
        },
        "currency": b.currency,
        "tariffs": [] if tariff is None else [
            tariff_to_ocpi(tariff, country_code=country_code, party_id=party_id, last_updated=cdr.created_at)
        ],
        "charging_periods": periods,
        "total_cost": _price(b.total_excl_tax, b.total_incl_tax),
        "total_fixed_cost": _price(b.session_fee, b.session_fee * rate),
        "total_energy": _num(Decimal(b.energy_wh) / 1000, 3),
        "total_energy_cost": _price(b.energy_cost, b.energy_cost * rate),
        "total_time": _hours(b.charging_seconds + b.parking_seconds),
        "total_time_cost": _price(b.time_cost, b.time_cost * rate),
        "total_parking_time": _hours(b.parking_seconds),
        "total_parking_cost": _price(b.idle_cost, b.idle_cost * rate),
        "last_updated": to_ocpp(cdr.created_at),
    }
    if cdr.version > 1:
        out["remark"] = f"version {cdr.version}: {cdr.reason}"
    return out


# --- the price accumulator: its document (dict) and protobuf forms ------------------------------


def _parse_instant(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO 8601 instant, got {value!r}")
    return aware_utc(datetime.fromisoformat(value), name)


def _int(value: object, name: str) -> int:
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    return wh_value(value, name)


def _mark_value(value: object) -> Decimal:
    d = parse_decimal(value) if isinstance(value, str) else None
    if d is None or d < 0:
        raise ValueError(f"a mark must be a non-negative decimal text, got {value!r}")
    return d


def accumulator_to_dict(acc: PriceAccumulator) -> dict[str, Any]:
    """JSON-ready form (stored in the session document): instants to the microsecond,
    marks as decimal text, so `accumulator_from_dict` gives back an equal accumulator."""
    return {
        "tariff_id": acc.tariff_id,
        "tariff_fingerprint": acc.tariff_fingerprint,
        "currency": acc.currency,
        "opened_at": to_iso_us(acc.opened_at),
        "open_wh": acc.open_wh,
        "last_at": to_iso_us(acc.last_at),
        "last_wh": acc.last_wh,
        "marks": [[to_iso_us(t), f"{v:f}"] for t, v in acc.marks],
    }


def accumulator_from_dict(d: Mapping[str, Any]) -> PriceAccumulator:
    """Raises ValueError (or KeyError / TypeError) for a mapping that is not an accumulator."""
    marks = d.get("marks") or []
    if not isinstance(marks, (list, tuple)):
        raise ValueError("marks must be a list")
    acc = PriceAccumulator(
        tariff_id=str(d["tariff_id"]),
        tariff_fingerprint=str(d["tariff_fingerprint"]),
        currency=str(d["currency"]),
        opened_at=_parse_instant(d["opened_at"], "opened_at"),
        open_wh=_int(d["open_wh"], "open_wh"),
        last_at=_parse_instant(d["last_at"], "last_at"),
        last_wh=_int(d["last_wh"], "last_wh"),
        marks=tuple((_parse_instant(m[0], "mark time"), _mark_value(m[1])) for m in marks),
    )
    if not accumulator_consistent(acc):
        raise ValueError("not a consistent accumulator (high-water mark before its opening, or out of range)")
    return acc


def accumulator_to_pb(acc: PriceAccumulator, pb: sessions_pb2.PriceAccumulator) -> None:
    """Fill a `csms.sessions.v1.PriceAccumulator` message (`running_total_incl_tax` is the
    caller's: it needs `now` and the tariff)."""
    pb.tariff_id = acc.tariff_id
    pb.tariff_fingerprint = acc.tariff_fingerprint
    pb.currency = acc.currency
    set_timestamp(pb.opened_at, acc.opened_at)
    pb.open_wh = acc.open_wh
    set_timestamp(pb.last_at, acc.last_at)
    pb.last_wh = acc.last_wh
    del pb.marks[:]
    for t, v in acc.marks:
        m = pb.marks.add()
        set_timestamp(m.at, t)
        m.wh = f"{v:f}"


def accumulator_from_pb(pb: sessions_pb2.PriceAccumulator | None) -> PriceAccumulator | None:
    """The accumulator a message carries; None when it carries none (no tariff applied) or
    it is not usable (then the caller re-prices from the samples)."""
    if pb is None or not pb.tariff_id or not pb.tariff_fingerprint:
        return None
    try:
        acc = PriceAccumulator(
            tariff_id=pb.tariff_id,
            tariff_fingerprint=pb.tariff_fingerprint,
            currency=pb.currency,
            opened_at=timestamp_value(pb.opened_at),
            open_wh=int(pb.open_wh),
            last_at=timestamp_value(pb.last_at),
            last_wh=int(pb.last_wh),
            marks=tuple((timestamp_value(m.at), _mark_value(m.wh)) for m in pb.marks),
        )
    except (ValueError, OverflowError, ArithmeticError):
        return None
    return acc if accumulator_consistent(acc) else None


# --- tariffs: the REST and document shape ---------------------------------------------------

_TARIFF_KEYS = {
    "id", "currency", "price_per_kwh", "price_per_minute", "session_fee", "idle_fee_per_minute",
    "idle_grace_minutes", "tax_rate", "bands", "min_price", "max_price", "timezone", "default",
}
_BAND_KEYS = {"start", "end", "days_of_week", "price_per_kwh", "price_per_minute"}


def _check_keys(d: object, allowed: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise TariffError(f"{what} must be an object, got {type(d).__name__}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise TariffError(f"{what} has unknown field(s): {', '.join(map(str, unknown))}")
    return d


def _band_from_dict(raw: object, i: int) -> TariffBand:
    d = _check_keys(raw, _BAND_KEYS, f"bands[{i}]")
    for key in ("start", "end"):
        if key not in d:
            raise TariffError(f"bands[{i}].{key} is required")
    days = d.get("days_of_week")
    if days is not None and not isinstance(days, (list, tuple)):
        raise TariffError(f"bands[{i}].days_of_week must be a list of integers 0..6 or null, got {days!r}")
    try:
        return TariffBand(
            start=d["start"],
            end=d["end"],
            days_of_week=None if days is None else tuple(days),
            price_per_kwh=d.get("price_per_kwh"),
            price_per_minute=d.get("price_per_minute"),
        )
    except TariffError as e:
        raise TariffError(f"bands[{i}]: {e}") from None


def tariff_from_dict(d: Mapping[str, Any]) -> Tariff:
    """Parse the REST shape. Money values are decimal strings ("0.30"); floats are rejected."""
    d = _check_keys(d, _TARIFF_KEYS, "tariff")
    for key in ("id", "currency"):
        if key not in d:
            raise TariffError(f"{key} is required")
    bands_raw = d.get("bands") or []
    if not isinstance(bands_raw, (list, tuple)):
        raise TariffError("bands must be a list")
    grace = d.get("idle_grace_minutes", 0)
    if isinstance(grace, str) and grace.isdigit():
        grace = int(grace)
    return Tariff(
        id=d["id"],
        currency=d["currency"],
        price_per_kwh=d.get("price_per_kwh", Decimal(0)),
        price_per_minute=d.get("price_per_minute", Decimal(0)),
        session_fee=d.get("session_fee", Decimal(0)),
        idle_fee_per_minute=d.get("idle_fee_per_minute", Decimal(0)),
        idle_grace_minutes=grace,
        tax_rate=d.get("tax_rate", Decimal(0)),
        min_price=d.get("min_price"),
        max_price=d.get("max_price"),
        bands=tuple(_band_from_dict(b, i) for i, b in enumerate(bands_raw)),
        timezone=d.get("timezone", "UTC"),
        default=d.get("default", False),
    )


def _money_str(value: Decimal, currency: str) -> str:
    """At least the currency's minor digits ("0.3" -> "0.30"), more if the price has them."""
    digits = minor_units(currency)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent < digits:
        value = value.quantize(Decimal(1).scaleb(-digits))
    return f"{value:f}"


def _opt_money_str(value: Decimal | None, currency: str) -> str | None:
    return None if value is None else _money_str(value, currency)


def tariff_to_dict(t: Tariff) -> dict[str, Any]:
    c = t.currency
    return {
        "id": t.id,
        "currency": c,
        "price_per_kwh": _money_str(t.price_per_kwh, c),
        "price_per_minute": _money_str(t.price_per_minute, c),
        "session_fee": _money_str(t.session_fee, c),
        "idle_fee_per_minute": _money_str(t.idle_fee_per_minute, c),
        "idle_grace_minutes": t.idle_grace_minutes,
        "tax_rate": f"{t.tax_rate:f}",
        "bands": [
            {
                "start": b.start,
                "end": b.end,
                "days_of_week": None if b.days_of_week is None else list(b.days_of_week),
                "price_per_kwh": _opt_money_str(b.price_per_kwh, c),
                "price_per_minute": _opt_money_str(b.price_per_minute, c),
            }
            for b in t.bands
        ],
        "min_price": _opt_money_str(t.min_price, c),
        "max_price": _opt_money_str(t.max_price, c),
        "timezone": t.timezone,
        "default": t.default,
    }

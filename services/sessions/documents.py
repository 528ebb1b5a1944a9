"""The sessions service's documents: what it stores, mapped to its domain values and back.

The sessions processor is the one writer of these document kinds (services.common.kinds);
other services read them through this module only (ADR 010, consolidation):

- SESSION (`session_to_doc` / `session_from_doc`): one per charging session. The public
  fields are ISO 8601 and plain numbers (the REST API's view, billing's and the sweeper's
  reads); `_state` is the compact internal form (`"v": 2`: instants as integer epoch
  milliseconds, the price accumulator's as microseconds, samples and keys as short
  lists), so loading parses no text. A document of the version before ADR 015 (with
  `meter_samples`) still loads: `is_legacy_doc`, `legacy_samples`.
- TOKEN_SESSION (`token_session_to_doc`): the index of a token's sessions (id = session
  id, parent = the id token), written next to the session when it opens or its token,
  start or status changes (GET /api/v1/tokens/{id}/sessions).
- meter samples (`sample_to_row` / `sample_from_row`): a session's samples in the sample
  store (`services.common.store.port.MeterRow`), outside the session document; `page`
  reads one page of them for the REST API, judged by the domain.
- STATION_STATUS (`station_status_to_doc` / `station_status_from_doc`): a
  `StationStatus` (COMMAND records moved to services/stations/documents.py, ADR 016);
  OPEN_SESSIONS (`open_sessions_to_doc` / `open_sessions_from_doc`): a station's
  `OpenSessions` index; REMOTE_START (`remote_start_to_doc` / `remote_start_from_doc`):
  a `RemoteStartCommand`.

Every mapper keeps the stored format as it was: a document written before this module
existed loads, and the document of a value loaded from one is equal to it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from services.billing.codec import accumulator_from_dict, accumulator_to_dict
from services.billing.domain.running import PriceAccumulator
from services.common.store.port import MeterRow, SampleStore
from services.common.timeutil import parse_ocpp, to_ocpp
from services.sessions.domain.ev_needs import EvNeeds, EvPeriod, EvSchedule
from services.sessions.domain.lifecycle import IndexEntry, OpenSessions, RemoteStartCommand
from services.sessions.domain.session import (
    DEFAULT_RULES,
    MAX_SEQ_RANGES,
    OrderKey,
    Plausibility,
    Reading,
    RegisterSeries,
    Sample,
    SeriesMark,
    Session,
    bounded_idle,
    judge_samples,
    refold,
    truncate_ms,
)
from services.sessions.domain.station_status import Boot, ConnectorState, Disconnect, StationStatus

__all__ = [
    # sessions and their samples
    "session_to_doc",
    "session_from_doc",
    "is_legacy_doc",
    "legacy_samples",
    "sample_to_row",
    "sample_from_row",
    "ev_needs_view",
    "ev_schedule_view",
    "token_session_to_doc",
    "token_session_inputs",
    # station status
    "StationStatus",
    "station_status_to_doc",
    "station_status_from_doc",
    # lifecycle
    "OpenSessions",
    "open_sessions_to_doc",
    "open_sessions_from_doc",
    "RemoteStartCommand",
    "remote_start_to_doc",
    "remote_start_from_doc",
    # meter-values pages (REST)
    "page",
    "sample_view",
    "encode_cursor",
    "decode_cursor",
]

UTC = timezone.utc


# -- sessions ------------------------------------------------------------------------
_ISO_TEXT: dict[datetime, str] = {}
_ISO_TEXT_MAX = 100_000  # ~15 MB at most; emptied when full


def _iso(dt: datetime | None) -> str | None:
    """`to_ocpp`, remembered: a session document carries a dozen instants and most of them
    (start, receive, first sample, ...) are the same in every version of it, so the
    processor formatted the same instants again on every write (~15% of its CPU for the
    documents, bench/sessions_processor.py)."""
    if dt is None:
        return None
    text = _ISO_TEXT.get(dt)
    if text is None:
        if len(_ISO_TEXT) >= _ISO_TEXT_MAX:
            _ISO_TEXT.clear()
        text = _ISO_TEXT[dt] = to_ocpp(dt)
    return text


def _dt(value: str | None) -> datetime | None:
    return None if value is None else parse_ocpp(value)


def _key_in(v: Any) -> OrderKey | None:
    return None if v is None else (int(v[0]), parse_ocpp(v[1]))


def _reading_out(r: Reading | None) -> dict[str, Any] | None:
    return None if r is None else {"at": _iso(r[0]), "wh": r[1]}


def _reading_in(d: Any) -> Reading | None:
    return None if not d else (parse_ocpp(d["at"]), float(d["wh"]))


def _sample_in(d: dict[str, Any]) -> Sample:
    return Sample(
        parse_ocpp(d["timestamp"]), d["measurand"], float(d["value"]), d.get("unit", ""), d.get("phase", ""),
        raw_value=d.get("raw_value", ""), station_time=_dt(d.get("station_time")),
    )


def session_to_doc(s: Session) -> dict[str, Any]:
    """The stored document, also the REST API's view: facts, derived fields and the
    aggregates, never the samples (they are in the sample store). Keys starting with "_"
    are bookkeeping (the API drops them). Its size does not grow with the session.
    `reservation_id`, `ev_charging_needs` and `ev_charging_schedule` (ADR 018) are there
    only when the session has them.

    `_state` is the compact internal form (`"v": 2`): every instant as integer epoch
    milliseconds (the accumulator's as microseconds), samples and keys as short lists, so
    loading parses no text: `session_from_doc` builds the session from it and the public
    scalars. The public ISO 8601 fields are for readers (REST API, billing, sweeper)."""
    pb = s.price_basis
    pp = s.phase_power
    acc = s.price
    doc: dict[str, Any] = {
        "id": s.id,
        "station_id": s.station_id,
        "transaction_id": s.transaction_id,
        "id_token": s.id_token,
        "authorization": s.authorization,
        "status": s.status,
        "energy_wh": s.energy_wh,
        "started_at": _iso(s.started_at),
        "stopped_at": _iso(s.stopped_at),
        "station_started_at": _iso(s.station_started_at),
        "station_stopped_at": _iso(s.station_stopped_at),
        "received_at": _iso(s.received_at),
        "charging_ended_at": _iso(s.charging_ended_at),
        "abandoned_at": _iso(s.abandoned_at),
        "abandon_reason": s.abandon_reason,
        "evse_id": s.evse_id,
        "connector_id": s.connector_id,
        "meter_start_wh": s.meter_start_wh,
        "meter_stop_wh": s.meter_stop_wh,
        "stop_reason": s.stop_reason,
        "ocpp_version": s.ocpp_version,
        "remote_start_id": s.remote_start_id,
        "issued_by": s.issued_by,
        "orphan": s.orphan,
        "suspect": s.suspect,
        "suspect_reasons": sorted(s.suspect_reasons),
        "clock_suspect": s.clock_suspect,
        "hold": s.hold,
        "hold_reasons": sorted(s.hold_reasons),
        "seq_gaps": s.seq_gaps,
        "sample_count": s.sample_count,
        "excluded_count": s.excluded_count,
        "first_sample_at": _iso(s.first_sample_at),
        "last_sample_at": _iso(s.last_sample_at),
        "first_register": _reading_out(s.first_register),
        "last_register": _reading_out(s.last_register),
        "peak_power_w": s.peak_power_w,
        "energy_anchor_wh": s.energy_anchor_wh,
        "price": accumulator_to_dict(acc) if acc is not None else None,
        "version": s.version,
        "updated_at": _iso(s.updated_at),
        "_state": {
            "v": 2,
            "t": [_ms_of(s.received_at), _ms_of(s.updated_at), _ms_or_none(s.started_at),
                  _ms_or_none(s.station_started_at), _ms_or_none(s.stopped_at), _ms_or_none(s.station_stopped_at),
                  _ms_or_none(s.charging_ended_at), _ms_or_none(s.abandoned_at), _ms_or_none(s.first_sample_at),
                  _ms_or_none(s.last_sample_at)],
            "k": [_ckey_out(s.start_key), _ckey_out(s.end_key), _ckey_out(s.token_key), _ckey_out(s.location_key),
                  _ckey_out(s.last_charging_key)],
            "idle": [_ckey_out(k) for k in s.idle_keys],
            "event_token": s.event_token,
            "remote_token": s.remote_token,
            "seq": [[lo, hi] for lo, hi in s.seq_ranges],
            "seq_overflow": s.seq_overflow,
            "flags": sorted(s.flags),
            "sample_reasons": sorted(s.sample_reasons),
            "marks": [
                [m.measurand, m.phase, _csample_out(m.last)] + ([] if _same_sample(m.first, m.last) else [_csample_out(m.first)])
                for m in s.marks
            ],
            "regs": [
                [r.phase, _ms_of(r.seen_first), _ms_of(r.seen_last), _creading_out(r.first), _creading_out(r.last)]
                for r in s.registers
            ],
            "peak_total_w": s.peak_total_w,
            "pp": [_ms_of(pp[0]), [[p, v] for p, v in pp[1]]] if pp else None,
            "pb": [_ms_of(pb[0]), pb[1]] if pb else None,
            "acc": (
                [acc.tariff_id, acc.tariff_fingerprint, acc.currency, _us_of(acc.opened_at), acc.open_wh,
                 _us_of(acc.last_at), acc.last_wh, [[_us_of(t), f"{v:f}"] for t, v in acc.marks]]
                if acc is not None else None
            ),
            "applied": list(s.applied) if s.applied is not None else None,
        },
    }
    # ADR 018, only when set (a document without them stays as it was written)
    if s.reservation_id:
        doc["reservation_id"] = s.reservation_id
    if s.ev_needs is not None or s.ev_schedule is not None:
        doc["ev_charging_needs"] = ev_needs_view(s.ev_needs)
        doc["ev_charging_schedule"] = ev_schedule_view(s.ev_schedule)
        doc["_state"]["ev"] = [_cneeds_out(s.ev_needs), _cschedule_out(s.ev_schedule)]
    return doc


# -- the compact internal form: integers for instants, lists for records -------------------
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms_of(dt: datetime) -> int:
    d = dt - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000 + d.microseconds // 1_000


def _ms_or_none(dt: datetime | None) -> int | None:
    return None if dt is None else _ms_of(dt)


def _us_of(dt: datetime) -> int:
    d = dt - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def _at_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _at_ms_or_none(ms: int | None) -> datetime | None:
    return None if ms is None else _EPOCH + timedelta(milliseconds=ms)


def _at_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _ckey_out(k: OrderKey | None) -> list[int] | None:
    return None if k is None else [k[0], _ms_of(k[1])]


def _ckey_in(v: Any) -> OrderKey | None:
    return None if v is None else (int(v[0]), _EPOCH + timedelta(milliseconds=v[1]))


def _creading_out(r: Reading | None) -> list[Any] | None:
    return None if r is None else [_ms_of(r[0]), r[1]]


def _creading_in(v: Any) -> Reading | None:
    return None if not v else (_EPOCH + timedelta(milliseconds=v[0]), float(v[1]))


def _same_sample(a: Sample, b: Sample) -> bool:
    return a is b or (a.timestamp == b.timestamp and a == b)


def _csample_out(x: Sample) -> list[Any]:
    """[ms, value, unit(, raw_value(, station ms))]: measurand and phase are the series'."""
    out: list[Any] = [_ms_of(x.timestamp), x.value, x.unit]
    if x.raw_value or x.station_time is not None:
        out.append(x.raw_value)
        if x.station_time is not None:
            out.append(_ms_of(x.station_time))
    return out


def _csample_in(v: list[Any], measurand: str, phase: str) -> Sample:
    n = len(v)
    return Sample(
        _EPOCH + timedelta(milliseconds=v[0]), measurand, float(v[1]), v[2], phase,
        v[3] if n > 3 else "", False, _EPOCH + timedelta(milliseconds=v[4]) if n > 4 else None,
    )


def _cmark_in(v: list[Any]) -> SeriesMark:
    m, p = v[0], v[1]
    last = _csample_in(v[2], m, p)
    return SeriesMark(m, p, _csample_in(v[3], m, p) if len(v) > 3 else last, last)


def _cacc_in(v: list[Any] | None) -> PriceAccumulator | None:
    if not v:
        return None
    return PriceAccumulator(
        tariff_id=v[0], tariff_fingerprint=v[1], currency=v[2], opened_at=_at_us(v[3]), open_wh=int(v[4]),
        last_at=_at_us(v[5]), last_wh=int(v[6]), marks=tuple((_at_us(t), Decimal(x)) for t, x in v[7]),
    )


def _cneeds_out(n: EvNeeds | None) -> list[Any] | None:
    if n is None:
        return None
    return [_ms_of(n.received_at), n.event_id, n.requested_energy_transfer, _ms_or_none(n.departure_time),
            n.energy_amount_wh, n.ev_min_current_a, n.ev_max_current_a, n.ev_max_voltage_v, n.status,
            1 if n.dc else 0, n.ev_max_power_w, n.state_of_charge, n.ev_energy_capacity_wh, n.full_soc, n.bulk_soc]


def _cneeds_in(v: list[Any] | None) -> EvNeeds | None:
    if not v:
        return None
    return EvNeeds(
        received_at=_at_ms(v[0]), event_id=str(v[1]), requested_energy_transfer=str(v[2]),
        departure_time=_at_ms_or_none(v[3]), energy_amount_wh=v[4], ev_min_current_a=v[5], ev_max_current_a=v[6],
        ev_max_voltage_v=v[7], status=str(v[8]), dc=bool(v[9]), ev_max_power_w=v[10], state_of_charge=v[11],
        ev_energy_capacity_wh=v[12], full_soc=v[13], bulk_soc=v[14],
    )


def _cschedule_out(x: EvSchedule | None) -> list[Any] | None:
    if x is None:
        return None
    return [_ms_of(x.received_at), x.event_id, _ms_or_none(x.time_base), x.charging_rate_unit,
            [[p.start_period, p.limit, p.number_phases] for p in x.periods], 1 if x.truncated else 0]


def _cschedule_in(v: list[Any] | None) -> EvSchedule | None:
    if not v:
        return None
    return EvSchedule(
        received_at=_at_ms(v[0]), event_id=str(v[1]), time_base=_at_ms_or_none(v[2]), charging_rate_unit=str(v[3]),
        periods=tuple(EvPeriod(int(a), float(b), None if c is None else int(c)) for a, b, c in v[4]),
        truncated=bool(v[5]),
    )


def ev_needs_view(n: EvNeeds | None) -> dict[str, Any] | None:
    """What the session document and the REST API show of the EV's charging needs."""
    if n is None:
        return None
    return {
        "departure_time": _iso(n.departure_time),
        "requested_energy_transfer": n.requested_energy_transfer,
        "energy_amount_wh": n.energy_amount_wh,
        "ev_min_current_a": n.ev_min_current_a,
        "ev_max_current_a": n.ev_max_current_a,
        "ev_max_voltage_v": n.ev_max_voltage_v,
        "dc": {
            "ev_max_power_w": n.ev_max_power_w,
            "state_of_charge": n.state_of_charge,
            "ev_energy_capacity_wh": n.ev_energy_capacity_wh,
            "full_soc": n.full_soc,
            "bulk_soc": n.bulk_soc,
        } if n.dc else None,
        "status": n.status,
        "received_at": to_ocpp(n.received_at),
    }


def ev_schedule_view(x: EvSchedule | None) -> dict[str, Any] | None:
    """What the session document and the REST API show of the schedule the EV chose."""
    if x is None:
        return None
    return {
        "time_base": _iso(x.time_base),
        "charging_rate_unit": x.charging_rate_unit,
        "periods": [
            {"start_period": p.start_period, "limit": p.limit, "number_phases": p.number_phases} for p in x.periods
        ],
        "truncated": x.truncated,
        "received_at": to_ocpp(x.received_at),
    }


def _session_from_compact(d: dict[str, Any], st: dict[str, Any]) -> Session:
    """The session of a document this version wrote (`_state` v2): no text parsed."""
    t = st["t"]
    k = st["k"]
    pp = st.get("pp")
    pb = st.get("pb")
    applied = st.get("applied")
    evs = st.get("ev")
    return Session(
        id=d["id"],
        station_id=d["station_id"],
        transaction_id=d["transaction_id"],
        received_at=_at_ms(t[0]),
        updated_at=_at_ms(t[1]),
        status=d.get("status", "active"),
        energy_wh=int(d.get("energy_wh", 0)),
        orphan=bool(d.get("orphan", False)),
        suspect=bool(d.get("suspect", False)),
        suspect_reasons=frozenset(d.get("suspect_reasons", ())),
        seq_gaps=bool(d.get("seq_gaps", False)),
        charging_ended_at=_at_ms_or_none(t[6]),
        id_token=d.get("id_token", ""),
        clock_suspect=bool(d.get("clock_suspect", False)),
        hold=bool(d.get("hold", False)),
        hold_reasons=frozenset(d.get("hold_reasons", ())),
        energy_anchor_wh=d.get("energy_anchor_wh"),
        started_at=_at_ms_or_none(t[2]),
        station_started_at=_at_ms_or_none(t[3]),
        meter_start_wh=d.get("meter_start_wh"),
        authorization=d.get("authorization", ""),
        start_key=_ckey_in(k[0]),
        stopped_at=_at_ms_or_none(t[4]),
        station_stopped_at=_at_ms_or_none(t[5]),
        meter_stop_wh=d.get("meter_stop_wh"),
        stop_reason=d.get("stop_reason", ""),
        end_key=_ckey_in(k[1]),
        event_token=st.get("event_token", ""),
        token_key=_ckey_in(k[2]),
        evse_id=int(d.get("evse_id", 0)),
        connector_id=int(d.get("connector_id", 0)),
        location_key=_ckey_in(k[3]),
        remote_start_id=int(d.get("remote_start_id", 0)),
        remote_token=st.get("remote_token", ""),
        issued_by=d.get("issued_by", ""),
        reservation_id=int(d.get("reservation_id") or 0),
        ev_needs=_cneeds_in(evs[0]) if evs else None,
        ev_schedule=_cschedule_in(evs[1]) if evs else None,
        abandoned_at=_at_ms_or_none(t[7]),
        abandon_reason=d.get("abandon_reason", ""),
        last_charging_key=_ckey_in(k[4]),
        idle_keys=tuple((int(v[0]), _EPOCH + timedelta(milliseconds=v[1])) for v in st.get("idle", ())),
        ocpp_version=d.get("ocpp_version", ""),
        seq_ranges=tuple((int(a), int(b)) for a, b in st.get("seq", ())),
        seq_overflow=bool(st.get("seq_overflow", False)),
        flags=frozenset(st.get("flags", ())),
        sample_count=int(d.get("sample_count", 0)),
        excluded_count=int(d.get("excluded_count", 0)),
        first_sample_at=_at_ms_or_none(t[8]),
        last_sample_at=_at_ms_or_none(t[9]),
        sample_reasons=frozenset(st.get("sample_reasons", ())),
        marks=tuple(_cmark_in(m) for m in st.get("marks", ())),
        registers=tuple(
            RegisterSeries(p, _at_ms(a), _at_ms(b), _creading_in(f), _creading_in(la))
            for p, a, b, f, la in st.get("regs", ())
        ),
        peak_total_w=None if st.get("peak_total_w") is None else float(st["peak_total_w"]),
        phase_power=(_at_ms(pp[0]), tuple((str(p), float(v)) for p, v in pp[1])) if pp else None,
        price=_cacc_in(st.get("acc")),
        price_basis=(_at_ms(pb[0]), int(pb[1])) if pb else None,
        applied=(int(applied[0]), int(applied[1])) if applied else None,
        version=int(d.get("version", 0)),
    )


def _mark_in(d: dict[str, Any]) -> SeriesMark:
    last = _sample_in(d["last"])
    first = _sample_in(d["first"]) if "first" in d else last
    return SeriesMark(last.measurand, last.phase, first, last)


def is_legacy_doc(d: Mapping[str, Any]) -> bool:
    """A session document from before ADR 015 (samples inside, seqNos as a set): the
    processor appends its samples to the sample store and writes it back in this form."""
    st = d.get("_state") or {}
    return "meter_samples" in d or "sample_level" in st or "seen_seq_nos" in st


def legacy_samples(d: dict[str, Any]) -> list[Sample]:
    """The samples a document of the previous version carried (`meter_samples`, before
    ADR 015), [] for a current one. The runtime appends them to the sample store the first
    time it loads such a document, so an upgrade loses nothing (appends are idempotent)."""
    return [_sample_in(x) for x in d.get("meter_samples") or ()]


def _seq_ranges_of(numbers: Iterable[int]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for n in sorted(set(numbers)):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return tuple((lo, hi) for lo, hi in out[-MAX_SEQ_RANGES:])


def session_from_doc(d: dict[str, Any]) -> Session:
    """The session a document holds. A document of the previous version (with
    `meter_samples`) is rebuilt from its samples (default rules, no tariff), keeping its
    version: nothing is lost, and the next change is written over it."""
    st = d.get("_state") or {}
    if st.get("v") == 2 and "meter_samples" not in d:
        return _session_from_compact(d, st)
    received = _dt(d["received_at"])
    updated = _dt(d.get("updated_at")) or received
    assert received is not None and updated is not None
    legacy = is_legacy_doc(d)
    seq_ranges = (
        _seq_ranges_of(int(n) for n in st.get("seen_seq_nos", ())) if legacy
        else tuple((int(a), int(b)) for a, b in st.get("seq_ranges", ()))
    )
    phase_power = st.get("phase_power")
    basis = st.get("price_basis")
    applied = st.get("applied")
    s = Session(
        id=d["id"],
        station_id=d["station_id"],
        transaction_id=d["transaction_id"],
        received_at=received,
        updated_at=updated,
        status=d.get("status", "active"),
        energy_wh=int(d.get("energy_wh", 0)),
        orphan=bool(d.get("orphan", False)),
        suspect=bool(d.get("suspect", False)),
        suspect_reasons=frozenset(d.get("suspect_reasons", ())),
        seq_gaps=bool(d.get("seq_gaps", False)),
        charging_ended_at=_dt(d.get("charging_ended_at")),
        id_token=d.get("id_token", ""),
        clock_suspect=bool(d.get("clock_suspect", False)),
        hold=bool(d.get("hold", False)),
        hold_reasons=frozenset(d.get("hold_reasons", ())),
        energy_anchor_wh=d.get("energy_anchor_wh"),
        started_at=_dt(d.get("started_at")),
        station_started_at=_dt(d.get("station_started_at")),
        meter_start_wh=d.get("meter_start_wh"),
        authorization=d.get("authorization", ""),
        start_key=_key_in(st.get("start_key")),
        stopped_at=_dt(d.get("stopped_at")),
        station_stopped_at=_dt(d.get("station_stopped_at")),
        meter_stop_wh=d.get("meter_stop_wh"),
        stop_reason=d.get("stop_reason", ""),
        end_key=_key_in(st.get("end_key")),
        # documents written before the remote start facts: id_token was the event token
        event_token=st.get("event_token", d.get("id_token", "")),
        token_key=_key_in(st.get("token_key")),
        evse_id=int(d.get("evse_id", 0)),
        connector_id=int(d.get("connector_id", 0)),
        location_key=_key_in(st.get("location_key")),
        remote_start_id=int(d.get("remote_start_id", 0)),
        remote_token=st.get("remote_token", ""),
        issued_by=d.get("issued_by", ""),
        reservation_id=int(d.get("reservation_id") or 0),
        abandoned_at=_dt(d.get("abandoned_at")),
        abandon_reason=d.get("abandon_reason", ""),
        last_charging_key=_key_in(st.get("last_charging_key")),
        idle_keys=bounded_idle({k for k in (_key_in(v) for v in st.get("idle_keys", ())) if k is not None}),
        ocpp_version=d.get("ocpp_version", ""),
        seq_ranges=seq_ranges,
        seq_overflow=bool(st.get("seq_overflow", False)),
        flags=frozenset(st.get("flags", ())),
        sample_count=int(d.get("sample_count", 0)),
        excluded_count=int(d.get("excluded_count", 0)),
        first_sample_at=_dt(d.get("first_sample_at")),
        last_sample_at=_dt(d.get("last_sample_at")),
        sample_reasons=frozenset(st.get("sample_reasons", ())),
        marks=tuple(_mark_in(m) for m in st.get("marks", ())),
        registers=tuple(
            RegisterSeries(p, parse_ocpp(a), parse_ocpp(b), _reading_in(f), _reading_in(la))
            for p, a, b, f, la in st.get("registers", ())
        ),
        peak_total_w=None if st.get("peak_total_w") is None else float(st["peak_total_w"]),
        phase_power=(
            (parse_ocpp(phase_power[0]), tuple((str(p), float(v)) for p, v in phase_power[1])) if phase_power else None
        ),
        price=accumulator_from_dict(d["price"]) if d.get("price") else None,
        price_basis=(parse_ocpp(basis[0]), int(basis[1])) if basis else None,
        applied=(int(applied[0]), int(applied[1])) if applied else None,
        version=int(d.get("version", 0)),
    )
    if legacy:
        # The previous version derived everything from its samples: fold them once.
        s = refold(s, legacy_samples(d), DEFAULT_RULES)  # keeps the version
    return s


# -- the token index (kind TOKEN_SESSION) ------------------------------------------------
def token_session_inputs(s: Session | None) -> tuple[Any, ...] | None:
    """What a session's TOKEN_SESSION document is made of (equal inputs, equal documents);
    None when the session has no token (no document)."""
    if s is None or not s.id_token:
        return None
    return (s.id_token, s.station_id, s.transaction_id, s.started_at, s.status)


def token_session_to_doc(s: Session) -> dict[str, Any]:
    """One entry of a token's sessions (id = session id, parent = the id token), written
    with the session's version when it opens and when its token, start or status
    changes. Readers check it against the session document (the session decides)."""
    return {
        "session_id": s.id,
        "id_token": s.id_token,
        "station_id": s.station_id,
        "transaction_id": s.transaction_id,
        "started_at": _iso(s.started_at),
        "received_at": to_ocpp(s.received_at),
        "status": s.status,
        "version": s.version,
    }


# -- meter samples -------------------------------------------------------------------
def sample_to_row(x: Sample) -> MeterRow:
    return MeterRow(
        timestamp=x.timestamp, measurand=x.measurand, phase=x.phase, value=x.value, unit=x.unit,
        raw_value=x.raw_value, station_time=x.station_time,
    )


def sample_from_row(r: MeterRow) -> Sample:
    return Sample(
        truncate_ms(r.timestamp), r.measurand, float(r.value), r.unit, r.phase, raw_value=r.raw_value,
        station_time=truncate_ms(r.station_time) if r.station_time is not None else None,
    )



# -- station status ------------------------------------------------------------------
def _opt_dt(value: Any) -> datetime | None:
    return None if not value else parse_ocpp(str(value))


def station_status_to_doc(s: StationStatus) -> dict[str, Any]:
    """The stored document (also what the REST API shows of a station's status)."""
    boot = s.boot
    gone = s.last_disconnect
    return {
        "station_id": s.station_id,
        "connected": s.connected,
        "epoch": s.epoch,
        "disconnected_epoch": s.disconnected_epoch,
        "gateway_id": s.gateway_id,
        "ocpp_version": s.ocpp_version,
        "last_seen": _iso(s.last_seen),
        "last_disconnect": None if gone is None else {
            "epoch": gone.epoch, "close_code": gone.close_code, "reason": gone.reason, "at": to_ocpp(gone.at),
        },
        "boot": None if boot is None else {
            "vendor": boot.vendor,
            "model": boot.model,
            "serial_number": boot.serial_number,
            "firmware_version": boot.firmware_version,
            "reason": boot.reason,
            "registration_status": boot.registration_status,
            "interval": boot.interval,
            "iccid": boot.iccid,
            "imsi": boot.imsi,
            "meter_type": boot.meter_type,
            "meter_serial_number": boot.meter_serial_number,
            "at": _iso(boot.at),
        },
        "connectors": {
            key: {
                "status": c.status,
                "error_code": c.error_code,
                "info": c.info,
                "vendor_error_code": c.vendor_error_code,
                "at": _iso(c.at),
            }
            for key, c in s.connectors.items()
        },
        "last_heartbeat": _iso(s.last_heartbeat),
        "version": s.version,
        "updated_at": _iso(s.updated_at),
    }


def station_status_from_doc(d: Mapping[str, Any]) -> StationStatus:
    boot = d.get("boot")
    gone = d.get("last_disconnect")
    return StationStatus(
        station_id=str(d["station_id"]),
        connected=bool(d.get("connected", False)),
        epoch=int(d.get("epoch") or 0),
        disconnected_epoch=int(d.get("disconnected_epoch") or 0),
        gateway_id=str(d.get("gateway_id") or ""),
        ocpp_version=str(d.get("ocpp_version") or ""),
        last_seen=_opt_dt(d.get("last_seen")),
        last_disconnect=None if not gone else Disconnect(
            int(gone.get("epoch") or 0), int(gone.get("close_code") or 0), str(gone.get("reason") or ""),
            parse_ocpp(gone["at"]),
        ),
        boot=None if not boot else Boot(
            vendor=str(boot.get("vendor") or ""),
            model=str(boot.get("model") or ""),
            serial_number=str(boot.get("serial_number") or ""),
            firmware_version=str(boot.get("firmware_version") or ""),
            reason=str(boot.get("reason") or ""),
            registration_status=str(boot.get("registration_status") or ""),
            interval=int(boot.get("interval") or 0),
            iccid=str(boot.get("iccid") or ""),
            imsi=str(boot.get("imsi") or ""),
            meter_type=str(boot.get("meter_type") or ""),
            meter_serial_number=str(boot.get("meter_serial_number") or ""),
            at=_opt_dt(boot.get("at")),
        ),
        connectors={
            str(key): ConnectorState(
                str(c.get("status") or ""), str(c.get("error_code") or ""), str(c.get("info") or ""),
                str(c.get("vendor_error_code") or ""), _opt_dt(c.get("at")),
            )
            for key, c in (d.get("connectors") or {}).items()
        },
        last_heartbeat=_opt_dt(d.get("last_heartbeat")),
        version=int(d.get("version") or 0),
        updated_at=_opt_dt(d.get("updated_at")),
    )


# -- lifecycle: the open-sessions index, remote starts -----------------------------------
def open_sessions_to_doc(index: OpenSessions) -> dict[str, Any]:
    return {
        "station_id": index.station_id,
        "sessions": {
            sid: {
                "transaction_id": e.transaction_id,
                "evse_id": e.evse_id,
                "connector_id": e.connector_id,
                "started_at": _iso(e.started_at),
                "received_at": to_ocpp(e.received_at),
            }
            for sid, e in index.sessions.items()
        },
        "version": index.version,
        "updated_at": _iso(index.updated_at),
    }


def open_sessions_from_doc(d: Mapping[str, Any]) -> OpenSessions:
    return OpenSessions(
        station_id=str(d.get("station_id") or ""),
        sessions={
            str(sid): IndexEntry(
                str(e.get("transaction_id", "")), int(e.get("evse_id") or 0), int(e.get("connector_id") or 0),
                _opt_dt(e.get("started_at")), parse_ocpp(e["received_at"]),
            )
            for sid, e in (d.get("sessions") or {}).items()
        },
        version=int(d.get("version") or 0),
        updated_at=_opt_dt(d.get("updated_at")),
    )


def remote_start_to_doc(r: RemoteStartCommand) -> dict[str, Any]:
    return {
        "station_id": r.station_id,
        "remote_start_id": r.remote_start_id,
        "id_token": r.id_token,
        "id_token_type": r.id_token_type,
        "evse_id": r.evse_id,
        "command_id": r.command_id,
        "issued_by": r.issued_by,
        "issued_at": to_ocpp(r.issued_at),
        "version": r.version,
        "updated_at": _iso(r.updated_at),
    }


def remote_start_from_doc(d: Mapping[str, Any]) -> RemoteStartCommand:
    return RemoteStartCommand(
        station_id=str(d.get("station_id") or ""),
        remote_start_id=int(d.get("remote_start_id") or 0),
        id_token=str(d.get("id_token") or ""),
        id_token_type=str(d.get("id_token_type") or ""),
        evse_id=int(d.get("evse_id") or 0),
        command_id=str(d.get("command_id") or ""),
        issued_by=str(d.get("issued_by") or ""),
        issued_at=parse_ocpp(d["issued_at"]),
        version=int(d.get("version") or 0),
        updated_at=_opt_dt(d.get("updated_at")),
    )


# -- meter-values pages (REST) -----------------------------------------------------------
def sample_view(x: Sample) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timestamp": to_ocpp(x.timestamp),
        "measurand": x.measurand,
        "value": x.value,
        "unit": x.unit,
        "phase": x.phase,
        "excluded": x.excluded,
        "raw_value": x.raw_value,
    }
    if x.station_time is not None:
        out["station_time"] = to_ocpp(x.station_time)
    return out


def encode_cursor(key: tuple[datetime, str, str]) -> str:
    raw = json.dumps([to_ocpp(key[0]), key[1], key[2]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str, str]:
    """Raises ValueError for a cursor this API did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, measurand, phase = json.loads(raw)
        if not (isinstance(at, str) and isinstance(measurand, str) and isinstance(phase, str)):
            raise ValueError("cursor")
        return parse_ocpp(at), measurand, phase
    except Exception as exc:
        raise ValueError(f"invalid cursor {cursor[:64]!r}") from exc


async def page(
    store: SampleStore, s: Session, *, limit: int, cursor: str | None = None, rules: Plausibility | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the session's stored samples and the cursor of the next (None: no more).

    `excluded` is the domain's judgement (`judge_samples`) over all of the session's
    samples (a reading is judged against the kept readings before it), so every page reads
    the session's samples once: the REST API's cost, never the processor's."""
    rules = rules or DEFAULT_RULES
    after = decode_cursor(cursor) if cursor else None
    rows = await store.read_samples(s.id)
    judged = judge_samples(s, [sample_from_row(r) for r in rows], rules)
    keyed = [(x.timestamp, x.measurand, x.phase) for x in judged]
    start = 0
    if after is not None:
        start = next((i for i, k in enumerate(keyed) if k > after), len(keyed))
    chunk = judged[start:start + limit]
    more = start + limit < len(judged)
    nxt = encode_cursor(keyed[start + limit - 1]) if more and chunk else None
    return [sample_view(x) for x in chunk], nxt

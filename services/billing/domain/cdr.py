"""Charge Detail Records: versioned, idempotent by a fingerprint of the pricing inputs.

`decide_cdr` is the whole policy: the same inputs never yield a second CDR
(replays and redeliveries are no-ops); changed inputs yield the next version
with a reason saying what changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Protocol

from .money import PRICING_CONTEXT, Money
from .running import PriceAccumulator, RunningUsage, finish_price, metering_digest_input, usage_accumulator
from .tariff import Tariff
from .values import MAX_PRICED_DURATION, PriceBreakdown, SessionUsage

__all__ = [
    "Cdr",
    "InputDigests",
    "PreviousCdr",
    "REASON_INITIAL",
    "REASON_LATE_STOP",
    "REASON_LATE_METER_VALUE",
    "REASON_TARIFF_CHANGE",
    "REASON_CORRECTION",
    "REASON_HOLD_RELEASED",
    "input_digests",
    "decide_cdr",
    "cdr_id",
]

REASON_INITIAL = "initial"
REASON_LATE_STOP = "late_stop"
REASON_LATE_METER_VALUE = "late_meter_value"
REASON_TARIFF_CHANGE = "tariff_change"
REASON_CORRECTION = "correction"
REASON_HOLD_RELEASED = "hold_released"  # same content as a held CDR, now exportable
# bump if the canonical form below changes (cdrfp2, ADR 015: the metering part is the
# folded register, so the accumulator path and the samples path fingerprint alike)
_FINGERPRINT_VERSION = "cdrfp2"


@dataclass(frozen=True)
class InputDigests:
    """Digests of the three groups of pricing inputs. The fingerprint spells all
    three out ("cdrfp2-<tariff>-<timing>-<metering>", 64 bits each), so a stored
    fingerprint alone is enough to tell what changed in a later version."""

    tariff: str
    timing: str
    metering: str

    @property
    def fingerprint(self) -> str:
        return "-".join((_FINGERPRINT_VERSION, self.tariff, self.timing, self.metering))

    @classmethod
    def parse(cls, fingerprint: str) -> InputDigests | None:
        parts = fingerprint.split("-")
        if len(parts) != 4 or parts[0] != _FINGERPRINT_VERSION:
            return None
        return cls(parts[1], parts[2], parts[3])


class PreviousCdr(Protocol):
    """What `decide_cdr` needs of the latest stored CDR (a `Cdr` qualifies)."""

    @property
    def session_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def stopped_at(self) -> datetime: ...
    @property
    def inputs_fingerprint(self) -> str: ...


@dataclass(frozen=True)
class Cdr:
    id: str
    session_id: str
    station_id: str
    version: int
    reason: str
    energy_wh: int
    started_at: datetime
    stopped_at: datetime
    total_cost: Money  # excl. tax, rounded
    total_cost_incl_tax: Money  # rounded
    tariff_id: str
    breakdown: PriceBreakdown
    created_at: datetime
    inputs_fingerprint: str  # InputDigests.fingerprint; equal fingerprints = same CDR content


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value.normalize(PRICING_CONTEXT):f}"  # "0.30" and "0.3" hash alike
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()  # full microseconds (the fingerprint's form: never change it)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in fields(value) if f.compare}  # not memos
    return value


def _digest(value: Any) -> str:
    """First 64 bits of the SHA-256 of the canonical JSON form."""
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


Usage = SessionUsage | RunningUsage  # samples, or the sessions processor's accumulator (ADR 015)


def _exceeds(usage: Usage, max_duration: timedelta) -> bool:
    return usage.stopped_at is not None and usage.stopped_at - usage.started_at > max_duration


def _register(tariff: Tariff, usage: Usage, max_duration: timedelta) -> tuple[PriceAccumulator, int | None]:
    """The folded register and the end reading pricing uses."""
    if isinstance(usage, RunningUsage):
        return usage.acc, usage.end_wh
    return usage_accumulator(tariff, usage, max_duration=max_duration), usage.meter_stop_wh


def _breakdown(
    tariff: Tariff, usage: Usage, acc: PriceAccumulator, end_wh: int | None, now: datetime, max_duration: timedelta
) -> PriceBreakdown:
    return finish_price(
        acc, tariff, now=now, stopped_at=usage.stopped_at, charging_ended_at=usage.charging_ended_at,
        end_wh=end_wh, max_duration=max_duration,
    )


def input_digests(
    session_id: str, station_id: str, tariff: Tariff, usage: Usage,
    max_duration: timedelta = MAX_PRICED_DURATION,
) -> InputDigests:
    """Digests of everything that determines a CDR's content (not `now`, not the
    tariff's `default` flag). Timing is compared in normalised form (charging end
    defaulted to the stop time); metering as the folded register (opening, high-water
    mark, the register at each band transition, the end reading), which is the same
    whether it comes from the samples or from the sessions processor's accumulator. The
    pricing bound `max_duration` is part of the timing only for a session longer than it
    (the only case where it changes the content), so ordinary fingerprints do not depend on it."""
    acc, end_wh = _register(tariff, usage, max_duration)
    return _digests(session_id, station_id, tariff, usage, acc, end_wh, max_duration)


def _digests(
    session_id: str, station_id: str, tariff: Tariff, usage: Usage, acc: PriceAccumulator, end_wh: int | None,
    max_duration: timedelta,
) -> InputDigests:
    tariff_part = {k: v for k, v in _canonical(tariff).items() if k != "default"}
    effective_charging_end = usage.charging_ended_at if usage.charging_ended_at is not None else usage.stopped_at
    timing: list[Any] = [session_id, station_id, usage.started_at, usage.stopped_at, effective_charging_end]
    if _exceeds(usage, max_duration):
        timing.append({"max_duration_us": max_duration // timedelta(microseconds=1)})
    return InputDigests(
        tariff=_digest(tariff_part),
        timing=_digest(timing),
        metering=_digest(metering_digest_input(acc, end_wh, max_duration)),
    )


def cdr_id(session_id: str, version: int) -> str:
    return f"{session_id}-v{version}"


def _reason(previous: PreviousCdr, usage: Usage, digests: InputDigests, reason_hint: str | None) -> str:
    if previous.stopped_at != usage.stopped_at:
        return REASON_LATE_STOP
    before = InputDigests.parse(previous.inputs_fingerprint)
    if before is not None and before.metering != digests.metering:
        return REASON_LATE_METER_VALUE
    if before is not None and before.tariff != digests.tariff:
        return REASON_TARIFF_CHANGE
    return reason_hint or REASON_CORRECTION


def decide_cdr(
    previous: PreviousCdr | None,
    session_id: str,
    station_id: str,
    tariff: Tariff,
    usage: Usage,
    now: datetime,
    reason_hint: str | None = None,
    *,
    max_duration: timedelta = MAX_PRICED_DURATION,
) -> Cdr | None:
    """The CDR to emit for a stopped session, or None if `previous` (the latest
    CDR of this session, or just its stored head) already reflects exactly these inputs.

    Reason of a new version: stop time changed -> "late_stop"; meter values
    changed -> "late_meter_value"; tariff changed -> "tariff_change"; otherwise
    `reason_hint` or "correction". The first CDR is always "initial".
    Time-based components are priced over at most `max_duration` (see `price_session`).
    `usage` is a `SessionUsage` (samples, folded here) or a `RunningUsage` (the sessions
    processor's accumulator, finished as it is): the same inputs give the same fingerprint
    and the same CDR either way.
    """
    if usage.stopped_at is None:
        raise ValueError("a CDR needs a stopped session (usage.stopped_at is None)")
    if previous is not None and previous.session_id != session_id:
        raise ValueError(f"previous CDR belongs to session {previous.session_id!r}, not {session_id!r}")
    acc, end_wh = _register(tariff, usage, max_duration)
    digests = _digests(session_id, station_id, tariff, usage, acc, end_wh, max_duration)
    fingerprint = digests.fingerprint
    if previous is not None and previous.inputs_fingerprint == fingerprint:
        return None
    version = 1 if previous is None else previous.version + 1
    reason = REASON_INITIAL if previous is None else _reason(previous, usage, digests, reason_hint)
    breakdown = _breakdown(tariff, usage, acc, end_wh, now, max_duration)
    return Cdr(
        id=cdr_id(session_id, version),
        session_id=session_id,
        station_id=station_id,
        version=version,
        reason=reason,
        energy_wh=breakdown.energy_wh,
        started_at=usage.started_at,
        stopped_at=usage.stopped_at,
        total_cost=breakdown.total_excl_tax,
        total_cost_incl_tax=breakdown.total_incl_tax,
        tariff_id=tariff.id,
        breakdown=breakdown,
        created_at=now.astimezone(timezone.utc),
        inputs_fingerprint=fingerprint,
    )

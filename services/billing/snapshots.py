"""What a billable `csms.sessions.v1` snapshot is priced with (ADR 015). Private to billing.

- The snapshot's price accumulator when it was opened with the tariff that applies now
  (same id and fingerprint) at the session's start and energy anchor: a `RunningUsage`,
  finished without reading anything (`running_usage_from_snapshot`).
- Otherwise the session's stored samples are folded again (`usage_from_snapshot` with
  the kept register readings a `ReadingsReader` returns): a `SessionUsage`.

Either way: excluded samples never count; an abandoned session ends at its last sign of
life with its last known energy; the register ends at `energy_anchor_wh + energy_wh`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from services.billing.codec import SessionSnapshot
from services.billing.documents import ReadingsReader
from services.billing.domain import RunningUsage, SessionUsage, Tariff, accumulator_matches
from services.billing.domain.values import MAX_REGISTER_WH, plausible_register_wh

__all__ = [
    "SessionTiming",
    "session_timing",
    "usage_from_snapshot",
    "running_usage_from_snapshot",
    "session_pricing",
]


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
    open_wh = anchor if plausible_register_wh(anchor) else 0
    assert open_wh is not None
    energy = snap.energy_wh if plausible_register_wh(snap.energy_wh) else 0
    end_wh = open_wh + energy if open_wh + energy <= MAX_REGISTER_WH else open_wh
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
    snap: SessionSnapshot, tariff: Tariff, readings: ReadingsReader
) -> tuple[SessionUsage | RunningUsage | None, str]:
    """(what to price, "accumulator" | "samples"); (None, "") if it cannot be priced.
    `readings` is read only on the samples path."""
    running = running_usage_from_snapshot(snap, tariff)
    if running is not None:
        return running, "accumulator"
    if session_timing(snap) is None:
        return None, ""
    kept = await readings(snap.id)
    return usage_from_snapshot(snap, kept), "samples"

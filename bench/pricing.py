"""CPU of the ADR 015 pricing paths: the running price accumulator vs re-pricing all samples.

Measures `time.process_time()` (CPU of this process, not wall clock) per call of:

- `advance_price`: one reading folded into the accumulator (what the sessions processor
  does per kept register reading), with a banded tariff in a DST zone and without bands;
- `finish_price`: the price of a session from its accumulator (billing, the REST API, the
  gateway's 2.0.1 totalCost), after `--readings` readings;
- `price_session`: the full fold over all the session's samples (what billing and the API
  did per snapshot / request before ADR 015, and still do when the tariff changed);
- the billing handler per `csms.sessions.v1` record (SQLite store): a completed snapshot
  priced from its accumulator, the same re-priced from `--readings` stored samples, and an
  active snapshot (decoded and dropped).

    .venv/bin/python bench/pricing.py
    .venv/bin/python bench/pricing.py --readings 2000 --repeat 200
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.billing.codec import tariff_to_dict  # noqa: E402
from services.billing.domain import (  # noqa: E402
    SessionUsage,
    Tariff,
    TariffBand,
    advance_price,
    finish_price,
    fold_price,
    open_price,
    price_session,
)

UTC = timezone.utc
START = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
BANDED = Tariff(
    id="T-BANDED", currency="EUR", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.01"),
    session_fee=Decimal("1.00"), tax_rate=Decimal("0.19"), timezone="Europe/Berlin",
    bands=(TariffBand(start="18:00", end="22:00", price_per_kwh=Decimal("0.45")),
           TariffBand(start="00:00", end="06:00", days_of_week=(5, 6), price_per_kwh=Decimal("0.20"))),
)
FLAT = Tariff(id="T-FLAT", currency="EUR", price_per_kwh=Decimal("0.30"), session_fee=Decimal("1.00"))


def readings(n: int, span: timedelta) -> list[tuple[datetime, int]]:
    step = span / n
    return [(START + step * (i + 1), 1000 + 11 * (i + 1)) for i in range(n)]


def cpu_us(fn: Callable[[], Any], repeat: int) -> float:
    t0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t0) / repeat * 1e6


def domain(n: int, repeat: int) -> None:
    span = timedelta(hours=24)
    points = readings(n, span)
    for tariff in (FLAT, BANDED):
        acc0 = open_price(tariff, START, 1000)

        def fold() -> None:
            acc = acc0
            for at, wh in points:
                acc = advance_price(acc, tariff, at, wh)  # type: ignore[assignment]

        per_reading = cpu_us(fold, max(1, repeat // 20)) / n
        acc = fold_price(tariff, START, 1000, points)
        now = START + span
        finish = cpu_us(lambda: finish_price(acc, tariff, now=now, stopped_at=now, end_wh=points[-1][1]), repeat)
        usage = SessionUsage(started_at=START, stopped_at=now, energy_samples=tuple(points), meter_start_wh=1000,
                             meter_stop_wh=points[-1][1])
        full = cpu_us(lambda: price_session(tariff, usage, now), max(1, repeat // 20))
        print(f"{tariff.id:9s} advance_price {per_reading:8.1f} µs/reading | finish_price {finish:8.1f} µs "
              f"| price_session over {n} samples {full:9.1f} µs | marks {len(acc.marks)}")


async def handler(n: int, repeat: int) -> None:
    from services.billing.codec import SESSION_CE_TYPE, SessionSnapshot, encode_session
    from services.billing.wiring import billing_handler
    from services.common import kinds
    from services.common.bus.memory import MemoryBus
    from services.common.bus.port import Record
    from services.common.config import Settings
    from services.common.runtime import Runtime
    from services.common.store.port import MeterRow, Station
    from services.common.store.sqlite import SqliteStore

    tmp = tempfile.mkdtemp()
    store = SqliteStore(f"sqlite:///{tmp}/bench.db")
    rt = Runtime(settings=Settings(), bus=MemoryBus(), store=store, clock=lambda: START + timedelta(days=2))
    await rt.start()
    await store.migrate()
    await store.put_doc(kinds.TARIFF, BANDED.id, tariff_to_dict(BANDED))
    billing = billing_handler(rt)
    await store.put_station(Station(id="CS1", password_hash="", tariff_id=BANDED.id))
    span = timedelta(hours=8)
    points = readings(n, span)
    acc = fold_price(BANDED, START, 1000, points)
    stop = START + span

    def snapshot(sid: str, status: str, with_acc: bool, version: int) -> bytes:
        return encode_session(SessionSnapshot(
            id=sid, station_id="CS1", status=status, version=version, energy_wh=points[-1][1] - 1000,
            started_at=START, stopped_at=stop if status == "completed" else None, meter_start_wh=1000,
            meter_stop_wh=points[-1][1] if status == "completed" else None, energy_anchor_wh=1000,
            first_register=points[0], last_register=points[-1], sample_count=n, price=acc if with_acc else None,
        ))

    def record(value: bytes) -> Record:
        return Record("csms.sessions.v1", 0, 0, b"CS1", value, (("ce_type", SESSION_CE_TYPE.encode()),))

    cases = {"active (dropped)": ("active", True), "completed, accumulator": ("completed", True),
             f"completed, {n} stored samples": ("completed", False)}
    for name, (status, with_acc) in cases.items():
        sids = [f"S-{status}-{with_acc}-{i}" for i in range(repeat)]
        if not with_acc:
            rows = [MeterRow(at, "Energy.Active.Import.Register", "", float(wh), "Wh") for at, wh in points]
            for sid in sids:
                await store.append_samples(sid, rows)
        values = [snapshot(sid, status, with_acc, 5) for sid in sids]
        t0 = time.process_time()
        for v in values:
            await billing.handle_record(record(v))
        print(f"billing handler, {name:32s} {(time.process_time() - t0) / repeat * 1e6:9.1f} µs CPU/record")
    await rt.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    domain(args.readings, args.repeat)
    asyncio.run(handler(args.readings, max(10, args.repeat // 4)))


if __name__ == "__main__":
    main()

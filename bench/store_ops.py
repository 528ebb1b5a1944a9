"""CPU per document of the ADR 015 store operations, on both adapters.

Times `put_docs`, `get_docs` (documents of ~1.5 KB, in batches) and `append_samples` (one
call per meter event, a few rows each, on sessions that already hold samples) with
`time.process_time()`: CPU of this whole process, all threads (the Cassandra driver's
event thread and aiosqlite's worker included), not wall clock. Prints µs of CPU per
document (per append call and per row for samples) and the store operations counted
(`store.ops`) per document.

Cassandra variants: one unlogged batch per document vs three requests (`batch_docs`),
concurrent single-partition reads vs one `IN` query (`get_docs_in`).

    .venv/bin/python bench/store_ops.py                      # SQLite only
    .venv/bin/python bench/store_ops.py --cassandra          # + cassandra://127.0.0.1:9042
    .venv/bin/python bench/store_ops.py --cassandra --variants
    .venv/bin/python bench/store_ops.py --docs 2000 --batch 50 --appends 2000 --rows 4
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.common.store.port import DocWrite, MeterRow  # noqa: E402

UTC = timezone.utc


def session_doc(i: int, tag: str) -> dict[str, Any]:
    """About 1.5 KB of JSON, shaped like an ADR 015 session aggregate."""
    return {
        "id": f"{tag}-sess-{i:06d}", "station_id": f"CP-{i % 500:05d}", "connector_id": 1 + i % 2, "evse_id": 1,
        "ocpp_version": "2.0.1", "transaction_id": f"tx-{tag}-{i:06d}", "id_tag": f"TOKEN{i:08d}",
        "started_at": "2026-12-02T08:00:00.000Z", "stopped_at": None, "meter_start": 123456, "meter_stop": None,
        "stop_reason": None, "status": "Charging", "site_id": f"site-{i % 40}", "tariff_id": "default",
        "location": {"lat": 52.52, "lon": 13.405, "address": "Alexanderplatz 1, 10178 Berlin", "country": "DE"},
        "energy": {"Energy.Active.Import.Register|": {"first": ["2026-12-02T08:00:01.000Z", 123456.0],
                                                      "last": ["2026-12-02T09:13:01.000Z", 140111.0]},
                   "Energy.Active.Import.Register|L1": {"first": ["2026-12-02T08:00:01.000Z", 41152.0],
                                                        "last": ["2026-12-02T09:13:01.000Z", 46703.0]}},
        "sample_count": 4380, "excluded_count": 3, "first_sample_at": "2026-12-02T08:00:01.000Z",
        "last_sample_at": "2026-12-02T09:13:01.000Z", "peak_power_w": 11040.0,
        "price": {"tariff_id": "default", "fingerprint": "9f2c0d3b5e7a41c8", "opened_at": "2026-12-02T08:00:00.000Z",
                  "opening_wh": "123456", "high_water_wh": "140111", "bands": [["2026-12-02T08:00:00.000Z", "123456"]],
                  "currency": "EUR"},
        "seq_ranges": [[0, 4380]], "applied": {"partition": i % 12, "offset": 1_000_000 + i},
        "charging_marks": ["2026-12-02T08:00:02.000Z"], "remote_start_id": None, "abandoned": False,
        "version": 1, "notes": "x" * 420,
    }


async def cpu(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.process_time()
    await fn()
    return time.process_time() - start


def ops_delta(before: Counter, after: Counter) -> dict[str, int]:
    return {f"{op}:{table}": after[(op, table)] - before[(op, table)] for op, table in after if after[(op, table)] != before[(op, table)]}


async def measure(label: str, store: Any, args: argparse.Namespace) -> list[tuple[str, str, float, str]]:
    tag = secrets.token_hex(4)
    docs = [session_doc(i, tag) for i in range(args.docs)]
    size = sum(len(str(d)) for d in docs) / len(docs)
    batches = [docs[i:i + args.batch] for i in range(0, len(docs), args.batch)]
    out: list[tuple[str, str, float, str]] = []

    # warm-up: prepared statements, connections, code paths
    warm = [session_doc(i, tag + "w") for i in range(args.batch)]
    await store.put_docs("session", [DocWrite(d["id"], d, parent=d["station_id"], version=1) for d in warm])
    await store.get_docs("session", [d["id"] for d in warm])
    await store.append_samples(f"{tag}-warm", [MeterRow(datetime(2026, 12, 2, tzinfo=UTC), "E", "", 1.0)])

    for version in (2, 3):  # first write, then an update of every document
        before = Counter(store.ops)

        async def put() -> None:
            for b in batches:
                await store.put_docs("session", [DocWrite(d["id"], d, parent=d["station_id"], version=version) for d in b])

        t = await cpu(put)
        out.append((label, f"put_docs v{version} ({args.batch}/call, ~{size:.0f} B)", t / len(docs) * 1e6,
                    str({k: round(v / len(docs), 2) for k, v in ops_delta(before, store.ops).items()})))

    before = Counter(store.ops)

    async def get() -> None:
        for b in batches:
            got = await store.get_docs("session", [d["id"] for d in b])
            assert len(got) == len(b)

    t = await cpu(get)
    out.append((label, f"get_docs ({args.batch}/call)", t / len(docs) * 1e6,
                str({k: round(v / len(docs), 2) for k, v in ops_delta(before, store.ops).items()})))

    # samples: sessions that already hold `--existing` samples, one append per meter event
    sessions = [f"{tag}-s{i}" for i in range(args.sessions)]
    t0 = datetime(2026, 12, 2, 8, tzinfo=UTC)
    for s in sessions:
        await store.append_samples(s, [MeterRow(t0 + timedelta(seconds=10 * k), "Energy.Active.Import.Register", "", float(k))
                                       for k in range(args.existing)])
    measurands = ["Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage"]
    events = []
    for n in range(args.appends):
        s = sessions[n % len(sessions)]
        ts = t0 + timedelta(seconds=10 * (args.existing + n // len(sessions)))
        events.append((s, [MeterRow(ts, measurands[r % 4], "L1" if r >= 4 else "", float(n)) for r in range(args.rows)]))
    before = Counter(store.ops)

    async def append() -> None:
        for s, rows in events:
            await store.append_samples(s, rows)

    t = await cpu(append)
    out.append((label, f"append_samples, one at a time ({args.rows} rows/call, {args.existing}+ stored)", t / len(events) * 1e6,
                str({k: round(v / len(events), 2) for k, v in ops_delta(before, store.ops).items()}) + f"; {t / len(events) / args.rows * 1e6:.1f} us/row"))

    # the same, as a consumer batch does it: one append per session, the sessions concurrently
    later = [(s, [dataclasses.replace(r, timestamp=r.timestamp + timedelta(days=0, seconds=10 * (args.appends // len(sessions) + 1)))
                  for r in rows]) for s, rows in events]
    before = Counter(store.ops)

    async def append_concurrently() -> None:
        for i in range(0, len(later), len(sessions)):
            await asyncio.gather(*(store.append_samples(s, rows) for s, rows in later[i:i + len(sessions)]))

    t = await cpu(append_concurrently)
    out.append((label, f"append_samples, {len(sessions)} sessions concurrently", t / len(later) * 1e6,
                str({k: round(v / len(later), 2) for k, v in ops_delta(before, store.ops).items()}) + f"; {t / len(later) / args.rows * 1e6:.1f} us/row"))

    before = Counter(store.ops)
    t = await cpu(lambda: store.read_samples(sessions[0]))
    n = len(await store.read_samples(sessions[0]))
    out.append((label, f"read_samples ({n} rows, per row)", t / n * 1e6, f"{ops_delta(before, store.ops)} in all"))
    return out


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--appends", type=int, default=2000)
    p.add_argument("--rows", type=int, default=4, help="samples per append call (one meter event)")
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--existing", type=int, default=200, help="samples each session holds before timing")
    p.add_argument("--cassandra", action="store_true", help="also cassandra://127.0.0.1:9042 (a throwaway keyspace)")
    p.add_argument("--cassandra-url", default="cassandra://127.0.0.1:9042")
    p.add_argument("--variants", action="store_true", help="also the Cassandra variants (unbatched, single reads)")
    args = p.parse_args()

    from services.common.store.sqlite import SqliteStore

    results: list[tuple[str, str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        s = SqliteStore(f"sqlite:///{os.path.join(tmp, 'bench.db')}")
        await s.start()
        await s.migrate()
        try:
            results += await measure("sqlite", s, args)
        finally:
            await s.close()

    if args.cassandra:
        from services.common.store.cassandra import CassandraStore

        keyspace = f"csms_bench_{secrets.token_hex(3)}"
        url = f"{args.cassandra_url.rstrip('/')}/{keyspace}"
        variants = [
            ("cassandra", {}),  # 3 documents per batch, get_docs by IN
            ("cassandra 1 doc/batch", {"docs_per_batch": 1}),
            ("cassandra 3 requests/doc", {"batch_docs": False}),
            ("cassandra get_docs 1 read/doc", {"get_docs_in": False}),
        ][: None if args.variants else 1]
        first = None
        try:
            for label, options in variants:
                c = CassandraStore(url, **options)
                await c.start()
                await c.migrate()
                first = first or c
                try:
                    results += await measure(label, c, args)
                finally:
                    if c is not first:
                        await c.close()
        finally:
            if first is not None:
                await first._run(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
                await first.close()

    width = max(len(r[1]) for r in results)
    print(f"{'adapter':<26} {'operation':<{width}} {'CPU us/unit':>12}  ops per unit")
    for label, what, us, ops in results:
        print(f"{label:<26} {what:<{width}} {us:>12.1f}  {ops}")


if __name__ == "__main__":
    asyncio.run(main())

"""CPU per consumed csms.events.v1 record of the sessions processor, in the fleet case:
every batch holds ONE event per session (many stations, each sending every few seconds),
early in the sessions (sample ~10) and late (sample ~2,000). Not part of the product.

S stations each open one session (1.6 StartTransaction with meterStart, then a
StatusNotification Charging), then send calls in step, one per round (3 s of station
time apart), in the pipeline bench's proportions: of every 20 calls one is a
StatusNotification (SuspendedEV and Charging in turn), one a Heartbeat, the rest
MeterValues with 4 sampled values (energy register, power, current L1, voltage L1-N).
Station i is i calls ahead in that cycle, so every round mixes the three kinds.

Stacks:
- `memory`: memory bus + SQLite; the records are pre-encoded and each round is handed
  to `SessionsHandler.handle_batch` in batches of --batch records (S >= --batch: one event per
  session per batch). CPU = `time.process_time()` around the calls.
- `kafka`: Kafka + Cassandra (127.0.0.1:9092 / 9042, fresh keyspace and topic prefix
  like tests/integration/conftest.py), the real processor shell (subscribe_batch,
  commits, publish_many to Kafka). A producer subprocess publishes one round at a time
  and waits until this process has consumed it (the consumer is caught up, as in a live
  fleet; a backlog would put several events of a session in one batch, which is cheaper).
  CPU = `time.process_time()` of this process (all threads: the Cassandra driver's
  I/O threads count), from the first record of the measured rounds to the last one.

Between the early and the late measurement the sessions are fast-forwarded to round
--long without the processor: one template session is folded by the domain over the
skipped rounds (`apply`, no store), and every session's document (its ids swapped in)
and its skipped samples (4 per MeterValues) are written straight to the store, as the
processor would have left them. The late rounds then run on sessions with ~--long x 4
stored samples.

    .venv/bin/python bench/sessions_processor.py                       # both stacks
    .venv/bin/python bench/sessions_processor.py --stack memory --profile /tmp/s.prof
    .venv/bin/python bench/sessions_processor.py --stack kafka --stations 500 --long 2000

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if "--role" not in sys.argv:
    os.environ.setdefault("CSMS_TOPIC_PREFIX", f"bsp{uuid.uuid4().hex[:8]}.")

from services.common import codec, topics  # noqa: E402
from services.common import events as ev  # noqa: E402
from services.common.bus.port import Record  # noqa: E402
from services.common.runtime import tune_gc  # noqa: E402

UTC = timezone.utc
PERIOD = timedelta(seconds=3)
TARIFF = {
    "currency": "EUR", "price_per_kwh": "0.30", "price_per_minute": "0.02", "session_fee": "0.50",
    "idle_fee_per_minute": "0.10", "idle_grace_minutes": 10, "tax_rate": "0.19", "bands": [],
}
POWER_W = 11_000


def station_id(i: int) -> str:
    return f"BSP{i:05d}"


def tx_of(i: int) -> str:
    return str(100_000 + i)


def _env(i: int, t: datetime, body: Any, k: str) -> ev.Envelope:
    return ev.Envelope(event_id=f"bsp-{i}-{k}", station_id=station_id(i), received_at=t, body=body,
                       gateway_id="gateway-0", ocpp_version="1.6", station_time=t)


def start_events(i: int, t0: datetime) -> list[ev.Envelope]:
    return [
        _env(i, t0, ev.TransactionStarted(transaction_id=tx_of(i), evse_id=1, connector_id=1, id_token="BENCHTOKEN01",
                                          meter_start_wh=1_000, id_token_status="Accepted"), "start"),
        _env(i, t0, ev.ConnectorStatus(evse_id=1, connector_id=1, status="Charging"), "charging"),
    ]


def call(i: int, k: int, t0: datetime) -> ev.Envelope:
    """Station i's call of round k (k >= 1): the pipeline bench's mix, station i shifted by i."""
    t = t0 + k * PERIOD
    c = k + i
    if c % 20 == 19:
        return _env(i, t, ev.Heartbeat(), f"hb{k}")
    if c % 20 == 9:
        status = "SuspendedEV" if c % 40 == 9 else "Charging"
        return _env(i, t, ev.ConnectorStatus(evse_id=1, connector_id=1, status=status), f"st{k}")
    wh = 1_000 + int(POWER_W * 3 * k / 3600)
    samples = (
        ev.MeterSample(timestamp=t, value=float(wh), unit="Wh", measurand="Energy.Active.Import.Register", context="Sample.Periodic"),
        ev.MeterSample(timestamp=t, value=float(POWER_W), unit="W", measurand="Power.Active.Import", context="Sample.Periodic"),
        ev.MeterSample(timestamp=t, value=16.0, unit="A", measurand="Current.Import", phase="L1", context="Sample.Periodic"),
        ev.MeterSample(timestamp=t, value=230.1, unit="V", measurand="Voltage", phase="L1-N", context="Sample.Periodic"),
    )
    return _env(i, t, ev.MeterValues(transaction_id=tx_of(i), evse_id=1, connector_id=1, samples=samples), f"mv{k}")


def encoded(e: ev.Envelope) -> tuple[str, str, bytes, list[tuple[str, bytes]]]:
    return (topics.EVENTS, e.station_id, codec.encode_event(e), list(codec.event_headers(e)))


class Offsets:
    """Partition and offset per record for the in-process stack (as Kafka would assign)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.next = [0] * partitions

    def records(self, events: list[ev.Envelope]) -> list[Record]:
        out = []
        for e in events:
            topic, key, value, headers = encoded(e)
            p = int(e.station_id[3:]) % self.partitions
            out.append(Record(topic, p, self.next[p], key.encode(), value, tuple(headers)))
            self.next[p] += 1
        return out


# -- set-up and fast-forward (not measured) -------------------------------------------
async def provision(store: Any, stations: int) -> None:
    from services.common.store.port import Station

    await store.put_doc("tariff", "bsp-tariff", {"id": "bsp-tariff", **TARIFF})
    await asyncio.gather(*(
        store.put_station(Station(id=station_id(i), password_hash="", tariff_id="bsp-tariff", site_id=f"bsp-site-{i % 20}"))
        for i in range(stations)
    ))


async def fast_forward(
    rt: Any, handler: Any, stations: int, first: int, last: int, t0: datetime, with_samples: bool = True
) -> None:
    """Rounds first..last of every session, as the processor would have stored them
    (`with_samples` False: the documents only, to tell the samples table's growth from
    the session's length)."""
    from services.common.store.port import DocWrite
    from services.sessions.documents import sample_to_row, session_from_doc, session_to_doc
    from services.sessions.domain import apply
    from services.sessions.domain import session as domain

    rules = handler.rules
    docs = await rt.store.get_docs("session", [domain.session_id(station_id(0), tx_of(0))])
    base = session_from_doc(next(iter(docs.values())))
    tariff, _ = await handler.lookups.for_station(station_id(0))
    # one template per phase of the 20-call cycle would be exact; the state differs only in
    # which status/heartbeat rounds were skipped, so station 0's fold stands for all
    s, samples = base, []
    for k in range(first, last + 1):
        step = apply(s, call(0, k, t0), t0 + k * PERIOD, rules, tariff=tariff)
        if step.session is not None:
            s = step.session
            samples.extend(step.new_samples)
        if step.rebuild:
            raise RuntimeError(f"fast-forward asked for a rebuild: {step.rebuild}")
    rows = [sample_to_row(x) for x in samples]
    writes = []
    sem = asyncio.Semaphore(4)  # each append sends its chunks concurrently: keep the connection below its limit

    async def append(sid: str) -> None:
        async with sem:
            for attempt in range(5):
                try:
                    await rt.store.append_samples(sid, rows)
                    return
                except Exception:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1.0)

    sids = []
    for i in range(stations):
        sid = domain.session_id(station_id(i), tx_of(i))
        sids.append(sid)
        one = replace(s, id=sid, station_id=station_id(i), transaction_id=tx_of(i), applied=None)
        writes.append(DocWrite(sid, session_to_doc(one), parent=station_id(i), version=one.version))
    if with_samples:
        await asyncio.gather(*(append(sid) for sid in sids))
    for j in range(0, len(writes), 500):
        await rt.store.put_docs("session", writes[j:j + 500])


# -- the in-process stack -------------------------------------------------------------
async def run_memory(a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from services.common.bus.memory import MemoryBus
    from services.common.config import Settings
    from services.common.runtime import bootstrap
    from services.common.store.sqlite import SqliteStore
    from services.sessions.wiring import build_handler

    settings = Settings(events_partitions=a.partitions, tariff_cache_s=3600)
    store = SqliteStore(f"sqlite:///{tmp}/bsp.db")
    rt = bootstrap(settings, bus=MemoryBus(default_partitions=a.partitions, retention_bytes=1 << 34), store=store,
                   pepper=b"bench")
    await rt.start()
    await store.migrate()
    await provision(store, a.stations)
    handler = build_handler(rt)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    offsets = Offsets(a.partitions)

    async def feed(records: list[Record]) -> None:
        for j in range(0, len(records), a.batch):
            await handler.handle_batch(records[j:j + a.batch])

    async def rounds(first: int, last: int) -> tuple[float, int]:
        pre = [offsets.records([call(i, k, t0) for i in range(a.stations)]) for k in range(first, last + 1)]
        n = sum(len(r) for r in pre)
        prof = _profiler(a)
        c0 = time.process_time()
        if prof:
            prof.enable()
        for recs in pre:
            await feed(recs)
        if prof:
            prof.disable()
        cpu = time.process_time() - c0
        if prof:
            prof.dump_stats(f"{a.profile}.{first}")
        return cpu, n

    _tune_gc(a)
    await feed(offsets.records([e for i in range(a.stations) for e in start_events(i, t0)]))
    await feed(offsets.records([call(i, 1, t0) for i in range(a.stations)]))  # warm caches
    out = {}
    cpu, n = await rounds(2, 1 + a.rounds)
    out["early"] = (cpu, n)
    await fast_forward(rt, handler, a.stations, 2 + a.rounds, a.long, t0, not a.ff_docs_only)
    cpu, n = await rounds(a.long + 1, a.long + a.rounds)
    out["late"] = (cpu, n)
    out["cache"] = _cache_stats(handler)
    await rt.close()
    return out


def _cache_stats(handler: Any) -> dict[str, int]:
    cache = getattr(handler.sessions, "cache", None)
    return {"hits": cache.hits, "misses": cache.misses} if cache is not None else {}


def _tune_gc(a: argparse.Namespace) -> None:
    """As `csms` does once its services run."""
    tune_gc()


def _profiler(a: argparse.Namespace) -> Any:
    if not a.profile:
        return None
    import cProfile

    return cProfile.Profile()


# -- Kafka + Cassandra ------------------------------------------------------------------
async def run_kafka(a: argparse.Namespace) -> dict[str, Any]:
    from services.common.config import Settings
    from services.common.processor import Processor
    from services.common.runtime import bootstrap
    from services.sessions.handlers import GROUP, observe_batch
    from services.sessions.wiring import build_handler

    tag = uuid.uuid4().hex[:8]
    keyspace = f"bsp_{tag}"
    settings = Settings(bus_url="kafka://127.0.0.1:9092", store_url=f"cassandra://127.0.0.1:9042/{keyspace}",
                        events_partitions=a.partitions, tariff_cache_s=3600, batch_max_records=a.batch)
    rt = bootstrap(settings, pepper=b"bench")
    await rt.start()
    await rt.store.migrate()
    await provision(rt.store, a.stations)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)

    consumed = 0
    batches: list[int] = []
    arrived = asyncio.Event()
    handler = build_handler(rt)

    async def counting(records: Any) -> None:
        nonlocal consumed
        await handler.handle_batch(records)
        consumed += len(records)
        batches.append(len(records))
        arrived.set()

    # the wiring's processor, with the batch handler counting what it consumed
    service = Processor("sessions", rt.bus, topics.EVENTS, GROUP, counting, max_records=a.batch, observe=observe_batch)
    await service.start()
    _tune_gc(a)
    producer = subprocess.Popen(
        [sys.executable, __file__, "--role", "producer", "--stations", str(a.stations), "--t0", t0.isoformat()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        env={**os.environ, "CSMS_TOPIC_PREFIX": os.environ["CSMS_TOPIC_PREFIX"]},
    )
    assert producer.stdin is not None and producer.stdout is not None
    loop = asyncio.get_running_loop()

    async def send(cmd: str, expect: int) -> None:
        nonlocal consumed
        target = consumed + expect
        producer.stdin.write(cmd + "\n")  # type: ignore[union-attr]
        line = await loop.run_in_executor(None, producer.stdout.readline)  # type: ignore[union-attr]
        if not line.startswith("sent"):
            raise RuntimeError(f"producer: {line!r}")
        deadline = time.monotonic() + 300
        while consumed < target:
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), max(deadline - time.monotonic(), 0.01))
            except asyncio.TimeoutError:
                raise RuntimeError(f"consumed {consumed} of {target}") from None

    store_ops: dict[str, dict[str, float]] = {}

    async def rounds(first: int, last: int) -> tuple[float, int]:
        n = 0
        cpu = 0.0
        del batches[:]
        ops0 = dict(getattr(rt.store, "ops", {}))
        print(f"# rounds {first}..{last} begin", file=sys.stderr, flush=True)  # for a profiler's window
        for k in range(first, last + 1):
            c0 = time.process_time()
            await send(f"round {k}", a.stations)
            cpu += time.process_time() - c0
            n += a.stations
        print(f"# rounds {first}..{last} end", file=sys.stderr, flush=True)
        # Cassandra requests per record by (op, table) (a batch counts each table it writes)
        ops = getattr(rt.store, "ops", {})
        store_ops[f"{first}"] = {
            f"{op}:{table}": round((ops[(op, table)] - ops0.get((op, table), 0)) / n, 3)
            for op, table in sorted(ops) if ops[(op, table)] != ops0.get((op, table), 0)
        }
        return cpu, n

    out: dict[str, Any] = {"keyspace": keyspace, "topic_prefix": os.environ["CSMS_TOPIC_PREFIX"]}
    await send("start", 2 * a.stations)
    await send("round 1", a.stations)
    cpu, n = await rounds(2, 1 + a.rounds)
    out["early"] = (cpu, n)
    out["early_batch_records"] = sum(batches) / max(len(batches), 1)
    await service.stop()
    t = time.monotonic()
    await fast_forward(rt, handler, a.stations, 2 + a.rounds, a.long, t0, not a.ff_docs_only)
    out["fast_forward_s"] = round(time.monotonic() - t, 1)
    await service.start()
    await send(f"round {a.long}", a.stations)  # rejoin the group, warm up
    cpu, n = await rounds(a.long + 1, a.long + a.rounds)
    out["late"] = (cpu, n)
    out["late_batch_records"] = sum(batches) / max(len(batches), 1)
    out["cache"] = _cache_stats(handler)
    out["store_requests_per_record"] = store_ops
    producer.stdin.write("quit\n")
    producer.stdin.flush()
    producer.wait(30)
    await service.stop()
    await rt.close()
    return out


async def producer_main(a: argparse.Namespace) -> None:
    """One round of records at a time, on command (stdin), each published with publish_many."""
    from services.common.bus import bus_from_url

    t0 = datetime.fromisoformat(a.t0)
    bus = bus_from_url("kafka://127.0.0.1:9092")
    await bus.start()
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if not line or line == "quit":
            break
        if line == "start":
            events = [e for i in range(a.stations) for e in start_events(i, t0)]
        else:
            k = int(line.split()[1])
            events = [call(i, k, t0) for i in range(a.stations)]
        await bus.publish_many([encoded(e) for e in events])
        print("sent", flush=True)
    await bus.close()


def _calibration_ms() -> float:
    """CPU ms of a fixed pure-Python loop (3M additions): on a shared machine CPU time per
    unit of work varies several-fold with contention (2026-12-03: 520-550 ms under a load
    of 6-7 on 2 cores), so a run's figures compare only with runs of a similar calibration."""
    c0 = time.process_time()
    x = 0
    for i in range(3_000_000):
        x += i
    return round(1000 * (time.process_time() - c0), 1)


# -- main -------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", choices=("memory", "kafka", "both"), default="both")
    p.add_argument("--stations", type=int, default=500, help="sessions (one per station); >= --batch")
    p.add_argument("--batch", type=int, default=500, help="records per batch (CSMS_BATCH_MAX_RECORDS)")
    p.add_argument("--rounds", type=int, default=20, help="measured rounds (calls per station) at each point")
    p.add_argument("--long", type=int, default=2_000, help="round of the late measurement")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--ff-docs-only", action="store_true",
                   help="fast-forward the documents but write no skipped samples (is a late cost the session or the table?)")
    p.add_argument("--profile", default="", help="cProfile the in-process rounds to PATH.<round>")
    p.add_argument("--role", default="", help=argparse.SUPPRESS)
    p.add_argument("--t0", default="", help=argparse.SUPPRESS)
    a = p.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    import logging

    logging.basicConfig(level=logging.WARNING)
    if a.role == "producer":
        asyncio.run(producer_main(a))
        return
    import tempfile

    results: dict[str, Any] = {"stations": a.stations, "batch": a.batch, "rounds": a.rounds, "long": a.long,
                               "calibration_ms_before": _calibration_ms()}
    stacks = ("memory", "kafka") if a.stack == "both" else (a.stack,)
    for stack in stacks:
        t = time.monotonic()
        if stack == "memory":
            with tempfile.TemporaryDirectory() as tmp:
                r = asyncio.run(run_memory(a, Path(tmp)))
        else:
            r = asyncio.run(run_kafka(a))
        early_ms = 1000 * r["early"][0] / r["early"][1]
        late_ms = 1000 * r["late"][0] / r["late"][1]
        results[stack] = {**{k: v for k, v in r.items() if k not in ("early", "late")},
                          "early_ms_per_record": round(early_ms, 4), "late_ms_per_record": round(late_ms, 4),
                          "late_over_early": round(late_ms / early_ms, 3), "records_each": r["early"][1],
                          "wall_s": round(time.monotonic() - t, 1)}
        print(f"{stack:7s} early (rounds 2..{1 + a.rounds}): {early_ms:.4f} ms CPU/record   "
              f"late (rounds {a.long + 1}..{a.long + a.rounds}): {late_ms:.4f} ms CPU/record   "
              f"late/early {late_ms / early_ms:.2f}   ({r['early'][1]} records each)", flush=True)
    results["calibration_ms_after"] = _calibration_ms()
    print(json.dumps(results))


if __name__ == "__main__":
    main()

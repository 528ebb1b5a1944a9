"""CPU per record of the bus adapter: `subscribe` vs `subscribe_batch`, `publish` vs
`publish_many` (ADR 015). Not part of the product.

One process (this one) produces N records to a fresh topic, then consumes them twice
with a no-op handler, each time in a new consumer group from the beginning. CPU is
`time.process_time()` of this process (aiokafka runs in the event loop, so the client's
whole cost is counted; the broker's is not). The consume figures are steady state: from
the handler's first call to the last record (the group join is left out), commits included.

    make infra-up   # Kafka on 127.0.0.1:9092
    .venv/bin/python bench/bus_batches.py                     # N=20000 on kafka://127.0.0.1:9092
    .venv/bin/python bench/bus_batches.py --bus memory://     # the in-process bus
    .venv/bin/python bench/bus_batches.py --linger-ms 5       # producer linger to compare
    .venv/bin/python bench/bus_batches.py --live-rate 2000    # a trickle: batch linger 0/5/20/50 ms

`publish` is measured as the gateway uses it: `--concurrency` tasks each awaiting one
publish after the other (a station connection each). `publish_many` sends chunks of
`--chunk` records, one chunk after the other (a processor's batch).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.common.bus import bus_from_url  # noqa: E402
from services.common.bus.port import Bus, Record  # noqa: E402


async def _measure(run: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of `run`."""
    c0, w0 = time.process_time(), time.perf_counter()
    await run()
    return time.process_time() - c0, time.perf_counter() - w0


def _items(topic: str, n: int, stations: int, value_bytes: int, tag: str) -> list[tuple[str, str, bytes, Sequence[tuple[str, bytes]]]]:
    body = os.urandom(value_bytes)
    return [
        (topic, f"CP-{i % stations:05d}", body, [("ce_type", b"csms.events.v1.MeterValues"), ("ce_id", f"{tag}-{i}".encode())])
        for i in range(n)
    ]


async def _publish_each(bus: Bus, items: list[Any], concurrency: int) -> None:
    async def worker(k: int) -> None:
        for topic, key, value, headers in items[k::concurrency]:
            await bus.publish(topic, key, value, headers)

    await asyncio.gather(*(worker(k) for k in range(concurrency)))


async def _publish_many(bus: Bus, items: list[Any], chunk: int) -> None:
    for i in range(0, len(items), chunk):
        await bus.publish_many(items[i : i + chunk])


async def _consume(bus: Bus, topic: str, n: int, *, batch: bool, max_records: int, timeout: float) -> dict[str, Any]:
    """Steady state: the clock starts when the handler is first called (the group join and
    the first fetch are left out) and the records of that first call are not counted."""
    done = asyncio.Event()
    seen = first = batches = 0
    c0 = w0 = 0.0

    def count(k: int) -> None:
        nonlocal seen, first, batches, c0, w0
        if seen == 0:
            first, c0, w0 = k, time.process_time(), time.perf_counter()
        seen += k
        batches += 1
        if seen >= n:
            done.set()

    async def one(record: Record) -> None:
        count(1)

    async def many(records: Sequence[Record]) -> None:
        count(len(records))

    group = f"bench-bus-batches-{uuid.uuid4().hex[:8]}"
    if batch:
        sub = await bus.subscribe_batch(topic, group, many, max_records=max_records)
    else:
        sub = await bus.subscribe(topic, group, one)
    await asyncio.wait_for(done.wait(), timeout)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    await sub.stop()
    return {"cpu_s": cpu, "wall_s": wall, "records": seen - first, "batches": batches}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.bus.startswith("kafka://"):
        options = {"linger_ms": args.linger_ms}
    else:
        options = {"retention_bytes": 1 << 30}
    if not args.single_only:
        options["batch_linger_ms"] = args.batch_linger_ms
    bus = bus_from_url(args.bus, **options)
    await bus.start()
    try:
        tag = uuid.uuid4().hex[:8]
        topic_one, topic_many = f"bench.bus-batches.{tag}.one", f"bench.bus-batches.{tag}.many"
        await bus.ensure_topic(topic_one, args.partitions)
        await bus.ensure_topic(topic_many, args.partitions)
        await bus.publish(topic_one, "warm-up", b"x")  # metadata, connections
        n = args.n
        one_items = _items(topic_one, n, args.stations, args.value_bytes, "one")
        pub_cpu, pub_wall = await _measure(lambda: _publish_each(bus, one_items, args.concurrency))
        if args.single_only:  # a bus without the batch API (an older checkout, for a baseline)
            sub = await _consume(bus, topic_one, n + 1, batch=False, max_records=args.max_records, timeout=args.timeout)
            bat, many_cpu, many_wall = sub, pub_cpu, pub_wall
        else:
            await bus.publish_many([(topic_many, "warm-up", b"x", ())])
            many_items = _items(topic_many, n, args.stations, args.value_bytes, "many")
            many_cpu, many_wall = await _measure(lambda: _publish_many(bus, many_items, args.chunk))
            # both topics hold n + 1 records; consume the same topic both ways
            sub = await _consume(bus, topic_many, n + 1, batch=False, max_records=args.max_records, timeout=args.timeout)
            bat = await _consume(bus, topic_many, n + 1, batch=True, max_records=args.max_records, timeout=args.timeout)
    finally:
        await bus.close()
    us = lambda cpu, count: cpu / count * 1e6  # noqa: E731
    result = {
        "bus": args.bus,
        "n": n,
        "value_bytes": args.value_bytes,
        "partitions": args.partitions,
        "producer_linger_ms": args.linger_ms,
        "batch_linger_ms": args.batch_linger_ms,
        "publish": {"us_per_record": us(pub_cpu, n), "wall_s": pub_wall, "concurrency": args.concurrency},
        "publish_many": {"us_per_record": us(many_cpu, n), "wall_s": many_wall, "chunk": args.chunk},
        "subscribe": {"us_per_record": us(sub["cpu_s"], sub["records"]), "wall_s": sub["wall_s"]},
        "subscribe_batch": {"us_per_record": us(bat["cpu_s"], bat["records"]), "wall_s": bat["wall_s"],
                            "batches": bat["batches"], "mean_batch": (n + 1) / max(1, bat["batches"])},
    }
    result["publish_ratio"] = result["publish"]["us_per_record"] / result["publish_many"]["us_per_record"]
    result["consume_ratio"] = result["subscribe"]["us_per_record"] / result["subscribe_batch"]["us_per_record"]
    return result


async def _trickle(bus: Bus, topic: str, args: argparse.Namespace) -> None:
    n = int(args.live_rate * args.live_seconds)
    items = _items(topic, n, args.stations, args.value_bytes, "live")
    per_tick = max(1, int(args.live_rate * args.live_tick_ms / 1000))
    w0 = time.perf_counter()
    for i in range(0, n, per_tick):
        await bus.publish_many(items[i : i + per_tick])
        await asyncio.sleep(max(0.0, w0 + (i + per_tick) / args.live_rate - time.perf_counter()))


async def _produce_only(args: argparse.Namespace) -> None:
    bus = bus_from_url(args.bus, linger_ms=args.linger_ms)
    await bus.start()
    try:
        await _trickle(bus, args.produce_to, args)
    finally:
        await bus.close()


async def _live(args: argparse.Namespace, linger_ms: float) -> dict[str, Any]:
    """A trickle, as processors see it: records published at `--live-rate` per second
    (a chunk every `--live-tick-ms`) while a batch consumer keeps up; the handler burns
    `--batch-cost-us` of CPU per call (a store round trip's fixed cost). CPU is the whole
    process (producer + consumer): the producer's share is the same for every linger."""
    options: dict[str, Any] = {"batch_linger_ms": linger_ms}
    if args.bus.startswith("kafka://"):
        options["linger_ms"] = args.linger_ms
    bus = bus_from_url(args.bus, **options)
    await bus.start()
    seen = batches = 0

    async def many(records: Sequence[Record]) -> None:
        nonlocal seen, batches
        seen += sum(1 for r in records if r.value != b"probe")
        batches += 1
        end = time.process_time() + args.batch_cost_us / 1e6
        while time.process_time() < end:
            pass

    try:
        topic = f"bench.bus-batches.live.{uuid.uuid4().hex[:8]}"
        await bus.ensure_topic(topic, args.partitions)
        sub = await bus.subscribe_batch(topic, f"bench-live-{uuid.uuid4().hex[:8]}", many, max_records=args.max_records)
        while batches == 0:  # the member has its partitions
            await bus.publish_many([(topic, f"CP-{p}", b"probe", ()) for p in range(args.stations)][: args.partitions * 4])
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        seen, batches = 0, 0
        n = int(args.live_rate * args.live_seconds)
        producer = None
        c0 = time.process_time()
        if args.bus.startswith("kafka://"):  # produced by another process: this one only consumes
            producer = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--bus", args.bus, "--produce-to", topic, "--live-rate", str(args.live_rate),
                "--live-seconds", str(args.live_seconds), "--live-tick-ms", str(args.live_tick_ms),
                "--stations", str(args.stations), "--value-bytes", str(args.value_bytes), "--linger-ms", str(args.linger_ms))
            await producer.wait()
        else:
            await _trickle(bus, topic, args)
        deadline = time.perf_counter() + args.timeout
        while seen < n and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        cpu = time.process_time() - c0
        i0 = time.process_time()
        await asyncio.sleep(args.idle_seconds)  # subscribed, nothing to read
        idle = (time.process_time() - i0) / args.idle_seconds
        await sub.stop()
    finally:
        await bus.close()
    return {"linger_ms": linger_ms, "us_per_record": cpu / max(1, seen) * 1e6, "mean_batch": seen / max(1, batches),
            "records": seen, "idle_cpu_pct": idle * 100}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure's median over the runs (the machine is shared: one run is noisy)."""
    def med(values: list[Any]) -> Any:
        if isinstance(values[0], dict):
            return {k: med([v[k] for v in values]) for k in values[0]}
        if isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            return statistics.median(values)
        return values[0]

    out = med(runs)
    out["runs"] = len(runs)
    out["publish_ratios"] = [round(r["publish_ratio"], 2) for r in runs]
    out["consume_ratios"] = [round(r["consume_ratio"], 2) for r in runs]
    return out  # type: ignore[no-any-return]


def _print(r: dict[str, Any]) -> None:
    print(f"bus {r['bus']}  N={r['n']}  value={r['value_bytes']} B  partitions={r['partitions']}  "
          f"producer linger={r['producer_linger_ms']} ms  batch linger={r['batch_linger_ms']} ms")
    print(f"{'path':<18}{'CPU µs/record':>15}{'wall s':>10}  note")
    p, m = r["publish"], r["publish_many"]
    s, b = r["subscribe"], r["subscribe_batch"]
    print(f"{'publish':<18}{p['us_per_record']:>15.1f}{p['wall_s']:>10.2f}  {p['concurrency']} concurrent publishers")
    print(f"{'publish_many':<18}{m['us_per_record']:>15.1f}{m['wall_s']:>10.2f}  chunks of {m['chunk']}")
    print(f"{'subscribe':<18}{s['us_per_record']:>15.1f}{s['wall_s']:>10.2f}  no-op handler")
    print(f"{'subscribe_batch':<18}{b['us_per_record']:>15.1f}{b['wall_s']:>10.2f}  {b['batches']} batches, mean {b['mean_batch']:.0f} records")
    print(f"ratio publish/publish_many = {r['publish_ratio']:.2f}x {r['publish_ratios']}; "
          f"subscribe/subscribe_batch = {r['consume_ratio']:.2f}x {r['consume_ratios']}  (median of {r['runs']} runs)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bus", default="kafka://127.0.0.1:9092")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--stations", type=int, default=500)
    ap.add_argument("--value-bytes", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--max-records", type=int, default=500)
    ap.add_argument("--linger-ms", type=int, default=2, help="Kafka producer linger (KafkaBus default 2)")
    ap.add_argument("--batch-linger-ms", type=float, default=50.0, help="CSMS_BATCH_LINGER_MS (default 50)")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--json", help="also write the result here")
    ap.add_argument("--single-only", action="store_true",
                    help="publish and subscribe only (run against a checkout without the batch API for a baseline)")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the median of each figure is printed")
    ap.add_argument("--live-rate", type=float, default=0.0,
                    help="instead: a trickle of this many records/s, for each of --lingers")
    ap.add_argument("--live-seconds", type=float, default=10.0)
    ap.add_argument("--lingers", default="0,5,20,50", help="--live: batch lingers (ms) to compare")
    ap.add_argument("--idle-seconds", type=float, default=3.0, help="--live: then CPU while subscribed and idle")
    ap.add_argument("--live-tick-ms", type=float, default=1.0, help="--live: publish a chunk this often")
    ap.add_argument("--batch-cost-us", type=float, default=200.0, help="--live: CPU the handler burns per batch")
    ap.add_argument("--produce-to", help=argparse.SUPPRESS)  # --live's producer process
    ns = ap.parse_args()
    if ns.produce_to:
        asyncio.run(_produce_only(ns))
        sys.exit(0)
    if ns.live_rate > 0:
        for linger in [float(x) for x in ns.lingers.split(",")]:
            found = [asyncio.run(_live(ns, linger)) for _ in range(max(1, ns.repeat))]
            us_med = statistics.median(f["us_per_record"] for f in found)
            batch_med = statistics.median(f["mean_batch"] for f in found)
            idle_med = statistics.median(f["idle_cpu_pct"] for f in found)
            print(f"{ns.bus} live {ns.live_rate:.0f}/s, handler {ns.batch_cost_us:.0f} µs per batch, batch linger "
                  f"{linger:g} ms: {us_med:.1f} µs CPU per record ({'consumer' if ns.bus.startswith('kafka') else 'producer + consumer'}), mean batch {batch_med:.1f}, "
                  f"idle {idle_med:.1f}% of a core (median of {len(found)}; runs {[round(f['us_per_record'], 1) for f in found]})")
        sys.exit(0)
    runs = [asyncio.run(main(ns)) for _ in range(max(1, ns.repeat))]
    res = _median(runs)
    _print(res)
    if ns.json:
        Path(ns.json).write_text(json.dumps(res, indent=2))

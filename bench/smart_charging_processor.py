"""CPU per consumed record of the smart-charging processor, stage by stage (ADR 006, 015).

The pipeline bench (bench/pipeline.py) measures the `csms smart-charging` process as a
whole; this one drives its two stages in this process with pre-encoded csms.events.v1
records, so each stage's cost is seen apart and a profile (py-spy) shows only them:

  stage 1  `repartition`: consumes csms.events.v1, drops what smart charging does not
           need, re-keys the rest by site onto the by-site topic;
  stage 2  `handlers`: consumes the by-site topic, applies each site's events to its
           "site_state" document and sends the charging limits (SetChargingLimit).

The load is the pipeline bench's call mix, as the gateway encodes it: per station, of
every 20 events one Heartbeat, one StatusNotification (ConnectorStatus), and 18
MeterValues with 4 sampled values (energy register, power, `Current.Import` L1, voltage).
Every station belongs to a site with a grid limit and has an open transaction (started
before the measurement). The drawn current is constant (16 A, as in the pipeline bench),
so after the first reading of a session caps it nothing changes; `--demand-change-every M`
makes every M-th reading of a station draw its whole limit (the cap is lifted, the site
re-allocated, profiles sent), then 16 A again.

Each measured window: the events of `--rounds` calls per station are published first (not
measured), then stage 1 is subscribed and measured from its first handler call until it
has consumed them all, then stage 2 likewise over what stage 1 forwarded. CPU is
`time.process_time()` (every thread of this process: aiokafka runs in the event loop, the
Cassandra driver in its own threads). Windows: `start` (right after the sessions began)
and `long` (after `--long-rounds` more calls per station went through both stages), so
the cost per record can be compared as sessions grow (flat check).

    .venv/bin/python bench/smart_charging_processor.py                  # memory bus + SQLite
    .venv/bin/python bench/smart_charging_processor.py --stack kafka    # Kafka + Cassandra (running)
    .venv/bin/python bench/smart_charging_processor.py --mode record    # one record per handler call
    .venv/bin/python bench/smart_charging_processor.py --demand-change-every 10

`--mode batch` (default) consumes as `csms smart-charging` does (`subscribe_batch`, the
stages' batch handlers); `--mode record` uses `subscribe` and the one-record handlers (the
consumption before ADR 015). Kafka + Cassandra: a fresh keyspace and topic prefix per run
(like tests/integration/conftest.py), the keyspace dropped at the end. Not part of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TAG = uuid.uuid4().hex[:8]
UTC = timezone.utc


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", choices=("memory", "kafka"), default="memory", help="memory bus + SQLite, or Kafka + Cassandra")
    p.add_argument("--mode", choices=("batch", "record"), default="batch")
    p.add_argument("--stations", type=int, default=500)
    p.add_argument("--per-site", type=int, default=10, help="stations per site")
    p.add_argument("--rounds", type=int, default=20, help="events per station in a measured window")
    p.add_argument("--long-rounds", type=int, default=100, help="events per station between the two windows")
    p.add_argument("--demand-change-every", type=int, default=0, help="every M-th reading draws the whole limit (0: never)")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--max-records", type=int, default=500, help="batch size (CSMS_BATCH_MAX_RECORDS)")
    p.add_argument("--kafka", default="127.0.0.1:9092")
    p.add_argument("--cassandra", default="127.0.0.1:9042")
    p.add_argument("--no-uvloop", action="store_true")
    p.add_argument("--json", help="also write the result as JSON to this file")
    return p.parse_args()


ARGS = _parse()
if ARGS.stack == "kafka":
    os.environ["CSMS_TOPIC_PREFIX"] = f"bsc{TAG}."  # before services.common.topics is imported

from services.common import codec, topics  # noqa: E402
from services.common import events as ev  # noqa: E402
from services.common.bus.port import Record  # noqa: E402
from services.common.config import Settings  # noqa: E402
from services.common.runtime import Runtime, bootstrap  # noqa: E402
from services.common.store.port import Station  # noqa: E402
from services.smart_charging import handlers, repartition  # noqa: E402
from services.smart_charging.wiring import SmartCharging, wire_stages  # noqa: E402

Item = tuple[str, str, bytes, Sequence[tuple[str, bytes]]]


# ------------------------------------------------------------------------- the load


def _env(station_id: str, body: ev.Body, at: datetime, action: str) -> Item:
    env = ev.Envelope(
        event_id=uuid.uuid4().hex, station_id=station_id, received_at=at, body=body,
        gateway_id="gateway-0", ocpp_version="1.6", station_time=at, message_id=uuid.uuid4().hex[:16], action=action,
    )
    return (topics.EVENTS, station_id, codec.encode_event(env), codec.event_headers(env))


class Load:
    """Pre-encoded csms.events.v1 records; a station's k-th call follows the pipeline mix."""

    def __init__(self, stations: list[str], base: datetime, demand_change_every: int) -> None:
        self.stations, self.base, self.every = stations, base, demand_change_every
        self.k = {s: 0 for s in stations}
        self.readings = {s: 0 for s in stations}
        self.energy = {s: 0 for s in stations}

    def starts(self) -> list[Item]:
        return [
            _env(s, ev.TransactionStarted(transaction_id=str(1000 + i), evse_id=1, connector_id=1, id_token="BENCH",
                                          meter_start_wh=0, id_token_status="Accepted"), self.base, "StartTransaction")
            for i, s in enumerate(self.stations)
        ]

    def round(self) -> list[Item]:
        out = []
        for i, s in enumerate(self.stations):
            k = self.k[s]
            self.k[s] += 1
            at = self.base + timedelta(seconds=10 * (k + 1), milliseconds=i % 1000)
            if k % 20 == 19:
                out.append(_env(s, ev.Heartbeat(), at, "Heartbeat"))
                continue
            if k % 20 == 9:
                status = "SuspendedEV" if k % 40 == 9 else "Charging"
                out.append(_env(s, ev.ConnectorStatus(evse_id=1, connector_id=1, status=status, error_code="NoError"), at, "StatusNotification"))
                continue
            self.readings[s] += 1
            amps = 32.0 if self.every and self.readings[s] % self.every == 0 else 16.0
            self.energy[s] += 30
            samples = (
                ev.MeterSample(timestamp=at, value=float(self.energy[s]), unit="Wh", measurand="Energy.Active.Import.Register", context="Sample.Periodic"),
                ev.MeterSample(timestamp=at, value=11000.0, unit="W", measurand="Power.Active.Import", context="Sample.Periodic"),
                ev.MeterSample(timestamp=at, value=amps, unit="A", measurand="Current.Import", phase="L1", context="Sample.Periodic"),
                ev.MeterSample(timestamp=at, value=230.1, unit="V", measurand="Voltage", phase="L1-N", context="Sample.Periodic"),
            )
            body = ev.MeterValues(transaction_id=str(1000 + i), evse_id=0, connector_id=1, samples=samples)
            out.append(_env(s, body, at, "MeterValues"))
        return out


# ------------------------------------------------------------------------ the stages


class Stage:
    """One stage's consumer, counting consumed records and the outcomes."""

    def __init__(self, rt: Runtime, wired: SmartCharging, name: str, topic: str, group: str) -> None:
        self.rt, self.wired, self.name, self.topic, self.group = rt, wired, name, topic, group
        self.consumed = 0
        self.outcomes: Counter[str] = Counter()
        self.target = 0
        self.first_call_cpu: float | None = None
        self.done = asyncio.Event()

    def _after(self, n: int, outcomes: Counter[str] | dict[str, int] | str) -> None:
        self.consumed += n
        if isinstance(outcomes, str):
            self.outcomes[outcomes] += 1
        else:
            self.outcomes.update(outcomes)
        if self.consumed >= self.target:
            self.done.set()

    def _start_clock(self) -> None:
        if self.first_call_cpu is None:
            self.first_call_cpu = time.process_time()

    async def run(self, target: int, timeout: float = 600.0) -> tuple[float, int]:
        """Subscribe, consume `target` records, leave; (CPU s from the first handler call, records)."""
        self.target, self.consumed, self.first_call_cpu = target, 0, None
        self.done = asyncio.Event()
        if target == 0:
            return 0.0, 0
        stage1 = self.name == "stage1"
        record_fn = self.wired.regroup.handle_event_record if stage1 else self.wired.sites.handle_record
        if ARGS.mode == "record":
            async def one(record: Record) -> None:
                self._start_clock()
                self._after(1, await record_fn(record))

            sub = await self.rt.bus.subscribe(self.topic, group=self.group, handler=one)
        else:
            batch_fn: Callable[[Sequence[Record]], Awaitable[dict[str, int]]] = (
                self.wired.regroup.handle_event_batch if stage1 else self.wired.sites.handle_batch
            )

            async def many(records: Sequence[Record]) -> None:
                self._start_clock()
                self._after(len(records), await batch_fn(records))

            sub = await self.rt.bus.subscribe_batch(self.topic, group=self.group, handler=many, max_records=ARGS.max_records)
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
            cpu = time.process_time() - (self.first_call_cpu or time.process_time())
        finally:
            await sub.stop()
        return cpu, self.consumed


async def publish(rt: Runtime, items: list[Item]) -> None:
    for i in range(0, len(items), 1000):
        await rt.bus.publish_many(items[i:i + 1000])


def _profiles_sent() -> int:
    from services.smart_charging import commands

    return int(sum(m.value for metric in commands.PROFILES_SENT.collect() for m in metric.samples if m.name.endswith("_total")))


async def window(rt: Runtime, s1: Stage, s2: Stage, items: list[Item], label: str) -> dict[str, Any]:
    await publish(rt, items)
    profiles = _profiles_sent()
    before = dict(s1.outcomes)
    cpu1, n1 = await s1.run(len(items))
    forwarded = s1.outcomes["forwarded"] - before.get("forwarded", 0)
    s2_before = dict(s2.outcomes)
    cpu2, n2 = await s2.run(forwarded)
    s2_out = {k: v - s2_before.get(k, 0) for k, v in s2.outcomes.items() if v - s2_before.get(k, 0)}
    s1_out = {k: v - before.get(k, 0) for k, v in s1.outcomes.items() if v - before.get(k, 0)}
    return {
        "window": label,
        "events": n1,
        "forwarded": n2,
        "stage1_cpu_s": round(cpu1, 3),
        "stage2_cpu_s": round(cpu2, 3),
        "stage1_ms_per_event": round(1000 * cpu1 / max(1, n1), 4),
        "stage2_ms_per_forwarded": round(1000 * cpu2 / max(1, n2), 4),
        "stage2_ms_per_event": round(1000 * cpu2 / max(1, n1), 4),
        "together_ms_per_event": round(1000 * (cpu1 + cpu2) / max(1, n1), 4),
        "together_ms_per_consumed": round(1000 * (cpu1 + cpu2) / max(1, n1 + n2), 4),
        "profiles_sent": _profiles_sent() - profiles,
        "stage1_outcomes": s1_out,
        "stage2_outcomes": s2_out,
    }


# ------------------------------------------------------------------------------ main


async def main() -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="bench-sc-")
    if ARGS.stack == "kafka":
        keyspace = f"bsc_{TAG}"
        settings = Settings(bus_url=f"kafka://{ARGS.kafka}", store_url=f"cassandra://{ARGS.cassandra}/{keyspace}",
                            events_partitions=ARGS.partitions, commands_partitions=2, batch_max_records=ARGS.max_records)
    else:
        keyspace = ""
        settings = Settings(bus_url="memory://", store_url=f"sqlite:///{tmp}/bench.db",
                            events_partitions=ARGS.partitions, commands_partitions=2, batch_max_records=ARGS.max_records)
    rt = bootstrap(settings, pepper=b"bench")
    await rt.start()
    await rt.store.migrate()
    await rt.bus.ensure_topic(repartition.BY_SITE, ARGS.partitions)
    try:
        stations = [f"SC-{i:05d}" for i in range(ARGS.stations)]
        sites = max(1, (ARGS.stations + ARGS.per_site - 1) // ARGS.per_site)
        for j in range(sites):
            n = min(ARGS.per_site, ARGS.stations - j * ARGS.per_site)
            await rt.store.put_doc("site", f"SITE-{j:04d}", {"id": f"SITE-{j:04d}", "grid_limit_a": 20 * n, "phases": 3, "external_limit_a": None})
        for i, s in enumerate(stations):
            await rt.store.put_station(Station(id=s, password_hash="", site_id=f"SITE-{i // ARGS.per_site:04d}", max_current_a=32, phases=3))
            await rt.store.claim_station(s, "gateway-0")
        # Readings an hour ahead of the processor's clock: "settled" (ADR 006: readings within
        # 30 s of a limit change are ignored), so every demand change is acted upon.
        load = Load(stations, datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1), ARGS.demand_change_every)
        wired = wire_stages(rt)
        s1 = Stage(rt, wired, "stage1", topics.EVENTS, repartition.REPARTITION_GROUP)
        s2 = Stage(rt, wired, "stage2", repartition.BY_SITE, handlers.CONSUMER_GROUP)
        setup = await window(rt, s1, s2, load.starts(), "sessions started")
        first = await window(rt, s1, s2, [r for _ in range(ARGS.rounds) for r in load.round()], "start")
        fill = await window(rt, s1, s2, [r for _ in range(ARGS.long_rounds) for r in load.round()], f"fill ({ARGS.long_rounds} calls)")
        last = await window(rt, s1, s2, [r for _ in range(ARGS.rounds) for r in load.round()], "long")
    finally:
        await rt.close()
        if keyspace:
            _drop_keyspace(keyspace)
    windows = [setup, first, fill, last]
    return {
        "bench": "smart_charging_processor",
        "stack": "Kafka + Cassandra" if ARGS.stack == "kafka" else "memory bus + SQLite",
        "mode": ARGS.mode,
        "stations": ARGS.stations,
        "per_site": ARGS.per_site,
        "rounds": ARGS.rounds,
        "long_rounds": ARGS.long_rounds,
        "demand_change_every": ARGS.demand_change_every,
        "max_records": ARGS.max_records,
        "flat_ratio_together": round(last["together_ms_per_event"] / max(1e-9, first["together_ms_per_event"]), 2),
        "windows": windows,
    }


def _drop_keyspace(keyspace: str) -> None:
    try:
        from cassandra.cluster import Cluster

        host, _, port = ARGS.cassandra.partition(":")
        cluster = Cluster([host], port=int(port or 9042))
        try:
            cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        finally:
            cluster.shutdown()
    except Exception as exc:  # the figures are what matters; a left-over keyspace is harmless
        print(f"(keyspace {keyspace} not dropped: {exc})", file=sys.stderr)


def _print(result: dict[str, Any]) -> None:
    cols = ("window", "events", "forwarded", "stage1_ms_per_event", "stage2_ms_per_forwarded", "together_ms_per_event", "together_ms_per_consumed")
    print(f"smart charging, {result['stack']}, mode {result['mode']}, {result['stations']} stations in sites of {result['per_site']}, "
          f"demand change every {result['demand_change_every'] or 'never'}")
    print(" | ".join(cols))
    for w in result["windows"]:
        print(" | ".join(str(w[c]) for c in cols))
    for w in result["windows"]:
        print(f"  {w['window']}: stage 1 {w['stage1_outcomes']}; stage 2 {w['stage2_outcomes']}; {w['profiles_sent']} profiles sent")
    print(f"flat (long / start, together per event): {result['flat_ratio_together']}")


if __name__ == "__main__":
    if not ARGS.no_uvloop:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
    res = asyncio.run(main())
    _print(res)
    print(json.dumps(res))
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps(res, indent=2))

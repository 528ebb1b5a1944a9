"""CPU per consumed csms.events.v1 record of the stations processor (ADR 016), stage by stage
(`stations-state`, `stations-device-model`), in two mixes, early and late. Not part of the product.

Every batch holds ONE event per station (S stations sending in step, one call per round,
3 s of station time apart; station i is i calls ahead in the cycle, so every round mixes
the kinds):

- `fleet`: the sessions bench's traffic, which the stations stages must skip cheaply: of
  every 20 calls one StatusNotification (SuspendedEV / Charging), one Heartbeat, one 2.0.1
  TransactionEvent (Updated, 4 samples), the rest MeterValues of a transaction (4 samples).
- `ops`: operations traffic, a cycle of 21 calls: disconnect + connect (a new epoch),
  StatusNotification Faulted then Available (an outage opened and closed), FirmwareStatus
  Downloading / Downloaded / Installing / Installed, LogStatus Uploading / Uploaded,
  SecurityEvent, NotifyEvent (one Delta value), 2 MeterValues without a transaction,
  one NotifyReport part of --report-items items (a report of its own, seq 0, complete;
  the items rotate over --inventory keys), and CommandIssued + CommandResult pairs of
  GetVariables, SetVariables and ChangeAvailability.

Measured points (--rounds rounds each): early (short history, inventories of one report),
then the stations are fast-forwarded without the processor: the history rows of rounds up
to --long (the ops mix's, ~2,000 per station, station 0's as template) written straight into
the history log and an inventory of --inventory entries per station written as the device
model stage would have left it (by another process: this one has none of them decoded);
then late (the same mixes again: the first touch of each inventory decodes it) and steady
(the next ops cycle: every inventory touched once since the start).

Stacks:
- `memory`: memory bus + SQLite; records pre-encoded and handed to each stage's handler
  (`StationsStateHandler.handle_batch`, `DeviceModelStage.consume`) in batches of --batch;
  CPU = `time.process_time()` around each stage's calls separately.
- `kafka`: Kafka + Cassandra (127.0.0.1:9092 / 9042, fresh keyspace and topic prefix), the
  two stages as the wiring builds them (each its own `Processor` and consumer group, in
  one process as `csms stations` runs them). A producer subprocess publishes one round at a
  time and waits until both stages consumed it. CPU = `time.process_time()` of this process
  (all threads), for both stages together (they share the loop; the split is the memory
  stack's), and the store operations per record (statements, pages, batch tables). Then a
  load: --load-rounds rounds of the ops mix published at once; the drain time is from the
  end of the publish until both stages consumed the last record, and all CPU from the
  start of the publish to the end of the drain is the load's. The keyspace is dropped at
  the end (the fast-forward writes ~0.5 GB of history for 200 stations).

    .venv/bin/python bench/stations_processor.py                       # both stacks
    .venv/bin/python bench/stations_processor.py --stack memory --profile /tmp/st.prof
    .venv/bin/python bench/stations_processor.py --stack kafka --stations 200

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
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if "--role" not in sys.argv:
    os.environ.setdefault("CSMS_TOPIC_PREFIX", f"bst{uuid.uuid4().hex[:8]}.")
if "--stations-overlay" in sys.argv:  # A/B: modules of services/stations taken from this directory first
    import services.stations

    services.stations.__path__.insert(0, sys.argv[sys.argv.index("--stations-overlay") + 1])

from services.common import codec, topics  # noqa: E402
from services.common import events as ev  # noqa: E402
from services.common.bus.port import Record  # noqa: E402
from services.common.runtime import tune_gc  # noqa: E402

UTC = timezone.utc
PERIOD = timedelta(seconds=3)
POWER_W = 11_000
OPS_CYCLE = 21
REPORT_ITEMS = 20
INVENTORY = 200


def station_id(i: int) -> str:
    return f"BST{i:05d}"


def tx_of(i: int) -> str:
    return str(100_000 + i)


def _env(i: int, t: datetime, body: Any, k: str, version: str = "2.0.1") -> ev.Envelope:
    return ev.Envelope(event_id=f"bst-{i}-{k}", station_id=station_id(i), received_at=t, body=body,
                       gateway_id="gateway-0", ocpp_version=version, station_time=t)


def _samples(t: datetime, k: int) -> tuple[ev.MeterSample, ...]:
    wh = 1_000 + int(POWER_W * 3 * k / 3600)
    return (
        ev.MeterSample(timestamp=t, value=float(wh), unit="Wh", measurand="Energy.Active.Import.Register", context="Sample.Periodic"),
        ev.MeterSample(timestamp=t, value=float(POWER_W), unit="W", measurand="Power.Active.Import", context="Sample.Periodic"),
        ev.MeterSample(timestamp=t, value=16.0, unit="A", measurand="Current.Import", phase="L1", context="Sample.Periodic"),
        ev.MeterSample(timestamp=t, value=230.1, unit="V", measurand="Voltage", phase="L1-N", context="Sample.Periodic"),
    )


def fleet_call(i: int, k: int, t0: datetime) -> ev.Envelope:
    """Station i's call of round k in the fleet mix (the sessions bench's, plus TransactionEvent)."""
    t = t0 + k * PERIOD
    c = k + i
    if c % 20 == 19:
        return _env(i, t, ev.Heartbeat(), f"hb{k}", "1.6")
    if c % 20 == 9:
        status = "SuspendedEV" if c % 40 == 9 else "Charging"
        return _env(i, t, ev.ConnectorStatus(evse_id=1, connector_id=1, status=status), f"st{k}", "1.6")
    if c % 20 == 4:
        return _env(i, t, ev.TransactionUpdated(transaction_id=tx_of(i), evse_id=1, connector_id=1, seq_no=k,
                                                trigger_reason="MeterValuePeriodic", charging_state="Charging",
                                                samples=_samples(t, k)), f"te{k}")
    return _env(i, t, ev.MeterValues(transaction_id=tx_of(i), evse_id=1, connector_id=1, samples=_samples(t, k)),
                f"mv{k}", "1.6")


def _item_key(j: int) -> tuple[str, str]:
    return f"Comp{j // 10}", f"Var{j % 10}"


def _report_part(r: int, items: int, inventory: int) -> ev.ReportPart:
    data = []
    for n in range(items):
        comp, var = _item_key((r * items + n) % inventory)
        data.append(ev.ReportDatum(
            ev.Component(comp, evse_id=1 if n % 4 == 0 else None, connector_id=0),
            ev.Variable(var),
            (ev.VariableAttribute("Actual", str(r + n), mutability="ReadWrite" if n % 3 else "ReadOnly"),),
            ev.VariableCharacteristics("integer", unit="W" if n % 2 else "", min_limit=0.0, max_limit=100000.0),
        ))
    return ev.ReportPart(request_id=1_000_000 + r, seq_no=0, tbc=False, data=tuple(data))


def _var_json(comp: str, var: str, **extra: Any) -> dict[str, Any]:
    return {"component": {"name": comp}, "variable": {"name": var}, **extra}


def ops_call(i: int, k: int, t0: datetime, items: int = REPORT_ITEMS, inventory: int = INVENTORY) -> ev.Envelope:
    """Station i's call of round k in the operations mix (see the module docstring)."""
    t = t0 + k * PERIOD
    c = k + i
    r, slot = divmod(c, OPS_CYCLE)
    comp, var = _item_key((7 * r) % inventory)
    if slot == 0:
        return _env(i, t, ev.StationDisconnected(epoch=r + 1, close_code=1006), f"dc{k}")
    if slot == 1:
        return _env(i, t, ev.StationConnected(epoch=r + 2, remote_addr="10.0.0.1", subprotocol="ocpp2.0.1",
                                              security_profile=2), f"cn{k}")
    if slot in (2, 3):
        return _env(i, t, ev.ConnectorStatus(evse_id=1, connector_id=1, status="Faulted" if slot == 2 else "Available"),
                    f"st{k}")
    if 4 <= slot <= 7:
        status = ("Downloading", "Downloaded", "Installing", "Installed")[slot - 4]
        return _env(i, t, ev.FirmwareStatus(status=status, request_id=r), f"fw{k}")
    if slot in (8, 9):
        return _env(i, t, ev.LogStatus(status="Uploading" if slot == 8 else "Uploaded", request_id=r), f"lg{k}")
    if slot == 10:
        return _env(i, t, ev.SecurityEvent(type="SettingSystemTime", timestamp=t, tech_info="ntp"), f"se{k}")
    if slot == 11:
        return _env(i, t, ev.EventReport(seq_no=0, generated_at=t, events=(ev.EventDatum(
            event_id=k, trigger="Delta", component=ev.Component(comp), variable=ev.Variable(var), timestamp=t,
            actual_value=str(k), event_notification_type="HardWiredNotification"),)), f"ne{k}")
    if slot in (12, 13):
        return _env(i, t, ev.MeterValues(evse_id=1, connector_id=1, samples=_samples(t, k)[:2]), f"mv{k}")
    if slot == 14:
        return _env(i, t, _report_part(r, items, inventory), f"nr{k}")
    # command pairs: issued in one slot, the result in the next (the next round)
    pair = (slot - 15) // 2
    command_id = f"cmd-{i}-{r}-{pair}"
    request: dict[str, Any]
    response: dict[str, Any]
    if pair == 0:
        action = "GetVariables"
        request = {"getVariableData": [_var_json(comp, var)]}
        response = {"get_variable_result": [_var_json(comp, var, attribute_status="Accepted", attribute_value=str(r))]}
    elif pair == 1:
        action = "SetVariables"
        request = {"setVariableData": [_var_json(comp, var, attributeValue=str(r))]}
        response = {"set_variable_result": [_var_json(comp, var, attribute_status="Accepted")]}
    else:
        action = "ChangeAvailability"
        request = {"operationalStatus": "Inoperative" if r % 2 else "Operative", "evse": {"id": 1}}
        response = {"status": "Accepted"}
    if (slot - 15) % 2 == 0:
        return _env(i, t, ev.CommandIssued(command_id, action, action, json.dumps(request), "api"), f"ci{k}")
    return _env(i, t, ev.CommandResult(command_id, action, "Accepted", json.dumps(response), ocpp_action=action,
                                       request_json=json.dumps(request)), f"cr{k}")


MIXES: dict[str, Callable[[int, int, datetime], ev.Envelope]] = {"fleet": fleet_call, "ops": ops_call}


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


def start_events(i: int, t0: datetime) -> list[ev.Envelope]:
    return [
        _env(i, t0, ev.StationConnected(epoch=1, remote_addr="10.0.0.1", security_profile=2), "c0"),
        _env(i, t0, ev.StationBooted(vendor="Bench", model="B1", firmware_version="1.0.0"), "b0"),
        _env(i, t0, ev.ConnectorStatus(evse_id=1, connector_id=1, status="Available"), "s0"),
    ]


# -- fast-forward (not measured) ---------------------------------------------------------
async def fast_forward(store: Any, stations: int, first: int, last: int, t0: datetime, a: argparse.Namespace) -> dict[str, int]:
    """What the stages would have left after rounds first..last of the ops mix: the
    history rows (station 0's as template, ids swapped) and inventories of --inventory entries."""
    from services.common import kinds
    from services.common.store.port import DocWrite, StationEventRow
    from services.stations.codec import history_row
    from services.stations.device_model import entries_of_part
    from services.stations.device_model_documents import inventory_from_doc, inventory_to_doc
    from services.stations.domain.device_model import Inventory, add_report_part, apply_report, ReportAssembly

    template = []
    for k in range(first, last + 1):
        row = history_row(ops_call(0, k, t0, a.report_items, a.inventory))
        if row is not None:
            template.append(row)
    sem = asyncio.Semaphore(4)

    async def append(i: int) -> None:
        sid = station_id(i)
        rows = [StationEventRow(sid, r.at, f"ff-{i}-{r.event_id}", r.type, r.body) for r in template]
        async with sem:
            for j in range(0, len(rows), 500):
                for attempt in range(5):
                    try:
                        await store.append_station_events(rows[j:j + 500])
                        break
                    except Exception:
                        if attempt == 4:
                            raise
                        await asyncio.sleep(1.0)

    await asyncio.gather(*(append(i) for i in range(stations)))
    # an inventory of every key: reports of --inventory / --report-items parts, merged
    at = t0 + last * PERIOD
    inv = Inventory(station_id(0))
    for r in range(max(a.inventory // a.report_items, 1)):
        part = _report_part(r, a.report_items, a.inventory)
        rep = add_report_part(ReportAssembly(inv.station_id, part.request_id), 0, False, entries_of_part(part, at), at)
        inv, _ = apply_report(inv, rep, at)
    current = await store.get_docs(kinds.DEVICE_MODEL, [station_id(i) for i in range(stations)])
    writes = []
    for i in range(stations):
        sid = station_id(i)
        old = current.get(sid)
        cur = inventory_from_doc(old) if old is not None else Inventory(sid)
        version = cur.version + 1
        doc = inventory_to_doc(Inventory(sid, {**cur.entries, **inv.entries}, cur.commands, version, at))
        doc["etag"] = f"fast-forward-{i}"  # as the stage stamps its writes (another process's: not kept here)
        writes.append(DocWrite(sid, doc, version=version))
    for j in range(0, len(writes), 200):
        await store.put_docs(kinds.DEVICE_MODEL, writes[j:j + 200])
    return {"history_rows_per_station": len(template), "inventory_entries": len(inv.entries)}


# -- the in-process stack -----------------------------------------------------------------
def _schedule(a: argparse.Namespace) -> dict[str, tuple[str, int, int]]:
    """point -> (mix, first round, last round); the rounds increase across the run."""
    r = a.rounds
    late = a.long
    return {
        "early fleet": ("fleet", 2, 1 + r),
        "early ops": ("ops", 2 + r, 1 + 2 * r),
        "late fleet": ("fleet", late + 1, late + r),
        "late ops": ("ops", late + r + 1, late + 2 * r),
        # the next cycle: every inventory touched once since the (re)start, so kept decoded
        "steady ops": ("ops", late + 2 * r + 1, late + 3 * r),
    }


async def run_memory(a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from services.common.bus.memory import MemoryBus
    from services.common.config import Settings
    from services.common.runtime import bootstrap
    from services.common.store.sqlite import SqliteStore
    from services.stations.device_model import DeviceModelStage
    from services.stations.wiring import build_state_handler

    settings = Settings(events_partitions=a.partitions)
    store = SqliteStore(f"sqlite:///{tmp}/bst.db")
    rt = bootstrap(settings, bus=MemoryBus(default_partitions=a.partitions, retention_bytes=1 << 34), store=store,
                   pepper=b"bench")
    await rt.start()
    await store.migrate()
    state = build_state_handler(rt)
    dm = _device_model_stage(DeviceModelStage, rt)
    stages = {"state": state.handle_batch, "device_model": dm.consume}
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    offsets = Offsets(a.partitions)

    async def feed(records: list[Record], cpu: dict[str, float] | None = None) -> None:
        for j in range(0, len(records), a.batch):
            chunk = records[j:j + a.batch]
            for name, handle in stages.items():
                c0 = time.process_time()
                await handle(chunk)
                if cpu is not None:
                    cpu[name] += time.process_time() - c0

    def make(mix: str, first: int, last: int) -> list[list[Record]]:
        fn = MIXES[mix]
        return [offsets.records([fn(i, k, t0) for i in range(a.stations)]) for k in range(first, last + 1)]

    async def point(label: str, mix: str, first: int, last: int) -> dict[str, Any]:
        pre = make(mix, first, last)
        cpu = {name: 0.0 for name in stages}
        prof = _profiler(a)
        if prof:
            prof.enable()
        for recs in pre:
            await feed(recs, cpu)
        if prof:
            prof.disable()
            prof.dump_stats(f"{a.profile}.{label.replace(' ', '-')}")
        return {"cpu": cpu, "records": sum(len(r) for r in pre)}

    tune_gc()
    await feed(offsets.records([e for i in range(a.stations) for e in start_events(i, t0)]))
    await feed(make("ops", 1, 1)[0])  # warm caches
    out: dict[str, Any] = {}
    sched = _schedule(a)
    for label in ("early fleet", "early ops"):
        out[label] = await point(label, *sched[label])
    t = time.monotonic()
    out["fast_forward"] = await fast_forward(store, a.stations, 2 + 2 * a.rounds, a.long, t0, a)
    out["fast_forward"]["s"] = round(time.monotonic() - t, 1)
    for label in ("late fleet", "late ops", "steady ops"):
        out[label] = await point(label, *sched[label])
    await rt.close()
    return out


def _device_model_stage(cls: Any, rt: Any) -> Any:
    """As `build_device_model` makes it (an overlay's older stage may take no cache size)."""
    import inspect

    if "cache_stations" in inspect.signature(cls).parameters:
        return cls(rt.store, cache_stations=rt.settings.device_model_cache_stations)
    return cls(rt.store)


def _store_ops(store: Any) -> dict[str, int]:
    """Store operations sent so far by kind ("read" / "write": statements, query pages,
    batch tables), when the adapter counts them (Cassandra does)."""
    out = {"read": 0, "write": 0}
    for (op, _table), n in (getattr(store, "ops", None) or {}).items():
        out[op] = out.get(op, 0) + n
    return out


def _ops_delta(before: dict[str, int], after: dict[str, int], records: int) -> dict[str, float]:
    return {f"{op}s_per_record": round((after[op] - before[op]) / max(records, 1), 2) for op in after}


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
    from services.stations import device_model as dm_mod
    from services.stations import wiring
    from services.stations.handlers import observe_batch

    tag = uuid.uuid4().hex[:8]
    keyspace = f"bst_{tag}"
    settings = Settings(bus_url="kafka://127.0.0.1:9092", store_url=f"cassandra://127.0.0.1:9042/{keyspace}",
                        events_partitions=a.partitions, batch_max_records=a.batch)
    rt = bootstrap(settings, pepper=b"bench")
    await rt.start()
    await rt.store.migrate()
    await rt.bus.ensure_topic(topics.EVENTS, a.partitions)
    await rt.bus.ensure_topic(topics.DATATRANSFER, a.partitions)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)

    consumed = {"state": 0, "device_model": 0}
    arrived = asyncio.Event()
    last_at = {"state": 0.0, "device_model": 0.0}
    state = wiring.build_state_handler(rt)
    dm = _device_model_stage(dm_mod.DeviceModelStage, rt)

    def counting(name: str, handle: Any) -> Any:
        async def run(records: Any) -> None:
            await handle(records)
            consumed[name] += len(records)
            last_at[name] = time.monotonic()
            arrived.set()
        return run

    # the wiring's two stages (same names, groups, batch size), the handlers counting what they consumed
    services = [
        Processor(wiring.STATE_STAGE, rt.bus, topics.EVENTS, wiring.GROUP, counting("state", state.handle_batch),
                  max_records=a.batch, observe=observe_batch),
        Processor(dm_mod.NAME, rt.bus, topics.EVENTS, dm_mod.CONSUMER_GROUP, counting("device_model", dm.consume),
                  max_records=a.batch),
    ]
    for s in services:
        await s.start()
    tune_gc()
    producer = subprocess.Popen(
        [sys.executable, __file__, "--role", "producer", "--stations", str(a.stations), "--t0", t0.isoformat(),
         "--report-items", str(a.report_items), "--inventory", str(a.inventory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        env={**os.environ, "CSMS_TOPIC_PREFIX": os.environ["CSMS_TOPIC_PREFIX"]},
    )
    assert producer.stdin is not None and producer.stdout is not None
    loop = asyncio.get_running_loop()

    async def send(cmd: str, expect: int) -> float:
        """Publish; wait until both stages consumed `expect` more; seconds from the end of the publish."""
        target = {k: v + expect for k, v in consumed.items()}
        producer.stdin.write(cmd + "\n")  # type: ignore[union-attr]
        line = await loop.run_in_executor(None, producer.stdout.readline)  # type: ignore[union-attr]
        if not line.startswith("sent"):
            raise RuntimeError(f"producer: {line!r}")
        published = time.monotonic()
        deadline = published + 600
        while any(consumed[k] < target[k] for k in consumed):
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), max(deadline - time.monotonic(), 0.01))
            except asyncio.TimeoutError:
                raise RuntimeError(f"consumed {consumed} of {target}") from None
        return max(last_at.values()) - published

    async def point(mix: str, first: int, last: int) -> dict[str, Any]:
        cpu = 0.0
        ops0 = _store_ops(rt.store)
        for k in range(first, last + 1):
            c0 = time.process_time()
            await send(f"{mix} {k} {k}", a.stations)
            cpu += time.process_time() - c0
        n = a.stations * (last - first + 1)
        return {"cpu": {"both": cpu}, "records": n, "store_ops": _ops_delta(ops0, _store_ops(rt.store), n)}

    out: dict[str, Any] = {"keyspace": keyspace, "topic_prefix": os.environ["CSMS_TOPIC_PREFIX"]}
    await send("start", 3 * a.stations)
    await send("ops 1 1", a.stations)
    sched = _schedule(a)
    for label in ("early fleet", "early ops"):
        out[label] = await point(*sched[label])
    for s in reversed(services):
        await s.stop()
    t = time.monotonic()
    out["fast_forward"] = await fast_forward(rt.store, a.stations, 2 + 2 * a.rounds, a.long, t0, a)
    out["fast_forward"]["s"] = round(time.monotonic() - t, 1)
    for s in services:
        await s.start()
    await send(f"fleet {a.long} {a.long}", a.stations)  # rejoin the groups, warm up
    for label in ("late fleet", "late ops", "steady ops"):
        out[label] = await point(*sched[label])
    # the load: --load-rounds rounds of the ops mix at once
    first = a.long + 3 * a.rounds + 1
    last = first + a.load_rounds - 1
    c0 = time.process_time()
    w0 = time.monotonic()
    ops0 = _store_ops(rt.store)
    drain = await send(f"ops {first} {last}", a.stations * a.load_rounds)
    n = a.stations * a.load_rounds
    out["load"] = {"records": n, "cpu_s": round(time.process_time() - c0, 3),
                   "wall_s": round(time.monotonic() - w0, 2), "drain_s": round(drain, 2),
                   "store_ops": _ops_delta(ops0, _store_ops(rt.store), n)}
    producer.stdin.write("quit\n")
    producer.stdin.flush()
    producer.wait(30)
    for s in reversed(services):
        await s.stop()
    await rt.close()
    if not a.keep_keyspace:
        _drop_keyspace(keyspace)
    return out


def _drop_keyspace(keyspace: str) -> None:
    """The fast-forward leaves ~0.5 GB of history in the keyspace (200 stations): a small dev
    node's heap should not carry it after the run (one went out of memory while several
    such keyspaces and other tests' ones were live)."""
    try:
        from cassandra.cluster import Cluster

        cluster = Cluster(["127.0.0.1"], port=9042)
        try:
            cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        finally:
            cluster.shutdown()
    except Exception as exc:  # the figures are what matters
        print(f"(keyspace {keyspace} not dropped: {exc})", file=sys.stderr)


async def producer_main(a: argparse.Namespace) -> None:
    """Rounds of records on command (stdin: `start`, `<mix> <first> <last>`), published with publish_many."""
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
            await bus.publish_many([encoded(e) for i in range(a.stations) for e in start_events(i, t0)])
        else:
            mix, first, last = line.split()
            for k in range(int(first), int(last) + 1):
                if mix == "ops":
                    events = [ops_call(i, k, t0, a.report_items, a.inventory) for i in range(a.stations)]
                else:
                    events = [fleet_call(i, k, t0) for i in range(a.stations)]
                await bus.publish_many([encoded(e) for e in events])
        print("sent", flush=True)
    await bus.close()


# -- main -------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", choices=("memory", "kafka", "both"), default="both")
    p.add_argument("--stations", type=int, default=500, help="stations; >= --batch for one event per station per batch")
    p.add_argument("--batch", type=int, default=500, help="records per batch (CSMS_BATCH_MAX_RECORDS)")
    p.add_argument("--rounds", type=int, default=21, help="measured rounds (calls per station) per mix and point")
    p.add_argument("--long", type=int, default=2_050, help="round of the late measurement (history ~ --long rows)")
    p.add_argument("--report-items", type=int, default=REPORT_ITEMS, help="items per NotifyReport part")
    p.add_argument("--inventory", type=int, default=INVENTORY, help="inventory entries per station (late)")
    p.add_argument("--load-rounds", type=int, default=10, help="kafka: ops rounds published at once (the load)")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--keep-keyspace", action="store_true", help="kafka: leave the keyspace (dropped by default)")
    p.add_argument("--profile", default="", help="cProfile the in-process points to PATH.<point>")
    p.add_argument("--stations-overlay", default="",
                   help="A/B: a directory of services/stations modules (e.g. `git show` of another commit) used first")
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
    logging.getLogger("cassandra").setLevel(logging.ERROR)  # "Batch ... exceeding specified threshold" per document write
    if a.role == "producer":
        asyncio.run(producer_main(a))
        return
    import tempfile

    results: dict[str, Any] = {"bench": "stations_processor", "code": a.stations_overlay or "working tree",
                               "stations": a.stations, "batch": a.batch,
                               "rounds": a.rounds, "long": a.long, "report_items": a.report_items,
                               "inventory": a.inventory}
    stacks = ("memory", "kafka") if a.stack == "both" else (a.stack,)
    rows = []
    for stack in stacks:
        t = time.monotonic()
        if stack == "memory":
            with tempfile.TemporaryDirectory() as tmp:
                r = asyncio.run(run_memory(a, Path(tmp)))
        else:
            r = asyncio.run(run_kafka(a))
        res: dict[str, Any] = {k: v for k, v in r.items() if not isinstance(v, dict) or "cpu" not in v}
        for label in ("early fleet", "early ops", "late fleet", "late ops", "steady ops"):
            p_ = r[label]
            ms = {name: round(1000 * cpu / p_["records"], 4) for name, cpu in p_["cpu"].items()}
            if stack == "memory":
                ms["both"] = round(sum(ms.values()), 4)
            res[label.replace(" ", "_")] = {"records": p_["records"], "ms_per_record": ms,
                                            **({"store_ops": p_["store_ops"]} if "store_ops" in p_ else {})}
        for mix in ("fleet", "ops"):
            e, l_ = res[f"early_{mix}"]["ms_per_record"], res[f"late_{mix}"]["ms_per_record"]
            res[f"late_over_early_{mix}"] = {k: round(l_[k] / e[k], 3) if e[k] else None for k in e}
        e, l_ = res["early_ops"]["ms_per_record"], res["steady_ops"]["ms_per_record"]
        res["steady_over_early_ops"] = {k: round(l_[k] / e[k], 3) if e[k] else None for k in e}
        res["wall_s"] = round(time.monotonic() - t, 1)
        results[stack] = res
        for mix in ("fleet", "ops"):
            e, l_ = res[f"early_{mix}"]["ms_per_record"], res[f"late_{mix}"]["ms_per_record"]
            st = res["steady_ops"]["ms_per_record"] if mix == "ops" else {}
            for name in e:
                rows.append((stack, mix, name, e[name], l_[name], res[f"late_over_early_{mix}"][name], st.get(name)))
        if "load" in res:
            ld = res["load"]
            print(f"{stack}: load of {ld['records']} ops records published at once: drained {ld['drain_s']} s after "
                  f"the publish, {1000 * ld['cpu_s'] / ld['records']:.4f} ms CPU/record (both stages, incl. the drain)",
                  flush=True)
        for label in ("early_fleet", "early_ops", "late_fleet", "late_ops", "steady_ops"):
            if "store_ops" in res[label]:
                print(f"{stack}: {label}: store ops per record {res[label]['store_ops']}", flush=True)
    print(f"{'stack':7s} {'mix':6s} {'stage':13s} {'early ms/rec':>13s} {'late ms/rec':>12s} {'late/early':>10s}"
          f" {'steady ms/rec':>14s}")
    for stack, mix, name, e_, l_, ratio, steady in rows:
        print(f"{stack:7s} {mix:6s} {name:13s} {e_:13.4f} {l_:12.4f} {ratio if ratio is not None else '-':>10}"
              f" {'-' if steady is None else f'{steady:.4f}':>14s}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

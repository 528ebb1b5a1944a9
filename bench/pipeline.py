"""The distributed pipeline, end to end and per component, on real Kafka + Cassandra.

What a user runs in distributed mode: one `csms` process per role (gateway, sessions,
billing, smart-charging, api) against Kafka (127.0.0.1:9092) and Cassandra
(127.0.0.1:9042), with a fresh keyspace and topic prefix (like
tests/integration/conftest.py new_cluster, same environment). This process registers N
stations, an id token and a default tariff through the REST API, then drives N OCPP 1.6
stations (raw frames, bench/_wsclient.py):

  setup  connect, BootNotification, StatusNotification Preparing, StartTransaction,
         StatusNotification Charging; wait until every consumer group has lag 0.
  load   each station, in its open transaction, sends calls at a fixed rate for a
         duration (MeterValues with 4 sampled values; of every 20 calls one is a
         StatusNotification, SuspendedEV and Charging in turn, and one a Heartbeat), one call outstanding at a time;
         then nothing more is sent and we wait until every consumer group's lag is 0
         again ("drain", bounded). The CPU spent draining belongs to the load.
  stop   StopTransaction + StatusNotification Available, close; drain; reported apart.

CPU per process is utime+stime from /proc/<pid>/stat (all threads), read before the load,
at the end of the load and after the drain, so the load generator and anything else on the
machine do not count. Records per processor: `csms_bus_records_consumed_total` on its
/metrics (all topics). Lag: committed offsets of every consumer group the processes report
(labels of `csms_bus_consumer_lag_records`) vs the end offsets of their topics, from Kafka
itself. Cassandra figures over local JMX (bench/CassandraJmx.java; needs `java`): the
keyspace is flushed before and after, and the live on-disk bytes, local writes and reads
of its tables are compared. Flat-in-length: the sessions (and billing) processors' CPU per
record over the first 10 % vs the last 10 % of the load's records (CPU and consumed counters
sampled every --sample-interval s; stations advance in step, so record order ~ sample index).

    .venv/bin/python bench/pipeline.py                       # 200 stations, 2 calls/s, 30 s
    .venv/bin/python bench/pipeline.py --stations 50 --rate 10 --duration 60   # longer sessions

Writes the "Pipeline (distributed, Kafka + Cassandra)" section of bench/RESULTS.md (between
markers; --no-results to skip) and prints a JSON line. Not part of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
import orjson  # noqa: E402

from _util import BENCH, ROOT, command_line, install_uvloop, machine, now_z, pct, proc_cpu_s, raise_nofile, self_cpu_s, table  # noqa: E402
from _wsclient import HandshakeError, RawWs, basic  # noqa: E402

CSMS = str(ROOT / ".venv" / "bin" / "csms")
ENGINES_DIR = ROOT / "deploy" / "local"
JMX_TOOL = BENCH / "CassandraJmx.java"
ROLES = ("gateway", "sessions", "billing", "smart-charging", "api")
PROCESSORS = ("sessions", "billing", "smart-charging")
ID_TOKEN = "BENCHTOKEN01"
# issue 8's goals, ms of CPU per consumed record (per call for the gateway)
GOALS_MS = {"gateway": 0.1, "sessions": 0.2, "billing": 0.2, "smart-charging": 0.1}
MARK_BEGIN, MARK_END = "<!-- pipeline:begin -->", "<!-- pipeline:end -->"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when this bench process dies (even by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


# -- the role processes -----------------------------------------------------------------------
@dataclass
class Role:
    name: str
    env: dict[str, str]
    http_port: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid  # .venv/bin/csms is a python script: the exec'd process is the role

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen([CSMS, self.name], env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                      cwd=self.log_path.parent, start_new_session=True, preexec_fn=_die_with_parent)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def cpu(self) -> float:
        return proc_cpu_s(self.pid)

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        p = self.popen
        if p is None:
            return
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
        self._log.close()


def cluster_env(tag: str, api_key: str) -> dict[str, str]:
    """tests/integration/conftest.py new_cluster's environment, plus CSMS_BOOT_RATE so that
    admission control answers every boot Accepted (boots are setup here, not load)."""
    env = dict(os.environ)
    env.update({
        "CSMS_BUS_URL": "kafka://127.0.0.1:9092",
        "CSMS_STORE_URL": f"cassandra://127.0.0.1:9042/bench_{tag}",
        "CSMS_TOPIC_PREFIX": f"bench{tag}.",
        "CSMS_API_KEY": api_key,
        "CSMS_AUTH_PEPPER": "bench-pipeline-pepper",
        "CSMS_HOST": "127.0.0.1",
        "CSMS_COMMAND_TIMEOUT": "10",
        "CSMS_EVENTS_PARTITIONS": "6",
        "CSMS_COMMANDS_PARTITIONS": "4",
        "CSMS_LOG_LEVEL": "INFO",
        "CSMS_BOOT_RATE": "100000",
        "CSMS_DRAIN_WINDOW_S": "0",  # the gateway stops at once (no rolling-update drain)
    })
    return env


def spawn_roles(env: dict[str, str], work: Path) -> dict[str, Role]:
    roles: dict[str, Role] = {}
    for name in ROLES:
        e = dict(env)
        e["CSMS_METRICS_PORT"] = str(free_port())
        if name == "gateway":
            port = free_port()
            e.update({"CSMS_OCPP_PORT": str(port), "CSMS_GATEWAY_ID": "gateway-0"})
        elif name == "api":
            port = free_port()
            e["CSMS_API_PORT"] = str(port)
        else:
            port = int(e["CSMS_METRICS_PORT"])
        r = Role(name, e, port, work / f"{name}.log")
        r.start()
        roles[name] = r
    return roles


async def wait_ready(http: aiohttp.ClientSession, roles: dict[str, Role], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(roles)
    while pending:
        for name in list(pending):
            r = roles[name]
            if not r.alive():
                raise RuntimeError(f"{name} exited during start-up:\n{r.tail()}")
            try:
                async with http.get(f"http://127.0.0.1:{r.http_port}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        pending.discard(name)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout:.0f} s: {sorted(pending)}\n" + "\n".join(roles[n].tail(10) for n in pending))
        await asyncio.sleep(0.25)


# -- /metrics -------------------------------------------------------------------------------------
_SAMPLE = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


async def scrape(http: aiohttp.ClientSession, role: Role) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with http.get(f"http://127.0.0.1:{role.http_port}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        text = await resp.text()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if m:
            out.setdefault(m.group(1), []).append((dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def consumed(metrics: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, float]:
    """records handled, per topic (all groups of the process)."""
    out: dict[str, float] = {}
    for labels, v in metrics.get("csms_bus_records_consumed_total", []):
        out[labels.get("topic", "")] = out.get(labels.get("topic", ""), 0.0) + v
    return out


def groups_of(metrics: dict[str, list[tuple[dict[str, str], float]]]) -> set[tuple[str, str]]:
    """(topic, group) of the process's group consumers (assigned readers have group "")."""
    pairs = set()
    for name in ("csms_bus_consumer_lag_records", "csms_bus_records_consumed_total"):
        for labels, _ in metrics.get(name, []):
            if labels.get("group") and labels.get("topic"):
                pairs.add((labels["topic"], labels["group"]))
    return pairs


# -- lag from Kafka ------------------------------------------------------------------------------------
class LagWatch:
    """Committed offset vs end offset for (topic, group) pairs, asked of the broker."""

    def __init__(self, pairs: set[tuple[str, str]]) -> None:
        self.pairs = pairs

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        self.admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9092", request_timeout_ms=10_000)
        await self.admin.start()
        self.consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9092", group_id=None, enable_auto_commit=False,
                                         request_timeout_ms=10_000)
        await self.consumer.start()
        await self.refresh()

    async def refresh(self) -> None:
        from aiokafka import TopicPartition

        cluster = await self.consumer._client.fetch_all_metadata()  # bench tool: the private client is fine
        self.tps = {t: [TopicPartition(t, p) for p in sorted(cluster.partitions_for_topic(t) or ())] for t, _ in self.pairs}

    async def lags(self) -> dict[str, int]:
        """records behind, per group (summed over its topics' partitions)."""
        all_tps = [tp for tps in self.tps.values() for tp in tps]
        ends = await self.consumer.end_offsets(all_tps) if all_tps else {}
        out: dict[str, int] = {}
        for group in sorted({g for _, g in self.pairs}):
            mine = [tp for t, g in self.pairs if g == group for tp in self.tps[t]]
            committed = await self.admin.list_consumer_group_offsets(group, partitions=mine)
            lag = 0
            for tp in mine:
                c = committed.get(tp)
                off = c.offset if c is not None and c.offset >= 0 else 0
                lag += max(0, ends.get(tp, 0) - off)
            out[group] = lag
        return out

    async def close(self) -> None:
        for c in (getattr(self, "consumer", None), getattr(self, "admin", None)):
            if c is not None:
                try:
                    await asyncio.wait_for(c.stop() if hasattr(c, "stop") else c.close(), 10)
                except Exception:
                    pass

    async def drain(self, timeout: float, interval: float = 0.25) -> tuple[float | None, dict[str, float | None], dict[str, int]]:
        """Wait until every group's lag is 0 (twice in a row). Returns (seconds until all
        drained or None on timeout, seconds until each group drained, last lags)."""
        t0 = time.monotonic()
        first_zero: dict[str, float | None] = {}
        zero_streak = 0
        lags: dict[str, int] = {}
        while True:
            try:
                lags = await asyncio.wait_for(self.lags(), 15)
            except (asyncio.TimeoutError, Exception) as exc:  # broker hiccup: keep polling until the deadline
                log(f"lag poll failed ({type(exc).__name__}: {exc})")
                lags = {}
            el = time.monotonic() - t0
            for g, v in lags.items():
                if v == 0 and first_zero.get(g) is None:
                    first_zero[g] = el
                elif v > 0:
                    first_zero[g] = None
            if lags and all(v == 0 for v in lags.values()):
                zero_streak += 1
                if zero_streak >= 2:
                    return max((v or 0.0) for v in first_zero.values()), first_zero, lags
            else:
                zero_streak = 0
            if el > timeout:
                return None, first_zero, lags
            await asyncio.sleep(interval)


# -- Cassandra over JMX -----------------------------------------------------------------------------
def java_bin() -> str | None:
    jh = os.environ.get("JAVA_HOME")
    if jh and Path(jh, "bin", "java").exists():
        return str(Path(jh, "bin", "java"))
    return shutil.which("java")


def cassandra_tables(keyspace: str, flush: bool) -> dict[str, dict[str, float]] | None:
    """{table: {metric: value}} of the keyspace (after a flush when asked); None if unavailable."""
    java = java_bin()
    if not java:
        return None
    args = [java, "-Xmx64m", "-XX:TieredStopAtLevel=1", str(JMX_TOOL), "127.0.0.1", "7199", keyspace] + (["flush"] if flush else [])
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"cassandra JMX: {exc}")
        return None
    if r.returncode != 0:
        log(f"cassandra JMX failed ({r.returncode}): {(r.stderr or r.stdout)[-400:]}")
        return None
    out: dict[str, dict[str, float]] = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "table":
            out[parts[1]] = {k: float(v) for k, v in (p.split("=", 1) for p in parts[2:])}
    return out


def engine_pids() -> dict[str, int]:
    """Kafka and Cassandra pids from deploy/local (readable only if we share the user)."""
    pids = {}
    for e in ("kafka", "cassandra"):
        try:
            pid = int((ENGINES_DIR / e / f"{e}.pid").read_text().strip())
            proc_cpu_s(pid)
            pids[e] = pid
        except (OSError, ValueError):
            pass
    return pids


# -- stations --------------------------------------------------------------------------------------
class Station:
    __slots__ = ("sid", "password", "ws", "tx", "energy", "t_energy", "server_calls", "k")

    def __init__(self, sid: str, password: str) -> None:
        self.sid, self.password = sid, password
        self.ws: RawWs | None = None
        self.tx = 0
        self.energy = 10_000.0
        self.t_energy = time.monotonic()
        self.server_calls = 0
        self.k = 0

    async def connect(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ws = await asyncio.wait_for(RawWs.connect("127.0.0.1", port, f"/ocpp/{self.sid}", protocol="ocpp1.6",
                                                               authorization=basic(self.sid, self.password)), 30)
                return
            except HandshakeError as exc:  # 429/503: back off like a charger, bounded
                if exc.status not in (429, 503) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(random.uniform(0.5, 2.0))

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 30.0) -> Any:
        assert self.ws is not None
        uid = uuid.uuid4().hex[:16]
        self.ws.send_text(orjson.dumps([2, uid, action, payload]).decode())
        return await asyncio.wait_for(self._reply(uid), timeout)

    async def _reply(self, uid: str) -> Any:
        assert self.ws is not None
        while True:
            msg = orjson.loads(await self.ws.recv_text())
            if msg[0] == 2:  # a command from the CSMS: accept it and keep waiting
                self.server_calls += 1
                self.ws.send_text(orjson.dumps([3, msg[1], {"status": "Accepted"}]).decode())
                continue
            if msg[1] == uid:
                if msg[0] == 4:
                    raise RuntimeError(f"{self.sid}: CALLERROR {msg[2:]}")
                return msg[2]

    def meter_now(self, power_w: float) -> int:
        t = time.monotonic()
        self.energy += power_w * (t - self.t_energy) / 3600.0
        self.t_energy = t
        return int(self.energy)

    def next_call(self, power_w: float) -> tuple[str, dict[str, Any]]:
        k = self.k
        self.k += 1
        if k % 20 == 19:
            return "Heartbeat", {}
        if k % 20 == 9:
            return "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                          "status": "SuspendedEV" if k % 40 == 9 else "Charging", "timestamp": now_z()}
        ts = now_z()
        return "MeterValues", {"connectorId": 1, "transactionId": self.tx, "meterValue": [{"timestamp": ts, "sampledValue": [
            {"value": str(self.meter_now(power_w)), "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": str(int(power_w)), "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unit": "W"},
            {"value": "16.0", "context": "Sample.Periodic", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            {"value": "230.1", "context": "Sample.Periodic", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
        ]}]}


async def gather_bounded(n: int, coros: list[Any]) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros), return_exceptions=True))


def first_errors(results: list[Any]) -> list[str]:
    return [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)][:3]


async def register(http: aiohttp.ClientSession, api: str, key: str, stations: list[Station]) -> None:
    h = {"Authorization": f"Bearer {key}"}

    async def post(path: str, body: dict[str, Any]) -> None:
        async with http.post(f"{api}/api/v1/{path}", json=body, headers=h, timeout=aiohttp.ClientTimeout(total=60)) as r:
            if r.status not in (200, 201):
                raise RuntimeError(f"POST {path} -> {r.status} {await r.text()}")

    await post("tokens", {"id_token": ID_TOKEN, "status": "Accepted"})
    await post("tariffs", {"id": "bench-default", "currency": "EUR", "price_per_kwh": "0.30", "price_per_minute": "0.02",
                           "session_fee": "0.50", "idle_fee_per_minute": "0", "idle_grace_minutes": 0, "tax_rate": "0.19",
                           "bands": [], "default": True})
    res = await gather_bounded(8, [post("stations", {"id": s.sid, "password": s.password}) for s in stations])
    if any(isinstance(r, BaseException) for r in res):
        raise RuntimeError(f"station registration failed: {first_errors(res)}")


async def setup_station(st: Station, port: int, power_w: float) -> None:
    await st.connect(port, 60)
    boot = await st.call("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "Pipeline", "firmwareVersion": "1.0"})
    if boot.get("status") != "Accepted":
        raise RuntimeError(f"{st.sid}: boot {boot}")
    await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing", "timestamp": now_z()})
    start = await st.call("StartTransaction", {"connectorId": 1, "idTag": ID_TOKEN, "meterStart": st.meter_now(power_w), "timestamp": now_z()})
    if start.get("idTagInfo", {}).get("status") != "Accepted":
        raise RuntimeError(f"{st.sid}: StartTransaction {start}")
    st.tx = int(start["transactionId"])
    await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": now_z()})


@dataclass
class LoadStats:
    lat: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    first_error: str = ""
    late: int = 0


async def drive(stations: list[Station], rate: float, duration: float, power_w: float, stats: LoadStats) -> float:
    """Every station: one call every 1/rate s (random phase), one outstanding at a time. A
    station more than one interval behind its schedule (slow replies) sends at once and
    restarts its schedule from now (counted as late: the offered rate was not kept).
    Returns the wall time of the load."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    t0 = loop.time() + 0.2
    end = t0 + duration

    async def one(st: Station) -> None:
        nxt = t0 + random.uniform(0, interval)
        while nxt < end:
            now = loop.time()
            if nxt > now:
                await asyncio.sleep(nxt - now)
            elif now - nxt > interval:
                stats.late += 1
                nxt = now
            action, payload = st.next_call(power_w)
            t = time.perf_counter()
            try:
                await st.call(action, payload)
                stats.lat.setdefault(action, []).append(time.perf_counter() - t)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                stats.errors += 1
                stats.first_error = stats.first_error or f"{st.sid} {action}: {type(exc).__name__}: {exc}"[:300]
                if st.ws is None or st.ws.closed or isinstance(exc, (ConnectionError, asyncio.IncompleteReadError)):
                    return
            nxt += interval

    w0 = time.perf_counter()
    await asyncio.gather(*(one(s) for s in stations))
    return time.perf_counter() - w0


async def stop_station(st: Station, power_w: float) -> None:
    await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Finishing", "timestamp": now_z()})
    await st.call("StopTransaction", {"transactionId": st.tx, "meterStop": st.meter_now(power_w), "timestamp": now_z(), "reason": "Local"})
    await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": now_z()})
    assert st.ws is not None
    await st.ws.close()


# -- snapshots ---------------------------------------------------------------------------------------
@dataclass
class Snap:
    t: float
    cpu: dict[str, float]
    consumed: dict[str, dict[str, float]]
    self_cpu: float


async def snap(http: aiohttp.ClientSession, roles: dict[str, Role], engines: dict[str, int]) -> Snap:
    cpu = {n: r.cpu() for n, r in roles.items()}
    for e, pid in engines.items():
        try:
            cpu[e] = proc_cpu_s(pid)
        except OSError:
            pass
    ms = await asyncio.gather(*(scrape(http, roles[n]) for n in (*PROCESSORS, "api")))
    return Snap(time.monotonic(), cpu, {n: consumed(m) for n, m in zip((*PROCESSORS, "api"), ms)}, self_cpu_s())


async def sampler(http: aiohttp.ClientSession, roles: dict[str, Role], every: float, out: list[tuple[float, float, float, float, float]],
                  stop: asyncio.Event) -> None:
    """(t, sessions cpu, sessions records, billing cpu, billing records) every `every` s."""
    while not stop.is_set():
        try:
            ms = await asyncio.gather(scrape(http, roles["sessions"]), scrape(http, roles["billing"]))
            out.append((time.monotonic(), roles["sessions"].cpu(), sum(consumed(ms[0]).values()),
                        roles["billing"].cpu(), sum(consumed(ms[1]).values())))
        except Exception:  # noqa: BLE001 - a missed sample only widens the window
            pass
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass


def cpu_at(series: list[tuple[float, float]], records: float) -> float:
    """CPU (linear interpolation) when the consumed counter reached `records`."""
    for (r0, c0), (r1, c1) in zip(series, series[1:]):
        if r0 <= records <= r1:
            return c0 if r1 == r0 else c0 + (c1 - c0) * (records - r0) / (r1 - r0)
    return series[-1][1] if records >= series[-1][0] else series[0][1]


def flat_check(series: list[tuple[float, float]], frac: float = 0.1) -> dict[str, Any] | None:
    """ms CPU per record over the first and last `frac` of the records in (records, cpu)."""
    if len(series) < 3:
        return None
    r0, r1 = series[0][0], series[-1][0]
    n = r1 - r0
    if n <= 0:
        return None
    w = frac * n
    first = (cpu_at(series, r0 + w) - cpu_at(series, r0)) / w * 1e3
    last = (cpu_at(series, r1) - cpu_at(series, r1 - w)) / w * 1e3
    return {"records": int(n), "window_records": int(w), "first_ms_per_record": round(first, 3),
            "last_ms_per_record": round(last, 3), "ratio_last_to_first": round(last / first, 2) if first > 0 else None}


# -- the run -----------------------------------------------------------------------------------------
def wait_for_pytest(limit_s: float) -> None:
    if limit_s <= 0:
        return
    def running() -> list[str]:
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # a pytest run (`pytest ...`, `python -m pytest ...`), not a command line that mentions it
            if any(os.path.basename(x.decode(errors="replace")) in ("pytest", "py.test") for x in argv[:3]):
                out.append(d)
        return out

    deadline = time.monotonic() + limit_s
    while True:
        mine = running()
        if not mine:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"pytest still running after {limit_s:.0f} s (pids {' '.join(mine)}); not loading a shared machine")
        log(f"pytest is running (pids {' '.join(mine)}); waiting 30 s")
        time.sleep(30)


async def run(a: argparse.Namespace, roles: dict[str, Role], env: dict[str, str], keyspace: str) -> dict[str, Any]:
    api = f"http://127.0.0.1:{roles['api'].http_port}"
    gw_port = roles["gateway"].http_port
    engines = engine_pids()
    res: dict[str, Any] = {"stations": a.stations, "rate_per_station": a.rate, "duration_s": a.duration, "keyspace": keyspace,
                           "topic_prefix": env["CSMS_TOPIC_PREFIX"]}
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, roles)
        log("all roles ready; registering stations, token, tariff")
        stations = [Station(f"PIPE{i:05d}", secrets.token_hex(16)) for i in range(a.stations)]
        await register(http, api, env["CSMS_API_KEY"], stations)
        log(f"setup: {a.stations} stations connect, boot, start a transaction")
        res_setup = await gather_bounded(50, [setup_station(s, gw_port, a.power_w) for s in stations])
        if any(isinstance(r, BaseException) for r in res_setup):
            raise RuntimeError(f"setup failed for {sum(isinstance(r, BaseException) for r in res_setup)} stations: {first_errors(res_setup)}")

        pairs: set[tuple[str, str]] = set()
        for n in (*PROCESSORS, "api"):
            pairs |= groups_of(await scrape(http, roles[n]))
        res["consumer_groups"] = sorted(f"{g} <- {t}" for t, g in pairs)
        watch = LagWatch(pairs)
        await watch.start()
        try:
            setup_timeout = max(a.drain_timeout, 300.0)
            d_setup, _, lags = await watch.drain(setup_timeout)
            if d_setup is None:
                raise RuntimeError(f"setup did not drain in {setup_timeout:.0f} s: {lags}")
            log(f"setup drained; consumer groups: {', '.join(res['consumer_groups'])}")
            await asyncio.sleep(1.0)
            cass0 = cassandra_tables(keyspace, flush=True) if a.cassandra else None

            # -- load --------------------------------------------------------------------------------
            stats = LoadStats()
            timeline: list[tuple[float, float, float, float, float]] = []
            stop_sampling = asyncio.Event()
            s0 = await snap(http, roles, engines)
            samp = asyncio.create_task(sampler(http, roles, a.sample_interval, timeline, stop_sampling))
            log(f"load: {a.stations} stations x {a.rate:g} calls/s for {a.duration:g} s")
            wall = await drive(stations, a.rate, a.duration, a.power_w, stats)
            s1 = await snap(http, roles, engines)
            log(f"load sent in {wall:.1f} s; draining (timeout {a.drain_timeout:.0f} s)")
            d_load, d_groups, lags = await watch.drain(a.drain_timeout)
            s2 = await snap(http, roles, engines)
            stop_sampling.set()
            await samp
            log("drained" if d_load is not None else f"NOT drained after {a.drain_timeout:.0f} s: {lags}")
            cass1 = cassandra_tables(keyspace, flush=True) if a.cassandra else None

            # -- stop ---------------------------------------------------------------------------------
            if d_load is None:
                log("stop phase skipped: the load did not drain")
                return finish(a, res, stats, wall, s0, s1, s2, None, d_load, d_groups, lags, d_setup, pairs, env, engines,
                              stations, cass0, cass1, timeline)
            log("stop: StopTransaction, Available, close")
            t_stop = time.monotonic()
            res_stop = await gather_bounded(50, [stop_station(s, a.power_w) for s in stations])
            d_stop, _, stop_lags = await watch.drain(a.drain_timeout)
            s3 = await snap(http, roles, engines)
            res["stop_phase"] = {"wall_s": round(time.monotonic() - t_stop, 2), "drain_s": d_stop, "failed": sum(isinstance(r, BaseException) for r in res_stop),
                                 "errors": first_errors(res_stop), "lags_at_end": stop_lags,
                                 "cpu_s": {n: round(s3.cpu[n] - s2.cpu[n], 3) for n in s3.cpu if n in s2.cpu},
                                 "records": {n: round(sum(s3.consumed[n].values()) - sum(s2.consumed[n].values())) for n in s3.consumed}}
        finally:
            await watch.close()
    return finish(a, res, stats, wall, s0, s1, s2, s3, d_load, d_groups, lags, d_setup, pairs, env, engines, stations, cass0, cass1, timeline)


def finish(a: argparse.Namespace, res: dict[str, Any], stats: LoadStats, wall: float, s0: Snap, s1: Snap, s2: Snap, s3: Snap | None,
           d_load: float | None, d_groups: dict[str, float | None], lags: dict[str, int], d_setup: float, pairs: set[tuple[str, str]],
           env: dict[str, str], engines: dict[str, int], stations: list[Station], cass0: Any, cass1: Any,
           timeline: list[tuple[float, float, float, float, float]]) -> dict[str, Any]:
    # -- figures ------------------------------------------------------------------------------------------
    calls = {k: len(v) for k, v in stats.lat.items()}
    n_calls = sum(calls.values())
    all_lat = sorted(x for v in stats.lat.values() for x in v)
    mv_lat = sorted(stats.lat.get("MeterValues", []))
    comps: dict[str, Any] = {}
    for n in (*ROLES, *engines):
        if n not in s0.cpu or n not in s2.cpu:
            continue
        load_cpu, drain_cpu = s1.cpu[n] - s0.cpu[n], s2.cpu[n] - s1.cpu[n]
        recs: float | None
        by_topic: dict[str, int] = {}
        if n == "gateway":
            recs = n_calls
        elif n in s0.consumed:
            by_topic = {t.replace(env["CSMS_TOPIC_PREFIX"], ""): round(s2.consumed[n].get(t, 0) - s0.consumed[n].get(t, 0)) for t in s2.consumed[n]}
            recs = sum(by_topic.values())
        else:
            recs = None
        total = load_cpu + drain_cpu
        comps[n] = {
            "cpu_load_s": round(load_cpu, 2), "cpu_drain_s": round(drain_cpu, 2), "cpu_s": round(total, 2),
            "records": recs, "records_by_topic": by_topic,
            "ms_per_record": round(total / recs * 1e3, 3) if recs else None,
            "drained_after_s": None,
        }
    for t, g in pairs:  # time each role's groups reached lag 0 after the load (the slowest of its groups)
        name = g.removeprefix(env["CSMS_TOPIC_PREFIX"])  # group ids carry the topic prefix
        owner = {"csms-sessions": "sessions", "csms-billing": "billing"}.get(name) or ("smart-charging" if name.startswith("csms-smart-charging") else "api")
        if owner in comps:
            v = d_groups.get(g)
            prev = comps[owner]["drained_after_s"]
            comps[owner]["drained_after_s"] = None if v is None else round(max(v, prev or 0.0), 2)
    csms_total = sum(comps[n]["cpu_s"] for n in ROLES if n in comps)
    res.update({
        "calls": n_calls, "calls_by_action": calls, "errors": stats.errors, "first_error": stats.first_error, "late_calls": stats.late,
        "load_wall_s": round(wall, 2), "calls_per_s": round(n_calls / wall, 1) if wall else None,
        "drain_s": None if d_load is None else round(d_load, 2), "drain_by_group_s": {g: (None if v is None else round(v, 2)) for g, v in d_groups.items()},
        "lags_at_end": lags, "setup_drain_s": round(d_setup, 2), "drain_waited_s": round(s2.t - s1.t, 1),
        "latency_ms": {"p50": round(pct(all_lat, 50) * 1e3, 2), "p99": round(pct(all_lat, 99) * 1e3, 2), "max": round(all_lat[-1] * 1e3, 1) if all_lat else None,
                       "meter_values_p50": round(pct(mv_lat, 50) * 1e3, 2), "meter_values_p99": round(pct(mv_lat, 99) * 1e3, 2)},
        "components": comps, "csms_cpu_s": round(csms_total, 2), "csms_ms_per_call": round(csms_total / n_calls * 1e3, 3) if n_calls else None,
        "load_generator_cpu_s": round(s2.self_cpu - s0.self_cpu, 2),
        "server_commands_seen": sum(s.server_calls for s in stations),
    })
    mvs = calls.get("MeterValues", 0)
    sess = comps.get("sessions", {}).get("records") or 0
    behind = lags.get(env["CSMS_TOPIC_PREFIX"] + "csms-sessions", 0) if d_load is None else 0
    done = sess / (sess + behind) if sess + behind else 1.0
    res["sessions_share_processed"] = round(done, 3)
    mvs = round(mvs * done)  # not drained: only this share of the MeterValues reached the store (approximately)
    if cass0 is not None and cass1 is not None:
        def tot(c: dict[str, dict[str, float]], k: str) -> float:
            return sum(v.get(k, 0.0) for v in c.values())
        live = tot(cass1, "LiveDiskSpaceUsed") - tot(cass0, "LiveDiskSpaceUsed")
        flushed = tot(cass1, "BytesFlushed") - tot(cass0, "BytesFlushed")
        per_table = {t: {"writes": int(cass1[t].get("WriteLatency", 0) - cass0.get(t, {}).get("WriteLatency", 0)),
                         "reads": int(cass1[t].get("ReadLatency", 0) + cass1[t].get("RangeLatency", 0)
                                      - cass0.get(t, {}).get("ReadLatency", 0) - cass0.get(t, {}).get("RangeLatency", 0)),
                         "live_bytes": int(cass1[t].get("LiveDiskSpaceUsed", 0) - cass0.get(t, {}).get("LiveDiskSpaceUsed", 0)),
                         "flushed_bytes": int(cass1[t].get("BytesFlushed", 0) - cass0.get(t, {}).get("BytesFlushed", 0))} for t in cass1}
        writes = sum(v["writes"] for v in per_table.values())
        reads = sum(v["reads"] for v in per_table.values())
        res["cassandra"] = {
            "meter_values": mvs, "live_bytes_delta": int(live), "flushed_bytes_delta": int(flushed),
            "live_bytes_per_meter_values": round(live / mvs, 1) if mvs else None,
            "flushed_bytes_per_meter_values": round(flushed / mvs, 1) if mvs else None,
            "local_writes": writes, "local_reads": reads,
            "writes_per_call": round(writes / n_calls, 2) if n_calls else None, "reads_per_call": round(reads / n_calls, 2) if n_calls else None,
            "tables": per_table,
        }
    else:
        res["cassandra"] = None
    res["flat_in_length"] = {
        "sessions": flat_check([(r, c) for _, c, r, _, _ in timeline]),
        "billing": flat_check([(r, c) for _, _, _, c, r in timeline]),
        "samples_per_session": round(mvs / a.stations, 1) if a.stations else None,
    }
    return res


# -- output -----------------------------------------------------------------------------------------------
def fmt_s(v: float | None) -> str:
    return "not drained" if v is None else f"{v:.1f}"


def report(res: dict[str, Any], meta: dict[str, Any]) -> str:
    c = res["components"]
    drain_all = res.get("drain_s")

    def util(x: dict[str, Any]) -> str:
        """CPU s per wall s while the role was still draining (1.0 = one core saturated):
        well below 1 means the drain waits on something else (store round trips in series)."""
        d = x.get("drained_after_s")
        if d is None and x is not c.get("gateway"):
            d = drain_all if drain_all is not None else res.get("drain_waited_s")
        return "-" if not d or d < 2.0 else f"{x['cpu_drain_s'] / d:.2f}"

    rows = []
    for n in (*ROLES, "kafka", "cassandra"):
        if n not in c:
            continue
        x = c[n]
        unit = "calls" if n == "gateway" else "records"
        recs = "-" if x["records"] is None else f"{x['records']:,} {unit}"
        goal = GOALS_MS.get(n)
        rows.append([
            n + (" (engine, shared)" if n in ("kafka", "cassandra") else ""), x["cpu_load_s"], x["cpu_drain_s"], x["cpu_s"], recs,
            "-" if x["ms_per_record"] is None or n in ("kafka", "cassandra") else x["ms_per_record"],
            "-" if goal is None or not x["ms_per_record"] else f"{goal} ({x['ms_per_record'] / goal:.0f}x)",
            f"{x['cpu_load_s'] / res['load_wall_s']:.2f}" if res.get("load_wall_s") else "-",
            "-" if n not in PROCESSORS and n != "api" else fmt_s(x["drained_after_s"]),
            util(x),
        ])
    per_call = {n: round(c[n]["cpu_s"] / res["calls"] * 1e3, 3) for n in ("kafka", "cassandra") if n in c and res["calls"]}
    lines = [
        table(["component", "CPU s during load", "CPU s draining", "CPU s total", "consumed", "ms CPU / record",
               "goal ms (x over)", "cores busy during load", "drained after load (s)", "cores busy while draining"], rows),
        "",
        f"- Load: {res['stations']} OCPP 1.6 stations, each in one open transaction, {res['rate_per_station']:g} calls/s for "
        f"{res['duration_s']:g} s: {res['calls']:,} calls ({', '.join(f'{k} {v:,}' for k, v in sorted(res['calls_by_action'].items()))}) "
        f"in {res['load_wall_s']} s = {res['calls_per_s']} calls/s; errors {res['errors']}, late sends {res['late_calls']}"
        + (f" (first: {res['first_error']})" if res["first_error"] else "") + ".",
        f"- All CSMS processes together: {res['csms_cpu_s']} CPU s = **{res['csms_ms_per_call']} ms CPU per call** (load + drain)"
        + (f"; the engines add {', '.join(f'{k} {v} ms' for k, v in per_call.items())} per call" if per_call else "") + ".",
        (f"- Drain: every consumer group back to lag 0 **{res['drain_s']} s** after the last call."
         if res["drain_s"] is not None else
         f"- Drain: **not drained {res.get('drain_waited_s')} s after the last call** (the timeout); records still behind per group: "
         + ", ".join(f"{g} {v:,}" for g, v in sorted(res["lags_at_end"].items())) + ". The figures above are per record consumed until "
         "then (the backlog's CPU is not in them); the stop phase was skipped."),
        f"- Reply latency as the stations measured it (send → CALLRESULT, after Kafka acks=all): p50 {res['latency_ms']['p50']} ms, "
        f"p99 {res['latency_ms']['p99']} ms, max {res['latency_ms']['max']} ms; MeterValues p50 {res['latency_ms']['meter_values_p50']} ms, "
        f"p99 {res['latency_ms']['meter_values_p99']} ms.",
    ]
    cs = res.get("cassandra")
    if cs:
        top = sorted(cs["tables"].items(), key=lambda kv: -kv[1]["writes"])[:4]
        lines.append(
            f"- Cassandra (keyspace flushed before and after, JMX table metrics"
            + ("" if res["drain_s"] is not None else f"; per MeterValues processed by then, ≈ {res['sessions_share_processed']:.0%} of them")
            + f"): live on-disk bytes +{cs['live_bytes_delta']:,} = "
            f"**{cs['live_bytes_per_meter_values']} B per MeterValues** (4 sampled values; compressed SSTables, the state after overwrites); "
            f"bytes flushed {cs['flushed_bytes_per_meter_values']} B per MeterValues; local writes {cs['writes_per_call']} and reads "
            f"{cs['reads_per_call']} per call (by table, writes/reads: "
            + ", ".join(f"{t} {v['writes']:,}/{v['reads']:,}" for t, v in top) + ").")
    else:
        lines.append("- Cassandra bytes per sample: n/a (no `java` for the JMX reader, or JMX on 127.0.0.1:7199 unreachable).")
    fl = res["flat_in_length"]
    for n in ("sessions", "billing"):
        f = fl.get(n)
        if f:
            scope = "the load's records" if res["drain_s"] is not None else f"the records it consumed before the timeout"
            lines.append(f"- Flat in length, {n}: {f['first_ms_per_record']} ms CPU/record over the first 10 % of {scope} vs "
                         f"{f['last_ms_per_record']} ms over the last 10 % (windows of {f['window_records']:,} records; sessions reach "
                         f"{fl['samples_per_session']} samples): **ratio {f['ratio_last_to_first']}**.")
    sp = res.get("stop_phase") or {}
    if sp:
        lines.append(f"- Stop phase (not in the table): {res['stations']} × (Finishing, StopTransaction, Available) drained in "
                     f"{fmt_s(sp.get('drain_s'))} s; CPU s " + ", ".join(f"{k} {v}" for k, v in sp["cpu_s"].items() if k in ROLES) + ".")
    lines.append(f"- Load generator (this process, same machine): {res['load_generator_cpu_s']} CPU s.")
    return "\n".join(lines)


def write_results(path: Path, body: str, meta: dict[str, Any]) -> None:
    m = meta["machine"]
    section = "\n".join([
        MARK_BEGIN,
        "## Pipeline (distributed, Kafka + Cassandra)",
        "",
        f"`{meta['command']}` (`make bench-pipeline`), run started {meta['started']} UTC. Code: commit {meta['commit']}. "
        f"Machine: {m['nproc']} cores ({m['cpu']}), {meta['mem_gib']} GiB RAM, Python {m['python']}; Kafka and Cassandra "
        "single nodes from deploy/local on the same machine. One `csms` process per role with the environment of "
        "tests/integration/conftest.py (6 event partitions, INFO logs) and CSMS_BOOT_RATE=100000. CPU is utime+stime "
        "from /proc per process, counted from the first call of the load until every consumer group's committed offset "
        "is back at the end of its topics (so the work left after the load is included). See bench/README.md for what "
        "the figures include and what limits them.",
        "",
        body,
        MARK_END,
    ])
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


# -- cleanup ---------------------------------------------------------------------------------------------------
async def drop_everything(keyspace: str, prefix: str) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    try:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9092", request_timeout_ms=10_000)
        await asyncio.wait_for(consumer.start(), 15)
        try:
            topics = [t for t in await asyncio.wait_for(consumer.topics(), 15) if t.startswith(prefix)]
        finally:
            await consumer.stop()
        if topics:
            admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9092", request_timeout_ms=30_000)
            await asyncio.wait_for(admin.start(), 15)
            try:
                await asyncio.wait_for(admin.delete_topics(topics), 60)
            finally:
                await admin.close()
        log(f"deleted {len(topics)} topics {prefix}*")
    except Exception as exc:  # noqa: BLE001 - best effort
        log(f"could not delete topics {prefix}*: {type(exc).__name__}: {exc}")

    def drop() -> None:
        from cassandra.cluster import Cluster

        cl = Cluster(["127.0.0.1"], port=9042, protocol_version=5, connect_timeout=10)
        try:
            cl.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        finally:
            cl.shutdown()

    try:
        await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, drop), 150)
        log(f"dropped keyspace {keyspace}")
    except Exception as exc:  # noqa: BLE001
        log(f"could not drop keyspace {keyspace}: {type(exc).__name__}: {exc}")


def _on_sigterm(*_: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stations", type=int, default=200)
    p.add_argument("--rate", type=float, default=2.0, help="calls per second per station (the gateway allows 20)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    p.add_argument("--power-w", type=float, default=11_000.0, help="charging power the meter values follow")
    p.add_argument("--drain-timeout", type=float, default=300.0,
                   help="longest wait for every lag to be 0 (s); if it passes, the figures are per record consumed by then")
    p.add_argument("--sample-interval", type=float, default=0.5, help="CPU/records sampling for the flat-in-length check (s)")
    p.add_argument("--no-cassandra", dest="cassandra", action="store_false", help="skip the JMX flush and table metrics")
    p.add_argument("--wait-for-pytest", type=float, default=0.0, metavar="S",
                   help="first wait (up to S s, polling every 30 s) until no pytest runs on this machine")
    p.add_argument("--keep", action="store_true", help="keep the keyspace, topics and the process logs")
    p.add_argument("--results", default=str(BENCH / "RESULTS.md"), help="markdown file whose pipeline section is (re)written")
    p.add_argument("--no-results", action="store_true", help="print only")
    p.add_argument("--json-out", help="also write the result as JSON here")
    p.add_argument("--from-json", metavar="FILE", help="only rebuild the report (and the RESULTS.md section) from a --json-out file")
    a = p.parse_args()
    if a.from_json:
        saved = json.loads(Path(a.from_json).read_text())
        meta = {k: saved[k] for k in ("command", "started", "machine", "mem_gib", "commit")}
        body = report(saved, meta)
        print(body)
        if not a.no_results:
            write_results(Path(a.results), body, meta)
        return 0
    if not 0 < a.rate <= 20:
        p.error("--rate must be in (0, 20]: the gateway paces each connection at 20 CALLs/s")

    for name, port in (("Kafka", 9092), ("Cassandra", 9042)):
        if not reachable(port):
            print(f"{name} is not reachable on 127.0.0.1:{port}; run `make infra-up` (or `make bench-pipeline`)", file=sys.stderr)
            return 2
    if not Path(CSMS).exists():
        print(f"{CSMS} missing; run `make setup`", file=sys.stderr)
        return 2
    wait_for_pytest(a.wait_for_pytest)
    raise_nofile()
    install_uvloop()

    tag = uuid.uuid4().hex[:8]
    env = cluster_env(tag, "bench-" + uuid.uuid4().hex)
    keyspace = f"bench_{tag}"
    work = Path(tempfile.mkdtemp(prefix="csms-pipeline-"))
    started = datetime.now(timezone.utc)
    roles: dict[str, Role] = {}
    rc = 1
    failed_run = True
    # SIGTERM behaves like Ctrl-C: unwind through the finally below
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        log(f"keyspace {keyspace}, topic prefix {env['CSMS_TOPIC_PREFIX']}, logs in {work}; csms migrate")
        mig = subprocess.run([CSMS, "migrate"], env=env, capture_output=True, timeout=180, cwd=work)
        if mig.returncode != 0:
            raise RuntimeError(f"csms migrate failed:\n{(mig.stdout + mig.stderr).decode(errors='replace')[-3000:]}")
        roles = spawn_roles(env, work)
        res = asyncio.run(run(a, roles, env, keyspace))
        dead = [n for n, r in roles.items() if not r.alive()]
        if dead:
            res["exited_during_run"] = dead
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "services"], capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            commit, dirty = "?", ""
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        meta = {"command": command_line(), "started": started.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "mem_gib": mem_gib,
                "commit": commit + (" (services/ modified)" if dirty else " (services/ unmodified)")}
        body = report(res, meta)
        print("\n" + body + "\n", flush=True)
        if not a.no_results:
            write_results(Path(a.results), body, meta)
            log(f"wrote the pipeline section of {a.results}")
        out = {**meta, **res}
        print("JSON " + json.dumps(out, separators=(",", ":"), default=str), flush=True)
        if a.json_out:
            Path(a.json_out).write_text(json.dumps(out, indent=1, default=str) + "\n")
        # A benchmark reports, it does not assert: not draining in time is a figure (printed
        # and written), not a failure. Failures are a role dying or calls going unanswered.
        if res["drain_s"] is None:
            log("NOT DRAINED within the drain timeout: see the table (lags_at_end)")
        rc = 0 if not res["errors"] and not dead else 1
        failed_run = bool(dead)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        rc = 130
    except Exception as exc:  # noqa: BLE001
        log(f"FAILED: {type(exc).__name__}: {exc}")
        rc = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave processes behind
        for r in roles.values():
            r.stop()
        if roles and failed_run and rc != 130:
            for n, r in roles.items():
                log(f"--- last lines of {n}.log\n{r.tail(15)}")
        if not a.keep:
            try:
                asyncio.run(drop_everything(keyspace, env["CSMS_TOPIC_PREFIX"]))
            except Exception as exc:  # noqa: BLE001
                log(f"cleanup: {exc}")
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept keyspace {keyspace}, topics {env['CSMS_TOPIC_PREFIX']}*, logs {work}")
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return rc


if __name__ == "__main__":
    sys.exit(main())

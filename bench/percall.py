"""Server CPU per OCPP call, end to end in the gateway, by message type, vs the 100 µs goal.

The gateway runs in its own process (bench/gateway_server.py: GatewayService only, memory
bus, SQLite store, tracing set up as `csms gateway` does). This process drives it with K
authenticated connections (raw asyncio WebSocket clients, bench/_wsclient.py), each
sending M calls of one type, one outstanding call per connection. Server CPU is
utime+stime from /proc/<pid>/stat before/after each phase, so client CPU on the same
2 cores does not count. The same is done against a bare aiohttp WebSocket server that
answers a fixed CALLRESULT (the transport floor).

Message types: 1.6 Heartbeat, StatusNotification, MeterValues (4 sampled values, with a
transactionId), 2.0.1 TransactionEvent Updated (2 sampled values; the connection sent
its Started first, as a real station does, so the running cost is priced from it; a
default tariff exists unless --no-tariff).

Loopback settings (all clients share 127.0.0.1 and pipeline far above a
real station's rate): CSMS_MSG_RATE_PER_S/CSMS_MSG_BURST 1e9 (per-connection CALL pacing, default 20/s),
CSMS_UPGRADE_RATE_PER_IP/CSMS_UPGRADE_BURST_PER_IP 1e9 (default 200/s, burst 1000), CSMS_BOOT_RATE
100000 (every boot Accepted, so no call is gated as Pending).

    .venv/bin/python bench/percall.py --connections 50 --calls 1000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402

from _util import Server, emit, install_uvloop, machine, new_pepper, now_z, pct, provision, raise_nofile, self_cpu_s, table, workdir  # noqa: E402
from _wsclient import RawWs, basic  # noqa: E402

GOAL_US = 100.0
LOOPBACK_ENV = {
    "CSMS_MSG_RATE_PER_S": "1e9", "CSMS_MSG_BURST": "1e9", "CSMS_UPGRADE_RATE_PER_IP": "1e9", "CSMS_UPGRADE_BURST_PER_IP": "1e9",
}
ID_TOKEN = "BENCHTOKEN01"


def _call(action: str, payload: dict[str, Any]) -> str:
    return orjson.dumps([2, uuid.uuid4().hex[:32], action, payload]).decode()


# -- payloads ----------------------------------------------------------------------------
def heartbeat(i: int, st: dict[str, Any]) -> str:
    return _call("Heartbeat", {})


def status16(i: int, st: dict[str, Any]) -> str:
    return _call("StatusNotification", {
        "connectorId": 1, "errorCode": "NoError", "status": "Charging" if i % 2 else "SuspendedEV", "timestamp": now_z(),
    })


def meter16(i: int, st: dict[str, Any]) -> str:
    ts = now_z()
    return _call("MeterValues", {
        "connectorId": 1, "transactionId": st["tx16"],
        "meterValue": [{"timestamp": ts, "sampledValue": [
            {"value": str(10_000 + 10 * i), "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "7200", "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unit": "W"},
            {"value": "16.0", "context": "Sample.Periodic", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            {"value": "230.1", "context": "Sample.Periodic", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
        ]}],
    })


def tx_started(st: dict[str, Any]) -> str:
    ts = now_z()
    return _call("TransactionEvent", {
        "eventType": "Started", "timestamp": ts, "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": st["tx201"], "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": ID_TOKEN, "type": "ISO14443"},
        "meterValue": [{"timestamp": ts, "sampledValue": [
            {"value": 10_000, "context": "Transaction.Begin", "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}},
        ]}],
    })


def tx_updated(i: int, st: dict[str, Any]) -> str:
    ts = now_z()
    st["seq"] += 1
    return _call("TransactionEvent", {
        "eventType": "Updated", "timestamp": ts, "triggerReason": "MeterValuePeriodic", "seqNo": st["seq"],
        "transactionInfo": {"transactionId": st["tx201"], "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": ts, "sampledValue": [
            {"value": 10_000 + 10 * st["seq"], "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}},
            {"value": 7200, "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
        ]}],
    })


Build = Callable[[int, dict[str, Any]], str]
TYPES: list[tuple[str, str, Build]] = [
    ("Heartbeat (1.6)", "1.6", heartbeat),
    ("StatusNotification (1.6)", "1.6", status16),
    ("MeterValues (1.6)", "1.6", meter16),
    ("TransactionEvent Updated (2.0.1)", "2.0.1", tx_updated),
]


# -- client side ---------------------------------------------------------------------------
class Conn:
    def __init__(self, ws: RawWs, sid: str) -> None:
        self.ws, self.sid = ws, sid
        self.state: dict[str, Any] = {"tx16": 1000 + abs(hash(sid)) % 100000, "tx201": "tx-" + sid, "seq": 0}

    async def rpc(self, text: str) -> Any:
        self.ws.send_text(text)
        return orjson.loads(await self.ws.recv_text())


async def open_conn(port: int, sid: str, password: str | None, version: str, boot: bool) -> Conn:
    proto = "ocpp1.6" if version == "1.6" else "ocpp2.0.1"
    ws = await RawWs.connect("127.0.0.1", port, f"/ocpp/{sid}", protocol=proto,
                             authorization=basic(sid, password) if password else None)
    c = Conn(ws, sid)
    if boot:
        if version == "1.6":
            payload = {"chargePointVendor": "Bench", "chargePointModel": "B1", "firmwareVersion": "1.0"}
        else:
            payload = {"reason": "PowerUp", "chargingStation": {"vendorName": "Bench", "model": "B2"}}
        reply = await c.rpc(_call("BootNotification", payload))
        if reply[0] != 3 or reply[2].get("status") != "Accepted":
            raise RuntimeError(f"{sid}: boot answered {reply}")
        if version == "2.0.1":
            reply = await c.rpc(tx_started(c.state))
            if reply[0] != 3:
                raise RuntimeError(f"{sid}: TransactionEvent Started answered {reply}")
    return c


async def open_all(port: int, creds: dict[str, str] | None, ids: list[str], version: str, boot: bool) -> list[Conn]:
    sem = asyncio.Semaphore(100)

    async def one(sid: str) -> Conn:
        async with sem:
            return await open_conn(port, sid, creds[sid] if creds else None, version, boot)

    return list(await asyncio.gather(*(one(s) for s in ids)))


async def drive(conns: list[Conn], build: Build, calls: int, lat: list[float] | None) -> tuple[int, str]:
    """Each connection sends `calls` calls, one outstanding at a time. (errors, first error)."""
    errors = [0]
    first = [""]

    async def one(c: Conn) -> None:
        st = c.state
        for i in range(calls):
            text = build(i, st)
            t0 = time.perf_counter()
            c.ws.send_text(text)
            reply = await c.ws.recv_text()
            if lat is not None:
                lat.append(time.perf_counter() - t0)
            if not reply.startswith("[3,"):
                errors[0] += 1
                first[0] = first[0] or reply[:200]

    await asyncio.gather(*(one(c) for c in conns))
    return errors[0], first[0]


async def phase(server: Server, conns: list[Conn], build: Build, calls: int, warmup: int) -> dict[str, Any]:
    await drive(conns, build, warmup, None)
    lat: list[float] = []
    c0, s0, w0 = server.cpu(), self_cpu_s(), time.perf_counter()
    errors, first = await drive(conns, build, calls, lat)
    wall, cpu, ccpu = time.perf_counter() - w0, server.cpu() - c0, self_cpu_s() - s0
    n = len(conns) * calls
    lat.sort()
    us = cpu / n * 1e6
    return {
        "calls": n, "server_cpu_s": round(cpu, 3), "cpu_us_per_call": round(us, 1), "ratio_to_goal": round(us / GOAL_US, 2),
        "calls_per_core_s": round(n / cpu) if cpu else None, "wall_s": round(wall, 3), "calls_per_wall_s": round(n / wall),
        "server_util": round(cpu / wall, 2), "client_cpu_s": round(ccpu, 3),
        "p50_ms": round(pct(lat, 50) * 1e3, 3), "p99_ms": round(pct(lat, 99) * 1e3, 3), "max_ms": round(lat[-1] * 1e3, 3),
        "errors": errors, "first_error": first,
    }


async def probe(conn: Conn, build: Build, calls: int) -> dict[str, float]:
    """Unloaded latency: one connection, one call at a time."""
    await drive([conn], build, 50, None)
    lat: list[float] = []
    await drive([conn], build, calls, lat)
    lat.sort()
    return {"p50_ms": round(pct(lat, 50) * 1e3, 3), "p99_ms": round(pct(lat, 99) * 1e3, 3)}


async def bench_gateway(args: argparse.Namespace, wd: Path) -> dict[str, Any]:
    k = args.connections
    ids16 = [f"PC16-{i:05d}" for i in range(k + 1)]
    ids201 = [f"PC201-{i:05d}" for i in range(k + 1)]
    pepper = new_pepper()
    creds = provision(wd / "csms.db", ids16 + ids201, pepper, tariff=not args.no_tariff, tokens=[ID_TOKEN])
    env = {"CSMS_AUTH_PEPPER": pepper, "CSMS_BOOT_RATE": "100000", "CSMS_GATEWAY_ID": "gateway-0"}
    out: dict[str, Any] = {}
    with Server("gateway", wd, env={**env, **LOOPBACK_ENV}, tracing=not args.no_tracing, profile=args.profile, log_level=args.log_level, gc=args.server_gc) as server:
        conns = {
            "1.6": await open_all(server.port, creds, ids16[:k], "1.6", True),
            "2.0.1": await open_all(server.port, creds, ids201[:k], "2.0.1", True),
        }
        single = {"1.6": await open_conn(server.port, ids16[k], creds[ids16[k]], "1.6", True),
                  "2.0.1": await open_conn(server.port, ids201[k], creds[ids201[k]], "2.0.1", True)}
        await asyncio.sleep(0.5)
        c0 = server.cpu()
        await asyncio.sleep(1.0)
        out["idle_server_cpu_s_per_s"] = round(server.cpu() - c0, 3)
        out["types"] = {}
        for name, version, build in TYPES:
            if args.only and args.only.lower() not in name.lower():
                continue
            r = await phase(server, conns[version], build, args.calls, args.warmup)
            if args.probe:
                r["unloaded"] = await probe(single[version], build, args.probe)
            out["types"][name] = r
            print(f"  {name}: {r['cpu_us_per_call']} µs CPU/call, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}", file=sys.stderr)
        out["server_rss_kib"] = server.rss_kib()
        for cs in conns.values():
            for c in cs:
                await c.ws.close()
        for c in single.values():
            await c.ws.close()
        await asyncio.sleep(0.5)
    return out


async def bench_echo(args: argparse.Namespace, wd: Path) -> dict[str, Any]:
    with Server("echo", wd) as server:
        conns = await open_all(server.port, None, [f"E-{i}" for i in range(args.connections)], "1.6", False)
        single = await open_conn(server.port, "E-single", None, "1.6", False)
        r = await phase(server, conns, heartbeat, args.calls, args.warmup)
        if args.probe:
            r["unloaded"] = await probe(single, heartbeat, args.probe)
        for c in [*conns, single]:
            await c.ws.close()
    print(f"  transport floor: {r['cpu_us_per_call']} µs CPU/round trip", file=sys.stderr)
    return r


def report(res: dict[str, Any]) -> str:
    rows = []
    for name, r in res["gateway"]["types"].items():
        u = r.get("unloaded", {})
        rows.append([name, r["cpu_us_per_call"], f"{r['ratio_to_goal']:.2f}x", r["calls_per_core_s"], r["p50_ms"], r["p99_ms"],
                     u.get("p50_ms", float("nan")), u.get("p99_ms", float("nan")), r["server_util"], r["errors"]])
    e = res["transport_floor"]
    u = e.get("unloaded", {}) if e else {}
    if e:
        rows.append(["transport floor (aiohttp echo)", e["cpu_us_per_call"], f"{e['ratio_to_goal']:.2f}x", e["calls_per_core_s"],
                 e["p50_ms"], e["p99_ms"], u.get("p50_ms", float("nan")), u.get("p99_ms", float("nan")), e["server_util"], e["errors"]])
    k = res["connections"]
    return table(
        ["message", "server µs CPU/call", "vs 100 µs goal", "calls/core-s", f"p50 ms (K={k})", f"p99 ms (K={k})",
         "p50 ms (K=1)", "p99 ms (K=1)", "server CPU util", "errors"], rows)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    tmp = workdir("csms-percall-", args.keep)
    wd = tmp if isinstance(tmp, Path) else Path(tmp.name)
    try:
        async with asyncio.timeout(args.timeout):
            gw = await bench_gateway(args, wd)
            floor = None if args.no_echo else await bench_echo(args, wd)
    finally:
        if not isinstance(tmp, Path):
            tmp.cleanup()
    return {
        "bench": "percall", "connections": args.connections, "calls_per_connection": args.calls, "warmup": args.warmup,
        "tariff": not args.no_tariff, "tracing": not args.no_tracing, "server_gc": args.server_gc, "goal_us": GOAL_US, "loopback_env": LOOPBACK_ENV,
        "gateway": gw, "transport_floor": floor, "machine": machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", "-k", type=int, default=50)
    p.add_argument("--calls", "-m", type=int, default=1000, help="measured calls per connection and type")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured calls per connection first")
    p.add_argument("--probe", type=int, default=500, help="calls of the unloaded (K=1) latency probe; 0 = skip")
    p.add_argument("--no-tariff", action="store_true", help="no default tariff (TransactionEvent skips running cost)")
    p.add_argument("--log-level", default="INFO", help="server CSMS log level (production default INFO)")
    p.add_argument("--server-gc", choices=["default", "off", "freeze"], default="default",
                   help="diagnostics: server cyclic GC off, or frozen after start-up with gen0 threshold 50,000")
    p.add_argument("--no-tracing", action="store_true", help="server without the OpenTelemetry SDK provider")
    p.add_argument("--profile", help="run the server under py-spy, raw collapsed stacks to this file (CPU figures then include sampling overhead)")
    p.add_argument("--only", help="run only the message types whose name contains this (e.g. MeterValues)")
    p.add_argument("--no-echo", action="store_true", help="skip the transport floor")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--keep", help="work directory to keep (default: a temp dir, removed)")
    p.add_argument("--json-out")
    args = p.parse_args()
    raise_nofile()
    install_uvloop()
    res = asyncio.run(amain(args))
    print(f"\npercall: K={args.connections} connections x M={args.calls} calls per type; server = GatewayService on memory bus + SQLite")
    print(report(res))
    emit(res, args.json_out)


if __name__ == "__main__":
    main()

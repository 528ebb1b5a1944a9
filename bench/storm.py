"""Reconnect storm: N pre-registered stations connect at once (WebSocket handshake + Basic
auth + BootNotification) against one gateway process; time until all are Accepted.

Each station has its own random password; the store holds its HMAC fingerprint under the
server's pepper (CSMS_AUTH_PEPPER), as the gateway's own registration writes it (the
scrypt `password_hash` is left empty: the fingerprint path never reads it). The gateway
(bench/gateway_server.py: GatewayService only, memory bus, SQLite, tracing set up as
`csms gateway` does) runs in its own process; the stations are split over --clients
worker processes (this file with --worker), all released at the same instant. A station
answered Pending waits the interval it was given and sends BootNotification again on the
same socket, as real ones do; a refused or failed handshake (429/503/timeout/reset) is
retried after 1-3 s. Latency = from the station's first connect attempt to Accepted.

The client processes share the 2 cores with the server: the server's own CPU
(utime+stime from /proc) is reported separately from the wall-clock figures.

Loopback settings (Settings.extra; every client is 127.0.0.1): upgrade_rate_per_ip and
upgrade_burst_per_ip 1e9 (default 200/s, burst 1000 per address), auth_fail_limit_per_ip
1e9. Boot admission: --boot-rate sets CSMS_BOOT_RATE (default 500/s per pod).

    .venv/bin/python bench/storm.py --stations 10000 --clients 4 --boot-rate 100000
    .venv/bin/python bench/storm.py --stations 10000 --clients 4 --boot-rate 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import selectors
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import (  # noqa: E402
    PY, Server, emit, install_uvloop, listen_overflows, machine, new_pepper, pct, provision, raise_nofile, self_cpu_s, table, workdir,
)

LOOPBACK_EXTRA = {"upgrade_rate_per_ip": 1e9, "upgrade_burst_per_ip": 1e9, "auth_fail_limit_per_ip": 1e9}
BOOT = {"chargePointVendor": "Bench", "chargePointModel": "Storm-1", "chargePointSerialNumber": "SN", "firmwareVersion": "1.2.3"}


# ===================================================================== worker process
class _AiohttpWs:
    """aiohttp's client behind the RawWs interface (--client aiohttp); no deflate offered."""

    def __init__(self, session: Any, ws: Any) -> None:
        self.session, self.ws = session, ws

    @classmethod
    async def connect(cls, session: Any, port: int, sid: str, authorization: str) -> "_AiohttpWs":
        import aiohttp

        from _wsclient import HandshakeError

        try:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/ocpp/{sid}", protocols=("ocpp1.6",),
                                          headers={"Authorization": authorization}, autoping=True, heartbeat=None, compress=0)
        except aiohttp.WSServerHandshakeError as exc:
            raise HandshakeError(exc.status, exc.message) from None
        return cls(session, ws)

    def send_text(self, text: str) -> None:
        asyncio.ensure_future(self.ws.send_str(text))

    async def recv_text(self) -> str:
        import aiohttp

        msg = await self.ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"got {msg.type}")
        return str(msg.data)

    async def close(self) -> None:
        await self.ws.close()


async def _station(sid: str, pw: str, port: int, go: float, deadline: float, kind: str, session: Any, keep: list[Any], sem: asyncio.Semaphore | None) -> list[Any]:
    import orjson

    from _wsclient import HandshakeError, RawWs, basic

    auth = basic(sid, pw)
    if sem is not None:  # client-side ramp (--concurrency): the station starts when it gets a slot
        await sem.acquire()
    t_start = time.monotonic()
    t_conn = t_first = t_acc = None
    first_status = ""
    pendings = retries = 0
    error = ""
    ws: Any = None
    while time.monotonic() < deadline:
        try:
            if ws is None:
                async with asyncio.timeout(30):
                    if kind == "raw":
                        ws = await RawWs.connect("127.0.0.1", port, f"/ocpp/{sid}", protocol="ocpp1.6", authorization=auth)
                    else:
                        ws = await _AiohttpWs.connect(session, port, sid, auth)
                if t_conn is None:
                    t_conn = time.monotonic()
            ws.send_text(orjson.dumps([2, uuid.uuid4().hex[:32], "BootNotification", BOOT]).decode())
            async with asyncio.timeout(90):
                reply = orjson.loads(await ws.recv_text())
            now = time.monotonic()
            if t_first is None:
                t_first = now
            status = reply[2].get("status") if reply[0] == 3 and isinstance(reply[2], dict) else f"CALLERROR {reply[2]}"
            first_status = first_status or status
            if sem is not None:
                sem.release()  # first answer received: the slot goes to the next station
                sem = None
            if status == "Accepted":
                t_acc = now
                keep.append(ws)
                break
            if status == "Pending":
                pendings += 1
                await asyncio.sleep(min(float(reply[2].get("interval") or 10), max(0.0, deadline - time.monotonic())))
                continue
            error = f"boot {status}"
            keep.append(ws)
            break
        except (HandshakeError, OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            retries += 1
            error = f"{type(exc).__name__}: {exc}"[:120]
            if ws is not None:
                try:
                    await ws.close()
                except Exception:
                    pass
                ws = None
            await asyncio.sleep(random.uniform(1.0, 3.0))
    if sem is not None:
        sem.release()
    if t_acc is not None:
        error = ""
    rel = lambda t: None if t is None else round(t - go, 6)  # noqa: E731
    return [sid, rel(t_start), rel(t_conn), rel(t_first), rel(t_acc), first_status, pendings, retries, error]


async def _worker_main(a: argparse.Namespace) -> None:
    creds = [line.split("\t") for line in Path(a.creds).read_text().splitlines()[a.first:a.first + a.count]]
    loop = asyncio.get_running_loop()
    session = None
    if a.client == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))
    print("READY", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    go = float(line.split()[1])
    await asyncio.sleep(max(0.0, go - time.monotonic()))
    keep: list[Any] = []
    deadline = go + a.timeout
    sem = asyncio.Semaphore(a.concurrency) if a.concurrency else None
    rows = await asyncio.gather(*(_station(sid, pw.strip(), a.port, go, deadline, a.client, session, keep, sem) for sid, pw in creds))
    Path(a.out).write_text(json.dumps({"rows": rows, "client_cpu_s": self_cpu_s(), "pid": os.getpid()}))
    print("RESULT", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # CLOSE (or EOF)
    await asyncio.gather(*(ws.close() for ws in keep), return_exceptions=True)
    if session is not None:
        await session.close()


def worker(a: argparse.Namespace) -> None:
    raise_nofile()
    install_uvloop()
    asyncio.run(_worker_main(a))


# ===================================================================== parent process
def run_storm(a: argparse.Namespace, wd: Path) -> dict[str, Any]:
    n = a.stations
    ids = [f"ST-{i:06d}" for i in range(n)]
    pepper = new_pepper()
    t = time.monotonic()
    creds = provision(wd / "csms.db", ids, pepper)
    print(f"provisioned {n} stations in {time.monotonic() - t:.1f}s", file=sys.stderr)
    creds_file = wd / "creds.tsv"
    creds_file.write_text("".join(f"{sid}\t{pw}\n" for sid, pw in creds.items()))
    env = {"CSMS_AUTH_PEPPER": pepper, "CSMS_BOOT_RATE": str(a.boot_rate), "CSMS_GATEWAY_ID": "gateway-0"}
    workers: list[subprocess.Popen[str]] = []
    per = -(-n // a.clients)
    with Server(a.server, wd, env=env, extra=LOOPBACK_EXTRA, tracing=not a.no_tracing, profile=a.profile, log_level=a.log_level, gc=a.server_gc) as server:
        try:
            for i in range(a.clients):
                first = i * per
                cnt = max(0, min(per, n - first))
                cmd = [PY, __file__, "--worker", "--creds", str(creds_file), "--first", str(first), "--count", str(cnt),
                       "--port", str(server.port), "--concurrency", str(a.concurrency), "--timeout", str(a.timeout), "--out", str(wd / f"w{i}.json"), "--client", a.client]
                workers.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True))
            for w in workers:
                if (w.stdout.readline() if w.stdout else "").strip() != "READY":  # type: ignore[union-attr]
                    raise RuntimeError("a client worker failed to start")
            time.sleep(1.0)
            gc0 = server.gc_stats() if a.server == "gateway" else None
            cpu0, rss0, ov0, th0 = server.cpu(), server.rss_kib(), listen_overflows(), server.thread_cpu()
            go = time.monotonic() + 0.5
            for w in workers:
                w.stdin.write(f"GO {go}\n")  # type: ignore[union-attr]
                w.stdin.flush()  # type: ignore[union-attr]
            sel = selectors.DefaultSelector()
            for w in workers:
                sel.register(w.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            done = 0
            samples: list[tuple[float, float]] = []
            hard = go + a.timeout + 60
            while done < len(workers):
                if time.monotonic() > hard:
                    raise TimeoutError("client workers did not report in time")
                for key, _ in sel.select(timeout=0.25):
                    line = key.fileobj.readline()  # type: ignore[union-attr]
                    if line.strip() == "RESULT" or line == "":
                        done += 1
                        sel.unregister(key.fileobj)
                samples.append((time.monotonic() - go, server.cpu() - cpu0))
            t_end = time.monotonic() - go
            cpu1, rss1, ov1, th1 = server.cpu(), server.rss_kib(), listen_overflows(), server.thread_cpu()
            gc1 = server.gc_stats() if a.server == "gateway" else None
            for w in workers:
                try:
                    w.stdin.write("CLOSE\n")  # type: ignore[union-attr]
                    w.stdin.flush()  # type: ignore[union-attr]
                except BrokenPipeError:
                    pass
            for w in workers:
                try:
                    w.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
            time.sleep(2.0)
            cpu2 = server.cpu()
        finally:
            for w in workers:
                if w.poll() is None:
                    os.killpg(w.pid, 9)
                    w.wait()
    rows: list[list[Any]] = []
    client_cpu = 0.0
    for i in range(len(workers)):
        d = json.loads((wd / f"w{i}.json").read_text())
        rows += d["rows"]
        client_cpu += d["client_cpu_s"]
    booted = [r for r in rows if r[4] is not None]
    lat = sorted(r[4] - r[1] for r in booted)
    since_go = sorted(r[4] for r in booted)
    conn_lat = sorted(r[2] - r[1] for r in rows if r[2] is not None)
    accepted_first = sum(1 for r in rows if r[5] == "Accepted")
    pending_first = sum(1 for r in rows if r[5] == "Pending")
    total = max((r[4] for r in booted), default=float("nan"))
    cpu = cpu1 - cpu0
    # peak server CPU utilization over 0.5 s windows
    peak: float | None = None
    for j, (ts, c) in enumerate(samples):
        for k in range(j, len(samples)):
            if samples[k][0] - ts >= 0.5:
                peak = max(peak or 0.0, (samples[k][1] - c) / (samples[k][0] - ts))
                break
    busy_until = next((ts for ts, c in samples if c >= cpu * 0.99), t_end)
    errors: dict[str, int] = {}
    for r in rows:
        if r[8]:
            key = r[8].split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    return {
        "stations": n, "booted": len(booted), "not_booted": n - len(booted), "boot_rate": a.boot_rate, "clients": a.clients,
        "client": a.client, "total_s": round(total, 3),
        "boot_p50_s": round(pct(lat, 50), 3), "boot_p99_s": round(pct(lat, 99), 3), "boot_max_s": round(lat[-1], 3) if lat else None,
        "booted_since_start_p50_s": round(pct(since_go, 50), 3), "booted_since_start_p99_s": round(pct(since_go, 99), 3),
        "concurrency_per_client": a.concurrency,
        "connect_p50_s": round(pct(conn_lat, 50), 3), "connect_p99_s": round(pct(conn_lat, 99), 3),
        "accepted_first": accepted_first, "pending_first": pending_first,
        "pendings_total": sum(r[6] for r in rows), "handshake_retries": sum(r[7] for r in rows),
        "stations_that_retried_handshake": sum(1 for r in rows if r[7]), "errors": errors,
        "server_cpu_s": round(cpu, 2), "server_cpu_s_main_thread": round(th1[0] - th0[0], 2),
        "server_cpu_s_other_threads": round(th1[1] - th0[1], 2),
        "server_gc_s": round(sum(gc1["seconds"]) - sum(gc0["seconds"]), 2) if gc0 and gc1 else None,
        "server_gc_collections": [b - c for b, c in zip(gc1["collections"], gc0["collections"])] if gc0 and gc1 else None,
        "server_gc_s_by_generation": [round(b - c, 3) for b, c in zip(gc1["seconds"], gc0["seconds"])] if gc0 and gc1 else None,
        "server_gc_tracked_objects_after": gc1["tracked_objects"] if gc1 else None, "server_cpu_ms_per_station": round(cpu / n * 1e3, 3),
        "server_cpu_util_mean": round(cpu / t_end, 2) if t_end > 0 else None, "server_cpu_util_peak": None if peak is None else round(peak, 2),
        "server_busy_until_s": round(busy_until, 2),
        "server_rss_before_mib": round(rss0 / 1024, 1), "server_rss_after_mib": round(rss1 / 1024, 1),
        "server_rss_kib_per_station": round((rss1 - rss0) / n, 1),
        "server_cpu_s_disconnect": round(cpu2 - cpu1, 2), "client_cpu_s_total": round(client_cpu, 2),
        "listen_overflows": {k: ov1.get(k, 0) - ov0.get(k, 0) for k in ov1},
    }


def report(rs: list[dict[str, Any]]) -> str:
    return table(
        ["stations", "boot rate/s", "all booted s", "boot p50 s", "boot p99 s", "boot max s", "Pending first", "hs retries",
         "server CPU s", "ms CPU/station", "srv util mean/peak", "RSS before→after MiB", "client CPU s", "not booted"],
        [[r["stations"], r["boot_rate"], r["total_s"], r["boot_p50_s"], r["boot_p99_s"], r["boot_max_s"], r["pending_first"],
          r["handshake_retries"], r["server_cpu_s"], r["server_cpu_ms_per_station"],
          f"{r['server_cpu_util_mean']}/{r['server_cpu_util_peak']}", f"{r['server_rss_before_mib']}→{r['server_rss_after_mib']}",
          r["client_cpu_s_total"], r["not_booted"]] for r in rs],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stations", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=4, help="client worker processes")
    p.add_argument("--boot-rate", type=float, default=500.0, help="CSMS_BOOT_RATE for the server (Accepted boots/s)")
    p.add_argument("--client", choices=["raw", "aiohttp"], default="raw")
    p.add_argument("--server", choices=["gateway", "echo"], default="gateway",
                   help="echo: a bare aiohttp WebSocket server answering every frame with a fixed Accepted (no auth, no store, no bus): the handshake floor")
    p.add_argument("--timeout", type=float, default=180.0, help="per-station deadline (s after the start)")
    p.add_argument("--concurrency", type=int, default=0,
                   help="per client process, stations between first connect attempt and first boot answer (0 = all at once); "
                        "latency then counts from when a station got its slot, like a ramped load generator")
    p.add_argument("--log-level", default="INFO", help="server CSMS log level (production default INFO)")
    p.add_argument("--server-gc", choices=["default", "off", "freeze"], default="default",
                   help="diagnostics: server cyclic GC off, or frozen after start-up with gen0 threshold 50,000")
    p.add_argument("--no-tracing", action="store_true")
    p.add_argument("--profile", help="run the server under py-spy (raw collapsed stacks to this file)")
    p.add_argument("--keep")
    p.add_argument("--json-out")
    # worker mode
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--creds", help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a)
        return
    raise_nofile()
    tmp = workdir("csms-storm-", a.keep)
    wd = tmp if isinstance(tmp, Path) else Path(tmp.name)
    try:
        r = run_storm(a, wd)
        (wd / "storm-result.json").write_text(json.dumps(r))
    finally:
        if not isinstance(tmp, Path):
            tmp.cleanup()
    print(f"\nstorm ({a.server} server): {a.stations} stations, {a.clients} client processes ({a.client}), CSMS_BOOT_RATE={a.boot_rate:g}; "
          "clients and server share the machine's cores; server CPU is its own utime+stime")
    print(report([r]))
    emit({"bench": "storm", "server": a.server, **r, "extra": LOOPBACK_EXTRA, "tracing": not a.no_tracing,
          "server_gc": a.server_gc, "log_level": a.log_level, "machine": machine(),
          "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}, a.json_out)


if __name__ == "__main__":
    main()

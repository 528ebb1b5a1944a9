"""Server memory per idle, booted connection (process RSS only; no tracemalloc in the server).

The gateway (bench/gateway_server.py: GatewayService only, memory bus with small
retention, SQLite) runs in its own process. This process opens authenticated 1.6
connections in batches (--batch at a time: a reconnect wave, not a storm), each sends
BootNotification and then stays idle. At each level (0, then each --levels value) after
--settle seconds the server's VmRSS is read, then again after SIGUSR1 (the launcher runs
gc.collect() + malloc_trim(0)), which separates allocator slack from live memory.

KiB per connection = (RSS at N - RSS at 0) / N, and marginal = between the last two
levels (excludes one-time costs: lazily built schemas, first-use imports, caches).
Kernel socket buffers are not in RSS. Clients offer no permessage-deflate (a station
that sends compressed frames costs ~40 KiB more: aiohttp keeps a zlib inflate window).
Loopback settings: CSMS_UPGRADE_RATE_PER_IP/CSMS_UPGRADE_BURST_PER_IP 1e9; CSMS_BOOT_RATE 100000.

Keepalive (ADR 017): `--ping-interval S` sets the server's CSMS_WS_PING_INTERVAL_S (0 = off;
default: the server's own, 60 s, which never fires within a run); when it is set above 0
every client also reads its socket (one reader task per client, in this process) and
answers the pings, so the server's timer, ping and liveness flag are all in use while RSS
is read. An A/B of the keepalive's memory: `--ping-interval 0` against `--ping-interval 1`.

    .venv/bin/python bench/idle_memory.py --levels 2000,5000
    .venv/bin/python bench/idle_memory.py --levels 2000,5000 --ping-interval 1
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402

from _util import Server, emit, install_uvloop, machine, new_pepper, provision, raise_nofile, table, workdir  # noqa: E402
from _wsclient import RawWs, basic  # noqa: E402

GOAL_KIB = 16.0
LOOPBACK_ENV = {"CSMS_UPGRADE_RATE_PER_IP": "1e9", "CSMS_UPGRADE_BURST_PER_IP": "1e9"}
BOOT = {"chargePointVendor": "Bench", "chargePointModel": "Idle-1", "chargePointSerialNumber": "SN", "firmwareVersion": "1.2.3"}


async def open_booted(port: int, sid: str, pw: str) -> RawWs:
    ws = await RawWs.connect("127.0.0.1", port, f"/ocpp/{sid}", protocol="ocpp1.6", authorization=basic(sid, pw))
    ws.send_text(orjson.dumps([2, uuid.uuid4().hex[:32], "BootNotification", BOOT]).decode())
    reply = orjson.loads(await ws.recv_text())
    if reply[0] != 3 or reply[2].get("status") != "Accepted":
        raise RuntimeError(f"{sid}: boot answered {reply}")
    return ws


async def answer_pings(ws: RawWs) -> None:
    """Read the socket for as long as it is open: `recv_text` answers pings (nothing else is sent)."""
    try:
        while True:
            await ws.recv_text()
    except (ConnectionError, asyncio.IncompleteReadError, OSError):
        pass


async def measure(server: Server, settle: float) -> tuple[int, int]:
    await asyncio.sleep(settle)
    raw = server.rss_kib()
    server.signal(signal.SIGUSR1)
    await asyncio.sleep(1.0)
    return raw, server.rss_kib()


async def amain(a: argparse.Namespace, wd: Path) -> dict[str, Any]:
    levels = sorted(int(x) for x in a.levels.split(","))
    ids = [f"IM-{i:06d}" for i in range(levels[-1])]
    pepper = new_pepper()
    creds = provision(wd / "csms.db", ids, pepper)
    env = {"CSMS_AUTH_PEPPER": pepper, "CSMS_BOOT_RATE": "100000", "CSMS_GATEWAY_ID": "gateway-0"}
    if a.ping_interval is not None:
        env["CSMS_WS_PING_INTERVAL_S"] = str(a.ping_interval)
    readers: list[asyncio.Task[None]] = []
    points: list[dict[str, Any]] = []
    with Server(a.server, wd, env={**env, **LOOPBACK_ENV}, log_level=a.log_level) as server:
        raw0, trim0 = await measure(server, a.settle)
        points.append({"connections": 0, "rss_kib": raw0, "rss_trimmed_kib": trim0})
        print(f"  0 connections: RSS {raw0} KiB ({trim0} after gc+trim)", file=sys.stderr)
        conns: list[RawWs] = []
        for level in levels:
            while len(conns) < level:
                batch = ids[len(conns):min(level, len(conns) + a.batch)]
                opened = await asyncio.gather(*(open_booted(server.port, sid, creds[sid]) for sid in batch))
                conns += opened
                if a.ping_interval:
                    readers += [asyncio.create_task(answer_pings(c)) for c in opened]
            raw, trim = await measure(server, a.settle)
            if a.ping_interval:
                # every connection still open: none was closed for a missing pong
                alive = sum(not t.done() for t in readers)
                if alive != level:
                    raise RuntimeError(f"{level - alive} of {level} connections closed by the server")
            points.append({"connections": level, "rss_kib": raw, "rss_trimmed_kib": trim,
                           "kib_per_conn": round((raw - raw0) / level, 1), "kib_per_conn_trimmed": round((trim - trim0) / level, 1)})
            print(f"  {level} connections: RSS {raw} KiB ({trim} after gc+trim)", file=sys.stderr)
        a0, a1 = points[-2], points[-1]
        marginal = round((a1["rss_kib"] - a0["rss_kib"]) / (a1["connections"] - a0["connections"]), 1)
        marginal_t = round((a1["rss_trimmed_kib"] - a0["rss_trimmed_kib"]) / (a1["connections"] - a0["connections"]), 1)
        for t in readers:
            t.cancel()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        await asyncio.sleep(1.0)
    return {"bench": "idle_memory", "server": a.server, "goal_kib": GOAL_KIB, "points": points, "marginal_kib_per_conn": marginal,
            "marginal_kib_per_conn_trimmed": marginal_t, "marginal_between": [a0["connections"], a1["connections"]],
            "batch": a.batch, "loopback_env": LOOPBACK_ENV, "ping_interval_s": a.ping_interval}


def report(r: dict[str, Any]) -> str:
    rows = []
    for p in r["points"]:
        rows.append([p["connections"], round(p["rss_kib"] / 1024, 1), round(p["rss_trimmed_kib"] / 1024, 1),
                     p.get("kib_per_conn", float("nan")), p.get("kib_per_conn_trimmed", float("nan")),
                     f"{p['kib_per_conn'] / GOAL_KIB:.2f}x" if "kib_per_conn" in p else "-"])
    lo, hi = r["marginal_between"]
    rows.append([f"marginal {lo}→{hi}", "", "", r["marginal_kib_per_conn"], r["marginal_kib_per_conn_trimmed"],
                 f"{r['marginal_kib_per_conn'] / GOAL_KIB:.2f}x"])
    return table(["idle connections", "RSS MiB", "RSS MiB (gc+trim)", "KiB/conn", "KiB/conn (gc+trim)", "vs 16 KiB goal"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="2000,5000", help="comma-separated connection counts (at least one)")
    p.add_argument("--batch", type=int, default=250, help="connections opened at a time")
    p.add_argument("--settle", type=float, default=3.0, help="seconds idle before reading RSS")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--server", choices=["gateway", "echo"], default="gateway",
                   help="echo: a bare aiohttp WebSocket server (the transport's own memory per connection)")
    p.add_argument("--ping-interval", type=float, default=None,
                   help="server CSMS_WS_PING_INTERVAL_S (0 = off); above 0 the clients answer the pings")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--keep")
    p.add_argument("--json-out")
    a = p.parse_args()
    raise_nofile()
    install_uvloop()
    tmp = workdir("csms-idle-", a.keep)
    wd = tmp if isinstance(tmp, Path) else Path(tmp.name)

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(a.timeout):
            return await amain(a, wd)

    try:
        r = asyncio.run(bounded())
    finally:
        if not isinstance(tmp, Path):
            tmp.cleanup()
    pings = "server default" if a.ping_interval is None else (f"every {a.ping_interval:g} s" if a.ping_interval else "off")
    print(f"\nidle memory ({a.server} server, pings {pings}): server VmRSS with N idle, booted 1.6 connections (opened {a.batch} at a time)")
    print(report(r))
    emit({**r, "machine": machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}, a.json_out)


if __name__ == "__main__":
    main()

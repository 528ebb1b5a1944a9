"""Embedded mode end to end: `csms run` (memory bus + SQLite, every service in one process).

What a user gets from `make run`. This process starts a real `csms run` (temporary SQLite
file and state directory, free ports), registers N stations, an id token and a default
tariff through the REST API, then drives N OCPP 1.6 stations with raw frames (the same
station model as bench/pipeline.py: one transaction each; MeterValues with 4 sampled values,
of every 20 calls one StatusNotification and one Heartbeat; one call outstanding at a time):

  setup  connect, boot, StartTransaction; wait until every consumer group's lag is 0.
  load   R calls/s per station for D s; then wait until every consumer group's lag is 0
         again ("drain"). The CPU spent draining belongs to the load.
  stop   StopTransaction, Available, close; drain; every session must have its CDR.

The figure is the WHOLE process's CPU (utime+stime from /proc, all threads: gateway,
sessions, billing, smart charging, API) per OCPP call of the load phase, drain included.
Lag: `csms_bus_consumer_lag_records` of the group consumers on the process's /metrics.
Store bytes: growth of the SQLite file (+ WAL) during the load, per MeterValues.
Flat-in-length: whole-process CPU per sessions record over the first 10 % vs the last 10 %
of the load's records (stations advance in step, so record order ~ sample index).

    .venv/bin/python bench/embedded.py                                   # 500 stations, 2 calls/s, 35 s
    .venv/bin/python bench/embedded.py --stations 20 --rate 20 --duration 110   # ~2,000 samples per session
    .venv/bin/python bench/embedded.py --csms-root /path/to/other/checkout     # another checkout's csms

Writes its section of bench/RESULTS.md (between markers, one row per --label; --no-results
to skip) and prints a JSON line. Not part of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402

import pipeline as pl  # noqa: E402
from _util import BENCH, ROOT, command_line, install_uvloop, machine, pct, proc_cpu_s, raise_nofile, table  # noqa: E402

GOAL_MS_PER_CALL = 0.25
MARK_BEGIN, MARK_END = "<!-- embedded:begin -->", "<!-- embedded:end -->"
log = pl.log


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


async def lags(http: aiohttp.ClientSession, role: pl.Role) -> dict[str, float]:
    m = await pl.scrape(http, role)
    out: dict[str, float] = {}
    for labels, v in m.get("csms_bus_consumer_lag_records", []):
        if labels.get("group"):
            key = f"{labels['group']} <- {labels.get('topic', '')}"
            out[key] = out.get(key, 0.0) + v
    return out


async def drain(http: aiohttp.ClientSession, role: pl.Role, timeout: float) -> tuple[float | None, dict[str, float]]:
    t0 = time.monotonic()
    streak = 0
    last: dict[str, float] = {}
    while True:
        try:
            last = await lags(http, role)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log(f"metrics scrape failed: {exc!r}")
            last = {}
        if last and all(v == 0 for v in last.values()):
            streak += 1
            if streak >= 2:
                return time.monotonic() - t0, last
        else:
            streak = 0
        if time.monotonic() - t0 > timeout:
            return None, last
        await asyncio.sleep(0.25)


def sessions_records(m: dict[str, list[tuple[dict[str, str], float]]]) -> float:
    return sum(v for labels, v in m.get("csms_bus_records_consumed_total", [])
               if "sessions" in labels.get("group", "") and labels.get("topic", "").endswith("csms.events.v1"))


async def sampler(http: aiohttp.ClientSession, role: pl.Role, every: float, out: list[tuple[float, float]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            m = await pl.scrape(http, role)
            out.append((sessions_records(m), role.cpu()))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            pass
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass


async def count_cdrs(http: aiohttp.ClientSession, api: str, key: str) -> int:
    h = {"Authorization": f"Bearer {key}"}
    async with http.get(f"{api}/api/v1/cdrs?limit=1000", headers=h, timeout=aiohttp.ClientTimeout(total=60)) as r:
        body = await r.json()
    items = body.get("items", body) if isinstance(body, dict) else body
    return len(items)


async def run(a: argparse.Namespace, role: pl.Role, api_port: int, ocpp_port: int, key: str, db: Path) -> dict[str, Any]:
    api = f"http://127.0.0.1:{api_port}"
    res: dict[str, Any] = {"stations": a.stations, "rate_per_station": a.rate, "duration_s": a.duration}
    async with aiohttp.ClientSession() as http:
        await pl.wait_ready(http, {"run": role}, timeout=120)
        stations = [pl.Station(f"EMB{i:05d}", secrets.token_hex(16)) for i in range(a.stations)]
        await pl.register(http, api, key, stations)
        log(f"setup: {a.stations} stations connect, boot, start a transaction")
        r = await pl.gather_bounded(50, [pl.setup_station(s, ocpp_port, a.power_w) for s in stations])
        if any(isinstance(x, BaseException) for x in r):
            raise RuntimeError(f"setup failed: {pl.first_errors(r)}")
        d, lg = await drain(http, role, max(a.drain_timeout, 120))
        if d is None:
            raise RuntimeError(f"setup did not drain: {lg}")
        await asyncio.sleep(1.0)

        stats = pl.LoadStats()
        timeline: list[tuple[float, float]] = []
        stop = asyncio.Event()
        b0, c0 = db_bytes(db), role.cpu()
        samp = asyncio.create_task(sampler(http, role, a.sample_interval, timeline, stop))
        log(f"load: {a.stations} stations x {a.rate:g} calls/s for {a.duration:g} s")
        wall = await pl.drive(stations, a.rate, a.duration, a.power_w, stats)
        c1 = role.cpu()
        log(f"load sent in {wall:.1f} s; draining")
        d_load, lg = await drain(http, role, a.drain_timeout)
        c2 = role.cpu()
        stop.set()
        await samp
        b1 = db_bytes(db)
        log("drained" if d_load is not None else f"NOT drained after {a.drain_timeout:.0f} s: {lg}")

        calls = {k: len(v) for k, v in stats.lat.items()}
        n = sum(calls.values())
        lat = sorted(x for v in stats.lat.values() for x in v)
        mv = calls.get("MeterValues", 0)
        res.update({
            "calls": n, "calls_by_action": calls, "errors": stats.errors, "first_error": stats.first_error, "late": stats.late,
            "load_wall_s": round(wall, 2), "calls_per_s": round(n / wall, 1) if wall else None,
            "cpu_load_s": round(c1 - c0, 3), "cpu_drain_s": round(c2 - c1, 3), "drain_s": None if d_load is None else round(d_load, 2),
            "ms_cpu_per_call": round((c2 - c0) / n * 1e3, 4) if n else None,
            "p50_ms": round(pct(lat, 50) * 1e3, 2) if lat else None, "p99_ms": round(pct(lat, 99) * 1e3, 2) if lat else None,
            "store_bytes_per_meter_values": round((b1 - b0) / mv, 1) if mv else None,
            "samples_per_session_end": round(mv / a.stations) if a.stations else 0,
            "flat": pl.flat_check(timeline),
            "lags_at_end": lg,
        })

        if d_load is not None:
            log("stop: StopTransaction, Available, close")
            r = await pl.gather_bounded(50, [pl.stop_station(s, a.power_w) for s in stations])
            d_stop, lg = await drain(http, role, a.drain_timeout)
            await asyncio.sleep(1.0)
            cdrs = await count_cdrs(http, api, key)
            res["stop"] = {"failed": sum(isinstance(x, BaseException) for x in r), "drain_s": d_stop, "cdrs": cdrs,
                           "missing_cdrs": max(0, a.stations - cdrs)}
    return res


def report(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    head = ["run", "stations x calls/s x s", "calls", "calls/s", "ms CPU/call (drain incl.)", f"vs {GOAL_MS_PER_CALL} ms goal",
            "drain s", "p50 / p99 ms", "store bytes per MeterValues", "samples/session", "flat: last/first 10 %", "CDRs missing", "errors"]
    body = []
    for r in rows:
        f = r.get("flat") or {}
        ms = r.get("ms_cpu_per_call")
        body.append([
            r.get("label", ""), f"{r['stations']} x {r['rate_per_station']:g} x {r['duration_s']:g}", f"{r.get('calls', 0):,}",
            r.get("calls_per_s"), ms, f"{ms / GOAL_MS_PER_CALL:.2f}x" if ms else "-",
            r.get("drain_s") if r.get("drain_s") is not None else "NOT drained",
            f"{r.get('p50_ms')} / {r.get('p99_ms')}", r.get("store_bytes_per_meter_values"), r.get("samples_per_session_end"),
            (f.get("ratio_last_to_first", "-") if (r.get("drain_s") or 0) <= 10
             else f"n/a (behind: {f.get('ratio_last_to_first', '-')})"), (r.get("stop") or {}).get("missing_cdrs", "-"), r.get("errors"),
        ])
    m = meta["machine"]
    lines = [
        "## Embedded (`csms run`: memory bus + SQLite, one process)",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {meta['mem_gib']} GiB, Python {m['python']}. Whole-process CPU (utime+stime from /proc) per OCPP call of the load, "
        "including the drain until every consumer group's lag is 0. Goal: 0.25 ms per call; flat in session length (ratio ≤ 1.2). "
        "The flat ratio compares whole-process CPU per sessions record over the first and last 10 % of the records; it is "
        "only meaningful when the processors keep up (drain ≤ 10 s): a processor that falls behind consumes the early "
        "records while the gateway's CPU for later calls is being spent.",
        "",
        table(head, body),
        "",
    ]
    for r in rows:
        lines.append(f"- {r.get('label', '')}: `{r.get('command', '')}` ({r.get('started', '')} UTC, commit {r.get('commit', '?')})")
    return "\n".join(lines)


def write_results(path: Path, row: dict[str, Any], meta: dict[str, Any]) -> None:
    """Keep one row per label in a JSON sidecar and rebuild the section between the markers."""
    store = BENCH / "results" / "embedded.json"
    store.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(store.read_text()) if store.exists() else []
    rows = [r for r in rows if r.get("label") != row.get("label")] + [row]
    store.write_text(json.dumps(rows, indent=1, default=str))
    section = f"{MARK_BEGIN}\n{report(rows, meta)}\n{MARK_END}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if MARK_BEGIN in text and MARK_END in text:
        pre, rest = text.split(MARK_BEGIN, 1)
        _, post = rest.split(MARK_END, 1)
        text = pre + section + post
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stations", type=int, default=500)
    p.add_argument("--rate", type=float, default=2.0, help="calls per second per station (the gateway allows 20)")
    p.add_argument("--duration", type=float, default=35.0)
    p.add_argument("--power-w", type=float, default=11_000.0)
    p.add_argument("--drain-timeout", type=float, default=300.0)
    p.add_argument("--sample-interval", type=float, default=0.5)
    p.add_argument("--csms-root", default=str(ROOT), help="checkout whose .venv/bin/csms runs (default: this one)")
    p.add_argument("--label", default="", help="row name in RESULTS.md (default: derived from the sizes)")
    p.add_argument("--results", default=str(BENCH / "RESULTS.md"))
    p.add_argument("--no-results", action="store_true")
    p.add_argument("--json-out")
    a = p.parse_args()
    if not 0 < a.rate <= 20:
        p.error("--rate must be in (0, 20]")
    csms = Path(a.csms_root) / ".venv" / "bin" / "csms"
    if not csms.exists():
        print(f"{csms} missing; run `make setup` there", file=sys.stderr)
        return 2
    raise_nofile()
    install_uvloop()
    work = Path(tempfile.mkdtemp(prefix="csms-embedded-"))
    db = work / "csms.db"
    key = "bench-" + uuid.uuid4().hex
    api_port, ocpp_port = pl.free_port(), pl.free_port()
    env = dict(os.environ)
    env.update({
        "CSMS_BUS_URL": "memory://", "CSMS_STORE_URL": f"sqlite:///{db}", "CSMS_STATE_DIR": str(work / "state"),
        "CSMS_API_KEY": key, "CSMS_AUTH_PEPPER": "bench-embedded-pepper", "CSMS_HOST": "127.0.0.1",
        "CSMS_OCPP_PORT": str(ocpp_port), "CSMS_API_PORT": str(api_port), "CSMS_LOG_LEVEL": "INFO",
        "CSMS_BOOT_RATE": "100000",
    })
    pl.CSMS = str(csms)
    role = pl.Role("run", env, api_port, work / "run.log")
    started = datetime.now(timezone.utc)
    signal.signal(signal.SIGTERM, pl._on_sigterm)
    rc = 1
    try:
        role.start()
        res = asyncio.run(run(a, role, api_port, ocpp_port, key, db))
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=a.csms_root, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "services"], capture_output=True, text=True, cwd=a.csms_root, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            commit, dirty = "?", ""
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        meta = {"machine": machine(), "mem_gib": mem_gib}
        res.update({"label": a.label or f"{a.stations} x {a.rate:g}/s x {a.duration:g} s", "command": command_line(),
                    "started": started.strftime("%Y-%m-%d %H:%M"), "commit": commit + (" (services/ modified)" if dirty else "")})
        print(json.dumps(res, default=str), flush=True)
        print("\n" + report([res], meta) + "\n", flush=True)
        if a.json_out:
            Path(a.json_out).write_text(json.dumps(res, default=str))
        if not a.no_results:
            write_results(Path(a.results), res, meta)
        rc = 0 if res.get("drain_s") is not None and not res.get("errors") else 1
    except Exception as exc:  # noqa: BLE001
        log(f"FAILED: {type(exc).__name__}: {exc}\n--- csms run log tail ---\n{role.tail(40)}")
    finally:
        role.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())

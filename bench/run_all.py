"""Run the benchmarks (gateway percall, storm, idle memory; the embedded system) and write bench/RESULTS.md.

    .venv/bin/python bench/run_all.py           # modest sizes (`make bench`, a few minutes)
    .venv/bin/python bench/run_all.py --full    # the target sizes (10,000-station storms; ~10 min)

Each benchmark runs as its own process (which starts and stops its own gateway process);
its JSON result is collected and RESULTS.md is rebuilt from all of them, with the exact
commands, the date and the machine. Not part of the product.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import BENCH, PY, ROOT, machine, table  # noqa: E402

PERCALL_GOAL_US = 100.0
STORM_GOAL_S, STORM_P99_GOAL_S = 5.0, 1.0
IDLE_GOAL_KIB = 16.0
# Sections of RESULTS.md written by the scripts themselves (kept when run_all rewrites the file).
KEPT_SECTIONS = ("embedded", "pipeline", "gateway-kafka", "storm")


def plan(full: bool) -> list[tuple[str, list[str], float]]:
    """(key, argv after the interpreter, timeout s)."""
    if full:
        return [
            ("percall", ["bench/percall.py", "--connections", "50", "--calls", "1000", "--probe", "500"], 900),
            ("storm_10k_fast", ["bench/storm.py", "--stations", "10000", "--boot-rate", "100000"], 600),
            ("storm_10k_default", ["bench/storm.py", "--stations", "10000", "--boot-rate", "500", "--timeout", "200"], 600),
            ("storm_2k_fast", ["bench/storm.py", "--stations", "2000", "--boot-rate", "100000"], 300),
            ("storm_5k_fast", ["bench/storm.py", "--stations", "5000", "--boot-rate", "100000"], 300),
            ("storm_10k_ramped", ["bench/storm.py", "--stations", "10000", "--boot-rate", "100000", "--concurrency", "250"], 600),
            ("storm_10k_echo", ["bench/storm.py", "--stations", "10000", "--server", "echo"], 300),
            # issue 8's storm against `csms run` (writes its own section, between the storm markers)
            ("issue8_storm_run", ["bench/storm.py", "--server", "run", "--stations", "10000", "--timeout", "240",
                                  "--label", "after: 10,000 stations, 100 addresses"], 900),
            ("idle", ["bench/idle_memory.py", "--levels", "2000,5000"], 600),
            # the whole embedded system (`csms run`), writes its own section
            ("embedded", ["bench/embedded.py", "--stations", "500", "--rate", "2", "--duration", "35",
                          "--label", "500 stations x 2 calls/s x 35 s"], 1200),
            ("embedded_long", ["bench/embedded.py", "--stations", "20", "--rate", "18", "--duration", "120",
                               "--label", "long sessions: 20 stations x 18 calls/s x 120 s"], 1200),
            ("idle_echo", ["bench/idle_memory.py", "--levels", "2000,5000", "--server", "echo"], 600),
            # diagnostics: what each figure is made of (one factor changed at a time)
            ("diag_percall_no_tracing", ["bench/percall.py", "--connections", "50", "--calls", "1000", "--probe", "0", "--no-echo", "--no-tracing"], 600),
            ("diag_percall_no_tariff", ["bench/percall.py", "--connections", "50", "--calls", "1000", "--probe", "0", "--no-echo",
                                        "--no-tariff", "--only", "TransactionEvent"], 600),
            ("diag_storm_10k_gc_freeze", ["bench/storm.py", "--stations", "10000", "--boot-rate", "100000", "--server-gc", "freeze"], 600),
            ("diag_storm_10k_gc_off", ["bench/storm.py", "--stations", "10000", "--boot-rate", "100000", "--server-gc", "off"], 600),
            ("diag_storm_10k_no_tracing_warning", ["bench/storm.py", "--stations", "10000", "--boot-rate", "100000", "--no-tracing",
                                                   "--log-level", "WARNING"], 600),
        ]
    return [
        ("percall", ["bench/percall.py", "--connections", "20", "--calls", "300", "--probe", "200"], 600),
        ("storm_2k_fast", ["bench/storm.py", "--stations", "2000", "--boot-rate", "100000"], 300),
        ("storm_2k_default", ["bench/storm.py", "--stations", "2000", "--boot-rate", "500", "--timeout", "120"], 300),
        ("storm_2k_echo", ["bench/storm.py", "--stations", "2000", "--server", "echo"], 300),
        ("issue8_storm_run", ["bench/storm.py", "--server", "run", "--stations", "2000", "--timeout", "120",
                              "--label", "2,000 stations, 100 addresses"], 600),
        ("idle", ["bench/idle_memory.py", "--levels", "1000,2000"], 300),
        ("embedded", ["bench/embedded.py", "--stations", "500", "--rate", "2", "--duration", "35",
                      "--label", "500 stations x 2 calls/s x 35 s"], 1200),
        ("idle_echo", ["bench/idle_memory.py", "--levels", "1000,2000", "--server", "echo"], 300),
    ]


def run(key: str, argv: list[str], timeout: float, out_dir: Path) -> dict[str, Any] | None:
    out = out_dir / f"{key}.json"
    cmd = [PY, *argv, "--json-out", str(out)]
    print(f"\n=== {key}: {' '.join(argv)}", flush=True)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, timeout=timeout, text=True, capture_output=True)
    except subprocess.TimeoutExpired:
        print(f"    TIMEOUT after {timeout:.0f}s", flush=True)
        return None
    body = [line for line in proc.stdout.splitlines() if not line.startswith("JSON ")]
    print("\n".join(body[-12:]), flush=True)
    if proc.returncode != 0 or not out.exists():
        print(f"    FAILED (exit {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
        return None
    res = json.loads(out.read_text())
    res["_elapsed_s"] = round(time.monotonic() - t0, 1)
    return res


# -- RESULTS.md ------------------------------------------------------------------------
def _cmd(r: dict[str, Any]) -> str:
    """The command as run, without the --json-out run_all added."""
    words = r["command"].split()
    if "--json-out" in words:
        i = words.index("--json-out")
        del words[i:i + 2]
    return " ".join(words)


def _percall(r: dict[str, Any]) -> str:
    rows = []
    for name, t in r["gateway"]["types"].items():
        u = t.get("unloaded", {})
        rows.append([name, t["cpu_us_per_call"], f"{t['cpu_us_per_call'] / PERCALL_GOAL_US:.2f}x", t["calls_per_core_s"],
                     t["p50_ms"], t["p99_ms"], u.get("p50_ms", "-"), u.get("p99_ms", "-"), t["server_util"], t["errors"]])
    e = r.get("transport_floor")
    if e:
        u = e.get("unloaded", {})
        rows.append(["transport floor: bare aiohttp echo", e["cpu_us_per_call"], f"{e['cpu_us_per_call'] / PERCALL_GOAL_US:.2f}x",
                     e["calls_per_core_s"], e["p50_ms"], e["p99_ms"], u.get("p50_ms", "-"), u.get("p99_ms", "-"), e["server_util"], e["errors"]])
    k = r["connections"]
    return table(["message", "server µs CPU/call", "vs 100 µs goal", "calls per core-second", f"p50 ms (K={k})", f"p99 ms (K={k})",
                  "p50 ms (K=1)", "p99 ms (K=1)", "server CPU util", "errors"], rows)


def _storm(rs: list[tuple[str, dict[str, Any]]]) -> str:
    rows = []
    for key, r in rs:
        label = ("echo floor" if r.get("server") == "echo" else f"gateway, boot rate {r['boot_rate']:g}/s")
        if r.get("server_gc", "default") != "default":
            label += f", GC {r['server_gc']}"
        if r.get("server") != "echo" and not r.get("tracing", True):
            label += ", no tracing"
        if r.get("log_level", "INFO") != "INFO":
            label += f", log {r['log_level']}"
        if r.get("concurrency_per_client"):
            label += f", ramped ({r['concurrency_per_client'] * r['clients']} in flight)"
        rows.append([label, r["stations"], r["total_s"], r["boot_p50_s"], r["boot_p99_s"], r["boot_max_s"], r["pending_first"],
                     r["handshake_retries"], r["server_cpu_s"], r["server_cpu_ms_per_station"],
                     f"{r['server_cpu_util_mean']} / {r['server_cpu_util_peak']}",
                     f"{r['server_rss_before_mib']} → {r['server_rss_after_mib']}", r["client_cpu_s_total"],
                     r["listen_overflows"].get("ListenOverflows", "-"), r["not_booted"]])
        rows[-1][9:9] = [r.get("server_gc_s") if r.get("server_gc_s") is not None else "-"]
    return table(["run", "stations", "all booted (s)", "boot p50 (s)", "boot p99 (s)", "boot max (s)", "Pending first",
                  "handshake retries", "server CPU (s)", "of which cyclic GC (s)", "server ms CPU/station", "server CPU util mean / peak",
                  "server RSS MiB before → after", "client CPU (s, 4 procs)", "SYNs dropped (listen overflow)", "not booted"], rows)


def _idle(rs: list[tuple[str, dict[str, Any]]]) -> str:
    rows = []
    for key, r in rs:
        name = "gateway" if r.get("server", "gateway") == "gateway" else "echo floor (bare aiohttp)"
        for p in r["points"][1:]:
            rows.append([name, p["connections"], round(r["points"][0]["rss_kib"] / 1024, 1), round(p["rss_kib"] / 1024, 1),
                         p["kib_per_conn"], p["kib_per_conn_trimmed"], f"{p['kib_per_conn'] / IDLE_GOAL_KIB:.2f}x"])
        lo, hi = r["marginal_between"]
        rows.append([name, f"marginal {lo}→{hi}", "", "", r["marginal_kib_per_conn"], r["marginal_kib_per_conn_trimmed"],
                     f"{r['marginal_kib_per_conn'] / IDLE_GOAL_KIB:.2f}x"])
    return table(["server", "idle connections", "RSS at 0 (MiB)", "RSS at N (MiB)", "KiB/conn", "KiB/conn after gc+malloc_trim",
                  "vs 16 KiB goal"], rows)


def git_meta() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"), "services_dirty": bool(git("status", "--porcelain", "services")),
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def write_results(results: dict[str, dict[str, Any]], full: bool, path: Path, meta: dict[str, Any] | None = None) -> None:
    m = machine()
    meta = meta or {}
    date = meta.get("started") or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    code = (f" Code: commit {meta['commit']}" + (" with local changes under services/" if meta.get("services_dirty") else
            " (services/ unmodified)") + ".") if meta.get("commit") else ""
    lines = [
        "# Gateway benchmark results",
        "",
        f"Generated by `{' '.join([Path(PY).relative_to(ROOT).as_posix() if PY.startswith(str(ROOT)) else PY, 'bench/run_all.py', *(['--full'] if full else [])])}` "
        f"(run started {date}).{code} Machine: {m['nproc']} cores ({m['cpu']}), Python {m['python']}, Linux {m['kernel']}, "
        f"RLIMIT_NOFILE {m['nofile']}. The machine is shared and noisy: CPU time (utime+stime of the server "
        "process from /proc) is the primary figure, wall-clock figures are indicative.",
        "",
        "Server under test: `bench/gateway_server.py` = `GatewayService` alone on the memory bus "
        "(ack = in-process append) and SQLite, with logging (INFO) and the OpenTelemetry SDK provider set up "
        "as `csms gateway` does, uvloop. Loopback tunables set through their variables because every client "
        "shares 127.0.0.1: `CSMS_UPGRADE_RATE_PER_IP`/`CSMS_UPGRADE_BURST_PER_IP` "
        "1e9 (default 200/s, burst 1000 per address), and for percall "
        "`CSMS_MSG_RATE_PER_S`/`CSMS_MSG_BURST` 1e9 (default 20 CALLs/s per connection). Clients: `bench/_wsclient.py`, a "
        "minimal asyncio WebSocket client (no permessage-deflate) so that the load generator costs little "
        "of the 2 cores it shares with the server. Stations: each with its own random password and its "
        "HMAC fingerprint under the server's `CSMS_AUTH_PEPPER` (no scrypt hash stored; the fingerprint "
        "path never reads it).",
        "",
        "Goals: ≤ 0.1 ms server CPU per call; 10,000 authenticated stations booted in ≤ 5 s with boot "
        "p99 ≤ 1 s; ≤ 16 KiB per idle connection. See bench/README.md for what limits each figure.",
        "",
    ]
    if "percall" in results:
        r = results["percall"]
        lines += [
            "## Per call (server CPU per OCPP call, end to end in the gateway)",
            "",
            f"`{_cmd(r)}` (`run_all.py` also passes `--json-out <tmp file>`.)",
            "",
            f"K={r['connections']} connections × M={r['calls_per_connection']} calls per type, one outstanding call per "
            f"connection; tariff for running cost: {r['tariff']}; 2.0.1 connections sent TransactionEvent Started first. "
            "p50/p99 at K are client-observed under full load (mostly queueing: K calls in flight); K=1 is unloaded.",
            "",
            _percall(r),
            "",
        ]
    storms = [(k, v) for k, v in results.items() if k.startswith("storm") or k.startswith("diag_storm")]
    if storms:
        lines += [
            "## Reconnect storm (handshake + Basic auth + BootNotification Accepted)",
            "",
            "All stations of a run start at the same instant, split over 4 client processes that share the 2 "
            "cores with the server (client CPU shown separately). Boot latency = from a station's first connect "
            "attempt to its Accepted; a station answered Pending waits the interval it was given (10–60 s, "
            "jittered by the server) and boots again on the same socket. Ramped (`--concurrency C`): each client "
            "process lets at most C stations be between first connect attempt and first boot answer (latency "
            "counted from when a station gets its slot), the way a load generator with a concurrency limit measures.",
            "(`run_all.py` also passes `--json-out <tmp file>`.)",
            "",
            *[f"- `{_cmd(v)}`" for _, v in storms],
            "",
            _storm(storms),
            "",
        ]
    idles = [(k, v) for k, v in results.items() if k.startswith("idle")]
    if idles:
        lines += [
            "## Memory per idle connection (server VmRSS only)",
            "",
            *[f"- `{_cmd(v)}`" for _, v in idles],
            "",
            "Booted 1.6 connections opened 250 at a time, then idle; RSS read after 3 s, and again after "
            "gc.collect() + malloc_trim(0) in the server (SIGUSR1). Marginal = between the two levels "
            "(excludes one-time costs). Kernel socket buffers are not in RSS.",
            "",
            _idle(idles),
            "",
        ]
    diag = [(k, v) for k, v in results.items() if k.startswith("diag_percall")]
    if diag and "percall" in results:
        base = results["percall"]["gateway"]["types"]
        rows = []
        for k, v in diag:
            what = ("server without the OpenTelemetry SDK provider (no span per CALL)" if not v["tracing"]
                    else "no tariff (TransactionEvent skips the running-cost pricing)" if not v["tariff"] else k)
            for name, t in v["gateway"]["types"].items():
                rows.append([what, name, base[name]["cpu_us_per_call"] if name in base else "-", t["cpu_us_per_call"],
                             round(base[name]["cpu_us_per_call"] - t["cpu_us_per_call"], 1) if name in base else "-"])
        lines += [
            "## Diagnostics: per-call cost of tracing and running cost",
            "",
            *[f"- `{_cmd(v)}`" for _, v in diag],
            "",
            table(["variant", "message", "µs/call (default)", "µs/call (variant)", "difference µs"], rows),
            "",
            "The storm diagnostics (cyclic GC off / frozen with gen0 threshold 50,000, no tracing + WARNING logs) "
            "are rows of the storm table above.",
            "",
        ]
    missing = [k for k in ("percall", "storm", "idle") if not any(x.startswith(k) for x in results)]
    if missing:
        lines += [f"Not produced in this run (failed or timed out): {', '.join(missing)}.", ""]
    # Keep the sections other scripts own, between their markers (bench/pipeline.py,
    # bench/embedded.py, bench/gateway_kafka.py, ...).
    old = path.read_text() if path.exists() else ""
    for name in KEPT_SECTIONS:
        begin, end = old.find(f"<!-- {name}:begin -->"), old.find(f"<!-- {name}:end -->")
        if 0 <= begin < end:
            lines += ["", old[begin:end + len(f"<!-- {name}:end -->")], ""]
    path.write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="target sizes (10,000 stations, 50×1000 calls, 2,000/5,000 idle)")
    p.add_argument("--only", help="comma-separated keys of the plan to run")
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    p.add_argument("--from-json", help="only rebuild RESULTS.md from a RESULTS.json written by an earlier run")
    a = p.parse_args()
    if a.from_json:
        saved = json.loads(Path(a.from_json).read_text())
        meta = saved.pop("_meta", {})
        write_results(saved, bool(meta.get("full", a.full)), Path(a.out), meta)
        print(f"wrote {a.out}")
        return
    meta = {**git_meta(), "full": a.full}
    steps = plan(a.full)
    if a.only:
        keep = set(a.only.split(","))
        steps = [s for s in steps if s[0] in keep]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="csms-bench-") as tmp:
        for key, argv, timeout in steps:
            r = run(key, argv, timeout, Path(tmp))
            if r is not None:
                results[key] = r
    write_results(results, a.full, Path(a.out), meta)
    print(f"\nwrote {a.out} ({len(results)}/{len(steps)} benchmarks)")
    (Path(a.out).with_suffix(".json")).write_text(json.dumps({"_meta": meta, **results}, indent=1, default=str) + "\n")
    sys.exit(0 if len(results) == len(steps) else 1)


if __name__ == "__main__":
    main()

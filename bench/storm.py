"""Reconnect storm: N pre-registered stations connect at once (WebSocket handshake + Basic
auth + BootNotification) against one server process; time until all are Accepted.

The storm of issue 8 (`--server run`, what `make run` starts): a real `csms run` process
(embedded mode: gateway, processors and API, memory bus, SQLite in a temporary file,
state dir temporary too), 10,000 stations provisioned straight into the SQLite store
before it starts (not counted), connecting from `--sources` 100 source addresses
(127.0.x.y: client sockets are bound to them; Linux routes all of 127/8 to lo).
Each client is a real-charger state machine:

  connect -> 101: BootNotification -> Accepted: done
                                   -> Pending: wait `interval`, BootNotification again
          -> 429/503: wait Retry-After (+ up to 1 s jitter), connect again
          -> reset/timeout/other refusal: wait 1-3 s, connect again

Each station has its own random password; the store holds its HMAC fingerprint under the
server's pepper (CSMS_AUTH_PEPPER), as the gateway's own registration writes it (the
scrypt `password_hash` is left empty: the fingerprint path never reads it). The stations
are split over --clients worker processes (this file with --worker), all released at the
same instant. Latency = from the station's first connect attempt to Accepted.

The client processes share the machine's cores with the server; the server's own CPU
(utime+stime of all its threads, from /proc) is what counts, read from just before the
storm until the server is idle again after it (the drain: processors consuming the
storm's events), so the load generator never appears in it.

Other servers (the earlier gateway-only figures): `--server gateway` runs
bench/gateway_server.py (GatewayService only, memory bus, SQLite) with loopback
settings CSMS_UPGRADE_RATE_PER_IP and CSMS_UPGRADE_BURST_PER_IP 1e9 (a storm
authenticates correctly, so the failure limits of ADR 002's issue-11 amendment never apply); `--server echo` a bare aiohttp WebSocket server (the
handshake floor). --boot-rate sets CSMS_BOOT_RATE (a fixed cap on Accepted boots/s; unset:
the server's default, admission by measured overload only).

    .venv/bin/python bench/storm.py --server run                      # issue 8's storm; writes its RESULTS.md section
    .venv/bin/python bench/storm.py --server run --code-root /tmp/head   # the same storm against another checkout
    .venv/bin/python bench/storm.py --stations 10000 --clients 4 --boot-rate 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import (  # noqa: E402
    BENCH, PY, Server, command_line, emit, install_uvloop, listen_overflows, machine, new_pepper, pct, proc_cpu_s, proc_rss_kib,
    proc_thread_cpu_s, provision, pyspy, raise_nofile, self_cpu_s, table, workdir,
)

LOOPBACK_ENV = {"CSMS_UPGRADE_RATE_PER_IP": "1e9", "CSMS_UPGRADE_BURST_PER_IP": "1e9"}
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


class Refused(Exception):
    """The server answered the upgrade with an HTTP status (429, 503, 401, ...)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.retry_after = status, retry_after


_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


async def _connect(src: str, port: int, sid: str, authorization: str) -> Any:
    """RawWs handshake from source address `src` (127.0.x.y), keeping Retry-After."""
    import base64
    import hashlib

    from _wsclient import RawWs

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # the port is picked at connect() for the 4-tuple, not at bind(): many short-lived
        # connections from one source address do not run out of ports (TIME_WAIT)
        sock.setsockopt(socket.SOL_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((src, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    try:
        key = base64.b64encode(os.urandom(16))
        writer.write((f"GET /ocpp/{sid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
                      f"Authorization: {authorization}\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ":" in ln)}
        if status != 101:
            ra = headers.get("retry-after")
            raise Refused(status, float(ra) if ra and ra.replace(".", "", 1).isdigit() else None)
        expect = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        if headers.get("sec-websocket-accept") != expect:
            raise ConnectionError("bad Sec-WebSocket-Accept")
        return RawWs(reader, writer, headers.get("sec-websocket-protocol", ""))
    except BaseException:
        writer.close()
        raise


async def _station(sid: str, pw: str, src: str, port: int, go: float, deadline: float, kind: str, session: Any, keep: list[Any],
                   sem: asyncio.Semaphore | None) -> list[Any]:
    """One charger: connect (honouring Retry-After), boot until Accepted (honouring Pending's interval)."""
    import orjson

    from _wsclient import HandshakeError, basic

    auth = basic(sid, pw)
    if sem is not None:  # client-side ramp (--concurrency): the station starts when it gets a slot
        await sem.acquire()
    t_start = time.monotonic()
    t_conn = t_first = t_acc = None
    first_status = ""
    pendings = retries = boots = attempts = 0
    refused: dict[int, int] = {}
    error = ""
    ws: Any = None
    while time.monotonic() < deadline:
        try:
            if ws is None:
                attempts += 1
                async with asyncio.timeout(30):
                    if kind == "raw":
                        ws = await _connect(src, port, sid, auth)
                    else:
                        ws = await _AiohttpWs.connect(session, port, sid, auth)
                if t_conn is None:
                    t_conn = time.monotonic()
            boots += 1
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
        except Refused as exc:
            refused[exc.status] = refused.get(exc.status, 0) + 1
            error = str(exc)
            wait = exc.retry_after if exc.retry_after is not None else random.uniform(1.0, 3.0)
            await asyncio.sleep(wait + random.uniform(0.0, 1.0))  # Retry-After plus a charger's own jitter
        except (HandshakeError, OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            retries += 1
            error = f"{type(exc).__name__}: {exc}"[:120]
            err_kind = type(exc).__name__
            refused[err_kind] = refused.get(err_kind, 0) + 1
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
    return [sid, rel(t_start), rel(t_conn), rel(t_first), rel(t_acc), first_status, pendings, retries, error, boots, attempts, refused]


def source_address(i: int) -> str:
    """The i-th source address, 127.0.1.1, 127.0.1.2, ... (250 per third octet)."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


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
    rows = await asyncio.gather(*(
        _station(sid, pw.strip(), source_address((a.first + j) % a.sources), a.port, go, deadline, a.client, session, keep, sem)
        for j, (sid, pw) in enumerate(creds)
    ))
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
def _free_port() -> int:
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return int(sk.getsockname()[1])


# `csms run`, plus (bench only) the cyclic GC's seconds per generation, written to argv[1] on SIGUSR2
_RUN_WITH_GC_STATS = """
import gc, json, os, signal, sys, time
secs, runs, t0 = [0.0, 0.0, 0.0], [0, 0, 0], [0.0]
def cb(phase, info):
    if phase == "start":
        t0[0] = time.perf_counter()
    else:
        secs[info["generation"]] += time.perf_counter() - t0[0]; runs[info["generation"]] += 1
gc.callbacks.append(cb)
out = sys.argv[1]
def dump(*_):
    with open(out + ".tmp", "w") as f:
        json.dump({"seconds": secs, "collections": runs, "tracked_objects": len(gc.get_objects())}, f)
    os.replace(out + ".tmp", out)
signal.signal(signal.SIGUSR2, dump)
from services.common.cli import main
sys.exit(main(["run"]))
"""


class CsmsRun:
    """`csms run` (embedded mode, what `make run` starts) in its own session, with a
    temporary SQLite file and state dir; the same accounting interface as _util.Server.
    `code_root`: run the server from another checkout (PYTHONPATH), e.g. the committed HEAD."""

    def __init__(self, wd: Path, env: dict[str, str], *, code_root: str | None = None, profile: str | None = None,
                 log_level: str = "INFO") -> None:
        self.wd, self.profile = wd, profile
        self.port, self.api_port = _free_port(), _free_port()
        self.env = {"CSMS_DRAIN_WINDOW_S": "0", **os.environ, **env, "CSMS_STORE_URL": f"sqlite:///{wd / 'csms.db'}", "CSMS_BUS_URL": "memory://",
                    "CSMS_HOST": "127.0.0.1", "CSMS_OCPP_PORT": str(self.port), "CSMS_API_PORT": str(self.api_port),
                    "CSMS_METRICS_PORT": "0", "CSMS_STATE_DIR": str(wd / "state"), "CSMS_LOG_LEVEL": log_level}
        if code_root:
            self.env["PYTHONPATH"] = str(Path(code_root).resolve())
        self.log_path = wd / "csms-run.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def __enter__(self) -> "CsmsRun":
        import urllib.request

        cmd = [PY, "-c", _RUN_WITH_GC_STATS, str(self.wd / "gc.json")]
        if self.profile:
            cmd = [pyspy(), "record", "--rate", "250", "--nolineno", "--format", "raw", "-o", self.profile, "--", *cmd]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.wd)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"csms run exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            self.__exit__()
            raise RuntimeError(f"csms run not ready after 60 s; see {self.log_path}")
        self.pid = self.proc.pid
        if self.profile:  # py-spy is the parent: account the python child
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            self.pid = int(kids[0])
        return self

    def __exit__(self, *exc: Any) -> None:
        p = self.proc
        if p is None:
            return
        self.proc = None
        if p.poll() is None:
            try:
                os.kill(self.pid or p.pid, signal.SIGTERM)
                p.wait(timeout=60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        self._log.close()

    def cpu(self) -> float:
        return proc_cpu_s(self.pid)

    def thread_cpu(self) -> tuple[float, float]:
        return proc_thread_cpu_s(self.pid)

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def gc_stats(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """Cyclic-GC seconds/collections per generation so far (SIGUSR2 -> gc.json)."""
        path = self.wd / "gc.json"
        path.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return json.loads(path.read_text())
            time.sleep(0.02)
        return None


def wait_idle(server: Any, *, window: float = 1.0, busy_below: float = 0.03, limit_s: float = 300.0) -> tuple[float, float]:
    """Wait until the server spends less than `busy_below` of a core over `window` seconds
    (its processors have drained the storm's events); (CPU reading then, seconds waited)."""
    t0 = time.monotonic()
    prev = server.cpu()
    while time.monotonic() - t0 < limit_s:
        time.sleep(window)
        cur = server.cpu()
        if cur - prev < busy_below * window:
            return cur, time.monotonic() - t0
        prev = cur
    return server.cpu(), time.monotonic() - t0


def run_storm(a: argparse.Namespace, wd: Path) -> dict[str, Any]:
    n = a.stations
    ids = [f"ST-{i:06d}" for i in range(n)]
    pepper = new_pepper()
    t = time.monotonic()
    creds = provision(wd / "csms.db", ids, pepper)
    print(f"provisioned {n} stations in {time.monotonic() - t:.1f}s", file=sys.stderr)
    creds_file = wd / "creds.tsv"
    creds_file.write_text("".join(f"{sid}\t{pw}\n" for sid, pw in creds.items()))
    env = {"CSMS_AUTH_PEPPER": pepper, "CSMS_GATEWAY_ID": "gateway-0"}
    if a.boot_rate is not None:
        env["CSMS_BOOT_RATE"] = str(a.boot_rate)
    workers: list[subprocess.Popen[str]] = []
    per = -(-n // a.clients)
    server_cm: Any = (CsmsRun(wd, env, code_root=a.code_root, profile=a.profile, log_level=a.log_level) if a.server == "run" else
                      Server(a.server, wd, env={**env, **LOOPBACK_ENV}, tracing=not a.no_tracing, profile=a.profile, log_level=a.log_level, gc=a.server_gc))
    with server_cm as server:
        try:
            for i in range(a.clients):
                first = i * per
                cnt = max(0, min(per, n - first))
                cmd = [PY, __file__, "--worker", "--creds", str(creds_file), "--first", str(first), "--count", str(cnt),
                       "--port", str(server.port), "--concurrency", str(a.concurrency), "--timeout", str(a.timeout), "--out", str(wd / f"w{i}.json"), "--client", a.client,
                       "--sources", str(a.sources)]
                workers.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True))
            for w in workers:
                if (w.stdout.readline() if w.stdout else "").strip() != "READY":  # type: ignore[union-attr]
                    raise RuntimeError("a client worker failed to start")
            time.sleep(1.0)
            gc0 = server.gc_stats() if a.server in ("gateway", "run") else None
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
            # the drain: the processors' share of the storm after the last answer (stations still connected, idle)
            cpu_idle, drain_s = wait_idle(server)
            cpu_drained = cpu_idle - cpu0
            gc1 = server.gc_stats() if a.server in ("gateway", "run") else None
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
        "sources": a.sources, "boot_calls": sum(r[9] for r in rows), "connect_attempts": sum(r[10] for r in rows),
        "refused": {str(code): sum(r[11].get(str(code), 0) for r in rows) for code in sorted({int(c) for r in rows for c in r[11] if str(c).isdigit()})},
        "retry_errors": {k: sum(r[11].get(k, 0) for r in rows) for k in sorted({c for r in rows for c in r[11] if not str(c).isdigit()})},
        "server_cpu_s_with_drain": round(cpu_drained, 2), "drain_s": round(drain_s, 1),
    }


MARK_BEGIN, MARK_END = "<!-- storm:begin -->", "<!-- storm:end -->"


_HEADERS = ["run", "stations", "source addresses", "Accepted", "last Accepted (s)", "boot p50 (s)", "boot p99 (s)", "429", "503",
            "Pending answers", "other handshake retries", "connect attempts", "BootNotification calls", "server CPU to last answer (s)",
            "server CPU incl. drain (s)", "of which cyclic GC (s)", "drain after last answer (s)", "ms CPU per attempt+call"]


def run_row(r: dict[str, Any], label: str) -> list[Any]:
    refused = r["refused"]
    return [label, r["stations"], r["sources"], r["booted"], r["total_s"], r["boot_p50_s"], r["boot_p99_s"], refused.get("429", 0),
            refused.get("503", 0), r["pendings_total"], r["handshake_retries"], r["connect_attempts"], r["boot_calls"],
            r["server_cpu_s"], r["server_cpu_s_with_drain"], r["server_gc_s"] if r.get("server_gc_s") is not None else "-", r["drain_s"],
            round(r["server_cpu_s_with_drain"] / max(1, r["boot_calls"] + r["connect_attempts"]) * 1e3, 3)]


def run_section(r: dict[str, Any], label: str, old: str = "") -> str:
    """The "Reconnect storm against `csms run`" section of bench/RESULTS.md: one row (and one
    command line) per label; a run replaces the row of its label and keeps the others."""
    m = machine()
    rows: dict[str, list[str]] = {}
    cmds: dict[str, str] = {}
    for line in old.splitlines():
        if line.startswith("| ") and not line.startswith("| run "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == len(_HEADERS):
                rows[cells[0]] = cells
        elif line.startswith("- **") and "**: `" in line:
            cmds[line[4:line.index("**: `")]] = line
    rows[label] = [str(c) if isinstance(c, str) else c for c in run_row(r, label)]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmds[label] = f"- **{label}**: `{command_line()}` ({when})"
    return "\n".join([
        MARK_BEGIN,
        "## Reconnect storm against `csms run` (issue 8)",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), Python {m['python']}, shared with other work (wall-clock figures are "
        "indicative; server CPU from /proc is the primary figure). A real `csms run` process (embedded: gateway, processors "
        "and API; memory bus, SQLite in a temporary file), the stations provisioned in its store before it starts "
        "(fingerprint under the server's pepper; not counted), all connecting at once from the given number of source "
        "addresses (127.0.x.y) in 4 client processes, each a real-charger state machine: 429/503 → wait Retry-After "
        "(+ ≤ 1 s jitter) and reconnect; BootNotification Pending → wait `interval`, boot again; Accepted → done. Boot "
        "latency: first connect attempt → Accepted. Server CPU: utime+stime of the `csms run` process, from the start of "
        "the storm to the last answer, and including the drain (until the process is idle again: the processors "
        "consuming the storm's events); cyclic GC time over the same span from gc.callbacks (bench hook). Goal: all "
        "Accepted within 5 s.",
        "",
        *cmds.values(),
        "",
        table(_HEADERS, list(rows.values())),
        MARK_END,
    ])


def write_section(path: Path, section: str) -> None:
    """Replace the storm section of RESULTS.md (between its markers), or append it; the rest stays."""
    old = path.read_text() if path.exists() else ""
    begin, end = old.find(MARK_BEGIN), old.find(MARK_END)
    if 0 <= begin < end:
        new = old[:begin] + section + old[end + len(MARK_END):]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(new)


def old_section(path: Path) -> str:
    old = path.read_text() if path.exists() else ""
    begin, end = old.find(MARK_BEGIN), old.find(MARK_END)
    return old[begin:end] if 0 <= begin < end else ""


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
    p.add_argument("--boot-rate", type=float, default=None, help="CSMS_BOOT_RATE for the server (fixed cap on Accepted boots/s; default: the server's)")
    p.add_argument("--client", choices=["raw", "aiohttp"], default="raw")
    p.add_argument("--server", choices=["run", "gateway", "echo"], default="gateway",
                   help="run: `csms run` (embedded mode, issue 8's storm); gateway: bench/gateway_server.py (GatewayService only); "
                        "echo: a bare aiohttp WebSocket server answering every frame with a fixed Accepted (no auth, no store, no bus): the handshake floor")
    p.add_argument("--sources", type=int, default=100, help="source addresses 127.0.x.y the stations connect from (round robin)")
    p.add_argument("--code-root", help="--server run: the checkout to run the server from (PYTHONPATH), e.g. an export of HEAD for a before/after")
    p.add_argument("--label", help="--server run: the row's name in the RESULTS.md section (a run replaces the row of its label)")
    p.add_argument("--no-results", action="store_true", help="--server run: do not write the storm section of bench/RESULTS.md")
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
    print(f"\nstorm ({a.server} server): {a.stations} stations from {a.sources} addresses, {a.clients} client processes ({a.client}), "
          f"CSMS_BOOT_RATE={a.boot_rate if a.boot_rate is not None else 'server default'}; "
          "clients and server share the machine's cores; server CPU is its own utime+stime")
    print(report([r]))
    if a.server == "run":
        label = a.label or f"{a.stations:,} stations, {a.sources} addresses"
        section = run_section(r, label, old_section(BENCH / "RESULTS.md"))
        print("\n" + section)
        if not a.no_results:
            write_section(BENCH / "RESULTS.md", section)
    emit({"bench": "storm", "server": a.server, **r, "loopback_env": LOOPBACK_ENV if a.server == "gateway" else {}, "tracing": not a.no_tracing,
          "server_gc": a.server_gc, "log_level": a.log_level, "machine": machine(),
          "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}, a.json_out)


if __name__ == "__main__":
    main()

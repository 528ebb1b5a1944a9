"""Shared helpers for the gateway benchmarks (bench/*.py): process CPU/RSS from /proc,
fd limits, station provisioning straight into the SQLite store, the gateway launcher
process, percentiles and small tables. Not part of the product."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import secrets
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.common.timeutil import to_ocpp, utcnow  # noqa: E402
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
_TICK = os.sysconf("SC_CLK_TCK")


def pyspy() -> str:
    """py-spy next to the interpreter if installed there, else the one on PATH (it is not a
    project dependency: e.g. `pip install --target /tmp/pyspy py-spy`, PATH=/tmp/pyspy/bin:$PATH)."""
    here = Path(PY).parent / "py-spy"
    return str(here) if here.exists() else (shutil.which("py-spy") or str(here))
_PAGE = os.sysconf("SC_PAGE_SIZE")


def now_z() -> str:
    """Now, written as the simulated stations send times (the CSMS's own `to_ocpp`)."""
    return to_ocpp(utcnow())


# -- process accounting ---------------------------------------------------------
def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds; 1/CLK_TCK resolution."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # fields 14 and 15 of stat(5)


def proc_thread_cpu_s(pid: int) -> tuple[float, float]:
    """(main thread, all other threads) utime + stime, seconds (threads still alive)."""
    main = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        t = (int(fields[11]) + int(fields[12])) / _TICK
        if int(tid) == pid:
            main += t
        else:
            other += t
    return main, other


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE // 1024


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def listen_overflows() -> dict[str, int]:
    """TcpExt ListenOverflows / ListenDrops (SYNs dropped because an accept queue was full)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    for head, vals in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            d = dict(zip(head.split()[1:], (int(v) for v in vals.split()[1:])))
            return {k: d.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    return {}


# -- statistics and output --------------------------------------------------------
def pct(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan when empty)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def command_line() -> str:
    """The exact command that produced this output (relative to the repository root)."""
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return " ".join(shlex.quote(a) for a in [exe, script, *sys.argv[1:]])


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
        "kernel": platform.release(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def emit(result: dict[str, Any], json_out: str | None) -> None:
    """The JSON line (and optionally a file for run_all.py)."""
    result = {"command": command_line(), **result}
    line = json.dumps(result, separators=(",", ":"), default=str)
    print("JSON " + line, flush=True)
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2, default=str) + "\n")


# -- provisioning -------------------------------------------------------------------
def new_pepper() -> str:
    return secrets.token_hex(32)


def provision(db_path: Path, stations: Sequence[str], pepper: str, *, tariff: bool = False, tokens: Sequence[str] = ()) -> dict[str, str]:
    """Create the schema and one Station row per id, each with its own random 32-char
    password and its HMAC fingerprint under `pepper` (as CSMS_AUTH_PEPPER gives it to
    the server). password_hash (scrypt) is left empty: the gateway never reads it when
    the fingerprint matches, and 10,000 scrypt hashes would take minutes to prepare.
    Returns {station id: password}."""
    sys.path.insert(0, str(ROOT))
    from services.common import passwords
    from services.common.store.sqlite import SqliteStore

    async def migrate() -> None:
        store = SqliteStore(f"sqlite:///{db_path}")
        await store.start()
        try:
            await store.migrate()
            if tariff:
                from decimal import Decimal

                from services.billing.codec import tariff_from_dict, tariff_to_dict

                doc = tariff_to_dict(tariff_from_dict({
                    "id": "bench-default", "currency": "EUR", "price_per_kwh": Decimal("0.30"),
                    "price_per_minute": Decimal("0.02"), "session_fee": Decimal("0.50"), "tax_rate": Decimal("0.19"),
                    "default": True,
                }))
                await store.put_doc("tariff", doc["id"], doc)
        finally:
            await store.close()

    import concurrent.futures  # callable from inside a running loop too

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        ex.submit(asyncio.run, migrate()).result()
    pep = pepper.encode()
    creds = {sid: passwords.generate_password() for sid in stations}
    rows = [(sid, "", passwords.fingerprint(pep, sid, pw), 1, "2026-01-01T00:00:00.000000Z") for sid, pw in creds.items()]
    con = sqlite3.connect(db_path)
    try:
        con.executemany(
            "INSERT INTO stations (id, password_hash, password_fingerprint, enabled, created_at) VALUES (?, ?, ?, ?, ?)", rows
        )
        con.executemany("INSERT INTO tokens (id_token, status) VALUES (?, 'Accepted')", [(t,) for t in tokens])
        con.commit()
    finally:
        con.close()
    return creds


# -- the server process ---------------------------------------------------------------
class Server:
    """bench/gateway_server.py in its own process (its own session, so it can be killed
    with everything it started). Use as a context manager."""

    def __init__(self, mode: str, workdir: Path, *, env: dict[str, str] | None = None,
                 retention: int = 64, tracing: bool = True, log_level: str = "INFO", profile: str | None = None,
                 gc: str = "default") -> None:
        self.mode, self.workdir = mode, workdir
        self.ready_file = workdir / f"{mode}.ready"
        self.log_path = workdir / f"{mode}.log"
        # A benchmark's server stops at once: no rolling-update drain (CSMS_DRAIN_WINDOW_S).
        self.env = {"CSMS_DRAIN_WINDOW_S": "0", **os.environ, **(env or {})}
        self.args = [
            str(BENCH / "gateway_server.py"), "--mode", mode, "--store-url", f"sqlite:///{workdir / 'csms.db'}",
            "--ready-file", str(self.ready_file), "--bus-retention", str(retention),
            "--log-level", log_level, "--gc", gc,
        ]
        if not tracing:
            self.args.append("--no-tracing")
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.pid = 0

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> "Server":
        cmd = [PY, *self.args]
        if self.profile:  # py-spy starts the server as its child (no ptrace attach needed)
            cmd = [pyspy(), "record", "--rate", "250", "--nolineno", "--format", "raw", "-o", self.profile, "--", *cmd]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_file.exists():
                info = json.loads(self.ready_file.read_text())
                self.port, self.pid = int(info["port"]), int(info["pid"])
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}:\n{self.tail()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s; see {self.log_path}")

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def cpu(self) -> float:
        return proc_cpu_s(self.pid)

    def thread_cpu(self) -> tuple[float, float]:
        return proc_thread_cpu_s(self.pid)

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def gc_stats(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """Cyclic-GC seconds/collections per generation so far (gateway mode only)."""
        path = self.ready_file.with_suffix(".gc.json")
        path.unlink(missing_ok=True)
        self.signal(signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return json.loads(path.read_text())
            time.sleep(0.02)
        return None

    def stop(self, timeout: float = 30.0) -> None:
        p = self.proc
        if p is None:
            return
        self.proc = None
        if p.poll() is None:
            try:
                # SIGTERM the python server itself (py-spy, if any, then writes its profile)
                os.kill(self.pid or p.pid, signal.SIGTERM)
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


def workdir(prefix: str, keep: str | None = None) -> tempfile.TemporaryDirectory[str] | Path:
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    return tempfile.TemporaryDirectory(prefix=prefix)


def install_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

"""Cost of one station authentication by outcome: unknown id vs wrong password vs right
password (issue 11: "unknown station and wrong password cost the same and take the same
time"; ADR 002, amendment for issue 11).

`Authenticator.authenticate` is timed call by call (time.perf_counter_ns) in one process
against an in-memory station directory (no await suspends, so each figure is the check's
own CPU: cache lookup, Basic parsing, one HMAC, the comparison, the failure bookkeeping).
The three kinds are interleaved so that none profits from a warmer cache; the failure
policy's limits are raised so that every attempt is checked (otherwise the wrong ones
would soon be answered "locked" without any HMAC). For contrast, `--slow N` times wrong
passwords for stations stored without a current fingerprint (the only scrypt path).

    .venv/bin/python bench/auth_timing.py            # N = 2000 per kind
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common import passwords  # noqa: E402
from services.common.store.port import Station  # noqa: E402
from services.gateway.auth import Authenticator  # noqa: E402
from services.gateway.limits import AuthLimits  # noqa: E402

PEPPER = b"bench-pepper-0123456789abcdef012"
UNLIMITED = AuthLimits(fail_limit=10**9, station_fail_limit=10**9, ip_fail_limit=10**9)


class Directory:
    def __init__(self, stations: dict[str, Station]) -> None:
        self.stations = stations

    async def get_station(self, station_id: str) -> Station | None:
        return self.stations.get(station_id)

    async def put_station(self, station: Station) -> None:
        self.stations[station.id] = station

    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        return None


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def summary(ns: list[int]) -> str:
    us = sorted(n / 1000 for n in ns)
    p99 = us[min(len(us) - 1, int(len(us) * 0.99))]
    return f"median {statistics.median(us):7.2f} µs  mean {statistics.fmean(us):7.2f} µs  p99 {p99:7.2f} µs"


async def run(n: int, slow: int, stations: int) -> None:
    pw = {f"CP{i}": passwords.generate_password() for i in range(stations)}
    directory = Directory({
        sid: Station(sid, "", passwords.fingerprint(PEPPER, sid, p), security_profile=1) for sid, p in pw.items()
    })
    auth = Authenticator(directory, pepper=PEPPER, clock=lambda: datetime.now(timezone.utc), limits=UNLIMITED)
    kinds: dict[str, list[int]] = {"unknown id": [], "wrong password": [], "right password": []}
    for i in range(stations):  # the station cache is warm for known and unknown ids alike
        await auth.authenticate(f"CP{i}", basic(f"CP{i}", pw[f"CP{i}"]), "10.0.0.1")
        await auth.authenticate(f"NOPE{i}", basic(f"NOPE{i}", "x" * 32), "10.0.0.1")
    wrong = "w" * 32
    for i in range(n):
        sid = f"CP{i % stations}"
        cases = [
            ("unknown id", f"NOPE{i % stations}", basic(f"NOPE{i % stations}", wrong)),
            ("wrong password", sid, basic(sid, wrong)),
            ("right password", sid, basic(sid, pw[sid])),
        ]
        for kind, station_id, header in cases[i % 3:] + cases[:i % 3]:
            t = time.perf_counter_ns()
            out = await auth.authenticate(station_id, header, f"10.1.{i % 250}.{i % 7}")
            kinds[kind].append(time.perf_counter_ns() - t)
            assert out.ok == (kind == "right password"), (kind, out)
    print(f"Authenticator.authenticate, N={n} per kind, {stations} stations, cache warm:")
    for kind, ns in kinds.items():
        print(f"  {kind:<15} {summary(ns)}")
    if slow:
        legacy = Directory({f"OLD{i}": Station(f"OLD{i}", passwords.hash_password("y" * 32)) for i in range(slow)})
        auth = Authenticator(legacy, pepper=PEPPER, clock=lambda: datetime.now(timezone.utc), limits=UNLIMITED)
        ns = []
        for i in range(slow):
            t = time.perf_counter_ns()
            out = await auth.authenticate(f"OLD{i}", basic(f"OLD{i}", wrong), "10.0.0.1")
            ns.append(time.perf_counter_ns() - t)
            assert not out.ok
        print(f"  {'wrong, no current fingerprint (scrypt)':<15} N={slow}: {summary(ns)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="attempts per kind")
    p.add_argument("--stations", type=int, default=100)
    p.add_argument("--slow", type=int, default=20, help="scrypt-path attempts for contrast (0: skip)")
    a = p.parse_args()
    asyncio.run(run(a.n, a.slow, a.stations))


if __name__ == "__main__":
    main()

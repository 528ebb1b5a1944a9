"""The whole system as a user runs it, on both stacks, driven from outside with raw frames.

`system` is parametrised: "embedded" is `csms run` (memory bus + SQLite, one process);
"distributed" (with CSMS_INFRA=1, as `make test` sets it) is one process per role on the
real Kafka and Cassandra started by deploy/local/infra.sh. The same scenario runs on both.
Nothing here skips: without the engines the distributed stack fails to start.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

from services.common.bus.port import partition_for
from tests.e2e.conftest import start_server, stop_server
from tests.integration.conftest import new_cluster

INFRA = os.environ.get("CSMS_INFRA") == "1"
STACKS = [pytest.param("embedded", id="embedded")]
if INFRA:
    STACKS.append(pytest.param("distributed", id="distributed", marks=pytest.mark.infra))


@dataclass
class System:
    kind: str
    ocpp_url: str            # ws://127.0.0.1:port/ocpp
    gateway_http: str        # http://127.0.0.1:port (healthz, readyz, metrics of the gateway)
    api: Callable[..., Awaitable[tuple[int, Any]]]
    events_partitions: int
    log: Callable[[], str]

    def same_partition_id(self, station_id: str, prefix: str) -> str:
        """A fresh station id whose events share `station_id`'s csms.events.v1 partition."""
        target = partition_for(station_id.encode(), self.events_partitions)
        for i in range(10_000):
            candidate = f"{prefix}{i:04d}"
            if partition_for(candidate.encode(), self.events_partitions) == target:
                return candidate
        raise AssertionError("no id found on the same partition")


# The idle sweeper looks every second and abandons sessions silent for ~11 s, so a ghost
# session's fate is visible within a test (every other scenario ends its sessions sooner).
ENV = {"CSMS_SESSION_SWEEP_INTERVAL_S": "1", "CSMS_SESSION_IDLE_TIMEOUT_H": "0.003"}


def _embedded(tmp: Path) -> Iterator[System]:
    server = start_server(tmp, ENV)
    base = server.ocpp_url.rsplit("/ocpp", 1)[0].replace("ws://", "http://")
    try:
        yield System("embedded", server.ocpp_url, base, server.api, 12, server.log)
    finally:
        stop_server(server)


def _distributed(tmp: Path) -> Iterator[System]:
    cluster = new_cluster(tmp, roles=("gateway-0", "sessions", "billing", "smart-charging", "api"), extra_env=ENV)
    gw = cluster.procs["gateway-0"]
    logs = lambda: "\n".join(f"--- {n}\n{p.log()[-20000:]}" for n, p in cluster.procs.items())  # noqa: E731
    try:
        yield System("distributed", cluster.ocpp_url("gateway-0"), f"http://127.0.0.1:{gw.port}", cluster.api,
                     int(cluster.env["CSMS_EVENTS_PARTITIONS"]), logs)
    finally:
        cluster.stop_all()


@pytest.fixture(scope="module", params=STACKS)
def system(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp(f"system-{request.param}")
    yield from (_embedded(tmp) if request.param == "embedded" else _distributed(tmp))


@pytest.fixture
def uid() -> str:
    return "SYS" + uuid.uuid4().hex[:8].upper()

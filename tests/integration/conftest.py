"""Distributed mode on the real engines: Kafka (127.0.0.1:9092) and Cassandra (127.0.0.1:9042),
started by `make test` (deploy/local/infra.sh). Each test module gets its own keyspace and
topic prefix, and runs every role as its own `csms <role>` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
CSMS = str(ROOT / ".venv" / "bin" / "csms")

pytestmark = pytest.mark.infra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_engines() -> None:
    """Fail (never skip) when the real engines are not there: `make test` starts them."""
    for name, port in (("Kafka", 9092), ("Cassandra", 9042)):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        except OSError as exc:
            pytest.fail(f"{name} is not reachable on 127.0.0.1:{port} ({exc}); run `make infra-up` or `make test`")


@dataclass
class Proc:
    role: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen([CSMS, *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.log_path.parent)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)
        self.popen.wait(timeout=30)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Cluster:
    tmp: Path
    env: dict[str, str]
    api_key: str
    procs: dict[str, Proc] = field(default_factory=dict)

    def spawn(self, name: str, role: str, port_env: str | None = None, extra: dict[str, str] | None = None) -> Proc:
        env = dict(self.env)
        port = None
        if port_env:
            port = free_port()
            env[port_env] = str(port)
        env["CSMS_METRICS_PORT"] = str(free_port())
        env.update(extra or {})
        proc = Proc(name, [role], env, self.tmp / f"{name}.log", port)
        proc.start()
        self.procs[name] = proc
        return proc

    def wait_ready(self, proc: Proc, timeout: float = 60.0) -> None:
        port = proc.port or int(proc.env["CSMS_METRICS_PORT"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.role} exited:\n{proc.log()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{proc.role} not ready in {timeout}s:\n{proc.log()[-4000:]}")

    def ocpp_url(self, name: str) -> str:
        return f"ws://127.0.0.1:{self.procs[name].port}/ocpp"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.procs['api'].port}"

    async def api(self, method: str, path: str, json: Any = None, expect: int | tuple[int, ...] | None = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.api_key}"}) as http:
            async with http.request(method, f"{self.api_url}{path}", json=json, timeout=aiohttp.ClientTimeout(total=60)) as r:
                body = await r.json(content_type=None) if r.status != 204 else None
                if expect is not None:
                    ok = (r.status in expect) if isinstance(expect, tuple) else r.status == expect
                    assert ok, f"{method} {path} -> {r.status} {body}"
                return r.status, body

    def stop_all(self) -> None:
        """Stop the processes, then drop the cluster's keyspace: keyspaces left behind pile up
        in the shared Cassandra (a 1 GiB heap ran out of memory at ~140 of them), and every
        client's schema load at connect grows with them."""
        for proc in self.procs.values():
            if proc.alive():
                proc.kill(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(p.alive() for p in self.procs.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.drop_keyspace()

    def drop_keyspace(self) -> None:
        from cassandra.cluster import Cluster as CassandraCluster

        keyspace = self.env["CSMS_STORE_URL"].rsplit("/", 1)[1]
        if not keyspace.startswith("it_"):
            return
        cassandra = CassandraCluster(["127.0.0.1"], port=9042, connect_timeout=30, control_connection_timeout=30)
        try:
            cassandra.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        except Exception as exc:  # clean-up only: the test's outcome is already decided
            warnings.warn(f"keyspace {keyspace} not dropped: {exc!r}", stacklevel=2)
        finally:
            cassandra.shutdown()


def new_cluster(
    tmp: Path,
    roles: tuple[str, ...] = ("gateway-0", "gateway-1", "sessions", "billing", "smart-charging", "api"),
    extra_env: dict[str, str] | None = None,
) -> Cluster:
    require_engines()
    tag = uuid.uuid4().hex[:8]
    api_key = "it-" + uuid.uuid4().hex
    env = dict(os.environ)
    env.update({
        "CSMS_BUS_URL": "kafka://127.0.0.1:9092",
        "CSMS_STORE_URL": f"cassandra://127.0.0.1:9042/it_{tag}",
        "CSMS_TOPIC_PREFIX": f"it{tag}.",
        "CSMS_API_KEY": api_key,
        "CSMS_AUTH_PEPPER": "integration-pepper",
        "CSMS_HOST": "127.0.0.1",
        "CSMS_COMMAND_TIMEOUT": "10",
        # stations these tests create connect over plain ws:// (profile 1); the security tests
        # create profile-2/3 stations explicitly
        "CSMS_DEFAULT_SECURITY_PROFILE": "1",
        "CSMS_EVENTS_PARTITIONS": "6",
        "CSMS_COMMANDS_PARTITIONS": "4",
        "CSMS_LOG_LEVEL": "INFO",
        "CSMS_DRAIN_WINDOW_S": "0",  # a stopped gateway closes its sockets at once (Proc.kill waits 30 s)
    })
    env.update(extra_env or {})
    cluster = Cluster(tmp, env, api_key)
    migrate = subprocess.run([CSMS, "migrate"], env=env, capture_output=True, timeout=180)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    for name in roles:
        if name.startswith("gateway-"):
            cluster.spawn(name, "gateway", "CSMS_OCPP_PORT", {"CSMS_GATEWAY_ID": name})
        elif name == "api":
            cluster.spawn(name, "api", "CSMS_API_PORT")
        else:
            cluster.spawn(name, name)
    for proc in list(cluster.procs.values()):
        cluster.wait_ready(proc)
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = new_cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop_all()

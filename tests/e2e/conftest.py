"""e2e fixtures: `csms run` as a real process on free loopback ports, driven over HTTP/WebSocket."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from services.simulator.cli import station_password

ROOT = Path(__file__).resolve().parents[2]
CSMS = ROOT / ".venv" / "bin" / "csms"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    ocpp_url: str
    api_url: str
    api_key: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    state_dir: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def api(self, method: str, path: str, json: Any = None, expect: int | tuple[int, ...] | None = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession(headers=self.headers) as http:
            async with http.request(method, f"{self.api_url}{path}", json=json) as r:
                body = await r.json(content_type=None) if r.status != 204 else None
                if expect is not None:
                    ok = (r.status in expect) if isinstance(expect, tuple) else r.status == expect
                    assert ok, f"{method} {path} -> {r.status} {body}"
                return r.status, body

    async def register_station(self, station_id: str, password: str | None = None, **extra: Any) -> str:
        password = password or station_password("e2e", station_id)
        await self.api("POST", "/api/v1/stations", {"id": station_id, "password": password, **extra}, expect=201)
        return password

    async def register_token(self, id_token: str, status: str = "Accepted") -> None:
        await self.api("POST", "/api/v1/tokens", {"id_token": id_token, "status": status}, expect=(200, 201, 409))


def basic(station_id: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{station_id}:{password}".encode()).decode()


def start_server(tmp: Path, extra_env: dict[str, str] | None = None) -> Server:
    ocpp_port, api_port = free_port(), free_port()
    api_key = "e2e-" + uuid.uuid4().hex
    env = dict(os.environ)
    env.update({
        "CSMS_OCPP_PORT": str(ocpp_port),
        "CSMS_API_PORT": str(api_port),
        "CSMS_HOST": "127.0.0.1",
        "CSMS_API_KEY": api_key,
        "CSMS_STORE_URL": f"sqlite:///{tmp}/csms.db",
        "CSMS_BUS_URL": "memory://",
        "CSMS_STATE_DIR": str(tmp / "state"),
        "CSMS_COMMAND_TIMEOUT": "5",
        "CSMS_LOG_LEVEL": "INFO",
    })
    env.update(extra_env or {})
    log_path = tmp / "csms.log"
    log_file = open(log_path, "wb")
    proc = subprocess.Popen([str(CSMS), "run"], env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp)
    server = Server(f"ws://127.0.0.1:{ocpp_port}/ocpp", f"http://127.0.0.1:{api_port}", api_key, proc, log_path, tmp / "state")
    deadline = time.monotonic() + 60
    import urllib.request

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"csms run exited with {proc.returncode}:\n{server.log()}")
        try:
            for port in (ocpp_port, api_port):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    assert r.status == 200
            return server
        except Exception:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"csms run not ready in 60 s:\n{server.log()}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def csms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("csms"))
    yield server
    stop_server(server)
    # A crash or traceback in the server during the suite is a failure of the suite.
    log = server.log()
    assert "Traceback" not in log, log[-5000:]


@pytest.fixture
def unique_id() -> str:
    return "E2E" + uuid.uuid4().hex[:10].upper()

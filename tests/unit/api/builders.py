"""Harness and builders for the REST API tests: a real ApiService on a free port,
on a MemoryBus and a SQLite store, driven with aiohttp's client."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import aiohttp

from services.api.service import ApiService
from services.common import topics
from services.common.bus import Record
from services.common.codec import Command, decode_command, decode_event, encode_event, event_headers, headers_dict
from services.common.events import CommandResult, Envelope
from services.common.runtime import Runtime

UTC = timezone.utc
API_KEY = "k"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@dataclass
class Api:
    rt: Runtime
    service: ApiService
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.service.port}"

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = API_KEY,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        h = dict(headers or {})
        if key is not None:
            h.setdefault("Authorization", f"Bearer {key}")
        kwargs: dict[str, Any] = {"headers": h}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base + path, **kwargs) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.call("POST", path, body, **kw)

    async def a_station(self, station_id: str = "ST1", **fields: Any) -> dict[str, Any]:
        status, body = await self.post("/api/v1/stations", {"id": station_id, "password": "p" * 20, **fields})
        assert status == 201, body
        return body  # type: ignore[no-any-return]

    async def connected(self, station_id: str, gateway_id: str = "gateway-3") -> int:
        """Record ownership the way a gateway does on connect; returns the epoch."""
        return await self.rt.store.claim_station(station_id, gateway_id)


def a_tariff_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "t1",
        "currency": "EUR",
        "price_per_kwh": "0.30",
        "price_per_minute": "0",
        "session_fee": "0",
        "idle_fee_per_minute": "0",
        "idle_grace_minutes": 0,
        "tax_rate": "0.19",
        "bands": [],
    }
    body.update(overrides)
    return body


def a_session_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "ST1-tx-1",
        "station_id": "ST1",
        "transaction_id": "tx-1",
        "id_token": "TOKEN1",
        "status": "active",
        "energy_wh": 0,
        "meter_start_wh": 1000,
        "started_at": "2026-11-28T10:00:00.000Z",
        "stopped_at": None,
        "received_at": "2026-11-28T10:00:00.120Z",
        "sample_count": 0,
    }
    doc.update(overrides)
    return doc


@dataclass
class FakeGateway:
    """Reads its own command partition like a gateway pod and answers with `answer`
    (None: never answers). Records (partition, Command) of everything it got."""

    rt: Runtime
    gateway_id: str = "gateway-3"
    answer: Callable[[Command], CommandResult | None] | None = None
    received: list[tuple[int, Command]] = field(default_factory=list)
    _sub: Any = None

    @property
    def ordinal(self) -> int:
        return int(self.gateway_id.rsplit("-", 1)[1])

    async def start(self) -> "FakeGateway":
        self._sub = await self.rt.bus.assign(topics.COMMANDS, self.ordinal, self._on_command)
        return self

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.stop()

    async def _on_command(self, record: Record) -> None:
        cmd = decode_command(record.value)
        self.received.append((record.partition, cmd))
        result = self.answer(cmd) if self.answer is not None else None
        if result is None:
            return
        env = Envelope(
            event_id=str(uuid.uuid4()),
            station_id=cmd.station_id,
            received_at=datetime.now(UTC),
            body=result,
            gateway_id=self.gateway_id,
            ocpp_version="1.6",
        )
        await self.rt.bus.publish(topics.EVENTS, cmd.station_id, encode_event(env), event_headers(env))


def answering(status: str, response: dict[str, Any] | None = None, **extra: Any) -> Callable[[Command], CommandResult]:
    def answer(cmd: Command) -> CommandResult:
        return CommandResult(
            command_id=cmd.command_id,
            command_type=cmd.command_type,
            status=status,
            response_json=json.dumps(response if response is not None else {"status": status}),
            **extra,
        )

    return answer


class EventTap:
    """Collects every event published on csms.events.v1 from now on."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.events: list[Envelope] = []
        self._sub: Any = None

    async def start(self) -> "EventTap":
        self._sub = await self.rt.bus.subscribe(
            topics.EVENTS, f"tap-{uuid.uuid4().hex[:6]}", self._on, from_beginning=False
        )
        return self

    async def _on(self, record: Record) -> None:
        self.events.append(decode_event(record.value, headers_dict(record.headers)))

    async def wait_for(self, predicate: Callable[[Envelope], bool], timeout: float = 2.0) -> Envelope:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for e in self.events:
                if predicate(e):
                    return e
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no matching event in {self.events!r}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 2.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True

"""A revocation on the gateway's command partition (ADR 017, services/gateway/commands.py):
every gateway forgets the station's credentials (`on_revoke`), the one holding its socket
closes it 1008 "revoked: <reason>" at once, ahead of anything queued for the station and
without waiting for the peer; an expired one is ignored; one is never re-routed."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from services.common import codec, topics
from services.common.bus.port import Record
from services.common.ocpp_version import OcppVersion
from services.common.routing import REVOKE
from services.gateway import frames
from services.gateway.commands import CommandRunner, Revocation, revocation
from services.gateway.registry import Registry

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


class Socket:
    """A station socket whose close never finishes unless told (a peer that never reads)."""

    def __init__(self, station_id: str, epoch: int = 1) -> None:
        self.station_id, self.epoch = station_id, epoch
        self.version, self.remote, self.subprotocol, self.security_profile = OcppVersion.V16, "", "ocpp1.6", 1
        self.close_code: int | None = None
        self.closes: list[tuple[int, str]] = []
        self.finish_close = asyncio.Event()

    def alive(self) -> bool:
        return not self.closes

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        await self.finish_close.wait()

    async def call(self, action: str, payload: dict[str, Any], timeout: float) -> tuple[str, frames.Result | frames.Error]:
        raise AssertionError("a revocation sends the station nothing")


class NoRouter:
    async def reroute(self, cmd: codec.Command, *, this_gateway: str) -> Any:
        raise AssertionError(f"{cmd.command_type} re-routed")


class NoPublisher:
    async def publish(self, env: Any, **kw: Any) -> bool:
        raise AssertionError(f"published {env.body}")


class Runner(CommandRunner):
    """Ordinary commands block in `execute` until `release` is set (a station's chain busy)."""

    def __init__(self, registry: Registry, revoked: list[str]) -> None:
        super().__init__(
            gateway_id="gateway-0", reader=None, registry=registry, router=NoRouter(),  # type: ignore[arg-type]
            publisher=NoPublisher(), clock=lambda: NOW, concurrency=4,  # type: ignore[arg-type]
            command_timeout_s=30, call_timeout_s=30, on_revoke=revoked.append,
        )
        self.started: list[str] = []
        self.release = asyncio.Event()

    async def execute(self, cmd: codec.Command) -> None:
        self.started.append(cmd.command_type)
        await self.release.wait()


def record(station_id: str, command_type: str, params: Any, *, expires_in_s: float = 60.0, target: str = "") -> Record:
    cmd = codec.Command(
        command_id=f"c-{command_type}", station_id=station_id, command_type=command_type,
        params_json=orjson.dumps(params).decode(), issued_at=NOW - timedelta(seconds=1),
        expires_at=NOW + timedelta(seconds=expires_in_s), issuer="api", target_gateway_id=target,
    )
    return Record(topics.COMMANDS, 0, 0, station_id.encode(), codec.encode_command(cmd))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_revocation_invalidates_and_closes_the_socket_without_waiting_for_the_peer() -> None:
    registry, revoked = Registry(), []
    sock = Socket("CP1")
    registry.put(sock)
    runner = Runner(registry, revoked)
    async with asyncio.timeout(1.0):  # the peer never finishes the close: the reader must not wait for it
        await runner.on_record(record("CP1", REVOKE, {"reason": "disabled", "close": True}))
    await settle()
    assert revoked == ["CP1"]
    assert sock.closes == [(1008, "revoked: disabled")]
    sock.finish_close.set()
    await settle()


async def test_a_revocation_overtakes_the_stations_queued_commands() -> None:
    registry, revoked = Registry(), []
    sock = Socket("CP1")
    registry.put(sock)
    runner = Runner(registry, revoked)
    await runner.on_record(record("CP1", "Reset", {"type": "Soft"}))
    await runner.on_record(record("CP1", "Reset", {"type": "Hard"}))  # queued behind the first
    await settle()
    assert runner.started == ["Reset"]
    await runner.on_record(record("CP1", REVOKE, {"reason": "password reset", "close": True}))
    await settle()
    assert sock.closes == [(1008, "revoked: password reset")] and revoked == ["CP1"]
    assert runner.started == ["Reset"]  # the chain is still where it was
    sock.finish_close.set()
    await runner.stop()


async def test_without_close_only_the_caches_forget_the_station() -> None:
    registry, revoked = Registry(), []
    sock = Socket("CP1")
    registry.put(sock)
    await Runner(registry, revoked).on_record(record("CP1", REVOKE, {"reason": "rotated", "close": False}))
    await settle()
    assert revoked == ["CP1"] and sock.closes == []


async def test_an_expired_revocation_is_ignored() -> None:
    registry, revoked = Registry(), []
    sock = Socket("CP1")
    registry.put(sock)
    await Runner(registry, revoked).on_record(record("CP1", REVOKE, {"reason": "disabled", "close": True}, expires_in_s=-1))
    await settle()
    assert revoked == [] and sock.closes == []


async def test_a_revocation_for_a_station_elsewhere_is_never_rerouted_nor_answered() -> None:
    registry, revoked = Registry(), []
    # addressed (by an older producer) to another gateway of this partition: applied anyway
    await Runner(registry, revoked).on_record(record("CP9", REVOKE, {"reason": "deleted", "close": True}, target="gateway-0-p0"))
    await settle()
    assert revoked == ["CP9"]  # NoRouter / NoPublisher would have raised


async def test_a_failing_invalidation_still_closes() -> None:
    registry = Registry()
    sock = Socket("CP1")
    registry.put(sock)

    def broken(station_id: str) -> None:
        raise RuntimeError("cache gone")

    runner = Runner(registry, [])
    runner._on_revoke = broken
    await runner.on_record(record("CP1", REVOKE, {"reason": "disabled", "close": True}))
    await settle()
    assert sock.closes == [(1008, "revoked: disabled")]
    sock.finish_close.set()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ('{"reason": "disabled", "close": true}', Revocation("disabled", True)),
        ('{"reason": "rotated", "close": false}', Revocation("rotated", False)),
        ('{}', Revocation("revoked", True)),
        ('not json', Revocation("revoked", True)),   # unreadable: the safe reading
        ('[1]', Revocation("revoked", True)),
    ],
)
def test_revocation_params(params: str, expected: Revocation) -> None:
    cmd = codec.Command("c", "CP1", REVOKE, params, NOW, NOW)
    assert revocation(cmd) == expected


def test_other_commands_are_not_revocations() -> None:
    assert revocation(codec.Command("c", "CP1", "Reset", '{"reason": "x"}', NOW, NOW)) is None


def test_a_long_reason_fits_a_close_frame() -> None:
    from services.gateway.commands import _REASON_MAX

    assert len(("revoked: " + "x" * _REASON_MAX).encode()) <= 123

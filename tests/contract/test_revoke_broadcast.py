"""`routing.broadcast_revoke` on every bus (memory always, Kafka with CSMS_INFRA=1): one
`_Revoke` command per partition of the command topic, each read by that partition's
reader (a gateway reads only its own partition, so a revocation that missed one would
leave that gateway's auth caches and socket untouched)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import orjson

from services.common import codec
from services.common.bus.port import Bus, Record
from services.common.routing import REVOKE, REVOKE_TTL, broadcast_revoke
from tests.contract.conftest import NewTopic
from tests.support.waiting import eventually

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


async def test_a_revocation_reaches_every_partition(bus: Bus, new_topic: NewTopic, patience: float) -> None:
    topic = await new_topic(5)
    seen: dict[int, list[codec.Command]] = {p: [] for p in range(5)}
    subs = []
    for p in range(5):
        async def handler(record: Record, p: int = p) -> None:
            seen[p].append(codec.decode_command(record.value))
        subs.append(await bus.assign(topic, p, handler, from_beginning=True))
    try:
        await broadcast_revoke(bus, "CP-R1", reason="disabled", close=True, issuer="api", clock=lambda: NOW, topic=topic)
        await eventually(lambda: all(seen.values()), patience, what="a revocation on every partition",
                         detail=lambda: {p: len(c) for p, c in seen.items()})
    finally:
        await asyncio.gather(*(s.stop() for s in subs))
    ids = set()
    for p, cmds in seen.items():
        assert len(cmds) == 1, (p, cmds)
        cmd = cmds[0]
        ids.add(cmd.command_id)
        assert cmd.station_id == "CP-R1" and cmd.command_type == REVOKE and cmd.issuer == "api"
        assert orjson.loads(cmd.params_json) == {"reason": "disabled", "close": True}
        assert cmd.issued_at == NOW and cmd.expires_at == NOW + REVOKE_TTL == NOW + timedelta(seconds=60)
        assert cmd.fence_epoch is None and cmd.target_gateway_id == "" and cmd.hops == 0
    assert len(ids) == 1  # one revocation, the same command everywhere


async def test_an_invalidation_only_says_so(bus: Bus, new_topic: NewTopic, patience: float) -> None:
    topic = await new_topic(2)
    seen: list[codec.Command] = []

    async def handler(record: Record) -> None:
        seen.append(codec.decode_command(record.value))

    sub = await bus.assign(topic, 1, handler, from_beginning=True)
    try:
        await broadcast_revoke(bus, "CP-R2", reason="certificate revoked", close=False, issuer="certificates", clock=lambda: NOW,
                               topic=topic)
        await eventually(lambda: seen, patience, what="the revocation on partition 1")
    finally:
        await sub.stop()
    assert orjson.loads(seen[0].params_json) == {"reason": "certificate revoked", "close": False}

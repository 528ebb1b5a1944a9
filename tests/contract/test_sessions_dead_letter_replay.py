"""Issue 7's "done when", with the real sessions handler on every bus x store pair:
a record the processor cannot handle (here: a defect that makes it raise on one kind of
event) lands in the dead-letter topic, the next record of the same partition is processed
within seconds, and once the defect is fixed a replay from the DLQ produces the right
session. Runs on memory + SQLite always, and on Kafka + Cassandra with CSMS_INFRA=1; once
with a per-record subscription and once with the processor's batches (`subscribe_batch` +
`handle_batch`, ADR 015: the bus replays a failing batch one record at a time, so only the
poison record is dead-lettered)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any, Sequence

import pytest

from services.common import codec, topics
from services.common import events as ev
from services.common.bus.dead_letters import list_dead_letters, replay_all
from services.common.bus.port import Bus, Record
from services.common.config import Settings
from services.common.runtime import Runtime
from services.common.store.port import Store
from services.sessions.domain import session_id
from services.sessions.wiring import build_handler
from tests.unit.sessions.builders import V16, a_register, a_started, an_ended, meter_values

from .conftest import NewTopic


def _on(station: str, env: ev.Envelope) -> ev.Envelope:
    return replace(env, station_id=station, event_id=str(uuid.uuid4()))


async def _session(store: Store, station: str, tx: str, status: str, patience: float) -> dict[str, Any] | None:
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        doc = await store.get_doc("session", session_id(station, tx))
        if doc is not None and doc["status"] == status:
            return doc
        if asyncio.get_running_loop().time() > deadline:
            return doc
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("mode", ["record", "batch"])
async def test_a_dead_lettered_event_replayed_after_the_fix_completes_its_session(
    bus: Bus, store: Store, new_topic: NewTopic, new_group: Any, patience: float, mode: str
) -> None:
    topic = await new_topic(1)  # one partition: every record below shares it
    await bus.ensure_topic(topics.SESSIONS, 12)
    group = new_group()
    sessions = build_handler(Runtime(settings=Settings(), bus=bus, store=store))
    station = f"DLQ-{uuid.uuid4().hex[:8]}"
    fixed = asyncio.Event()
    failures: list[int] = []

    def check(record: Record) -> None:
        env = codec.decode_event(record.value)
        if isinstance(env.body, ev.TransactionEnded) and env.body.transaction_id == "tx-a" and not fixed.is_set():
            failures.append(record.offset)
            raise RuntimeError("defect: TransactionEnded of tx-a cannot be handled")

    async def handler(record: Record) -> None:
        check(record)
        await sessions.handle_record(record)

    async def batch_handler(records: Sequence[Record]) -> None:
        for record in records:
            check(record)
        await sessions.handle_batch(records)

    if mode == "record":
        sub = await bus.subscribe(topic, group, handler)
    else:
        sub = await bus.subscribe_batch(topic, group, batch_handler, max_records=100)
    try:
        first = [
            a_started(env=V16, transaction_id="tx-a", meter_start_wh=1_000, charging_state="", trigger_reason=""),
            meter_values(a_register(15, 3_000), at_min=15, env=V16, transaction_id="tx-a"),
            an_ended(env=V16, transaction_id="tx-a", meter_stop_wh=8_500),
        ]
        # A second transaction of the same station, on another connector, right behind the poison.
        second = [
            a_started(env=V16, transaction_id="tx-b", connector_id=2, evse_id=2, meter_start_wh=0,
                      at_min=70, charging_state="", trigger_reason=""),
            an_ended(env=V16, transaction_id="tx-b", connector_id=2, evse_id=2, meter_stop_wh=2_000, at_min=90),
        ]
        for env in first + second:
            env = _on(station, env)
            await bus.publish(topic, station, codec.encode_event(env), codec.event_headers(env))

        # The partition moves on: tx-b completes although tx-a's end failed before it.
        b = await _session(store, station, "tx-b", "completed", patience + 15)
        assert b is not None and b["status"] == "completed" and b["energy_wh"] == 2_000
        a = await store.get_doc("session", session_id(station, "tx-a"))
        assert a is not None and a["status"] == "active"
        # the default CSMS_DLQ_MAX_ATTEMPTS, one at a time (a failing batch is one try more)
        assert len(failures) in ((5,) if mode == "record" else (5, 6))

        letters = [d for d in await list_dead_letters(bus, topic, group=group) if d.key == station.encode()]
        assert len(letters) == 1
        assert letters[0].group == group and letters[0].attempts == 5
        assert "defect" in letters[0].error

        # The fix ships; the operator replays.
        fixed.set()
        done = await replay_all(bus, topic, group=group)
        assert [d["id"] for d in done] == [letters[0].id]
        a = await _session(store, station, "tx-a", "completed", patience)
        assert a is not None and a["status"] == "completed" and a["energy_wh"] == 7_500
        # Replayed once: the listing no longer offers it, so `replay --all` cannot repeat it.
        assert [d for d in await list_dead_letters(bus, topic, group=group) if d.key == station.encode()] == []
    finally:
        await sub.stop()

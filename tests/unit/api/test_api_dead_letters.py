"""GET /api/v1/dead-letters and POST /api/v1/dead-letters/{id}/replay, on the API's own
in-memory bus: a real consumer group dead-letters a record, the API lists and replays it."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from services.common import topics
from services.common.bus import Record
from services.common.bus.delivery import DeliveryPolicy
from services.common.bus.memory import MemoryBus
from services.common.bus.port import REPLAY_GROUP_HEADER

from .builders import Api

GROUP = "csms-test-broken"


async def eventually(condition: Any, timeout: float, what: str) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Broken:
    """A consumer group whose handler fails on b"bad" until fixed."""

    def __init__(self) -> None:
        self.fixed = False
        self.seen: list[Record] = []

    async def handler(self, record: Record) -> None:
        if record.value == b"bad" and not self.fixed:
            raise ValueError("cannot parse '1e308'")
        self.seen.append(record)


async def dead_letter_one(api: Api) -> Broken:
    bus = api.rt.bus
    assert isinstance(bus, MemoryBus)
    bus.policy = DeliveryPolicy(max_attempts=2, backoff_s=0.01)
    broken = Broken()
    await bus.subscribe(topics.EVENTS, GROUP, broken.handler)
    await bus.publish(topics.EVENTS, "CP-1", b"bad", [("ce_type", b"csms.events.v1.MeterValues")])

    for _ in range(500):
        if any(r.header("dlq_group") == GROUP for r in await bus.read(topics.EVENTS_DLQ, limit=100)):
            return broken
        await asyncio.sleep(0.01)
    raise AssertionError("no dead letter within 5 s")


async def test_a_dead_letter_is_listed_with_its_origin_error_and_payload(api: Api) -> None:
    await dead_letter_one(api)
    status, body = await api.get("/api/v1/dead-letters")
    assert status == 200
    [item] = body["items"]
    assert set(item) >= {"id", "topic", "partition", "offset", "group", "error", "attempts", "dead_lettered_at",
                         "key", "value_base64", "headers"}
    assert item["topic"] == topics.EVENTS and item["group"] == GROUP and item["attempts"] == 2
    assert item["error"] == "ValueError: cannot parse '1e308'"
    assert item["key"] == "CP-1" and base64.b64decode(item["value_base64"]) == b"bad"
    assert item["headers"] == [{"name": "ce_type", "value": "csms.events.v1.MeterValues"}]
    assert item["offset"] == 0 and item["dead_lettered_at"].endswith("Z")
    partition, offset = item["id"].split("-")
    assert int(partition) >= 0 and int(offset) == 0
    assert (await api.get(f"/api/v1/dead-letters?group={GROUP}"))[1]["items"] == [item]
    assert (await api.get("/api/v1/dead-letters?group=someone-else"))[1]["items"] == []
    assert (await api.get(f"/api/v1/dead-letters?topic={topics.EVENTS_DLQ}"))[1]["items"] == [item]
    assert (await api.get(f"/api/v1/dead-letters?topic={topics.SESSIONS}"))[1]["items"] == []


async def test_a_replay_reaches_the_group_that_gave_up_and_leaves_the_listing(api: Api) -> None:
    broken = await dead_letter_one(api)
    _, body = await api.get("/api/v1/dead-letters")
    dead_letter_id = body["items"][0]["id"]
    broken.fixed = True
    status, done = await api.post(f"/api/v1/dead-letters/{dead_letter_id}/replay", {})
    assert status == 202
    assert done["id"] == dead_letter_id and done["group"] == GROUP and done["topic"] == topics.EVENTS
    assert done["replayed_at"].endswith("Z")
    await eventually(lambda: any(r.value == b"bad" for r in broken.seen), 5, "the replayed record")
    replayed = [r for r in broken.seen if r.value == b"bad"][0]
    assert replayed.header(REPLAY_GROUP_HEADER) == GROUP
    assert replayed.header("ce_type") == "csms.events.v1.MeterValues"
    assert (await api.get("/api/v1/dead-letters"))[1]["items"] == []
    _, with_replayed = await api.get("/api/v1/dead-letters?replayed=true")
    assert [i["replayed_at"] for i in with_replayed["items"]] == [done["replayed_at"]]


async def test_replaying_an_unknown_or_malformed_id_is_a_problem_not_a_crash(api: Api) -> None:
    status, body = await api.post("/api/v1/dead-letters/0-999/replay")  # no body at all
    assert status == 404 and "0-999" in body["error"]
    status, body = await api.post("/api/v1/dead-letters/not-an-id/replay", {})
    assert status == 400 and "id" in body["details"]
    status, body = await api.post("/api/v1/dead-letters/0-0/replay?topic=a/b", {})
    assert status == 400 and "topic" in body["details"]
    status, body = await api.post("/api/v1/dead-letters/0-0/replay", {"colour": "red"})
    assert status == 400 and "colour" in body["details"]


async def test_dead_letters_need_the_admin_key(api: Api) -> None:
    assert (await api.get("/api/v1/dead-letters", key=None))[0] == 401
    assert (await api.get("/api/v1/dead-letters", key="wrong"))[0] == 401
    assert (await api.post("/api/v1/dead-letters/0-0/replay", {}, key=None))[0] == 401


async def test_a_bad_limit_is_a_400(api: Api) -> None:
    status, body = await api.get("/api/v1/dead-letters?limit=0")
    assert status == 400 and "limit" in body["details"]

"""Coalescer: concurrent per-key requests become batches; nothing is answered from an
earlier batch; claims (share=False) never share a batch slot; failures reach every caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.common.errors import StoreUnavailable
from services.gateway.coalesce import Coalescer


class Backend:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.version = 0

    async def fetch(self, keys: Sequence[str]) -> dict[str, str]:
        self.batches.append(list(keys))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {k: f"{k}@{self.version}" for k in keys if not k.startswith("unknown")}


async def test_a_lone_request_is_sent_at_once_and_a_missing_key_gets_missing() -> None:
    b = Backend()
    c: Coalescer[str, str | None] = Coalescer(b.fetch, missing=None)
    assert await c.get("CP1") == "CP1@0"
    assert await c.get("unknown-1") is None
    assert b.batches == [["CP1"], ["unknown-1"]]


async def test_requests_made_while_a_batch_is_in_flight_go_together_in_the_next() -> None:
    b = Backend()
    b.gate = asyncio.Event()
    c: Coalescer[str, str | None] = Coalescer(b.fetch, missing=None, max_batch=3)
    first = asyncio.ensure_future(c.get("A"))
    await asyncio.sleep(0)
    others = [asyncio.ensure_future(c.get(k)) for k in ("B", "C", "B", "D", "E")]
    await asyncio.sleep(0)
    b.gate.set()
    assert await first == "A@0"
    assert await asyncio.gather(*others) == ["B@0", "C@0", "B@0", "D@0", "E@0"]
    assert b.batches == [["A"], ["B", "C", "D"], ["E"]]  # B asked twice, read once


async def test_a_request_never_gets_the_answer_of_a_batch_sent_before_it() -> None:
    b = Backend()
    b.gate = asyncio.Event()
    c: Coalescer[str, str | None] = Coalescer(b.fetch, missing=None)
    early = asyncio.ensure_future(c.get("A"))
    await asyncio.sleep(0)
    b.version = 1  # the data changes while the first read is in flight
    late = asyncio.ensure_future(c.get("A"))
    await asyncio.sleep(0)
    b.gate.set()
    assert await early == "A@1" and await late == "A@1"
    assert b.batches == [["A"], ["A"]]  # the late request was read again, after it was made


async def test_unshared_requests_for_one_key_go_in_separate_batches() -> None:
    b = Backend()
    c: Coalescer[str, str | None] = Coalescer(b.fetch, missing=None, share=False)
    got = await asyncio.gather(*(c.get(k) for k in ("A", "A", "B", "A")))
    assert got == ["A@0", "A@0", "B@0", "A@0"]
    assert b.batches == [["A", "B"], ["A"], ["A"]]  # each claim of A its own batch, in order


async def test_a_failed_batch_fails_each_of_its_requests_and_the_next_batch_is_sent() -> None:
    b = Backend()
    b.gate = asyncio.Event()
    c: Coalescer[str, str | None] = Coalescer(b.fetch, missing=None)
    first = asyncio.ensure_future(c.get("A"))
    await asyncio.sleep(0)
    second = [asyncio.ensure_future(c.get(k)) for k in ("B", "C")]
    await asyncio.sleep(0)
    b.fail = StoreUnavailable("down")
    b.gate.set()
    with pytest.raises(StoreUnavailable):
        await first
    for fut in second:
        with pytest.raises(StoreUnavailable):
            await fut
    b.fail = None
    assert await c.get("D") == "D@0"


async def test_a_caller_that_gives_up_leaves_the_batch_to_the_others() -> None:
    b = Backend()
    b.gate = asyncio.Event()
    c: Coalescer[str, str | None] = Coalescer(b.fetch, missing=None)
    first = asyncio.ensure_future(c.get("A"))
    await asyncio.sleep(0)
    quitter = asyncio.ensure_future(c.get("B"))
    stayer = asyncio.ensure_future(c.get("C"))
    await asyncio.sleep(0)
    quitter.cancel()
    b.gate.set()
    assert await first == "A@0" and await stayer == "C@0"
    assert b.batches == [["A"], ["C"]]


async def test_unbatched_each_request_is_sent_on_its_own_and_does_not_wait_for_a_slow_one() -> None:
    b = Backend()
    slow = asyncio.Event()

    async def fetch(keys: Sequence[str]) -> dict[str, str]:
        if keys == ["slow"]:
            await slow.wait()
        return await b.fetch(keys)

    c: Coalescer[str, str | None] = Coalescer(fetch, missing=None, batched=False)
    stuck = asyncio.ensure_future(c.get("slow"))
    await asyncio.sleep(0)
    assert await asyncio.gather(c.get("A"), c.get("B"), c.get("A")) == ["A@0", "B@0", "A@0"]
    assert b.batches == [["A"], ["B"], ["A"]]
    slow.set()
    assert await stuck == "slow@0"


async def test_a_storm_of_handshakes_reads_its_stations_in_batches_and_each_gets_its_own_answer() -> None:
    from tests.unit.gateway_core.auth_support import PW, Store, authenticator, basic, station

    store = Store()
    for i in range(40):
        store.stations[f"CP{i}"] = station(f"CP{i}", slow_hash=False)
    auth = authenticator(store)
    outcomes = await asyncio.gather(*(
        auth.authenticate(f"CP{i}", basic(f"CP{i}", PW if i % 4 else "wrong-password-0000"), "10.0.0.1") for i in range(40)
    ))
    assert [o.status for o in outcomes] == [401 if i % 4 == 0 else 0 for i in range(40)]
    assert all(o.station is not None and o.station.id == f"CP{i}" for i, o in enumerate(outcomes) if o.ok)
    assert store.batches == [[f"CP{i}" for i in range(40)]]  # one store read for the 40 handshakes

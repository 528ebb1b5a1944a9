"""Per-key store requests made concurrently, sent as one batch (issue: reconnect storm).

In a reconnect storm every handshake makes the same store requests (the station read of
authentication, the ownership claim) at nearly the same time. Sent one by one they queue
behind each other anyway (SQLite: one connection under one lock, each request a hop to
its thread and back, the claim a commit of its own; Cassandra: one round trip each), and
that queue, not the statements, was most of a handshake's store cost. A `Coalescer`
sends the first request at once; requests made while a batch is in flight wait for it
and then go together as the next batch, through the store's batch operation
(`get_stations`, `claim_stations`). An idle gateway therefore sees no added latency,
and a storm pays one round trip per batch instead of one per station.

Nothing is served from an earlier answer: a request joins only the batch that has not
been sent yet, so its answer is always read after the request was made (a re-read for
freshness stays fresh). With `share=False` (claims: each must get its own epoch) two
requests for the same key never go in the same batch; the second waits for the next.

Batching helps a store whose requests are served one at a time (SQLite). A store that
serves requests concurrently (Cassandra: one round trip per station either way) gains
nothing from it and would make each answer wait for the slowest of its batch (a read
timing out, a contended claim retrying its compare-and-set), so there `batched=False`
sends every request on its own, at once, as a one-key batch.

A failed batch fails every request in it (the callers answer 503 / close 1011 as they
did for a failed single request). A caller that gives up (timeout, cancellation) leaves
the batch running for the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

log = logging.getLogger("csms.gateway.coalesce")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """`fetch(keys)` -> {key: value} for the keys it found; a key it leaves out gets
    `missing`. At most `max_batch` keys per batch and one batch in flight; `batched=False`:
    each request a batch of its own, sent at once."""

    __slots__ = ("_fetch", "_missing", "_max", "_share", "_batched", "_pending", "_task")

    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]], *, missing: V,
                 max_batch: int = 500, share: bool = True, batched: bool = True) -> None:
        self._fetch = fetch
        self._missing = missing
        self._max = max(1, max_batch)
        self._share = share
        self._batched = batched
        self._pending: list[tuple[K, asyncio.Future[V]]] = []
        self._task: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        if not self._batched:
            return (await self._fetch([key])).get(key, self._missing)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[V] = loop.create_future()
        self._pending.append((key, fut))
        if self._task is None:
            self._task = loop.create_task(self._run())
        return await fut

    def _take(self) -> list[tuple[K, list[asyncio.Future[V]]]]:
        """The next batch: up to max_batch distinct keys, each with the futures it answers."""
        batch: dict[K, list[asyncio.Future[V]]] = {}
        rest: list[tuple[K, asyncio.Future[V]]] = []
        for key, fut in self._pending:
            if fut.done():  # the caller gave up before the batch was sent
                continue
            waiting = batch.get(key)
            if waiting is not None and self._share:
                waiting.append(fut)
            elif waiting is None and len(batch) < self._max:
                batch[key] = [fut]
            else:
                rest.append((key, fut))
        self._pending = rest
        return list(batch.items())

    async def _run(self) -> None:
        batch: list[tuple[K, list[asyncio.Future[V]]]] = []
        try:
            while self._pending:
                batch = self._take()
                if not batch:
                    continue
                try:
                    found = await self._fetch([key for key, _ in batch])
                except Exception as exc:
                    for _, futs in batch:
                        for fut in futs:
                            if not fut.done():
                                fut.set_exception(exc)
                    continue
                missing = self._missing
                for key, futs in batch:
                    value = found.get(key, missing)
                    for fut in futs:
                        if not fut.done():
                            fut.set_result(value)
            batch = []
        finally:
            self._task = None
            # only if this task itself was cancelled (shutdown): nobody is left waiting
            for fut in [f for _, futs in batch for f in futs] + [f for _, f in self._pending]:
                if not fut.done():
                    fut.cancel()
            self._pending = []

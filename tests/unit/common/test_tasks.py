"""`cancel_and_wait` (services/common/tasks.py): the stop idiom of every component that
runs its own tasks: cancelled, finished (their cleanup ran), the cancellation swallowed,
a real failure not."""

from __future__ import annotations

import asyncio

import pytest

from services.common.tasks import cancel_and_wait


async def test_the_tasks_are_cancelled_and_have_finished_their_cleanup() -> None:
    cleaned: list[str] = []
    started = asyncio.Event()

    async def worker(name: str) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits
            cleaned.append(name)

    a, b = asyncio.create_task(worker("a")), asyncio.create_task(worker("b"))
    await started.wait()
    await cancel_and_wait(a, None, b)
    assert cleaned == ["a", "b"]
    assert a.cancelled() and b.cancelled()


async def test_finished_and_absent_tasks_are_fine() -> None:
    async def done() -> int:
        return 7

    task = asyncio.create_task(done())
    await task
    await cancel_and_wait(task, None)
    await cancel_and_wait()
    assert task.result() == 7


async def test_a_task_that_fails_instead_of_stopping_raises() -> None:
    started = asyncio.Event()

    async def stubborn() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(stubborn())
    await started.wait()
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)
    assert task.done()

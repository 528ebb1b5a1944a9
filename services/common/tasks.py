"""Stopping background tasks: `cancel_and_wait(*tasks)`.

Every `stop()`/`close()` of a component that runs its own tasks (consumer loops, lag
timers, probes, periodic jobs) ended the same way, written out by hand each time: cancel
the task, await it so it has really finished (its `finally` blocks ran, nothing of it is
left on the loop) before the component releases what the task used, and swallow the
`CancelledError` that awaiting a cancelled task raises. This is that idiom, once.

It is exactly the hand-written one: a task that ends with another exception while
cancelled raises it here (a bug surfaces at stop), and a `CancelledError` aimed at the
caller while it waits is swallowed as well (stop goes on releasing). Places that time the
wait out, log, or re-raise a cancellation of their own keep their own code.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel every task (None entries are skipped), then await each in order; a
    `CancelledError` is swallowed, any other exception propagates."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        try:
            await task
        except asyncio.CancelledError:
            pass

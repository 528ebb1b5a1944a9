"""One way for a test to wait: `eventually(probe)`.

Asynchronous systems (a bus, a processor, a server in another process) get where a test
expects them to, but not at once. Sleeping a fixed time makes tests slow and flaky; a loop
in each file made eight slightly different waits (some returned a falsy value on timeout,
some raised, some never gave up). This is the one: it polls `probe` (a plain function or a
coroutine function) until it returns something truthy and returns that value, so a test can
wait for a thing and use it in one line. On timeout it raises `AssertionError` naming
`what` and the last value seen, so the failure says what never happened. A probe may also
`assert`: an `AssertionError` inside it counts as "not yet" and is reported if it is the
last thing seen. `detail` (a function, plain or async) adds the state worth seeing to that
message: the log tail of a server, what the stations received.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Awaitable, Callable, TypeVar, overload

__all__ = ["eventually"]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_INTERVAL_S = 0.02


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]],
    timeout: float = ...,
    *,
    interval: float = ...,
    what: str = ...,
    detail: Callable[[], object] | None = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T],
    timeout: float = ...,
    *,
    interval: float = ...,
    what: str = ...,
    detail: Callable[[], object] | None = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], object],
    timeout: float = DEFAULT_TIMEOUT_S,
    *,
    interval: float = DEFAULT_INTERVAL_S,
    what: str = "",
    detail: Callable[[], object] | None = None,
) -> object:
    """The first truthy value `probe()` returns within `timeout` seconds.

    The probe runs at least once, and once more at the deadline, so a slow machine that
    wakes up late still gets a last look. Exceptions other than `AssertionError` propagate
    at once: a probe that crashes is a bug, not a "not yet".
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
        except AssertionError as failed:
            value, last = None, failed
        else:
            if value:
                return value
            last = value
        if loop.time() >= deadline:
            break
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))
    name = what or getattr(probe, "__qualname__", repr(probe))
    message = f"timed out after {timeout}s waiting for {name}; last value: {last!r}"
    if detail is not None:
        seen = detail()
        if inspect.isawaitable(seen):
            seen = await seen
        message += f"\n{seen}"
    raise AssertionError(message)

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from tests.integration_inproc.gateway.harness import Gateway, start_gateway, stop_gateway


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    started: list[Gateway] = []

    async def make(**settings: Any) -> Gateway:
        sub = tmp_path / str(len(started))
        sub.mkdir()
        gw = await start_gateway(sub, **settings)
        started.append(gw)
        return gw

    yield make
    for gw in reversed(started):
        await stop_gateway(gw)


@pytest.fixture
async def gw(make_gateway: Callable[..., Awaitable[Gateway]]) -> Gateway:
    return await make_gateway()

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest

from services.api.wiring import build_api
from services.common.bus.memory import MemoryBus
from services.common.config import Settings
from services.common.runtime import bootstrap
from services.common.store.sqlite import SqliteStore

from .builders import API_KEY, Api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(
        api_key=API_KEY,
        host="127.0.0.1",
        api_port=0,
        command_timeout_s=2.0,
        events_partitions=4,
        commands_partitions=8,
    )
    rt = bootstrap(settings, bus=MemoryBus(), store=SqliteStore(f"sqlite:///{tmp_path}/a.db"), pepper=b"p")
    await rt.start()
    await rt.store.migrate()
    service = build_api(rt)
    await service.start()
    http = aiohttp.ClientSession()
    try:
        yield Api(rt=rt, service=service, http=http)
    finally:
        await http.close()
        await service.stop()
        await rt.close()

"""Harness of the operator-access tests: an ApiService with chosen settings (bootstrap key,
failure limit, OIDC, trusted proxies) and helpers to mint keys of each role."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp

from services.api.wiring import build_api
from services.common.bus.memory import MemoryBus
from services.common.config import Settings
from services.common.runtime import bootstrap
from services.common.store.sqlite import SqliteStore

from .builders import Api

BOOTSTRAP = "bootstrap-key-7f3a9c-DO-NOT-LOG-0c1d2e"


@asynccontextmanager
async def access_api(tmp_path: Path, **overrides: Any) -> AsyncIterator[Api]:
    fields: dict[str, Any] = {
        "api_key": BOOTSTRAP, "host": "127.0.0.1", "api_port": 0, "command_timeout_s": 2.0,
        "events_partitions": 4, "commands_partitions": 8, **overrides,
    }
    rt = bootstrap(Settings(**fields), bus=MemoryBus(), store=SqliteStore(f"sqlite:///{tmp_path}/a.db"),
                   pepper=b"pepper")
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


async def a_key(api: Api, role: str, name: str | None = None, **fields: Any) -> str:
    """A new API key of `role` (created with the bootstrap key); returns its text."""
    status, body = await api.post("/api/v1/api-keys", {"name": name or f"{role} key", "role": role, **fields},
                                  key=BOOTSTRAP)
    assert status == 201, body
    return str(body["key"])

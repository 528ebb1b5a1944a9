"""What route handlers share: the runtime, the command waiter and the site hook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from services.api.commands import CommandWaiter
from services.common.runtime import Runtime

__all__ = ["ApiContext", "CTX", "ctx_of"]


@dataclass
class ApiContext:
    rt: Runtime
    waiter: CommandWaiter
    on_site_changed: Callable[[str], Awaitable[None]]


CTX = web.AppKey("csms_api_context", ApiContext)


def ctx_of(request: web.Request) -> ApiContext:
    return request.app[CTX]

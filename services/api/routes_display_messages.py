"""Stub: filled in by the display messages work (ADR 018)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "OPENAPI_TAGS", "OPENAPI_VIEWS", "setup"]

# The OpenAPI part of these routes (merged by services/api/openapi_drivers.py).
OPENAPI_TAGS: tuple[str, ...] = ()
OPENAPI_PATHS: dict[str, Any] = {}
OPENAPI_SCHEMAS: dict[str, Any] = {}
OPENAPI_VIEWS: tuple[str, ...] = ()  # schemas of what the routes answer (checked against real answers)


def setup(app: web.Application) -> None:
    return None

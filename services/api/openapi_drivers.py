"""The OpenAPI part of the driver and energy routes (ADR 018), merged from the route
modules that own them: each exports OPENAPI_TAGS, OPENAPI_PATHS, OPENAPI_SCHEMAS and
OPENAPI_VIEWS (the schemas of what it answers)."""

from __future__ import annotations

from typing import Any

from services.api import (
    routes_charging_profiles,
    routes_customer_information,
    routes_display_messages,
    routes_driver_view,
    routes_local_lists,
    routes_reservations,
)

__all__ = ["PATHS", "SCHEMAS", "TAGS", "VIEW_SCHEMAS"]

_MODULES = (routes_local_lists, routes_reservations, routes_charging_profiles, routes_display_messages,
            routes_customer_information, routes_driver_view)

TAGS: tuple[str, ...] = tuple(dict.fromkeys(t for m in _MODULES for t in m.OPENAPI_TAGS))
PATHS: dict[str, Any] = {}
SCHEMAS: dict[str, Any] = {}
for _m in _MODULES:
    for _path, _ops in _m.OPENAPI_PATHS.items():
        _clash = set(PATHS.get(_path, {})) & set(_ops)
        if _clash:
            raise ValueError(f"{_path}: operations described twice: {sorted(_clash)}")
        PATHS.setdefault(_path, {}).update(_ops)
    _twice = set(SCHEMAS) & set(_m.OPENAPI_SCHEMAS)
    if _twice:
        raise ValueError(f"schemas described twice: {sorted(_twice)}")
    SCHEMAS.update(_m.OPENAPI_SCHEMAS)
VIEW_SCHEMAS: tuple[str, ...] = tuple(v for m in _MODULES for v in m.OPENAPI_VIEWS)

"""Reading the stations processor's `station_ops` document (kind STATION_OPS) as a
`StationOps`, for GET /stations/{id}, its logs and its availability.

The document is the stations processor's (ADR 012: one writer owns the shape); the API
reads it through this one function, which a failure to read never turns into a 500: an
unreadable document is logged and the station shown without it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from services.stations.documents import station_ops_from_doc
from services.stations.domain.ops import StationOps

__all__ = ["read_station_ops"]

log = logging.getLogger("csms.api.stations")


def read_station_ops(station_id: str, doc: Mapping[str, Any] | None) -> StationOps | None:
    if doc is None:
        return None
    try:
        return station_ops_from_doc(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.error("station %s: station_ops document cannot be read: %r", station_id, exc)
        return None

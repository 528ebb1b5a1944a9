"""Bus adapters, chosen by URL: `memory://` or `kafka://host:9092[,host2:9092]`.

The package is the port's front door for the rest of the code: it re-exports the port and
picks an adapter, importing it only when asked. The adapters themselves import their
siblings by module path (`services.common.bus.metrics`), never through this package, so
the package and its adapters do not import each other round (tests/architecture).
"""

from __future__ import annotations

from typing import Any

from services.common.bus.port import Bus, Handler, Record, Subscription, partition_for
from services.common.errors import ConfigError

__all__ = ["Bus", "Handler", "Record", "Subscription", "partition_for", "bus_from_url"]


def bus_from_url(url: str, **options: Any) -> Bus:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "memory":
        from services.common.bus.memory import MemoryBus

        return MemoryBus(**options)
    if scheme == "kafka":
        from services.common.bus.kafka import KafkaBus

        return KafkaBus(url, **options)
    raise ConfigError(f"unknown bus URL scheme in {url!r} (expected memory:// or kafka://)")

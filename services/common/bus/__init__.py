"""Bus adapters, chosen by URL: `memory://` or `kafka://host:9092[,host2:9092]`."""

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
        from services.common.bus.kafka import KafkaBus  # type: ignore[import-not-found]

        return KafkaBus(url, **options)  # type: ignore[no-any-return]
    raise ConfigError(f"unknown bus URL scheme in {url!r} (expected memory:// or kafka://)")

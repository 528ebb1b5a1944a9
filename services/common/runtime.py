"""The composition root: one `bootstrap()` per process.

`bootstrap()` picks the adapters (bus and store by URL, the file store, the clock, the
pepper) and returns a `Runtime`. Files (ADR 016 §4) go to a directory when
`CSMS_FILES_DIR` is set, else into the store itself (`files` is then the store). Each
service's `wiring.py` turns the `Runtime` into the ports its handlers take and returns
a `Service` (`start()` / `stop()` / `ready()`; ADR 010, update): nothing past the wiring
sees the `Runtime`, and it carries no grab-bag of extras.
Tests call `bootstrap(settings, bus=MemoryBus(), ...)` (or tests/support's `a_runtime`)
to inject their own adapters.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from typing import Protocol, TypedDict

from services.common.bus import Bus, bus_from_url
from services.common.config import Settings
from services.common.engine_security import CassandraAuth, KafkaSecurity
from services.common.passwords import load_pepper
from services.common.readiness import DependencyProbe
from services.common.store import Store, store_from_url
from services.common.store.files import DirectoryFiles
from services.common.store.port import FileStore
from services.common.timeutil import Clock, utcnow
from services.common import topics

__all__ = ["BusOptions", "Runtime", "Service", "StoreOptions", "bootstrap", "bus_options", "store_options", "tune_gc"]

log = logging.getLogger("csms.runtime")


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def ready(self) -> bool: ...


@dataclass
class Runtime:
    settings: Settings
    bus: Bus
    store: Store
    clock: Clock = utcnow
    pepper: bytes = b""
    # Uploaded files (ADR 016 §4); left out (None), the store's own FileStore.
    files: FileStore = None  # type: ignore[assignment]
    # The periodic store and bus probe behind /readyz (services/common/readiness.py); one per
    # process, started by `csms` (cli.py), not by `start()`.
    readiness: DependencyProbe = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.files is None:
            self.files = self.store
        if self.readiness is None:
            self.readiness = DependencyProbe.of(
                self.store, self.bus,
                interval_s=self.settings.readiness_probe_interval_s, timeout_s=self.settings.readiness_probe_timeout_s,
            )

    async def start(self) -> None:
        await self.store.start()
        await self.bus.start()
        await self.bus.ensure_topic(topics.EVENTS, self.settings.events_partitions)
        await self.bus.ensure_topic(topics.COMMANDS, self.settings.commands_partitions)
        await self.bus.ensure_topic(topics.SESSIONS, self.settings.events_partitions)
        await self.bus.ensure_topic(topics.CDRS, self.settings.events_partitions)
        await self.bus.ensure_topic(topics.METER_VALUES, self.settings.events_partitions)
        await self.bus.ensure_topic(topics.SITES, self.settings.events_partitions)
        # Dead letters of the topics consumer groups read (docs/dead-letters.md). Any other
        # consumed topic's dead-letter topic (e.g. smart charging's by-site topic) is
        # created by the bus on its first dead letter.
        await self.bus.ensure_topic(topics.EVENTS_DLQ, self.settings.events_partitions)
        await self.bus.ensure_topic(topics.dlq_topic(topics.SESSIONS), self.settings.events_partitions)

    async def close(self) -> None:
        await self.bus.close()
        await self.store.close()


class BusOptions(TypedDict, total=False):
    """The constructor keywords of the bus adapters (`bus_from_url(url, **options)`)."""

    dlq_max_attempts: int
    dlq_backoff_s: float
    max_record_bytes: int
    batch_linger_ms: float
    consumer_lag_interval_s: float
    # kafka:// (KafkaBus)
    linger_ms: int
    batch_bytes: int
    replication_factor: int
    min_insync_replicas: int
    security: KafkaSecurity
    # memory:// (MemoryBus)
    retention_bytes: int
    retention_s: float


class StoreOptions(TypedDict, total=False):
    """The constructor keywords of the store adapters (`store_from_url(url, **options)`)."""

    # cassandra:// (CassandraStore)
    station_events_retention_days: float
    auth: CassandraAuth
    replication_factor: int
    local_dc: str


def bus_options(settings: Settings) -> BusOptions:
    """The settings each bus adapter takes (constructor keywords), by URL scheme. Kafka's
    security is checked here (`KafkaSecurity` raises ConfigError naming the variable)."""
    options: BusOptions = {
        "dlq_max_attempts": settings.dlq_max_attempts,
        "dlq_backoff_s": settings.dlq_backoff_s,
        "max_record_bytes": settings.bus_max_record_bytes,
        "batch_linger_ms": settings.batch_linger_ms,
        "consumer_lag_interval_s": settings.consumer_lag_interval_s,
    }
    if settings.bus_url.startswith("kafka://"):
        options["linger_ms"] = settings.kafka_linger_ms
        options["batch_bytes"] = settings.kafka_batch_bytes
        options["replication_factor"] = settings.kafka_replication_factor
        options["min_insync_replicas"] = settings.kafka_min_insync_replicas
        options["security"] = KafkaSecurity.from_settings(settings)
    if settings.bus_url.startswith("memory://"):
        options["retention_bytes"] = settings.memory_retention_bytes
        options["retention_s"] = settings.memory_retention_s
    return options


def store_options(settings: Settings) -> StoreOptions:
    """The settings each store adapter takes (constructor keywords), by URL scheme.
    Cassandra's credentials and TLS are checked here (`CassandraAuth` raises ConfigError)."""
    if settings.store_url.startswith("cassandra://"):
        return {
            "station_events_retention_days": settings.station_events_retention_days,
            "auth": CassandraAuth.from_settings(settings),
            "replication_factor": settings.cassandra_replication_factor,
            "local_dc": settings.cassandra_local_dc,
        }
    return {}


def bootstrap(
    settings: Settings,
    *,
    bus: Bus | None = None,
    store: Store | None = None,
    clock: Clock | None = None,
    pepper: bytes | None = None,
    files: FileStore | None = None,
) -> Runtime:
    clock = clock or utcnow
    store = store if store is not None else store_from_url(settings.store_url, **store_options(settings))
    if files is None:
        files = DirectoryFiles(settings.files_dir, clock=clock) if settings.files_dir else store
    return Runtime(
        settings=settings,
        bus=bus if bus is not None else bus_from_url(settings.bus_url, **bus_options(settings)),
        store=store,
        clock=clock,
        pepper=pepper if pepper is not None else load_pepper(),
        files=files,
    )


def tune_gc() -> None:
    """Call once the services have started. Start-up objects live for the whole process:
    freeze them out of the cyclic GC and collect young garbage less often. Full collections
    of a large heap were 39% of the gateway's CPU in a 10k-station reconnect storm
    (bench/README.md); the per-call path creates no cycles, so this costs little memory."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)

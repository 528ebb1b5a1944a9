"""Wiring of the stations processor (ADR 016 §2): its stages, built once from the `Runtime`.

`build_stations(rt)` is the `stations` role of `csms` (services/common/cli.py, also part of
`csms run`): a `ProcessorGroup` of stages, each its own consumer group so one slow stage
never holds another back:

- `stations-state` (group `csms-stations`, this module): `StationsStateHandler` on
  csms.events.v1 in batches of up to CSMS_BATCH_MAX_RECORDS: STATION_OPS and COMMAND
  documents, the history log, outages, accepted DataTransfers forwarded to
  csms.datatransfer.v1 (created before the stage starts). A `Periodic` job prunes history
  rows older than CSMS_STATION_EVENTS_RETENTION_DAYS once an hour (SQLite; Cassandra rows
  expire by TTL and the job deletes nothing there).
- `stations-device-model` (services/stations/device_model.py `build_device_model`).
- `stations-drivers` (services/stations/drivers/: local lists, reservations, charging
  profiles, display messages, customer information; ADR 018).
- the firmware campaign controller (services/stations/campaigns.py `build_campaigns`).

Started in that order, stopped in the reverse.
"""

from __future__ import annotations

import functools

from services.common import topics
from services.common.processor import Periodic, Processor, ProcessorGroup
from services.common.runtime import Runtime
from services.stations.campaigns import build_campaigns
from services.stations.device_model import build_device_model
from services.stations.drivers import build_drivers
from services.stations.handlers import StationsStateHandler, observe_batch, prune_history
from services.stations.repository import StoreRepository

__all__ = ["NAME", "STATE_STAGE", "GROUP", "PRUNE_INTERVAL_S", "build_state_handler", "build_state", "build_stations"]

NAME = "stations"
STATE_STAGE = "stations-state"
GROUP = topics.group("csms-stations")
PRUNE_INTERVAL_S = 3600.0


def build_state_handler(rt: Runtime) -> StationsStateHandler:
    """The stations-state handler with its ports on the runtime's store, bus and clock
    (tools and tests that feed records themselves use it as it is)."""
    repository = StoreRepository(rt.store)
    return StationsStateHandler(
        ops=repository, commands=repository, history=rt.store, publish=rt.bus.publish_many, clock=rt.clock,
    )


def build_state(rt: Runtime) -> Processor:
    """The `stations-state` stage as a processor of its own consumer group."""
    handler = build_state_handler(rt)
    prune = functools.partial(prune_history, rt.store, rt.clock, rt.settings.station_events_retention_days)

    def store_healthy() -> bool:
        return bool(rt.store.healthy)

    async def ensure_datatransfer() -> None:
        await rt.bus.ensure_topic(topics.DATATRANSFER, rt.settings.events_partitions)

    return Processor(
        STATE_STAGE,
        rt.bus,
        topics.EVENTS,
        GROUP,
        handler.handle_batch,
        max_records=max(int(rt.settings.batch_max_records), 1),
        periodic=[Periodic("history-prune", PRUNE_INTERVAL_S, prune)],
        healthy=[store_healthy],
        observe=observe_batch,
        before_start=ensure_datatransfer,
    )


def build_stations(rt: Runtime) -> ProcessorGroup:
    """The CLI role "stations": the processor as a service."""
    stages = [build_state(rt), build_device_model(rt), build_drivers(rt), build_campaigns(rt)]
    return ProcessorGroup(NAME, stages, stop_order=list(reversed(stages)))

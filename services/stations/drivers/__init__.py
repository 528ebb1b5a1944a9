"""The `stations-drivers` stage (ADR 018): the driver and energy objects the CSMS keeps per
station, folded from csms.events.v1 in one consumer group (`csms-stations-drivers`).

Each feature is a `Fold` in its own module of this package:

- `local_lists`: the local authorization list sync (SendLocalList / GetLocalListVersion
  results) and its sync loop (a periodic job);
- `reservations`: reservation objects (ReserveNow / CancelReservation results,
  ReservationStatusUpdate, a transaction started with a reservation id) and their expiry;
- `charging_profiles`: every profile the CSMS installed (Accepted SetChargingProfile /
  SetChargingLimit / ClearChargingProfile results), and ReportChargingProfiles assembled;
- `display_messages`: SetDisplayMessage / ClearDisplayMessage results and
  NotifyDisplayMessages assembled;
- `customer_information`: NotifyCustomerInformation assembled.

The stage reads the `ce_type` header of each record first and decodes only the records
some fold asked for (`Fold.ce_types`); a record that does not decode is logged, counted
and skipped. Each fold gets the batch's events it asked for, in record order, and writes
its own documents (idempotently: the batch is handed again after a failure, and a fold
must give the same result). Folds run one after the other; an error propagates, so the
bus retries the batch and dead-letters a record that keeps failing (docs/dead-letters.md).
Periodic jobs of the folds (the local-list sync loop, the reservation expiry) run beside
the consumer in the same processor.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter

from services.common import codec, topics
from services.common import events as ev
from services.common.bus.port import Record
from services.common.processor import Periodic, Processor
from services.common.runtime import Runtime
from services.stations.drivers.fold import CE_TYPE_PREFIX, Fold, ce_type

__all__ = ["CE_TYPE_PREFIX", "Fold", "GROUP", "NAME", "build_drivers", "ce_type", "DriversStage"]

log = logging.getLogger("csms.stations.drivers")

NAME = "stations-drivers"
GROUP = topics.group("csms-stations-drivers")

EVENTS_SKIPPED = Counter(
    "csms_stations_drivers_skipped_total",
    "csms.events.v1 records the stations-drivers stage skipped, by reason (undecodable)",
    ["reason"],
)


class DriversStage:
    def __init__(self, folds: Sequence[Fold]) -> None:
        self.folds = list(folds)
        self._wanted = frozenset().union(*(f.ce_types for f in self.folds)) if self.folds else frozenset()

    def decode(self, records: Sequence[Record]) -> list[tuple[str, ev.Envelope]]:
        out: list[tuple[str, ev.Envelope]] = []
        for record in records:
            header = record.header("ce_type")
            if header not in self._wanted:
                continue
            try:
                env = codec.decode_event(record.value)
            except Exception:
                EVENTS_SKIPPED.labels(reason="undecodable").inc()
                log.exception("undecodable record %s[%d]@%d skipped", record.topic, record.partition, record.offset)
                continue
            out.append((header, env))
        return out

    async def handle_batch(self, records: Sequence[Record]) -> None:
        decoded = self.decode(records)
        if not decoded:
            return
        for fold in self.folds:
            mine = [env for header, env in decoded if header in fold.ce_types]
            if mine:
                await fold.apply(mine)


def build_folds(rt: Runtime) -> list[Fold]:
    """Every fold of the stage, on the runtime's store, bus and clock."""
    from services.stations.drivers import charging_profiles, customer_information, display_messages, local_lists, reservations

    return [m.build(rt) for m in (local_lists, reservations, charging_profiles, display_messages, customer_information)]


def build_drivers(rt: Runtime) -> Processor:
    """The `stations-drivers` stage as a processor of its own consumer group."""
    folds = build_folds(rt)
    stage = DriversStage(folds)

    def store_healthy() -> bool:
        return bool(rt.store.healthy)

    return Processor(
        NAME,
        rt.bus,
        topics.EVENTS,
        GROUP,
        stage.handle_batch,
        max_records=max(int(rt.settings.batch_max_records), 1),
        periodic=[p for f in folds for p in f.periodic],
        healthy=[store_healthy],
    )

"""Store latency (`csms_store_op_seconds{op,table}`, ADR 019): every adapter observes one
latency per operation it counts in `csms_store_ops_total`, so the histogram's count moves
with the operation counter."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.common.store.port import Store
from tests.support import a_station


def observed(op: str, table: str) -> float:
    return REGISTRY.get_sample_value("csms_store_op_seconds_count", {"op": op, "table": table}) or 0.0


def counted(op: str, table: str) -> float:
    return REGISTRY.get_sample_value("csms_store_ops_total", {"op": op, "table": table}) or 0.0


async def test_each_counted_operation_is_timed(store: Store) -> None:
    before = {k: (observed(*k), counted(*k)) for k in (("read", "stations"), ("write", "stations"))}
    station = a_station()
    await store.put_station(station)
    assert await store.get_station(station.id) is not None
    for key, (seen, ops) in before.items():
        assert observed(*key) - seen == counted(*key) - ops >= 1, key
    assert (REGISTRY.get_sample_value("csms_store_op_seconds_sum", {"op": "read", "table": "stations"}) or 0.0) > 0.0

"""Counting store operations (ADR 015: "per-event store traffic is constant").

Every adapter keeps `ops: collections.Counter[(op, table)]` with op "read" or "write",
bumped once per statement or request it sends (see the port's module docstring for
what one operation is), and feeds the process-wide Prometheus counter
`csms_store_ops_total{op,table}`. Label children are bound once per (op, table) and
cached, so a count costs a dict lookup and an `inc()`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from prometheus_client import Counter as PromCounter

__all__ = ["STORE_OPS", "OpKey", "count_op"]

OpKey = tuple[str, str]  # ("read" | "write", table)

STORE_OPS = PromCounter(
    "csms_store_ops_total",
    "Store operations sent (one per statement, query page or batch table), by op and table",
    ["op", "table"],
)
_children: dict[OpKey, Any] = {}


def count_op(ops: Counter[OpKey], key: OpKey, n: int = 1) -> None:
    """Add `n` operations of `key` to an adapter's counter and to the Prometheus total."""
    ops[key] += n
    child = _children.get(key)
    if child is None:
        child = _children[key] = STORE_OPS.labels(*key)
    child.inc(n)

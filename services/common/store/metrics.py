"""Counting store operations (ADR 015: "per-event store traffic is constant").

Every adapter keeps `ops: collections.Counter[(op, table)]` with op "read" or "write",
bumped once per statement or request it sends (see the port's module docstring for
what one operation is), and feeds the process-wide Prometheus counter
`csms_store_ops_total{op,table}`. Label children are bound once per (op, table) and
cached, so a count costs a dict lookup and an `inc()`. `statement_ops` says what one
statement counts as, for both engines (a Cassandra batch says its keys itself).

Latency: `csms_store_op_seconds{op,table}` (Histogram) gets one observation per counted
operation through `time_op` (children cached the same way): Cassandra, the request's round
trip (failed ones too); SQLite, the statement's time on the connection (the lock wait not
included; a transaction of several statements gives each its share of the transaction).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram

__all__ = ["STORE_OPS", "STORE_OP_SECONDS", "OpKey", "count_op", "statement_ops", "time_op"]

OpKey = tuple[str, str]  # ("read" | "write", table)

STORE_OPS = PromCounter(
    "csms_store_ops_total",
    "Store operations sent (one per statement, query page or batch table), by op and table",
    ["op", "table"],
)
STORE_OP_SECONDS = Histogram(
    "csms_store_op_seconds",
    "Store operation latency (one observation per statement, query page or batch table), by op and table",
    ["op", "table"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_children: dict[OpKey, Any] = {}
_timers: dict[OpKey, Any] = {}


def count_op(ops: Counter[OpKey], key: OpKey, n: int = 1) -> None:
    """Add `n` operations of `key` to an adapter's counter and to the Prometheus total."""
    ops[key] += n
    child = _children.get(key)
    if child is None:
        child = _children[key] = STORE_OPS.labels(*key)
    child.inc(n)


def time_op(key: OpKey, seconds: float) -> None:
    """One latency observation of `key` in `csms_store_op_seconds`."""
    child = _timers.get(key)
    if child is None:
        child = _timers[key] = STORE_OP_SECONDS.labels(*key)
    child.observe(seconds)


_TABLE_NAMED = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+(?:\w+\.)?(\w+)", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def statement_ops(statement: str) -> tuple[OpKey, ...]:
    """What one statement counts as: ("read", table) for a SELECT, ("write", table) for
    anything else, `table` the first one named after FROM/INTO/UPDATE (a keyspace prefix
    dropped; "?" when none is); nothing for DDL (CREATE, ALTER, DROP TABLE)."""
    head = statement.lstrip()[:6].upper()
    if head in ("CREATE", "ALTER ", "DROP T"):
        return ()
    match = _TABLE_NAMED.search(statement)
    return (("read" if head == "SELECT" else "write", match.group(1) if match else "?"),)

"""The Cassandra adapter's glue to the driver that needs no cluster: the row factory that
makes one named-tuple class per column list, and the filter that logs the document
batches' expected size warnings once instead of once per batch."""

from __future__ import annotations

import logging

import pytest
from cassandra.query import named_tuple_factory

from services.common.store.cassandra import connection
from services.common.store.cassandra.connection import _ExpectedWarnings, _row_factory


def test_rows_are_the_drivers_named_tuples_with_one_class_per_column_list() -> None:
    cols = ["id", "body", "[applied]", "count(*)"]
    ours = _row_factory(cols, [("a", "x", True, 1), ("b", None, False, 2)])
    theirs = named_tuple_factory(cols, [("a", "x", True, 1), ("b", None, False, 2)])
    assert [r._asdict() for r in ours] == [r._asdict() for r in theirs]
    assert ours[1].body is None and ours[0].applied is True and ours[0] == ("a", "x", True, 1)
    again = _row_factory(list(cols), [("c", "y", False, 3)])
    assert type(again[0]) is type(ours[0])  # made once, not per result
    other = _row_factory(["id"], [("d",)])
    assert type(other[0]) is not type(ours[0]) and other[0].id == "d"
    assert _row_factory(cols, []) == []


def _record(text: str) -> logging.LogRecord:
    return logging.LogRecord("cassandra.protocol", logging.WARNING, __file__, 1, "Server warning: %s", (text,), None)


def test_batch_size_warnings_are_logged_once_then_counted_and_others_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ExpectedWarnings, "_seen", False)
    monkeypatch.setattr(_ExpectedWarnings, "suppressed", 0)
    f = _ExpectedWarnings()
    batch = "Batch for [ks.docs, ks.docs_by_parent] is of size 16332, exceeding specified threshold of 5120 by 11212."
    first = _record(batch)
    assert f.filter(first)
    assert "further ones are not logged" in first.getMessage() and "16332" in first.getMessage()
    assert not f.filter(_record(batch)) and not f.filter(_record(batch))
    assert _ExpectedWarnings.suppressed == 2
    other = _record("Aggregation query used without partition key")
    assert f.filter(other) and other.getMessage() == "Server warning: Aggregation query used without partition key"
    plain = logging.LogRecord("cassandra.protocol", logging.WARNING, __file__, 1, "Unknown protocol flags set: %02x", (3,), None)
    assert f.filter(plain)


def test_the_filter_is_installed_once_on_the_drivers_protocol_logger() -> None:
    connection._filter_expected_warnings()
    connection._filter_expected_warnings()
    logger = logging.getLogger("cassandra.protocol")
    assert sum(isinstance(f, _ExpectedWarnings) for f in logger.filters) == 1

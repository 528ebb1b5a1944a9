"""The Cassandra adapter's glue to the driver that needs no cluster: the filter that logs
the document batches' expected size warnings once instead of once per batch."""

from __future__ import annotations

import logging

import pytest
from services.common.store.cassandra import connection
from services.common.store.cassandra.connection import _ExpectedWarnings


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

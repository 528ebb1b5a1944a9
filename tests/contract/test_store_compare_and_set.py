"""put_doc_if: compare-and-set on documents (upload slots, firmware campaigns). Of several
writers racing from the same version exactly one wins, on every adapter: on Cassandra a
lightweight transaction, where a versioned put_doc (read, then write USING TIMESTAMP) can
tell two racers both that they won (found by the station-operations end-to-end tests)."""

from __future__ import annotations

import asyncio

from services.common.store.port import Store
from tests.contract.builders import unique


async def test_a_new_document_is_written_once(store: Store) -> None:
    doc_id = unique("slot")
    assert await store.put_doc_if("log_upload", doc_id, {"n": 1}, parent="CP-1", expected_version=None, version=1)
    assert not await store.put_doc_if("log_upload", doc_id, {"n": 9}, parent="CP-1", expected_version=None, version=1)
    assert await store.get_doc("log_upload", doc_id) == {"n": 1}


async def test_an_update_lands_only_over_the_expected_version(store: Store) -> None:
    doc_id = unique("camp")
    assert await store.put_doc_if("firmware_campaign", doc_id, {"n": 1}, parent="active", expected_version=None, version=1)
    assert not await store.put_doc_if("firmware_campaign", doc_id, {"n": 3}, parent="active", expected_version=2, version=3)
    assert await store.put_doc_if("firmware_campaign", doc_id, {"n": 2}, parent="done", expected_version=1, version=2)
    assert not await store.put_doc_if("firmware_campaign", doc_id, {"n": 2.5}, parent="done", expected_version=1, version=2)
    assert await store.get_doc("firmware_campaign", doc_id) == {"n": 2}
    assert {"n": 2} in await store.list_docs("firmware_campaign", parent="done")


async def test_an_update_of_a_missing_document_writes_nothing(store: Store) -> None:
    doc_id = unique("none")
    assert not await store.put_doc_if("log_upload", doc_id, {"n": 2}, expected_version=1, version=2)
    assert await store.get_doc("log_upload", doc_id) is None


async def test_of_racing_writers_from_one_version_exactly_one_wins(store: Store) -> None:
    for round_ in range(5):
        doc_id = unique(f"race{round_}")
        assert await store.put_doc_if("log_upload", doc_id, {"w": "api"}, expected_version=None, version=1)
        won = await asyncio.gather(*(
            store.put_doc_if("log_upload", doc_id, {"w": i}, expected_version=1, version=2) for i in range(6)
        ))
        assert sum(won) == 1, won
        assert await store.get_doc("log_upload", doc_id) == {"w": won.index(True)}

"""Upgrading a store made before ADR 015 (schema migration 1 only) keeps its documents
listable: SQLite gains tables and an index; Cassandra copies the single-partition
`docs_by_kind` into the bucketed `docs_by_kind_b` (paged)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.common.store.port import DocWrite, MeterRow, Store
from tests.contract.builders import UTC, at, unique
from tests.contract.conftest import INFRA, SESSION_TAG


async def every_page(store: Store, kind: str, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_docs_page(kind, limit=limit, cursor=cursor)
        out.extend(page)
        if cursor is None:
            return out


async def test_sqlite_upgrade_keeps_documents_and_adds_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import services.common.store.sqlite.schema as sqlite_schema
    from services.common.store.sqlite import SqliteStore

    url = f"sqlite:///{tmp_path / 'old.db'}"
    all_migrations = sqlite_schema.MIGRATIONS
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", all_migrations[:1])
    old = SqliteStore(url)
    await old.start()
    await old.migrate()
    kind = unique("kind")
    for i in range(5):
        await old.put_doc(kind, f"d{i}", {"i": i}, parent="CP", version=i + 1)
    await old.close()

    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", all_migrations)
    new = SqliteStore(url)
    await new.start()
    try:
        await new.migrate()
        assert await new.applied_migrations() == [m.version for m in all_migrations]
        assert await new.list_docs(kind) == [{"i": i} for i in reversed(range(5))]
        assert sorted(d["i"] for d in await every_page(new, kind, 2)) == list(range(5))
        await new.append_samples("s", [MeterRow(at(0), "Energy.Active.Import.Register", "", 1.0)])
        assert len(await new.read_samples("s")) == 1
    finally:
        await new.close()


if INFRA:

    @pytest.mark.infra
    async def test_cassandra_upgrade_copies_the_kind_listing_into_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
        import services.common.store.cassandra.schema as cassandra_schema
        from services.common.store.cassandra import CassandraStore

        keyspace = f"csms_upgrade_{SESSION_TAG}_{secrets.token_hex(2)}"
        url = f"cassandra://127.0.0.1:9042/{keyspace}"
        all_migrations = cassandra_schema.MIGRATIONS
        monkeypatch.setattr(cassandra_schema, "MIGRATIONS", all_migrations[:1])
        old = CassandraStore(url)
        await asyncio.wait_for(old.start(), 180)
        try:
            await asyncio.wait_for(old.migrate(), 180)
            # Rows as the pre-ADR 015 put_doc wrote them (docs, docs_by_parent, docs_by_kind).
            kind, small = unique("kind"), unique("kind")
            base = datetime(2026, 11, 1)
            rows = [(kind, f"d{i:04d}", f"CP{i % 7}", base + timedelta(seconds=i), i + 1) for i in range(1100)]
            rows += [(small, f"s{i}", "", base + timedelta(seconds=i), None) for i in range(3)]

            async def old_put(k: str, doc_id: str, parent: str, updated: datetime, version: int | None) -> None:
                body = f'{{"id": "{doc_id}"}}'
                ts = "" if version is None else f" USING TIMESTAMP {version}"
                await asyncio.gather(
                    old._run(f"INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (%s,%s,%s,%s,%s,%s){ts}",
                             (k, doc_id, parent, version, updated, body)),
                    old._run(f"INSERT INTO docs_by_parent (kind, parent, id, updated_at, body) VALUES (%s,%s,%s,%s,%s){ts}",
                             (k, parent, doc_id, updated, body)),
                    old._run(f"INSERT INTO docs_by_kind (kind, id, updated_at, body) VALUES (%s,%s,%s,%s){ts}",
                             (k, doc_id, updated, body)),
                )

            for i in range(0, len(rows), 100):
                await asyncio.gather(*(old_put(*r) for r in rows[i:i + 100]))
        finally:
            await old.close()

        monkeypatch.setattr(cassandra_schema, "MIGRATIONS", all_migrations)
        new = CassandraStore(url)
        await asyncio.wait_for(new.start(), 180)
        try:
            await asyncio.wait_for(new.migrate(), 180)
            listed = await new.list_docs(kind, limit=5000)
            assert [d["id"] for d in listed] == [f"d{i:04d}" for i in reversed(range(1100))]
            assert [d["id"] for d in await new.list_docs(small)] == ["s2", "s1", "s0"]
            paged = [d["id"] for d in await every_page(new, kind, 250)]
            assert sorted(paged) == [f"d{i:04d}" for i in range(1100)]
            # the copy kept the version-timestamps: an older version still cannot overwrite
            await new.put_docs(kind, [DocWrite("d0005", {"id": "stale"}, parent="CP5", version=3)])
            assert await new.get_doc(kind, "d0005") == {"id": "d0005"}
            assert "stale" not in [d["id"] for d in await new.list_docs(kind, limit=5000)]
            await new.put_docs(kind, [DocWrite("d0005", {"id": "d0005", "new": True}, parent="CP5", version=10)])
            assert (await new.list_docs(kind, limit=1)) == [{"id": "d0005", "new": True}]
            assert await new.delete_doc(kind, "d0006") is True
            assert "d0006" not in [d["id"] for d in await new.list_docs(kind, limit=5000)]
            assert "d0006" not in [d["id"] for d in await every_page(new, kind, 400)]
        finally:
            await new._run(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
            await new.close()

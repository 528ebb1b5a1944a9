"""`DocumentStore` on SQLite: one `docs` row per (kind, id), the body JSON text.

Batches (ADR 015): `put_docs` is one transaction running one upsert statement over the
documents; `get_docs` one query (the ids as one JSON array parameter). Pages go by id
(docs_by_parent_id serves a parent's pages). Update times are strictly increasing within
a store, so `list_docs` (newest first) has a total order even within one microsecond.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import orjson

from services.common.store.port import DocWrite
from services.common.store.rows import decode_cursor, encode_cursor, encode_doc
from services.common.store.sqlite.connection import SqliteConnection
from services.common.timeutil import to_iso_us

__all__ = ["SqliteDocuments"]

UTC = timezone.utc

# Fixed text: no per-call string building.
# One statement for versioned and unversioned documents: a versioned write lands only over
# no row, an unversioned row or a smaller version; an unversioned one always lands and keeps
# the stored version (the highest ever written), exactly like put_doc.
_PUT_DOCS = """INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (kind, id) DO UPDATE SET
        parent = excluded.parent, version = COALESCE(excluded.version, docs.version),
        updated_at = excluded.updated_at, body = excluded.body
    WHERE excluded.version IS NULL OR docs.version IS NULL OR docs.version < excluded.version"""
_PUT_DOC = """INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (kind, id) DO UPDATE {on_conflict}
                    RETURNING 1"""
_PUT_DOC_UNVERSIONED = _PUT_DOC.format(
    on_conflict="SET parent = excluded.parent, updated_at = excluded.updated_at, body = excluded.body"
)
_PUT_DOC_VERSIONED = _PUT_DOC.format(
    on_conflict=(
        "SET parent = excluded.parent, version = excluded.version, "
        "updated_at = excluded.updated_at, body = excluded.body "
        "WHERE docs.version IS NULL OR docs.version < excluded.version"
    )
)
_INSERT_DOC_NEW = """INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (kind, id) DO NOTHING RETURNING 1"""
_UPDATE_DOC_CAS = """UPDATE docs SET parent = ?, version = ?, updated_at = ?, body = ?
    WHERE kind = ? AND id = ? AND version = ? RETURNING 1"""
_GET_DOC = "SELECT body FROM docs WHERE kind = ? AND id = ?"
_GET_DOCS = "SELECT id, body FROM docs WHERE kind = ? AND id IN (SELECT value FROM json_each(?))"
_LIST_KIND = "SELECT body FROM docs WHERE kind = ? ORDER BY updated_at DESC, id DESC LIMIT ?"
_LIST_PARENT = "SELECT body FROM docs WHERE kind = ? AND parent = ? ORDER BY updated_at DESC, id DESC LIMIT ?"
_PAGE_KIND = "SELECT id, body FROM docs WHERE kind = ? ORDER BY id LIMIT ?"
_PAGE_KIND_AFTER = "SELECT id, body FROM docs WHERE kind = ? AND id > ? ORDER BY id LIMIT ?"
_PAGE_PARENT = "SELECT id, body FROM docs WHERE kind = ? AND parent = ? ORDER BY id LIMIT ?"
_PAGE_PARENT_AFTER = "SELECT id, body FROM docs WHERE kind = ? AND parent = ? AND id > ? ORDER BY id LIMIT ?"
_CURSOR_TAG = "id"


class SqliteDocuments(SqliteConnection):
    _last_stamp: datetime | None = None  # the last update time handed out (see `_stamp`)

    async def put_doc(
        self,
        kind: str,
        doc_id: str,
        doc: dict[str, Any],
        *,
        parent: str = "",
        version: int | None = None,
    ) -> bool:
        """Upsert. With `version`: written only if there is no row, the stored row has no
        version, or the stored version is smaller. Without: always written, and the stored
        version (the highest ever written) is kept, so stale versioned writes stay harmless."""
        body = encode_doc(doc).decode("utf-8")
        sql = _PUT_DOC_UNVERSIONED if version is None else _PUT_DOC_VERSIONED
        async with self._session("put_doc") as db:
            self._count(sql)
            rows = await db.execute_fetchall(sql, (kind, doc_id, parent, version, self._stamp(), body))
        return bool(list(rows))

    async def put_doc_if(
        self,
        kind: str,
        doc_id: str,
        doc: dict[str, Any],
        *,
        parent: str = "",
        expected_version: int | None,
        version: int,
    ) -> bool:
        """Compare-and-set in one statement (the connection is this process's only writer of
        the file, so a statement is atomic)."""
        body = encode_doc(doc).decode("utf-8")
        async with self._session("put_doc") as db:
            if expected_version is None:
                self._count(_INSERT_DOC_NEW)
                rows = await db.execute_fetchall(_INSERT_DOC_NEW, (kind, doc_id, parent, version, self._stamp(), body))
            else:
                self._count(_UPDATE_DOC_CAS)
                rows = await db.execute_fetchall(
                    _UPDATE_DOC_CAS, (parent, version, self._stamp(), body, kind, doc_id, expected_version)
                )
        return bool(list(rows))

    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        rows = await self._fetch("get_doc", _GET_DOC, (kind, doc_id))
        return orjson.loads(rows[0][0]) if rows else None

    async def list_docs(self, kind: str, *, parent: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if parent is None:
            rows = await self._fetch("list_docs", _LIST_KIND, (kind, max(0, limit)))
        else:
            rows = await self._fetch("list_docs", _LIST_PARENT, (kind, parent, max(0, limit)))
        return [orjson.loads(r[0]) for r in rows]

    async def delete_doc(self, kind: str, doc_id: str) -> bool:
        return await self._write("delete_doc", "DELETE FROM docs WHERE kind = ? AND id = ?", (kind, doc_id)) > 0

    async def get_docs(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """One query (the ids travel as one JSON array parameter, so any number fits)."""
        if not ids:
            return {}
        rows = await self._fetch("get_docs", _GET_DOCS, (kind, orjson.dumps(list(ids)).decode("utf-8")))
        return {r[0]: orjson.loads(r[1]) for r in rows}

    async def put_docs(self, kind: str, items: Sequence[DocWrite]) -> None:
        """One transaction, one statement run over the items in order (see `_PUT_DOCS`)."""
        if not items:
            return
        bodies = [encode_doc(item.doc).decode("utf-8") for item in items]  # a bad document fails before the transaction
        async with self._session("put_docs", immediate=True) as db:
            params = [
                (kind, item.doc_id, item.parent, item.version, self._stamp(), body)
                for item, body in zip(items, bodies)
            ]
            self._count(_PUT_DOCS)
            await db.executemany(_PUT_DOCS, params)

    async def list_docs_page(
        self, kind: str, *, parent: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Pages in id order (not update time: a document updated during the listing must not
        be skipped or repeated). Every document present for the whole listing is returned
        exactly once; one written or deleted meanwhile may or may not be. A cursor this
        adapter did not issue raises ValueError."""
        limit = max(1, int(limit))
        after = None if cursor is None else decode_cursor(cursor, _CURSOR_TAG, str)[1]
        sql: str
        params: tuple[Any, ...]
        if parent is None:
            sql, params = (_PAGE_KIND, (kind,)) if after is None else (_PAGE_KIND_AFTER, (kind, after))
        else:
            sql, params = (_PAGE_PARENT, (kind, parent)) if after is None else (_PAGE_PARENT_AFTER, (kind, parent, after))
        rows = await self._fetch("list_docs_page", sql, params + (limit + 1,))
        more = len(rows) > limit
        rows = rows[:limit]
        return [orjson.loads(r[1]) for r in rows], (encode_cursor(_CURSOR_TAG, rows[-1][0]) if more else None)

    def _stamp(self) -> str:
        """Update time for documents: strictly increasing within this store (call under the lock)."""
        now = self._clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = now
        return to_iso_us(now)

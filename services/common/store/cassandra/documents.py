"""`DocumentStore` on Cassandra.

A document lives in three tables (`docs` by (kind, id); `docs_by_parent` by (kind, parent);
`docs_by_kind_b` by (kind, bucket) with KIND_BUCKETS hash buckets, so no kind is one
ever-growing partition); its three rows go in one unlogged batch (one request), and
`put_docs` sends a batch's documents concurrently without reading first. Versioned kinds
are written `USING TIMESTAMP <version>`, so Cassandra's last-write-wins keeps the highest
version whatever the arrival order, without a Paxos round per write; a kind is either
always versioned or never. `put_doc_if` (compare-and-set, a lightweight transaction) is for
the few kinds whose writers must not both win (upload slots, campaigns); those kinds are
written with nothing else.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Sequence

import orjson
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, PreparedStatement

from services.common.store.cassandra.connection import CassandraConnection, utc_naive
from services.common.store.cassandra.schema import KIND_BUCKETS, bucket
from services.common.store.metrics import OpKey
from services.common.store.port import DocWrite
from services.common.store.rows import decode_cursor, encode_cursor, encode_doc

__all__ = ["CassandraDocuments", "DOCS_PER_BATCH"]

UTC = timezone.utc
# Documents per unlogged batch in put_docs: 3 documents are at most 9 partitions, under
# Cassandra's unlogged_batch_across_partitions_warn_threshold (10); fewer requests is what
# saves CPU (bench/store_ops.py). Bodies in one batch stay under _DOC_BATCH_MAX_BODY bytes
# (x3 tables: under batch_size_fail_threshold, 50 KiB); a bigger body goes as three requests.
DOCS_PER_BATCH = 3
_DOC_BATCH_MAX_BODY = 14_000
_DOC_CONCURRENCY = 128       # documents in flight per put_docs/get_docs
_W_DOCS: tuple[OpKey, ...] = (("write", "docs"), ("write", "docs_by_parent"), ("write", "docs_by_kind_b"))

_Row = tuple[PreparedStatement, tuple[Any, ...]]


class CassandraDocuments(CassandraConnection):
    # Tuning switches kept for bench/store_ops.py: documents batched (else three requests
    # each), how many per batch, and get_docs as one `IN` query (else concurrent
    # single-partition reads).
    _batch_docs: bool
    _docs_per_batch: int
    _get_docs_in: bool

    def _init_documents(self, *, batch_docs: bool, docs_per_batch: int, get_docs_in: bool) -> None:
        self._batch_docs = batch_docs
        self._docs_per_batch = max(1, int(docs_per_batch))
        self._get_docs_in = get_docs_in

    def _doc_statements(self, versioned: bool) -> tuple[PreparedStatement, PreparedStatement, PreparedStatement]:
        if versioned:
            return (
                self._prep("put_doc_v", "INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (?,?,?,?,?,?) USING TIMESTAMP ?"),
                self._prep("put_doc_parent_v", "INSERT INTO docs_by_parent (kind, parent, id, updated_at, body) VALUES (?,?,?,?,?) USING TIMESTAMP ?"),
                self._prep("put_doc_kind_v", "INSERT INTO docs_by_kind_b (kind, bucket, id, updated_at, body) VALUES (?,?,?,?,?) USING TIMESTAMP ?"),
            )
        return (
            self._prep("put_doc", "INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (?,?,?,?,?,?)"),
            self._prep("put_doc_parent", "INSERT INTO docs_by_parent (kind, parent, id, updated_at, body) VALUES (?,?,?,?,?)"),
            self._prep("put_doc_kind", "INSERT INTO docs_by_kind_b (kind, bucket, id, updated_at, body) VALUES (?,?,?,?,?)"),
        )

    def _doc_rows(
        self, kind: str, doc_id: str, doc: dict[str, Any], parent: str, version: int | None, now: datetime
    ) -> tuple[int, list[_Row]]:
        """(body bytes, the document's three rows). Versioned rows carry `USING TIMESTAMP
        version`; an unversioned write leaves the stored version as it is (unset, not null)."""
        raw = encode_doc(doc)
        body = raw.decode()
        p_doc, p_parent, p_kind = self._doc_statements(version is not None)
        if version is None:
            return len(raw), [
                (p_doc, (kind, doc_id, parent, UNSET_VALUE, now, body)),
                (p_parent, (kind, parent, doc_id, now, body)),
                (p_kind, (kind, bucket(doc_id), doc_id, now, body)),
            ]
        v = int(version)
        return len(raw), [
            (p_doc, (kind, doc_id, parent, v, now, body, v)),
            (p_parent, (kind, parent, doc_id, now, body, v)),
            (p_kind, (kind, bucket(doc_id), doc_id, now, body, v)),
        ]

    async def _run_batch(self, rows: list[_Row], keys: tuple[OpKey, ...]) -> None:
        batch = BatchStatement(BatchType.UNLOGGED)
        for ps, params in rows:
            batch.add(ps, params)
        await self._run(batch, keys=keys)

    def _doc_requests(self, kind: str, items: Iterable[DocWrite], now: datetime) -> list[Callable[[], Awaitable[Any]]]:
        """Unlogged batches of up to `docs_per_batch` documents' rows (a document's rows are
        never split across requests unless its body is too big for a batch), as thunks: no
        coroutine exists before it is run (a failure leaves none un-awaited)."""
        requests: list[Callable[[], Awaitable[Any]]] = []
        group: list[_Row] = []
        group_docs = group_bytes = 0
        for w in items:
            size, rows = self._doc_rows(kind, w.doc_id, w.doc, w.parent, w.version, now)
            if not self._batch_docs or size > _DOC_BATCH_MAX_BODY:
                requests.extend(functools.partial(self._run, ps, params) for ps, params in rows)
                continue
            if group and (group_docs >= self._docs_per_batch or group_bytes + size > _DOC_BATCH_MAX_BODY):
                requests.append(functools.partial(self._run_batch, group, _W_DOCS))
                group, group_docs, group_bytes = [], 0, 0
            group.extend(rows)
            group_docs += 1
            group_bytes += size
        if group:
            requests.append(functools.partial(self._run_batch, group, _W_DOCS))
        return requests

    async def put_doc(self, kind: str, doc_id: str, doc: dict[str, Any], *, parent: str = "", version: int | None = None) -> bool:
        if version is not None:
            row = (await self._run(self._prep("get_doc_version", "SELECT version FROM docs WHERE kind = ? AND id = ?"), (kind, doc_id))).one()
            if row is not None and row.version is not None and int(row.version) >= version:
                return False
        requests = self._doc_requests(kind, [DocWrite(doc_id, doc, parent, version)], utc_naive(datetime.now(UTC)))
        await asyncio.gather(*(request() for request in requests))
        return True

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
        """A lightweight transaction on `docs` (Paxos: a few round trips, so only for the
        rare writes that must not both win: an upload slot, a campaign step); the listing
        rows follow once it applied, with ordinary timestamps."""
        raw = encode_doc(doc)
        body = raw.decode()
        now = utc_naive(datetime.now(UTC))
        if expected_version is None:
            ps = self._prep(
                "put_doc_new",
                "INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (?,?,?,?,?,?) IF NOT EXISTS",
            )
            rs = await self._run(ps, (kind, doc_id, parent, version, now, body))
        else:
            ps = self._prep(
                "put_doc_cas",
                "UPDATE docs SET parent = ?, version = ?, updated_at = ?, body = ? WHERE kind = ? AND id = ? IF version = ?",
            )
            rs = await self._run(ps, (parent, version, now, body, kind, doc_id, expected_version))
        if not rs.was_applied:
            return False
        _, p_parent, p_kind = self._doc_statements(False)
        await asyncio.gather(
            self._run(p_parent, (kind, parent, doc_id, now, body)),
            self._run(p_kind, (kind, bucket(doc_id), doc_id, now, body)),
        )
        return True

    async def put_docs(self, kind: str, items: Sequence[DocWrite]) -> None:
        """No read: the documents' rows in unlogged batches of `docs_per_batch` documents,
        the batches concurrently. A document named twice is written once: the highest
        version (the first of equal ones), or the last unversioned write."""
        if not items:
            return
        latest: dict[str, DocWrite] = {}
        for item in items:
            seen = latest.get(item.doc_id)
            if seen is None or item.version is None or (seen.version is not None and item.version > seen.version):
                latest[item.doc_id] = item
        requests = self._doc_requests(kind, latest.values(), utc_naive(datetime.now(UTC)))
        for i in range(0, len(requests), _DOC_CONCURRENCY):
            await asyncio.gather(*(request() for request in requests[i:i + _DOC_CONCURRENCY]))

    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        row = (await self._run(self._prep("get_doc", "SELECT body FROM docs WHERE kind = ? AND id = ?"), (kind, doc_id))).one()
        return orjson.loads(row.body) if row is not None and row.body is not None else None

    async def get_docs(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """One `IN` query per 128 ids, fanned out by the coordinator: measured about 3x less
        client CPU than concurrent single-partition reads (get_docs_in=False keeps those for
        bench/store_ops.py)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        out: dict[str, dict[str, Any]] = {}
        if self._get_docs_in:
            ps = self._prep("get_docs_in", "SELECT id, body FROM docs WHERE kind = ? AND id IN ?")
            for i in range(0, len(wanted), _DOC_CONCURRENCY):
                for r in await self._read_all(ps, (kind, wanted[i:i + _DOC_CONCURRENCY])):
                    if r.body is not None:
                        out[r.id] = orjson.loads(r.body)
            return out
        ps = self._prep("get_doc", "SELECT body FROM docs WHERE kind = ? AND id = ?")
        for i in range(0, len(wanted), _DOC_CONCURRENCY):
            chunk = wanted[i:i + _DOC_CONCURRENCY]
            results = await asyncio.gather(*(self._run(ps, (kind, doc_id)) for doc_id in chunk))
            for doc_id, rs in zip(chunk, results):
                rows = rs.current_rows
                if rows and rows[0].body is not None:
                    out[doc_id] = orjson.loads(rows[0].body)
        return out

    async def list_docs(self, kind: str, *, parent: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if parent is None:
            ps = self._prep("list_docs_kind_b", "SELECT id, updated_at, body FROM docs_by_kind_b WHERE kind = ? AND bucket = ?")
            parts = await asyncio.gather(*(self._read_all(ps, (kind, b)) for b in range(KIND_BUCKETS)))
            rows: Iterable[Any] = (r for part in parts for r in part)
        else:
            ps = self._prep("list_docs_parent", "SELECT id, updated_at, body FROM docs_by_parent WHERE kind = ? AND parent = ?")
            rows = await self._read_all(ps, (kind, parent))
        items = sorted(((r.updated_at or datetime.min, r.id, r.body) for r in rows if r.body is not None), key=lambda t: (t[0], t[1]), reverse=True)
        return [orjson.loads(body) for _, _, body in items[:max(0, limit)]]

    async def list_docs_page(
        self, kind: str, *, parent: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Pages by (bucket, id) (by id within one parent). Each page asks for one row more
        than it returns, so the last page says None instead of promising an empty one."""
        limit = max(1, int(limit))
        if parent is not None:
            after = None if cursor is None else decode_cursor(cursor, "p", str)[1]
            if after is None:
                ps = self._prep("page_parent", "SELECT id, body FROM docs_by_parent WHERE kind = ? AND parent = ? LIMIT ?")
                rows = (await self._run(ps, (kind, parent, limit + 1))).current_rows
            else:
                ps = self._prep("page_parent_after", "SELECT id, body FROM docs_by_parent WHERE kind = ? AND parent = ? AND id > ? LIMIT ?")
                rows = (await self._run(ps, (kind, parent, after, limit + 1))).current_rows
            more = len(rows) > limit
            rows = rows[:limit]
            docs = [orjson.loads(r.body) for r in rows if r.body is not None]
            return docs, (encode_cursor("p", rows[-1].id) if more else None)
        b, after = (0, None) if cursor is None else _bucket_position(cursor)
        first = self._prep("page_kind", "SELECT id, body FROM docs_by_kind_b WHERE kind = ? AND bucket = ? LIMIT ?")
        rest = self._prep("page_kind_after", "SELECT id, body FROM docs_by_kind_b WHERE kind = ? AND bucket = ? AND id > ? LIMIT ?")
        found: list[tuple[int, str, str | None]] = []
        while b < KIND_BUCKETS and len(found) <= limit:
            need = limit + 1 - len(found)
            if after is None:
                got = (await self._run(first, (kind, b, need))).current_rows
            else:
                got = (await self._run(rest, (kind, b, after, need))).current_rows
            found.extend((b, r.id, r.body) for r in got)
            b, after = b + 1, None
        more = len(found) > limit
        found = found[:limit]
        docs = [orjson.loads(body) for _, _, body in found if body is not None]
        return docs, (encode_cursor("b", found[-1][0], found[-1][1]) if more else None)

    async def delete_doc(self, kind: str, doc_id: str) -> bool:
        row = (await self._run(self._prep("get_doc_meta", "SELECT parent, version FROM docs WHERE kind = ? AND id = ?"), (kind, doc_id))).one()
        if row is None:
            return False
        parent = row.parent or ""
        keys = (kind, doc_id), (kind, parent, doc_id), (kind, bucket(doc_id), doc_id)
        batch = BatchStatement(BatchType.UNLOGGED)
        if row.version is not None:
            # a delete must shadow versioned writes (USING TIMESTAMP version): delete above the version
            ts = int(row.version) + 1
            batch.add(self._prep("del_doc_t", "DELETE FROM docs USING TIMESTAMP ? WHERE kind = ? AND id = ?"), (ts,) + keys[0])
            batch.add(self._prep("del_doc_parent_t", "DELETE FROM docs_by_parent USING TIMESTAMP ? WHERE kind = ? AND parent = ? AND id = ?"), (ts,) + keys[1])
            batch.add(self._prep("del_doc_kind_t", "DELETE FROM docs_by_kind_b USING TIMESTAMP ? WHERE kind = ? AND bucket = ? AND id = ?"), (ts,) + keys[2])
        else:
            batch.add(self._prep("del_doc", "DELETE FROM docs WHERE kind = ? AND id = ?"), keys[0])
            batch.add(self._prep("del_doc_parent", "DELETE FROM docs_by_parent WHERE kind = ? AND parent = ? AND id = ?"), keys[1])
            batch.add(self._prep("del_doc_kind", "DELETE FROM docs_by_kind_b WHERE kind = ? AND bucket = ? AND id = ?"), keys[2])
        await self._run(batch, keys=_W_DOCS)
        return True


def _bucket_position(cursor: str) -> tuple[int, str]:
    """(bucket, last id) of a kind-listing cursor; anything else raises ValueError."""
    _, b, after = decode_cursor(cursor, "b", int, str)
    if not 0 <= b < KIND_BUCKETS:
        raise ValueError(f"not a document page cursor: {cursor!r}")
    return b, after

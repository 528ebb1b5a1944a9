"""`FileStore` on SQLite (ADR 016 §4, when `CSMS_FILES_DIR` is unset): `file_chunks`
holds a file's bytes in 256 KiB rows, `files` its info.

A write streams its chunks in under a new generation (a random `gen`), one statement per
chunk (the connection is never held for the whole upload), and then, in one transaction,
points the `files` row at that generation and drops the earlier generation's chunks: a
half-written file is never visible, and a replaced file stays readable until the new one
is complete. An upload past `max_bytes` (or one that fails) drops its own chunks. Chunks
of a generation no `files` row names (a process that died mid-write) are dropped by the
next write or delete of the same id.
"""

from __future__ import annotations

import uuid
from typing import AsyncIterable, AsyncIterator

from services.common.errors import StoreError
from services.common.store.files import Intake, check_file_id
from services.common.store.port import FileInfo
from services.common.store.sqlite.connection import SqliteConnection, time_in, time_out

__all__ = ["SqliteFiles"]

_INFO_COLUMNS = "file_id, size, sha256, content_type, name, created_at"
_PUT_CHUNK = "INSERT INTO file_chunks (file_id, gen, seq, data) VALUES (?, ?, ?, ?)"
_PUT_INFO = f"""INSERT INTO files ({_INFO_COLUMNS}, gen) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (file_id) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256,
        content_type = excluded.content_type, name = excluded.name, created_at = excluded.created_at,
        gen = excluded.gen"""
_DROP_OTHER_GENS = "DELETE FROM file_chunks WHERE file_id = ? AND gen <> ?"
_DROP_GEN = "DELETE FROM file_chunks WHERE file_id = ? AND gen = ?"
_GET_INFO = f"SELECT {_INFO_COLUMNS}, gen FROM files WHERE file_id = ?"
_GET_CHUNK = "SELECT data FROM file_chunks WHERE file_id = ? AND gen = ? AND seq = ?"
_DELETE_INFO = "DELETE FROM files WHERE file_id = ?"
_DELETE_CHUNKS = "DELETE FROM file_chunks WHERE file_id = ?"


def _info(r: tuple[object, ...]) -> FileInfo:
    created = time_in(str(r[5]))
    assert created is not None
    return FileInfo(
        file_id=str(r[0]), size=int(str(r[1])), sha256=str(r[2]), content_type=str(r[3]), name=str(r[4]),
        created_at=created,
    )


class SqliteFiles(SqliteConnection):
    async def write_file(
        self,
        file_id: str,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",
        name: str = "",
    ) -> FileInfo:
        check_file_id(file_id)
        gen = uuid.uuid4().hex
        intake = Intake(max_bytes)
        try:
            seq = 0
            async for piece in intake.pieces(chunks):
                await self._write("write_file", _PUT_CHUNK, (file_id, gen, seq, piece))
                seq += 1
            info = intake.info(file_id, content_type=content_type, name=name, created_at=self._clock())
            async with self._session("write_file", immediate=True) as db:
                self._count(_PUT_INFO)
                await db.execute(
                    _PUT_INFO,
                    (file_id, info.size, info.sha256, info.content_type, info.name, time_out(info.created_at), gen),
                )
                self._count(_DROP_OTHER_GENS)
                await db.execute(_DROP_OTHER_GENS, (file_id, gen))
            return info
        except BaseException:
            try:
                await self._write("write_file", _DROP_GEN, (file_id, gen))
            except Exception:  # the original error matters more; a later write drops them
                pass
            raise

    async def file_info(self, file_id: str) -> FileInfo | None:
        check_file_id(file_id)
        rows = await self._fetch("file_info", _GET_INFO, (file_id,))
        return _info(tuple(rows[0])) if rows else None

    async def read_file(self, file_id: str) -> AsyncIterator[bytes]:
        """Chunk by chunk, one statement each (the connection is free between them)."""
        check_file_id(file_id)
        rows = await self._fetch("read_file", _GET_INFO, (file_id,))
        if not rows:
            raise FileNotFoundError(file_id)
        size, gen = int(rows[0][1]), str(rows[0][6])
        seq = got = 0
        while got < size:
            found = await self._fetch("read_file", _GET_CHUNK, (file_id, gen, seq))
            if not found:
                raise StoreError(f"file {file_id!r} was replaced or deleted while it was read")
            data = bytes(found[0][0])
            got += len(data)
            seq += 1
            yield data

    async def delete_file(self, file_id: str) -> bool:
        check_file_id(file_id)
        async with self._session("delete_file", immediate=True) as db:
            self._count(_DELETE_INFO)
            cursor = await db.execute(_DELETE_INFO, (file_id,))
            deleted = cursor.rowcount > 0
            await cursor.close()
            self._count(_DELETE_CHUNKS)
            await db.execute(_DELETE_CHUNKS, (file_id,))
        return deleted

"""`FileStore` on Cassandra (ADR 016 §4, when `CSMS_FILES_DIR` is unset).

- `file_chunks`: one partition per file, clustered (gen, seq): the file's bytes in 256 KiB
  rows, under the generation (a random id) of the write that made them;
- `files`: the file's info and the generation it is made of.

A write streams its chunks in under a new generation, one request each (a few in flight),
and writes the `files` row last, so a half-written file is never visible and a replaced
file stays readable until the new one is complete; then it drops the earlier
generation's chunks (a range delete: one tombstone). An upload past `max_bytes` (or one
that fails) drops its own generation. A read follows the generation its `files` row
names, one chunk per request, so a reader never holds more than a chunk.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from typing import Any, AsyncIterable, AsyncIterator

from services.common.errors import StoreError
from services.common.store.cassandra.connection import CassandraConnection, time_in, utc_naive
from services.common.store.files import Intake, check_file_id
from services.common.store.port import FileInfo

__all__ = ["CassandraFiles"]

UTC = timezone.utc
_IN_FLIGHT = 4  # chunk writes of one upload sent concurrently


class CassandraFiles(CassandraConnection):
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
        put_chunk = self._prep("ins_file_chunk", "INSERT INTO file_chunks (file_id, gen, seq, data) VALUES (?,?,?,?)")
        put_info = self._prep(
            "ins_file",
            "INSERT INTO files (file_id, gen, size, sha256, content_type, name, created_at) VALUES (?,?,?,?,?,?,?)",
        )
        gen = uuid.uuid4().hex
        intake = Intake(max_bytes)
        pending: set[asyncio.Task[object]] = set()
        try:
            previous = await self._file_row(file_id)
            seq = 0
            async for piece in intake.pieces(chunks):
                if len(pending) >= _IN_FLIGHT:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                pending.add(asyncio.ensure_future(self._run(put_chunk, (file_id, gen, seq, piece))))
                seq += 1
            if pending:
                await asyncio.gather(*pending)
                pending = set()
            info = intake.info(file_id, content_type=content_type, name=name, created_at=datetime.now(UTC))
            await self._run(
                put_info,
                (file_id, gen, info.size, info.sha256, info.content_type, info.name, utc_naive(info.created_at)),
            )
        except BaseException:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            try:
                await self._drop_gen(file_id, gen)
            except Exception:  # the original error matters more
                pass
            raise
        if previous is not None and previous.gen != gen:
            await self._drop_gen(file_id, previous.gen)
        return info

    async def _drop_gen(self, file_id: str, gen: str) -> None:
        ps = self._prep("del_file_gen", "DELETE FROM file_chunks WHERE file_id = ? AND gen = ?")
        await self._run(ps, (file_id, gen))

    async def _file_row(self, file_id: str) -> Any:
        """The `files` row (a driver row) or None."""
        ps = self._prep(
            "get_file", "SELECT file_id, gen, size, sha256, content_type, name, created_at FROM files WHERE file_id = ?"
        )
        return (await self._run(ps, (file_id,))).one()

    async def file_info(self, file_id: str) -> FileInfo | None:
        check_file_id(file_id)
        r = await self._file_row(file_id)
        if r is None:
            return None
        created = time_in(r.created_at)
        assert created is not None
        return FileInfo(
            file_id=r.file_id, size=int(r.size), sha256=r.sha256,
            content_type=r.content_type or "", name=r.name or "", created_at=created,
        )

    async def read_file(self, file_id: str) -> AsyncIterator[bytes]:
        check_file_id(file_id)
        r = await self._file_row(file_id)
        if r is None:
            raise FileNotFoundError(file_id)
        size, gen = int(r.size), r.gen
        ps = self._prep("get_file_chunk", "SELECT data FROM file_chunks WHERE file_id = ? AND gen = ? AND seq = ?")
        seq = got = 0
        while got < size:
            row = (await self._run(ps, (file_id, gen, seq))).one()
            if row is None:
                raise StoreError(f"file {file_id!r} was replaced or deleted while it was read")
            data = bytes(row.data)
            got += len(data)
            seq += 1
            yield data

    async def delete_file(self, file_id: str) -> bool:
        """The info row, then every chunk of the file (one partition delete)."""
        check_file_id(file_id)
        existed = await self._file_row(file_id) is not None
        await self._run(self._prep("del_file", "DELETE FROM files WHERE file_id = ?"), (file_id,))
        await self._run(self._prep("del_file_chunks", "DELETE FROM file_chunks WHERE file_id = ?"), (file_id,))
        return existed

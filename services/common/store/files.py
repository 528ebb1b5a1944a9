"""`FileStore` on a directory (`CSMS_FILES_DIR`, ADR 016 §4), and what every FileStore
adapter shares: the file id rules and the intake that cuts an upload into chunks while
counting and hashing it.

`DirectoryFiles(path)` keeps one file per id, its bytes first and the `FileInfo` after
them (a trailer: JSON, its length, a magic), so a file and its info are replaced together
by one atomic rename: a write streams into a hidden temp file in the same directory,
fsyncs it and renames it over the old one only once complete (a reader that already
opened the old file reads it to the end). An upload past `max_bytes` removes the temp file
and leaves any earlier file untouched. Temp files a dead process left behind are removed
by the first write of the next one once they are a day old (younger ones may be another
process's uploads in progress). Blocking file I/O runs in worker threads, never on the
event loop.

File ids are validated (`check_file_id`: non-empty, at most 512 characters, no control
characters) and then encoded into one flat file name: every character but letters,
digits and `_-~` is percent-encoded (`.` and `/` included), so no id can name a path
outside the directory, a sub-directory, `.` or `..`; ids whose encoding is too long for a
file name are shortened with a hash of the id after a `.` (no plain encoding holds one).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterable, AsyncIterator, BinaryIO
from urllib.parse import quote

import orjson

from services.common.store.port import FileInfo, FileTooLarge
from services.common.timeutil import Clock, to_iso_us, utcnow

__all__ = [
    "CHUNK_BYTES",
    "MAX_FILE_ID_CHARS",
    "DirectoryFiles",
    "Intake",
    "check_file_id",
    "file_name_of",
    "ms",
]

CHUNK_BYTES = 256 * 1024    # the store adapters' chunk size, and the directory's I/O size
MAX_FILE_ID_CHARS = 512
_MAX_NAME = 200            # longest encoded file name kept as is (NAME_MAX is 255 bytes)
_MAGIC = b"CSMSFIL1"
_TRAILER = struct.Struct(">Q8s")  # length of the info JSON, magic
_TEMP_PREFIX = ".tmp-"
_STALE_TEMP_S = 86_400.0


def check_file_id(file_id: str) -> str:
    """`file_id` if every FileStore accepts it, else ValueError."""
    if not isinstance(file_id, str) or not file_id:
        raise ValueError("a file id must be a non-empty string")
    if len(file_id) > MAX_FILE_ID_CHARS:
        raise ValueError(f"a file id has at most {MAX_FILE_ID_CHARS} characters (got {len(file_id)})")
    if any(ord(c) < 32 or ord(c) == 127 for c in file_id):
        raise ValueError(f"a file id holds no control characters: {file_id!r}")
    return file_id


def file_name_of(file_id: str) -> str:
    """The flat file name `DirectoryFiles` keeps `file_id` under (see the module docstring)."""
    name = quote(check_file_id(file_id), safe="").replace(".", "%2E")
    if len(name) > _MAX_NAME:
        name = name[:150] + "." + hashlib.sha256(file_id.encode("utf-8")).hexdigest()[:40]
    return name


def ms(dt: datetime) -> datetime:
    """`dt` down to the millisecond (what every adapter keeps of `created_at`)."""
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


@dataclass
class Intake:
    """Counts and hashes an upload while cutting it into `piece_bytes` pieces;
    `pieces()` raises FileTooLarge as soon as more than `max_bytes` arrived."""

    max_bytes: int
    piece_bytes: int = CHUNK_BYTES
    size: int = 0

    def __post_init__(self) -> None:
        self._sha = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    async def pieces(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        buf = bytearray()
        async for chunk in chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise FileTooLarge(f"more than {self.max_bytes} bytes")
            self._sha.update(chunk)
            buf += chunk
            while len(buf) >= self.piece_bytes:
                yield bytes(buf[:self.piece_bytes])
                del buf[:self.piece_bytes]
        if buf:
            yield bytes(buf)

    def info(self, file_id: str, *, content_type: str, name: str, created_at: datetime) -> FileInfo:
        return FileInfo(
            file_id=file_id, size=self.size, sha256=self.sha256, content_type=content_type, name=name,
            created_at=ms(created_at),
        )


def _info_json(info: FileInfo) -> bytes:
    return orjson.dumps({
        "file_id": info.file_id, "size": info.size, "sha256": info.sha256, "content_type": info.content_type,
        "name": info.name, "created_at": to_iso_us(info.created_at),
    })


def _info_from_json(raw: bytes) -> FileInfo:
    d: dict[str, Any] = orjson.loads(raw)
    return FileInfo(
        file_id=d["file_id"], size=int(d["size"]), sha256=d["sha256"], content_type=d["content_type"],
        name=d["name"], created_at=datetime.fromisoformat(d["created_at"].replace("Z", "+00:00")),
    )


def _read_info(f: BinaryIO) -> FileInfo:
    """The trailer of an open file (ValueError when it has none: not one of ours)."""
    end = f.seek(0, os.SEEK_END)
    if end < _TRAILER.size:
        raise ValueError("no file trailer")
    f.seek(end - _TRAILER.size)
    length, magic = _TRAILER.unpack(f.read(_TRAILER.size))
    if magic != _MAGIC or length > end - _TRAILER.size:
        raise ValueError("no file trailer")
    f.seek(end - _TRAILER.size - length)
    info = _info_from_json(f.read(length))
    if info.size != end - _TRAILER.size - length:
        raise ValueError("file trailer does not match the file")
    return info


class DirectoryFiles:
    """`FileStore` on a directory (created on the first write)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self._clock: Clock = clock or utcnow
        self._swept = False

    def __repr__(self) -> str:
        return f"DirectoryFiles({str(self.path)!r})"

    def _file(self, file_id: str) -> Path:
        return self.path / file_name_of(file_id)

    async def write_file(
        self,
        file_id: str,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",
        name: str = "",
    ) -> FileInfo:
        target = self._file(file_id)
        intake = Intake(max_bytes)

        def open_temp() -> tuple[Path, BinaryIO]:
            self.path.mkdir(parents=True, exist_ok=True)
            if not self._swept:
                self._swept = True
                _sweep_temps(self.path)
            temp = self.path / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
            return temp, open(temp, "xb")

        temp, f = await asyncio.to_thread(open_temp)
        try:
            async for piece in intake.pieces(chunks):
                await asyncio.to_thread(f.write, piece)
            info = intake.info(file_id, content_type=content_type, name=name, created_at=self._clock())

            def finish() -> None:
                raw = _info_json(info)
                f.write(raw)
                f.write(_TRAILER.pack(len(raw), _MAGIC))
                f.flush()
                os.fsync(f.fileno())
                f.close()
                os.replace(temp, target)

            await asyncio.to_thread(finish)
            return info
        except BaseException:
            await asyncio.shield(asyncio.to_thread(_discard, f, temp))
            raise

    async def file_info(self, file_id: str) -> FileInfo | None:
        path = self._file(file_id)

        def read() -> FileInfo | None:
            try:
                with open(path, "rb") as f:
                    return _read_info(f)
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(read)

    async def read_file(self, file_id: str) -> AsyncIterator[bytes]:
        path = self._file(file_id)

        def open_file() -> tuple[BinaryIO, int]:
            f = open(path, "rb")  # FileNotFoundError when there is none
            try:
                size = _read_info(f).size
                f.seek(0)
            except BaseException:
                f.close()
                raise
            return f, size

        f, left = await asyncio.to_thread(open_file)
        try:
            while left > 0:
                piece = await asyncio.to_thread(f.read, min(CHUNK_BYTES, left))
                if not piece:
                    raise OSError(f"file {file_id!r} ended early")
                left -= len(piece)
                yield piece
        finally:
            await asyncio.to_thread(f.close)

    async def delete_file(self, file_id: str) -> bool:
        path = self._file(file_id)

        def unlink() -> bool:
            try:
                path.unlink()
                return True
            except FileNotFoundError:
                return False

        return await asyncio.to_thread(unlink)


def _sweep_temps(directory: Path) -> None:
    """Remove temp files of writes that never finished (a process died), a day old or more."""
    cutoff = time.time() - _STALE_TEMP_S
    for temp in directory.glob(f"{_TEMP_PREFIX}*"):
        try:
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
        except FileNotFoundError:
            pass


def _discard(f: BinaryIO, temp: Path) -> None:
    try:
        f.close()
    finally:
        temp.unlink(missing_ok=True)

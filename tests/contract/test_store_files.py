"""The `FileStore` port's contract (ADR 016 §4): files stream in and out byte for byte,
whatever the chunking; a write past `max_bytes` keeps nothing and leaves an earlier file
intact; a half-written file is never visible. Every test runs on the store adapters
(SQLite file and memory, and Cassandra with CSMS_INFRA=1: conftest.py) and on
`DirectoryFiles`; file ids are unique per test, the database is shared.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from datetime import timedelta
from pathlib import Path
from typing import AsyncIterator, Iterable

import pytest

from services.common.store.files import CHUNK_BYTES, DirectoryFiles, file_name_of
from services.common.store.port import FileStore, FileTooLarge
from tests.contract.builders import unique
from tests.contract.conftest import STORE_BACKENDS, OpenStore

FILE_BACKENDS = [*STORE_BACKENDS, pytest.param("directory", id="directory")]
MIB = 1 << 20


@pytest.fixture(params=FILE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    """Overrides conftest's: the store adapters, plus "directory" (no store)."""
    return str(request.param)


@pytest.fixture
async def files(store_backend: str, open_store: OpenStore, tmp_path: Path) -> FileStore:
    if store_backend == "directory":
        return DirectoryFiles(tmp_path / "files")
    return await open_store()


async def feed(data: bytes, piece: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i:i + piece]
        await asyncio.sleep(0)


async def pieces(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def read_all(store: FileStore, file_id: str) -> bytes:
    return b"".join([chunk async for chunk in store.read_file(file_id)])


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize(
    "size, piece",
    [
        (1, 1),
        (1000, 7),                              # many tiny pieces
        (CHUNK_BYTES, CHUNK_BYTES),             # exactly one stored chunk
        (CHUNK_BYTES + 1, 64 * 1024),           # one byte into a second chunk
        (3 * CHUNK_BYTES - 5, 100_000),         # pieces straddling chunk boundaries
        (700_000, 700_000),                     # one piece larger than a chunk
    ],
)
async def test_a_file_round_trips_byte_for_byte_whatever_the_chunking(files: FileStore, size: int, piece: int) -> None:
    file_id, data = unique("log"), payload(size, seed=size)
    info = await files.write_file(file_id, feed(data, piece), max_bytes=MIB, content_type="text/plain", name="a.log")
    assert (info.file_id, info.size, info.sha256) == (file_id, size, hashlib.sha256(data).hexdigest())
    assert (info.content_type, info.name) == ("text/plain", "a.log")
    assert info.created_at.utcoffset() == timedelta(0) and info.created_at.microsecond % 1000 == 0
    assert await files.file_info(file_id) == info
    chunks = [c async for c in files.read_file(file_id)]
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= CHUNK_BYTES for c in chunks)


async def test_an_empty_file_is_a_file(files: FileStore) -> None:
    file_id = unique("log")
    info = await files.write_file(file_id, pieces([]), max_bytes=0)
    assert info.size == 0 and info.sha256 == hashlib.sha256(b"").hexdigest()
    assert (info.content_type, info.name) == ("application/octet-stream", "")
    assert await files.file_info(file_id) == info
    assert await read_all(files, file_id) == b""
    assert await files.write_file(unique("log"), pieces([b"", b""]), max_bytes=10) is not None


async def test_a_file_of_exactly_max_bytes_is_kept(files: FileStore) -> None:
    file_id, data = unique("log"), payload(CHUNK_BYTES + 10)
    info = await files.write_file(file_id, feed(data, 4096), max_bytes=len(data))
    assert info.size == len(data)
    assert await read_all(files, file_id) == data


async def test_one_byte_over_max_bytes_keeps_nothing_and_leaves_the_earlier_file(files: FileStore) -> None:
    file_id, earlier, bigger = unique("log"), payload(5000, seed=2), payload(CHUNK_BYTES + 1, seed=3)
    first = await files.write_file(file_id, feed(earlier, 999), max_bytes=10_000, name="first.log")
    with pytest.raises(FileTooLarge):
        await files.write_file(file_id, feed(bigger, 4096), max_bytes=CHUNK_BYTES)
    assert await files.file_info(file_id) == first
    assert await read_all(files, file_id) == earlier
    fresh = unique("log")
    with pytest.raises(FileTooLarge):
        await files.write_file(fresh, feed(bigger, 4096), max_bytes=CHUNK_BYTES)
    assert await files.file_info(fresh) is None
    with pytest.raises(FileNotFoundError):
        await read_all(files, fresh)


async def test_an_upload_that_fails_midway_keeps_nothing(files: FileStore) -> None:
    file_id, earlier = unique("log"), b"earlier"
    await files.write_file(file_id, pieces([earlier]), max_bytes=100)

    async def broken() -> AsyncIterator[bytes]:
        yield payload(CHUNK_BYTES + 100)
        raise ConnectionResetError("station hung up")

    with pytest.raises(ConnectionResetError):
        await files.write_file(file_id, broken(), max_bytes=MIB)
    assert await read_all(files, file_id) == earlier


async def test_a_file_being_written_is_invisible_until_it_is_complete(files: FileStore) -> None:
    existing, fresh = unique("log"), unique("log")
    old = await files.write_file(existing, pieces([b"old"]), max_bytes=MIB)
    midway, go_on = asyncio.Event(), asyncio.Event()
    data = payload(2 * CHUNK_BYTES + 1, seed=8)

    async def slow() -> AsyncIterator[bytes]:
        yield data[:2 * CHUNK_BYTES]  # two whole chunks: stored before the next piece is asked for
        midway.set()
        await go_on.wait()
        yield data[2 * CHUNK_BYTES:]

    writing = asyncio.create_task(files.write_file(existing, slow(), max_bytes=MIB))
    await asyncio.wait_for(midway.wait(), 30)
    assert await files.file_info(existing) == old
    assert await read_all(files, existing) == b"old"
    go_on.set()
    await asyncio.wait_for(writing, 30)
    assert await read_all(files, existing) == data

    midway.clear()
    go_on.clear()
    writing_fresh = asyncio.create_task(files.write_file(fresh, slow(), max_bytes=MIB))
    await asyncio.wait_for(midway.wait(), 30)
    assert await files.file_info(fresh) is None
    with pytest.raises(FileNotFoundError):
        await read_all(files, fresh)
    go_on.set()
    info = await asyncio.wait_for(writing_fresh, 30)
    assert await files.file_info(fresh) == info and info.size == len(data)


async def test_a_rewrite_replaces_the_file_and_its_info(files: FileStore) -> None:
    file_id, big, small = unique("log"), payload(3 * CHUNK_BYTES, seed=4), payload(10, seed=5)
    await files.write_file(file_id, feed(big, 65536), max_bytes=MIB, name="big.tgz")
    second = await files.write_file(file_id, pieces([small]), max_bytes=MIB, content_type="text/plain", name="s.txt")
    assert await files.file_info(file_id) == second
    assert await read_all(files, file_id) == small


async def test_delete_removes_the_file_once(files: FileStore) -> None:
    file_id, other = unique("log"), unique("log")
    await files.write_file(file_id, feed(payload(CHUNK_BYTES * 2), 65536), max_bytes=MIB)
    await files.write_file(other, pieces([b"other"]), max_bytes=MIB)
    assert await files.delete_file(file_id) is True
    assert await files.delete_file(file_id) is False
    assert await files.file_info(file_id) is None
    with pytest.raises(FileNotFoundError):
        await read_all(files, file_id)
    assert await read_all(files, other) == b"other"
    assert await files.delete_file(unique("never")) is False


async def test_ids_with_any_printable_characters_are_distinct_files(files: FileStore) -> None:
    base = unique("CP")
    ids = [f"{base}/42", f"{base}%2F42", f"{base}/../42", f"{base}/./42", f"{base} 42", f"{base}/é€/42", "x" * 512]
    for n, file_id in enumerate(ids):
        await files.write_file(file_id, pieces([f"{n}".encode()]), max_bytes=10)
    for n, file_id in enumerate(ids):
        assert await read_all(files, file_id) == f"{n}".encode()
        assert (await files.file_info(file_id)) is not None


@pytest.mark.parametrize("bad", ["", "a\x00b", "a\nb", "x" * 513])
async def test_ids_that_are_empty_too_long_or_hold_control_characters_are_refused(files: FileStore, bad: str) -> None:
    with pytest.raises(ValueError):
        await files.write_file(bad, pieces([b"x"]), max_bytes=10)
    with pytest.raises(ValueError):
        await files.file_info(bad)
    with pytest.raises(ValueError):
        await files.delete_file(bad)
    with pytest.raises(ValueError):
        await read_all(files, bad)


# -- the directory adapter ---------------------------------------------------------
async def test_no_file_id_escapes_the_directory(tmp_path: Path) -> None:
    root = tmp_path / "files"
    store = DirectoryFiles(root)
    traversals = [
        "../escaped", "../../escaped", "/tmp/escaped", "..", ".", "a/../../escaped", "..\\escaped",
        "%2E%2E%2Fescaped", "~/escaped", "x/" * 100 + "escaped",
    ]
    for file_id in traversals:
        await store.write_file(file_id, pieces([file_id.encode()]), max_bytes=1000)
    inside = sorted(p.name for p in root.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["files"]
    assert all(p.is_file() for p in root.iterdir())
    assert inside == sorted(file_name_of(i) for i in traversals)
    assert all("/" not in n and not n.startswith(".") for n in inside)
    for file_id in traversals:
        assert await read_all(store, file_id) == file_id.encode()


async def test_the_directory_keeps_plain_bytes_first_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = DirectoryFiles(tmp_path)
    data = payload(CHUNK_BYTES + 3)
    await store.write_file("CP-1/7", feed(data, 10_000), max_bytes=MIB)
    with pytest.raises(FileTooLarge):
        await store.write_file("CP-1/8", feed(data, 10_000), max_bytes=100)
    [stored] = list(tmp_path.iterdir())
    assert stored.name == "CP-1%2F7"
    assert stored.read_bytes()[:len(data)] == data  # an operator can `head -c <size>` it
    assert os.stat(stored).st_size > len(data)


async def test_a_reader_of_the_old_file_finishes_it_while_it_is_replaced(tmp_path: Path) -> None:
    store = DirectoryFiles(tmp_path)
    old, new = payload(3 * CHUNK_BYTES, seed=6), payload(100, seed=7)
    await store.write_file("f", pieces([old]), max_bytes=MIB)
    reader = store.read_file("f")
    first = await reader.__anext__()
    await store.write_file("f", pieces([new]), max_bytes=MIB)
    rest = [c async for c in reader]
    assert first + b"".join(rest) == old
    assert await read_all(store, "f") == new


async def test_temp_files_of_dead_writers_are_swept_once_a_day_old(tmp_path: Path) -> None:
    stale, recent = tmp_path / ".tmp-stale", tmp_path / ".tmp-recent"
    stale.write_bytes(b"half")
    recent.write_bytes(b"in progress")
    two_days_ago = os.stat(stale).st_mtime - 2 * 86_400
    os.utime(stale, (two_days_ago, two_days_ago))
    store = DirectoryFiles(tmp_path)
    await store.write_file("f", pieces([b"x"]), max_bytes=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-recent", "f"]

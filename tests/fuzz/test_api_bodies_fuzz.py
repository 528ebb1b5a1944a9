"""Fuzzing the REST API (issue 11: "never 500 for bad input"): for every POST, PATCH and PUT
route in the OpenAPI document, Hypothesis sends bodies shaped after the route's request
schema (its field names with plausible and hostile values: huge exponents, year 0, ids
with a newline, wrong types, deep nesting) and plain random JSON, to an in-process API on
the memory bus and SQLite. Every answer must be a JSON answer below 500, and no ERROR
record with a traceback may be logged.

Derandomized with a fixed number of examples per route, so the suite is fast and a
failure is reproducible (Hypothesis prints the falsifying example).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Iterator
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.openapi import openapi_document
from services.api.wiring import build_api
from services.common.bus.memory import MemoryBus
from services.common.config import Settings
from services.common.runtime import Runtime, bootstrap
from services.common.store.sqlite import SqliteStore
from tests.fuzz.strategies import json_values, odd_ids, resolve, shaped_like

API_KEY = "fuzz-admin-key-0123456789"
STATION = "FZ1"
EXAMPLES = 120

DOC = openapi_document()
ROUTES = sorted(
    (method.upper(), path)
    for path, ops in DOC["paths"].items()
    for method in ops
    if method in ("post", "patch", "put")
)


class Errors(logging.Handler):
    """ERROR records with a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture
def errors() -> Iterator[Errors]:
    handler = Errors()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


class Client:
    def __init__(self, rt: Runtime, port: int, http: aiohttp.ClientSession) -> None:
        self.rt, self.base, self.http = rt, f"http://127.0.0.1:{port}", http

    async def send(self, method: str, path: str, raw: bytes) -> tuple[int, str]:
        async with self.http.request(method, self.base + path, data=raw, headers={
            "Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json",
        }) as r:
            return r.status, await r.text()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Client]:
    cfg = Settings(api_key=API_KEY, host="127.0.0.1", api_port=0, command_timeout_s=0.5, events_partitions=2, commands_partitions=2)
    rt = bootstrap(cfg, bus=MemoryBus(), store=SqliteStore(f"sqlite:///{tmp_path}/fuzz.db"), pepper=b"fuzz")
    await rt.start()
    await rt.store.migrate()
    service = build_api(rt)
    await service.start()
    http = aiohttp.ClientSession()
    client = Client(rt, service.port, http)
    # one resource of each kind a path names, so bodies sent to `.../{id}` reach validation
    for path, body in (
        ("/api/v1/stations", {"id": STATION, "password": "p" * 20}),
        ("/api/v1/sites", {"id": STATION, "grid_limit_a": 100}),
        ("/api/v1/tokens", {"id_token": STATION, "status": "Accepted"}),
    ):
        status, text = await client.send("POST", path, json.dumps(body).encode())
        assert status == 201, (path, text)
    try:
        yield client
    finally:
        await http.close()
        await service.stop()
        await rt.close()


def _schema(method: str, path: str) -> Any:
    op = DOC["paths"][path][method.lower()]
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    return resolve(DOC, schema)


def _fill(path: str, draw: st.DrawFn) -> str:
    """The path with its parameters: the existing station (so the body is looked at) or
    an odd id (URL-quoted)."""
    out = path
    while "{" in out:
        start = out.index("{")
        end = out.index("}", start)
        name = out[start + 1:end]
        value = draw(st.one_of(st.just(STATION), odd_ids)) if name == "id" else draw(st.one_of(st.just("1"), odd_ids))
        out = out[:start] + quote(value, safe="") + out[end + 1:]
    return out


@st.composite
def requests(draw: st.DrawFn, method: str, path: str) -> tuple[str, bytes]:
    schema = _schema(method, path)
    body = draw(st.one_of(shaped_like(DOC, schema), shaped_like(DOC, schema), json_values))
    raw = json.dumps(body).encode()
    if draw(st.integers(0, 19)) == 0:   # now and then not JSON at all, or cut short
        raw = draw(st.sampled_from([b"", b"{", b"nul", raw[: len(raw) // 2], b"\xff\xfe", b"[]", b"1e999999"]))
    return _fill(path, draw), raw


@pytest.mark.parametrize(("method", "path"), ROUTES)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
async def test_no_body_gets_a_500(api: Client, errors: Errors, method: str, path: str, data: st.DataObject) -> None:
    errors.records.clear()
    target, raw = data.draw(requests(method, path), label="request")
    status, text = await api.send(method, target, raw)
    assert status < 500, f"{method} {target} {raw[:300]!r} -> {status} {text[:500]}"
    if status != 204 and text:
        json.loads(text)   # a problem body, never an HTML error page
    assert not errors.records, [(r.getMessage(), repr(r.exc_info[1]) if r.exc_info else None) for r in errors.records]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_deeply_nested_json_is_400(api: Client, errors: Errors, method: str, path: str) -> None:
    """Nesting deeper than the JSON parser's recursion limit: a bad body (or the resource is
    missing, or a body-less route answers as it would), never a crash."""
    target = path.replace("{id}", STATION).replace("{serial}", "1")
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000):
        status, text = await api.send(method, target, raw)
        assert status in (400, 404, 409), f"{method} {target} -> {status} {text[:300]}"
    assert not errors.records, [r.getMessage() for r in errors.records]

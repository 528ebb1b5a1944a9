"""Credentials never reach the server log, even where aiohttp itself logs them (issue 11
review): an `Authorization` header over aiohttp's 8190-byte line limit makes it log "Error
handling request" with the start of the header value in the exception text, on the OCPP
port and on the API port. `csms run` logs through services/common/telemetry.py's
redacting formatter, so the credential is `[redacted]` there.

(The 400 reply quotes the start of the header back to the client that sent it; that is
its own credential, on its own connection, and acceptable.)

A server of its own: aiohttp logs a traceback for these requests, which the shared
`csms` fixture counts as a failure of the suite."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pytest

from tests.e2e.conftest import Server, start_server, stop_server
from tests.support.waiting import eventually

PASSWORD = "CorrectHorse-1234567"
API_KEY = "csms_0123456789abcdef_" + "Zq9_" * 12


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("csms-redaction"))
    yield srv
    stop_server(srv)


async def raw_request(port: int, path: str, authorization: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                      f"Authorization: {authorization}\r\n\r\n").encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()


async def test_an_over_long_authorization_header_is_redacted_in_the_log(server: Server) -> None:
    ocpp_port, api_port = urlparse(server.ocpp_url).port, urlparse(server.api_url).port
    assert ocpp_port and api_port
    basic = base64.b64encode(f"CP-LONG:{PASSWORD}".encode()).decode()
    padding = " " * 9000
    answers = [
        await raw_request(ocpp_port, "/ocpp/CP-LONG", f"Basic {basic}{padding}"),
        await raw_request(api_port, "/api/v1/whoami", f"Bearer {server.api_key}{padding}"),
        await raw_request(api_port, "/api/v1/whoami", f"Bearer {API_KEY}{padding}"),
    ]
    assert all(a.startswith(b"HTTP/1.") and b" 400 " in a.split(b"\r\n", 1)[0] for a in answers), answers
    await eventually(lambda: server.log().count("Error handling request") >= 3, 5.0, what="aiohttp's three error lines")
    log = server.log()
    # the credentials were there to redact (aiohttp quotes the header value), and are gone
    assert log.count("Basic [redacted]") >= 1 and log.count("Bearer [redacted]") >= 2, log[-3000:]
    for secret in (basic, server.api_key, API_KEY, PASSWORD):
        assert secret not in log, f"{secret[:8]}... is in the server log"

"""Credentials never reach the log (issue 11 review): `setup_logging`'s formatter redacts
them from the message and from the exception text, wherever they come from."""

from __future__ import annotations

import base64
import io
import logging
import sys

import pytest

from services.common.telemetry import RedactingFormatter, redact, setup_logging

B64 = base64.b64encode(b"ST-1:CorrectHorse-1234567").decode()
KEY = "csms_0123456789abcdef_" + "Ab3_" * 12


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, msg, args, exc_info)


@pytest.mark.parametrize("text, secret", [
    (f"Got more than 8190 bytes when reading: b'Basic {B64}          ...'.", B64),
    (f"b'Authorization: Basic {B64}\\r\\nHost: x\\r\\n'", B64),
    (f"<CIMultiDictProxy('Host': 'x', 'Authorization': 'Bearer {KEY}')>", KEY),
    (f"authorization={KEY}", KEY),
    (f"header value {KEY} too long", KEY),
    ("Authorization: e2e-3f2a9c0d1b", "e2e-3f2a9c0d1b"),
    ("bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "eyJhbGciOiJSUzI1NiJ9"),
    (f"BASIC {B64}", B64),
])
def test_credentials_are_redacted(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and "[redacted]" in out, out


def test_the_rest_of_the_line_stays() -> None:
    out = redact(f"b'Authorization: Basic {B64}\\r\\nHost: example\\r\\n'")
    assert out == "b'Authorization: [redacted]\\r\\nHost: example\\r\\n'"
    assert redact(f"reading: b'Basic {B64}   ...'") == "reading: b'Basic [redacted]   ...'"


@pytest.mark.parametrize("text", [
    "station=ST-1 refused: 401 bad password (Basic auth)",
    "csms_gateway_dead_sockets_total went up",
    "basic checks passed; bearer token missing",
    "nothing to see here",
])
def test_ordinary_lines_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_a_record_with_the_secret_in_its_exception_formats_without_it() -> None:
    try:
        raise ValueError(f"400, message:\n  Got more than 8190 bytes when reading: b'Basic {B64}   ...'.")
    except ValueError as exc:
        record = _record("Error handling request from %s", "127.0.0.1", exc=exc)
    plain = logging.Formatter().format(record)
    assert B64 in plain  # the test's own premise: an unredacted formatter would leak it
    record.exc_text = None
    out = RedactingFormatter().format(record)
    assert B64 not in out and "Error handling request from 127.0.0.1" in out and "Traceback" in out


def test_the_secret_in_the_message_args_is_redacted() -> None:
    out = RedactingFormatter().format(_record("headers %r", {"Authorization": f"Bearer {KEY}"}))
    assert KEY not in out and "[redacted]" in out


def test_setup_logging_redacts_through_the_root_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    saved_handlers, saved_level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "stderr", stream)
    root.handlers = []
    try:
        setup_logging("INFO")
        assert root.handlers and isinstance(root.handlers[0].formatter, RedactingFormatter)
        logging.getLogger("aiohttp.server").error("Error handling request: b'Basic %s'", B64)
        # a plain stream handler installed before setup_logging is wrapped, not replaced
        root.handlers = [handler]
        setup_logging("INFO")
        assert root.handlers == [handler] and isinstance(handler.formatter, RedactingFormatter)
        logging.getLogger("aiohttp.server").error("Authorization: Bearer %s", KEY)
    finally:
        root.handlers, root.level = saved_handlers, saved_level
    text = stream.getvalue()
    assert "Error handling request" in text and "Authorization: [redacted]" in text
    assert B64 not in text and KEY not in text

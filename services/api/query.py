"""Query parameters of the station history, logs and uptime routes (ADR 016), read strictly:
a value that cannot be read is a 422 naming the parameter, never a silent default.

Cursors of the history pages are opaque to clients: the url-safe base64 of the JSON
`[<receive time in epoch milliseconds>, <event id>]` of the last item of a page (the
store's `before` bound), so a page never depends on how many rows came before it.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta, timezone

import orjson
from aiohttp import web

from services.api.errors import query_error
from services.api.validation import DEFAULT_LIMIT, MAX_LIMIT, bounded_time
from services.common.timeutil import parse_ocpp

__all__ = ["MAX_CURSOR_CHARS", "decode_cursor", "encode_cursor", "query_cursor", "query_limit_strict", "query_time"]

MAX_CURSOR_CHARS = 512
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def encode_cursor(at: datetime, event_id: str) -> str:
    ms = (at - _EPOCH) // timedelta(milliseconds=1)
    return base64.urlsafe_b64encode(orjson.dumps([ms, event_id])).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str]:
    """The (at, event_id) a cursor of `encode_cursor` holds; ValueError for anything else."""
    if not text or len(text) > MAX_CURSOR_CHARS:
        raise ValueError("not a cursor")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise ValueError("not a cursor") from None
    if (
        not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], int)
        or isinstance(value[0], bool) or not isinstance(value[1], str)
    ):
        raise ValueError("not a cursor")
    try:
        return _EPOCH + timedelta(milliseconds=value[0]), value[1]
    except OverflowError:
        raise ValueError("not a cursor") from None


def query_cursor(request: web.Request) -> tuple[datetime, str] | None:
    raw = request.query.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        return decode_cursor(raw)
    except ValueError:
        raise query_error({"cursor": "not a cursor this API returned"}) from None


def query_limit_strict(request: web.Request, default: int = DEFAULT_LIMIT) -> int:
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise query_error({"limit": f"must be an integer from 1 to {MAX_LIMIT}"})
    return value


def query_time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        at = parse_ocpp(raw) if len(raw) <= 64 else None
    except ValueError:
        at = None
    if at is None or not bounded_time(at):
        raise query_error({name: "must be an ISO 8601 time from 1970 to 9999, e.g. 2026-11-28T12:00:00Z"})
    return at

"""No input gives a 500 (docs/security.md, errors): deep JSON, unbounded and non-finite
numbers, timestamps outside 1970..9999, ids with a trailing newline, lone surrogates,
every refusal a 4xx with an `error`. Each case here gave a 500, a megabyte answer or a
dropped connection (a newline in a Location header) before the API was hardened."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from services.api.validation import MAX_DEPTH, STATION_ID_RE, check_resource_id, check_station_id
from services.common.decimals import api_bounded

from .builders import Api, a_tariff_body

JSON = {"Content-Type": "application/json"}


async def refused(api: Api, method: str, path: str, raw: bytes, status: int = 400) -> dict[str, Any]:
    got, body = await api.call(method, path, raw=raw, headers=JSON)
    assert got == status, (method, path, raw[:80], body)
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    assert len(json.dumps(body)) < 2000, "an error answer never echoes a huge input"
    return body


def nested(depth: int, leaf: str = "1") -> bytes:
    return ('{"a":' * depth + leaf + "}" * depth).encode()


# -- pure bounds ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,ok", [
    ("0", True), ("0E-999999", True), ("1e-12", True), ("0.000000000001000", True), ("999999999999.5", True),
    ("-5e11", True), ("1.000000000000000000000000000000", True), ("123.456", True),
    ("1.5e-12", False), ("1e-13", False), ("1e12", False), ("-1e12", False), ("1e-999999", False), ("1e999", False),
    ("0.30000000000000004", False), ("1.00000000000000000000000000000001", False), ("NaN", False),
    ("Infinity", False), ("-Infinity", False),
])
def test_the_api_bound_on_numbers(text: str, ok: bool) -> None:
    assert api_bounded(Decimal(text)) is ok


@pytest.mark.parametrize("value", ["CP-1\n", "CP-1\r\n", "\nCP-1", "CP 1", "", "a" * 49, "..", "a..b"])
def test_station_ids_must_match_in_full(value: str) -> None:
    assert check_station_id(value) is not None
    assert STATION_ID_RE.fullmatch(value) is None or ".." in value


def test_resource_ids_must_match_in_full() -> None:
    assert check_resource_id("t1") is None
    assert check_resource_id("t1\n") is not None
    assert check_resource_id("a" * 65) is not None


# -- request bodies --------------------------------------------------------------------------

async def test_json_nested_deeper_than_the_limit_is_a_400_at_any_depth(api: Api) -> None:
    for raw in (nested(MAX_DEPTH + 1), nested(5000), b"[" * 100_000 + b"]" * 100_000,
                b'{"id": "CP-9", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"):
        for method, path in (("POST", "/api/v1/stations"), ("POST", "/api/v1/tariffs"), ("POST", "/api/v1/tokens")):
            await refused(api, method, path, raw)
    body = await refused(api, "POST", "/api/v1/stations", b'{"id": "CP-9", "x": ' + nested(MAX_DEPTH) + b"}")
    assert "x" in body["details"] and "nested" in body["details"]["x"]
    # within the limit it is the field that is refused, not the nesting
    body = await refused(api, "POST", "/api/v1/stations", b'{"id": "CP-9", "x": ' + nested(MAX_DEPTH - 2) + b"}")
    assert body["details"] == {"x": "unknown field"}


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1e-999999", "NaN", "Infinity", "-Infinity", "1e12",
                                    "0.1234567890123", "9" * 30])
async def test_unbounded_numbers_are_a_400_naming_the_field_everywhere(api: Api, number: str) -> None:
    await api.a_station("CP-1")
    assert (await api.post("/api/v1/sites", {"id": "s1", "grid_limit_a": 100}))[0] == 201
    cases = [
        ("POST", "/api/v1/stations", '{"id": "CP-2", "max_current_a": %s}', "max_current_a"),
        ("PATCH", "/api/v1/stations/CP-1", '{"ws_ping_interval_s": %s}', "ws_ping_interval_s"),
        ("POST", "/api/v1/tariffs", '{"id": "t-x", "currency": "EUR", "price_per_kwh": %s}', "price_per_kwh"),
        ("PUT", "/api/v1/sites/s1/limit", '{"limit_a": %s}', "limit_a"),
        ("POST", "/api/v1/stations/CP-1/commands", '{"type": "DataTransfer", "vendor_id": "v", "data": [1, %s]}', "data"),
        ("POST", "/api/v1/stations/CP-1/commands", '{"type": "ClearCache", "timeout": %s}', "timeout"),
    ]
    for method, path, template, field in cases:
        body = await refused(api, method, path, (template % number).encode())
        assert field in body["details"], (path, number, body)


async def test_bounded_numbers_still_pass(api: Api) -> None:
    status, body = await api.post("/api/v1/stations", {"id": "CP-5", "password": "p" * 16, "max_current_a": 16.5,
                                                       "ws_ping_interval_s": 0.000000000001})
    assert status == 201, body
    status, body = await api.call("POST", "/api/v1/tariffs", raw=json.dumps(a_tariff_body(id="t-ok")).replace(
        '"0.30"', "0.123456789012").encode(), headers=JSON)
    assert status == 201 and body["price_per_kwh"] == "0.123456789012", body


async def test_a_lone_surrogate_is_a_400_not_a_500_when_stored(api: Api) -> None:
    body = await refused(api, "POST", "/api/v1/stations", b'{"id": "CP-7", "password": "pppppppppppppppp", '
                                                           b'"site_id": "\\ud800"}')
    assert "site_id" in body["details"]
    await refused(api, "POST", "/api/v1/tokens", b'{"id_token": "T\\udfff"}')


async def test_bodies_that_are_not_json_objects_are_400(api: Api) -> None:
    for raw in (b"\xff\xfe", b"[]", b'"x"', b"{", b"1" * 5000, b'{"a": 1' + b"0" * 10_000 + b"}"):
        await refused(api, "POST", "/api/v1/stations", raw)


# -- timestamps ------------------------------------------------------------------------------

_BAD_TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59Z",
              "10000-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "yesterday", "2026-01-01T00:00:00Z" + " " * 100]


@pytest.mark.parametrize("when", _BAD_TIMES)
async def test_timestamps_out_of_range_are_a_400_in_every_body_that_takes_one(api: Api, when: str) -> None:
    await api.a_station("CP-1")
    w = json.dumps(when)
    cases = [
        ("POST", "/api/v1/tokens", '{"id_token": "T1", "expires_at": %s}' % w, "expires_at"),
        ("PUT", "/api/v1/tokens/T1", '{"expires_at": %s}' % w, "expires_at"),
        ("POST", "/api/v1/stations/CP-1/firmware", '{"location": "https://fw/1.bin", "retrieve_at": %s}' % w,
         "retrieve_at"),
        ("POST", "/api/v1/stations/CP-1/firmware", '{"location": "https://fw/1.bin", "install_at": %s}' % w,
         "install_at"),
        ("POST", "/api/v1/stations/CP-1/logs", '{"from": %s}' % w, "from"),
        ("POST", "/api/v1/firmware-campaigns", '{"stations": ["CP-1"], "location": "https://fw/1.bin", '
                                               '"retrieve_at": %s}' % w, "retrieve_at"),
        ("POST", "/api/v1/api-keys", '{"name": "n", "role": "viewer", "expires_at": %s}' % w, "expires_at"),
    ]
    for method, path, raw, field in cases:
        body = await refused(api, method, path, raw.encode())
        assert field in body["details"], (path, when, body)


@pytest.mark.parametrize("when", _BAD_TIMES)
async def test_timestamps_out_of_range_are_refused_in_every_query(api: Api, when: str) -> None:
    from urllib.parse import quote

    await api.a_station("CP-1")
    q = quote(when)
    for path in (f"/api/v1/stations/CP-1/events?since={q}", f"/api/v1/stations/CP-1/events?until={q}",
                 f"/api/v1/stations/CP-1/availability?from={q}",
                 f"/api/v1/stations/CP-1/availability?to={q}", f"/api/v1/kpis/availability?from={q}",
                 f"/api/v1/audit?since={q}", f"/api/v1/audit?until={q}"):
        status, body = await api.get(path)
        assert 400 <= status < 500 and isinstance(body.get("error"), str), (path, status, body)


# -- ids -------------------------------------------------------------------------------------

async def test_ids_with_a_trailing_newline_are_refused_and_never_reach_a_header(api: Api) -> None:
    for method, path, raw, field in [
        ("POST", "/api/v1/stations", b'{"id": "CP-1\\n"}', "id"),
        ("POST", "/api/v1/tokens", b'{"id_token": "T1\\n"}', "id_token"),
        ("POST", "/api/v1/tokens", b'{"id_token": "T\\r\\nSet-Cookie: x=1"}', "id_token"),
        ("PUT", "/api/v1/tokens/T1%0A", b"{}", "id_token"),
        ("POST", "/api/v1/tariffs", json.dumps(a_tariff_body(id="t1\n")).encode(), "id"),
        ("POST", "/api/v1/sites", b'{"id": "s1\\n", "grid_limit_a": 100}', "id"),
    ]:
        body = await refused(api, method, path, raw)
        assert field in body["details"], (path, body)
    assert (await api.get("/api/v1/stations"))[1]["items"] == []
    assert (await api.get("/api/v1/tokens"))[1]["items"] == []


async def test_a_query_name_with_a_trailing_newline_is_refused(api: Api) -> None:
    status, body = await api.get("/api/v1/dead-letters?topic=csms.events.v1%0A")
    assert status == 400 and "topic" in body["details"]
    assert (await api.get("/api/v1/dead-letters?topic=csms.events.v1"))[0] == 200


async def test_a_body_over_the_size_limit_and_an_unknown_route_answer_a_json_error(api: Api) -> None:
    await refused(api, "POST", "/api/v1/stations", b'{"id": "' + b"a" * (1 << 20) + b'"}', status=413)
    status, body = await api.get("/api/v1/no-such-thing")
    assert status == 404 and isinstance(body.get("error"), str)
    status, body = await api.call("PUT", "/api/v1/stations")
    assert status == 405 and isinstance(body.get("error"), str)

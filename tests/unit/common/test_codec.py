"""codec.encode_event / codec.event_headers keep per-type work and constant headers cached
(issue 8: the gateway encodes one event per CALL). The cache must not change a byte: both
are compared with the uncached encoding, written out here as the codec had it, over events
of every body type with varied field values and gateway ids."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from services.common import codec
from services.common import events as ev
from services.common.codec import _BODY_FIELD, _OPTIONAL_INTS, cloudevent_headers, events_pb2, set_timestamp

BODY_TYPES = [t for t in _BODY_FIELD if t not in ev.OPERATION_BODIES]  # flat bodies (operations: test_codec_operations.py)
_TEXT = ["", "a", "Charging", "ÄÖü-€", "x" * 40, "CP/1 ?&", "\u2603 snow"]


def reference_encode(env: ev.Envelope) -> bytes:
    """encode_event before the per-type cache (dataclasses.fields on every call)."""
    pb = events_pb2.Event(event_id=env.event_id, station_id=env.station_id, gateway_id=env.gateway_id,
                          ocpp_version=env.ocpp_version, message_id=env.message_id, action=env.action)
    set_timestamp(pb.received_at, env.received_at)
    set_timestamp(pb.station_time, env.station_time)
    body_pb = getattr(pb, _BODY_FIELD[type(env.body)])
    body_pb.SetInParent()
    for f in dataclasses.fields(env.body):  # type: ignore[arg-type]
        value = getattr(env.body, f.name)
        if f.name == "samples":
            for s in value:
                spb = body_pb.samples.add()
                set_timestamp(spb.timestamp, s.timestamp)
                spb.measurand, spb.value, spb.unit, spb.phase, spb.context, spb.location = (
                    s.measurand, s.value, s.unit, s.phase, s.context, s.location)
                if s.raw_value:
                    spb.raw_value = s.raw_value
        elif f.name in _OPTIONAL_INTS:
            if value is not None:
                setattr(body_pb, _OPTIONAL_INTS[f.name], True)
                setattr(body_pb, f.name, int(value))
        else:
            setattr(body_pb, f.name, value)
    return pb.SerializeToString()  # type: ignore[no-any-return]


def reference_headers(env: ev.Envelope, traceparent: str | None) -> list[tuple[str, bytes]]:
    """event_headers before the cache: every attribute encoded on every call."""
    return cloudevent_headers(env.event_id, f"csms.events.v1.{env.type_name}", f"/csms/gateway/{env.gateway_id or 'unknown'}",
                              env.received_at, env.station_id, traceparent=traceparent)


def _when(rng: random.Random) -> datetime:
    return datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=rng.randrange(10**14))


def _value(rng: random.Random, f: dataclasses.Field[Any]) -> Any:
    kind = str(f.type)
    if f.name == "samples":
        return tuple(ev.MeterSample(timestamp=_when(rng), value=rng.choice([0.0, 1.5, 12345.678, -3.0]), unit=rng.choice(["Wh", "W", "A"]),
                                    measurand=rng.choice(_TEXT), phase=rng.choice(["", "L1", "L1-N"]), context=rng.choice(_TEXT),
                                    location=rng.choice(_TEXT), raw_value=rng.choice(["", "", "n/a"]))
                     for _ in range(rng.randrange(4)))
    if f.name in _OPTIONAL_INTS:
        return rng.choice([None, 0, 17, 2**31 - 1])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, 7, 2**31 - 1])
    return rng.choice(_TEXT)


def varied_events(n: int, seed: int = 8) -> list[ev.Envelope]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cls = BODY_TYPES[i % len(BODY_TYPES)]
        body = cls(**{f.name: _value(rng, f) for f in dataclasses.fields(cls)})
        out.append(ev.Envelope(
            event_id=f"{rng.getrandbits(64):016x}", station_id=rng.choice(["CP-1", "ÄÖ-station", "s" * 48, "GWK00001"]),
            received_at=_when(rng), body=body, gateway_id=rng.choice(["", "gateway-0", "gateway-3-p7", "gateway-1-w1"]),
            ocpp_version=rng.choice(["1.6", "2.0.1"]), station_time=rng.choice([None, _when(rng)]),
            message_id=rng.choice(_TEXT), action=rng.choice(["MeterValues", "Heartbeat", ""])))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cached_encoding_is_byte_identical_to_the_uncached_one(seed: int) -> None:
    events = varied_events(20 * len(BODY_TYPES), seed)
    assert {type(e.body) for e in events} == set(BODY_TYPES)
    for env in events:
        assert codec.encode_event(env) == reference_encode(env), env
        assert codec.decode_event(codec.encode_event(env)).body == env.body


@pytest.mark.parametrize("traceparent", [None, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"])
def test_cached_headers_equal_the_uncached_ones(traceparent: str | None) -> None:
    for env in varied_events(10 * len(BODY_TYPES)):
        got = codec.event_headers(env, traceparent=traceparent)
        assert got == reference_headers(env, traceparent)
        assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in got)


def test_each_call_gets_its_own_header_list() -> None:
    env = varied_events(1)[0]
    first = codec.event_headers(env)
    first.append(("extra", b"1"))
    assert codec.event_headers(env) == reference_headers(env, None)


def test_the_source_cache_is_bounded_and_stays_correct() -> None:
    env = varied_events(1)[0]
    for i in range(codec._CE_SOURCE_MAX + 10):
        e = dataclasses.replace(env, gateway_id=f"gateway-{i}")
        assert codec.event_headers(e) == reference_headers(e, None)
    assert len(codec._CE_SOURCE_HEADERS) <= codec._CE_SOURCE_MAX


def test_ce_time_is_to_ocpp_for_every_kind_of_datetime() -> None:
    from datetime import timezone as tz
    from zoneinfo import ZoneInfo

    from services.common.timeutil import to_ocpp

    rng = random.Random(5)
    zones = [timezone.utc, None, tz(timedelta(hours=5, minutes=30)), tz(timedelta(hours=-8)), ZoneInfo("UTC"), ZoneInfo("Europe/Berlin")]
    base = datetime(1, 1, 2)
    for _ in range(20_000):
        naive = base + timedelta(microseconds=rng.randrange(0, 9998 * 365 * 86_400 * 10**6))
        if rng.random() < 0.1:
            naive = naive.replace(microsecond=rng.choice([0, 999, 1000, 999_999, 500]))
        dt = naive.replace(tzinfo=rng.choice(zones))
        try:
            expected = to_ocpp(dt).encode()
        except (OverflowError, ValueError):
            continue  # the edges of datetime's range that a zone shift pushes out: not a timestamp we write
        assert codec._ce_time(dt) == expected, dt


def test_set_timestamp_gives_the_normal_form_before_and_after_1970() -> None:
    rng = random.Random(7)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    for _ in range(20_000):
        dt = epoch + timedelta(microseconds=rng.randrange(-62_000_000_000 * 10**6, 250_000_000_000 * 10**6))
        msg = events_pb2.Event().received_at
        set_timestamp(msg, dt)
        us = (dt - epoch) // timedelta(microseconds=1)
        assert (msg.seconds, msg.nanos) == (us // 10**6, us % 10**6 * 1000), dt
        assert codec.timestamp_value(msg) == dt

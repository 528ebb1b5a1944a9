"""Integers a station sends that do not fit the event's protobuf fields never make encoding
raise (issue 7): transaction messages forward them as absent / 0 / clamped and count them;
strict actions refuse them with a PropertyConstraintViolation."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from ocpp.exceptions import PropertyConstraintViolationError

from services.common import codec
from services.common.events import Envelope
from services.gateway.actions.common import as_int

from .builders import a_harness, ts

BIG = 2**70
BIG_AS_READ = float(BIG)  # what orjson makes of the literal 1180591620717411303424


def encodes(body: Any) -> None:
    env = Envelope(event_id="e", station_id="CS-1", received_at=datetime(2026, 1, 1, tzinfo=timezone.utc), body=body)
    assert codec.decode_event(codec.encode_event(env)).body == body


def with_notes(version: str = "1.6") -> tuple[Any, list[tuple[str, str]]]:
    h = a_harness(version)
    notes: list[tuple[str, str]] = []
    h.ctx.lenient = lambda field, detail: notes.append((field, detail))
    return h, notes


async def run(h: Any, action: str, payload: dict) -> dict:
    handler = h.handler(action)
    h.ctx.action = action
    return await handler(h.ctx, payload)  # type: ignore[no-any-return]


@pytest.mark.parametrize("value", [BIG, BIG_AS_READ, -BIG, 2**63])
async def test_a_16_meter_start_beyond_int64_is_forwarded_as_absent_and_counted(value: Any) -> None:
    h, notes = with_notes()
    answer = await run(h, "StartTransaction", {"connectorId": 1, "idTag": "TAG-OK", "meterStart": value, "timestamp": ts()})
    assert answer["transactionId"] > 0 and answer["idTagInfo"]["status"] == "Accepted"
    body = h.events.body
    assert body.meter_start_wh is None and [f for f, _ in notes] == ["meterStart"]
    encodes(body)


async def test_16_connector_and_reservation_beyond_their_fields_become_0() -> None:
    h, notes = with_notes()
    await run(h, "StartTransaction", {"connectorId": 2**40, "idTag": "TAG-OK", "meterStart": 5, "timestamp": ts(), "reservationId": BIG_AS_READ})
    body = h.events.body
    assert (body.connector_id, body.evse_id, body.reservation_id, body.meter_start_wh) == (0, 0, 0, 5)
    assert sorted(f for f, _ in notes) == ["connectorId", "reservationId"]
    encodes(body)


async def test_a_16_meter_stop_beyond_int64_and_an_integral_float_transaction_id() -> None:
    h, notes = with_notes()
    assert await run(h, "StopTransaction", {"transactionId": 7.0, "meterStop": BIG_AS_READ, "timestamp": ts()}) == {}
    body = h.events.body
    assert (body.transaction_id, body.meter_stop_wh) == ("7", None) and [f for f, _ in notes] == ["meterStop"]
    encodes(body)


async def test_a_16_meter_values_connector_beyond_int32_becomes_0() -> None:
    h, notes = with_notes()
    await run(h, "MeterValues", {"connectorId": 2**31, "transactionId": BIG_AS_READ, "meterValue": [{"timestamp": ts(), "sampledValue": [{"value": "1"}]}]})
    body = h.events.body
    assert (body.connector_id, body.transaction_id) == (0, str(BIG)) and [f for f, _ in notes] == ["connectorId"]
    encodes(body)


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
async def test_201_ids_and_counters_beyond_their_fields_are_clamped_or_dropped(version: str) -> None:
    h, notes = with_notes(version)
    payload = {
        "eventType": "Started", "timestamp": ts(), "triggerReason": "Authorized", "seqNo": BIG_AS_READ,
        "transactionInfo": {"transactionId": "tx-1", "remoteStartId": 2**40}, "reservationId": -BIG_AS_READ,
        "evse": {"id": 2**31, "connectorId": 1.0},
    }
    await run(h, "TransactionEvent", payload)
    body = h.events.body
    assert (body.seq_no, body.evse_id, body.connector_id, body.remote_start_id, body.reservation_id) == (2**63 - 1, 0, 1, 0, 0)
    assert sorted(f for f, _ in notes) == ["evse.id", "reservationId", "seqNo", "transactionInfo.remoteStartId"]
    encodes(body)


async def test_a_201_meter_values_evse_beyond_int32_becomes_0() -> None:
    h, notes = with_notes("2.0.1")
    await run(h, "MeterValues", {"evseId": -(2**40), "meterValue": [{"timestamp": ts(), "sampledValue": [{"value": 1}]}]})
    assert h.events.body.evse_id == 0 and [f for f, _ in notes] == ["evseId"]
    encodes(h.events.body)


@pytest.mark.parametrize("version,payload", [
    ("1.6", {"connectorId": 2**40, "errorCode": "NoError", "status": "Available"}),
    ("2.0.1", {"timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Available", "evseId": 2**40, "connectorId": 1}),
])
async def test_a_strict_action_refuses_an_integer_the_event_cannot_carry(version: str, payload: dict) -> None:
    h = a_harness(version)
    with pytest.raises(PropertyConstraintViolationError):
        await run(h, "StatusNotification", payload)
    assert h.events.published == []


async def test_a_201_status_with_integral_float_ids_is_recorded_as_ints() -> None:
    h = a_harness("2.0.1")
    await run(h, "StatusNotification", {"timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Available", "evseId": 2.0, "connectorId": 1.0})
    assert (h.events.body.evse_id, h.events.body.connector_id) == (2, 1)
    encodes(h.events.body)


@pytest.mark.parametrize("value,expected", [(5, 5), (5.0, 5), (5.5, None), (True, None), ("5", None), (None, None), (BIG_AS_READ, BIG)])
def test_as_int_reads_json_integers_only(value: Any, expected: int | None) -> None:
    assert as_int(value) == expected

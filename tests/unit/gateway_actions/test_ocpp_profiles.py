"""Charging-profile payloads (services/common/ocpp/profiles.py): shape, rounding, timestamps,
and the ocpp library's schemas."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.ocpp.profiles import (
    tx_default_profile_16,
    tx_default_profile_201,
    tx_profile_16,
    tx_profile_201,
    wire_limit,
)

D = Decimal
NOW = datetime(2026, 11, 28, 4, 21, 16, 4567, tzinfo=timezone.utc)
OCPP_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_start_schedules_are_utc_with_z_and_milliseconds() -> None:
    paris = timezone(timedelta(hours=1))
    for moment in (NOW, datetime(2026, 11, 28, 5, 21, 16, 4999, tzinfo=paris)):
        schedule = tx_profile_16(1, 1, D(6), 7, moment)["csChargingProfiles"]["chargingSchedule"]
        assert schedule["startSchedule"] == "2026-11-28T04:21:16.004Z"
    naive = tx_profile_201(1, "t", D(6), 7, datetime(2026, 11, 28, 4, 21, 16))
    assert naive["chargingProfile"]["chargingSchedule"][0]["startSchedule"] == "2026-11-28T04:21:16.000Z"


def test_limits_are_rounded_down_to_a_tenth_of_an_amp() -> None:
    assert wire_limit(D("10.66")) == 10.6
    assert wire_limit(D(16)) == 16.0
    assert wire_limit(D(0)) == 0.0
    with pytest.raises(ValueError):
        wire_limit(D(-1))


def test_a_16_tx_profile_limits_one_transaction_in_amps() -> None:
    payload = tx_profile_16(2, 4711, D("10.6"), profile_id=7, now=NOW)

    assert payload == {
        "connectorId": 2,
        "csChargingProfiles": {
            "chargingProfileId": 7,
            "transactionId": 4711,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": "2026-11-28T04:21:16.004Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.6}],
            },
        },
    }


def test_a_relative_16_tx_profile_has_no_start_schedule() -> None:
    payload = tx_profile_16(1, 1, D(6), 7, NOW, kind="Relative", number_phases=1)

    schedule = payload["csChargingProfiles"]["chargingSchedule"]
    assert "startSchedule" not in schedule
    assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 6.0, "numberPhases": 1}]


def test_the_16_fail_safe_is_a_relative_tx_default_profile_on_connector_0() -> None:
    payload = tx_default_profile_16(D(6), profile_id=1, now=NOW)

    assert payload == {
        "connectorId": 0,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}],
            },
        },
    }


def test_a_201_tx_profile_carries_a_string_transaction_id_and_a_schedule_list() -> None:
    payload = tx_profile_201(1, "c0ffee-42", D(16), profile_id=9, now=NOW)

    assert payload == {
        "evseId": 1,
        "chargingProfile": {
            "id": 9,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "transactionId": "c0ffee-42",
            "chargingSchedule": [
                {
                    "id": 9,
                    "startSchedule": "2026-11-28T04:21:16.004Z",
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                }
            ],
        },
    }


def test_the_201_fail_safe_is_a_tx_default_profile_on_evse_0() -> None:
    payload = tx_default_profile_201(D(6), profile_id=1, now=NOW)

    assert payload["evseId"] == 0
    assert payload["chargingProfile"]["chargingProfilePurpose"] == "TxDefaultProfile"
    assert "transactionId" not in payload["chargingProfile"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: tx_profile_16(0, 1, D(6), 1, NOW),  # TxProfile needs a real connector
        lambda: tx_profile_16(1, "not-a-number", D(6), 1, NOW),
        lambda: tx_profile_16(1, 1, D(6), 1, NOW, kind="Recurring"),  # type: ignore[arg-type]
        lambda: tx_profile_16(1, 1, D(6), 1, NOW, number_phases=4),
        lambda: tx_profile_201(0, "tx", D(6), 1, NOW),
        lambda: tx_profile_201(1, "x" * 37, D(6), 1, NOW),
        lambda: tx_default_profile_16(D(6), 1, NOW, connector_id=-1),
    ],
)
def test_impossible_profiles_are_refused(build: Any) -> None:
    with pytest.raises(ValueError):
        build()


# ------------------------------------------------------- the ocpp library's schemas

import ocpp  # noqa: E402
import jsonschema  # noqa: E402
from ocpp.messages import Call, validate_payload  # noqa: E402

SCHEMAS = Path(ocpp.__file__).parent


def _validator(relative: str) -> Any:
    # Floats parsed as Decimal (as the ocpp library does for 1.6 SetChargingProfile):
    # 10.6 is a multiple of 0.1 only in decimal arithmetic.
    text = (SCHEMAS / relative).read_text(encoding="utf-8-sig")
    return jsonschema.Draft4Validator(json.loads(text, parse_float=Decimal))


V16 = _validator("v16/schemas/SetChargingProfile.json")
V201 = _validator("v201/schemas/SetChargingProfileRequest.json")


def _check(validator: Any, payload: dict[str, Any], version: str, action: str) -> None:
    errors = list(validator.iter_errors(json.loads(json.dumps(payload), parse_float=Decimal)))
    assert errors == [], [e.message for e in errors]
    # And through the library's own runtime validation (raises on a violation).
    asyncio.run(validate_payload(Call("1", action, payload), version))


limits = st.decimals(min_value=0, max_value=500, places=2)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
)


@settings(max_examples=150, deadline=None)
@given(limit=limits, now=moments, kind=st.sampled_from(["Absolute", "Relative"]),
       tx=st.integers(1, 2**31 - 1), profile_id=st.integers(1, 2**31 - 1))
def test_16_payloads_match_the_ocpp_library_schema(
    limit: Decimal, now: datetime, kind: Any, tx: int, profile_id: int
) -> None:
    _check(V16, tx_profile_16(3, tx, limit, profile_id, now, kind=kind), "1.6", "SetChargingProfile")
    _check(V16, tx_default_profile_16(limit, profile_id, now, kind=kind), "1.6", "SetChargingProfile")
    stamp = tx_profile_16(3, tx, limit, profile_id, now)["csChargingProfiles"]["chargingSchedule"]
    assert OCPP_TIME.match(stamp["startSchedule"])


@settings(max_examples=150, deadline=None)
@given(limit=limits, now=moments, kind=st.sampled_from(["Absolute", "Relative"]),
       tx=st.text("0123456789abcdef-", min_size=1, max_size=36), profile_id=st.integers(1, 2**31 - 1))
def test_201_payloads_match_the_ocpp_library_schema(
    limit: Decimal, now: datetime, kind: Any, tx: str, profile_id: int
) -> None:
    _check(V201, tx_profile_201(1, tx, limit, profile_id, now, kind=kind), "2.0.1",
           "SetChargingProfile")
    _check(V201, tx_default_profile_201(limit, profile_id, now, kind=kind), "2.0.1",
           "SetChargingProfile")

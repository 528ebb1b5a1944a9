"""The pure parts of the runtime: command parameters, fail-safe share, merging batches."""

from __future__ import annotations

from decimal import Decimal

from services.smart_charging.commands import FAILSAFE_PROFILE_ID, fail_safe_command, tx_profile_command, tx_profile_id
from services.smart_charging.domain import ProfileCommand
from services.smart_charging.commands import fail_safe_limit, merge_commands

from .builders import T0


def command(station: str, limit: str, previous: str | None, evse: int = 1) -> ProfileCommand:
    return ProfileCommand(station, evse, Decimal(limit), "7", None if previous is None else Decimal(previous))


def test_a_16_tx_profile_speaks_the_api_vocabulary_with_the_ocpp_profile_inside() -> None:
    planned = tx_profile_command("1.6", command("CS", "10.75", None, evse=2), T0)

    assert planned.params == {
        "connector_id": 2,
        "charging_profile": {
            "chargingProfileId": tx_profile_id(2),
            "transactionId": 7,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": "2026-11-28T10:00:00.000Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.7}],
            },
        },
    }
    assert (planned.kind, planned.evse_id, planned.transaction_id) == ("tx", 2, "7")


def test_a_201_tx_profile_carries_the_evse_and_the_string_transaction_id() -> None:
    planned = tx_profile_command("2.0.1", ProfileCommand("CS", 1, Decimal(16), "abc-1"), T0)

    assert planned.params["evse_id"] == 1
    profile = planned.params["charging_profile"]
    assert profile["id"] == tx_profile_id(1) and profile["transactionId"] == "abc-1"
    assert profile["chargingSchedule"][0]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 16.0}]


def test_the_fail_safe_is_a_relative_default_profile_on_the_whole_station() -> None:
    p16 = fail_safe_command("1.6", "CS", Decimal(8), T0)
    p201 = fail_safe_command("2.0.1", "CS", Decimal(8), T0)

    assert p16.params["connector_id"] == 0 and p201.params["evse_id"] == 0
    assert p16.params["charging_profile"]["chargingProfilePurpose"] == "TxDefaultProfile"
    assert p16.params["charging_profile"]["chargingProfileId"] == FAILSAFE_PROFILE_ID
    assert p201.params["charging_profile"]["chargingProfileKind"] == "Relative"
    assert p16.kind == p201.kind == "failsafe"


def test_the_fail_safe_share_is_the_site_limit_split_between_its_stations_within_6_a_and_the_max() -> None:
    assert fail_safe_limit(Decimal(32), 4, None) == 8
    assert str(fail_safe_limit(Decimal(32), 3, None)) == "10.6"
    assert fail_safe_limit(Decimal(32), 10, None) == 6
    assert fail_safe_limit(Decimal(32), 1, Decimal(16)) == 16
    assert fail_safe_limit(Decimal(32), 0, None) == 32


def test_a_batch_keeps_each_sessions_last_limit_and_lowers_before_it_raises() -> None:
    batch = [
        command("A", "20", "32"),      # lowered by a new cap ...
        command("B", "10", "16"),
        command("A", "24", "20"),      # ... then raised by a stop in the same step: 32 -> 24
        command("B", "16", "10"),      # back to where it was: nothing to send
        command("C", "8", None),       # new session
    ]

    merged = merge_commands(batch)

    assert [(c.station_id, c.limit_a, c.previous_a) for c in merged] == [
        ("A", Decimal(24), Decimal(32)),
        ("C", Decimal(8), None),
    ]

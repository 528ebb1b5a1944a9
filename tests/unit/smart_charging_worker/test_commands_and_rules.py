"""The pure parts around the state machine: limit commands (and what the gateway builds
from them), the outbox mapping, the fail-safe share, merging batches."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.common.ocpp.commands import to_ocpp
from services.smart_charging.commands import (
    FAILSAFE_PROFILE_ID,
    fail_safe_command,
    fail_safe_limit,
    merge_commands,
    tx_limit_command,
    tx_profile_id,
)
from services.smart_charging.documents import planned_from_json, planned_to_json
from services.smart_charging.domain import ProfileCommand

from .builders import T0


def command(station: str, limit: str, previous: str | None, evse: int = 1) -> ProfileCommand:
    return ProfileCommand(station, evse, Decimal(limit), "7", None if previous is None else Decimal(previous))


def test_a_tx_limit_is_version_neutral_and_starts_at_the_decision_time() -> None:
    planned = tx_limit_command(command("CS", "10.75", None, evse=2), T0)

    assert planned.command_type == "SetChargingLimit"
    assert planned.params == {
        "purpose": "tx",
        "evse_id": 2,
        "transaction_id": "7",
        "limit_a": "10.75",
        "number_phases": None,
        "profile_id": tx_profile_id(2),
        "start": "2026-11-28T10:00:00.000Z",
    }
    assert (planned.kind, planned.evse_id, planned.transaction_id, planned.limit_a) == ("tx", 2, "7", "10.75")


def test_the_gateway_builds_the_same_16_profile_from_a_tx_limit_as_smart_charging_built_before() -> None:
    planned = tx_limit_command(command("CS", "10.75", None, evse=2), T0)

    assert to_ocpp(planned.command_type, planned.params, "1.6") == ("SetChargingProfile", {
        "connectorId": 2,
        "csChargingProfiles": {
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
    })


def test_a_201_tx_limit_carries_the_evse_and_the_string_transaction_id() -> None:
    planned = tx_limit_command(ProfileCommand("CS", 1, Decimal(16), "abc-1"), T0)

    action, payload = to_ocpp(planned.command_type, planned.params, "2.0.1")
    assert action == "SetChargingProfile" and payload["evseId"] == 1
    profile = payload["chargingProfile"]
    assert profile["id"] == tx_profile_id(1) and profile["transactionId"] == "abc-1"
    assert profile["chargingSchedule"][0]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 16.0}]


def test_a_limit_without_an_evse_or_a_transaction_id_is_not_built() -> None:
    with pytest.raises(ValueError):
        tx_limit_command(ProfileCommand("CS", 0, Decimal(16), "1"), T0)
    with pytest.raises(ValueError):
        tx_limit_command(ProfileCommand("CS", 1, Decimal(16), ""), T0)


def test_the_fail_safe_is_a_relative_default_profile_on_the_whole_station() -> None:
    planned = fail_safe_command("CS", Decimal(8), T0)

    assert (planned.command_type, planned.kind, planned.limit_a) == ("SetChargingLimit", "failsafe", "8")
    assert planned.params["purpose"] == "default" and planned.params["evse_id"] == 0
    _, p16 = to_ocpp(planned.command_type, planned.params, "1.6")
    _, p201 = to_ocpp(planned.command_type, planned.params, "2.0.1")
    assert p16["connectorId"] == 0 and p201["evseId"] == 0
    assert p16["csChargingProfiles"]["chargingProfilePurpose"] == "TxDefaultProfile"
    assert p16["csChargingProfiles"]["chargingProfileId"] == FAILSAFE_PROFILE_ID
    assert p201["chargingProfile"]["chargingProfileKind"] == "Relative"


def test_an_outbox_entry_keeps_its_command_type_and_one_stored_before_it_existed_is_a_set_charging_profile() -> None:
    planned = tx_limit_command(command("CS", "16", None), T0)
    assert planned_from_json(planned_to_json(planned)) == planned

    legacy = {  # as the version before SetChargingLimit stored it: the 1.6 profile built
        "command_id": "c-1", "station_id": "CS", "kind": "tx", "evse_id": 1, "transaction_id": "7", "limit_a": "16",
        "params": {"connector_id": 1, "charging_profile": {"chargingProfileId": 7101, "transactionId": 7}},
    }
    restored = planned_from_json(legacy)
    assert restored.command_type == "SetChargingProfile"
    assert restored.params == legacy["params"]
    assert planned_to_json(restored)["command_type"] == "SetChargingProfile"


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

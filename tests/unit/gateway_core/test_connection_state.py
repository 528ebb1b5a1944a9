"""An idle connection stays small: its state is typed slots, its optional parts are created on
first use, and what all connections share is one reference (services/gateway/connection.py)."""

from __future__ import annotations

from services.gateway.connection import Connection, ConnectionShared
from services.gateway.context import ConnectionState
from services.gateway.running_cost import RunningCosts

from ..gateway_actions.builders import a_harness


def test_connection_state_has_no_per_instance_dict_and_creates_nothing_up_front() -> None:
    state = ConnectionState(enabled_checked_at=1.0)
    assert (state.boot_status, state.tx_costs, state.lenient_logged) == (None, None, None)


def test_a_connection_holds_one_shared_reference_and_no_dict() -> None:
    assert "shared" in Connection.__slots__
    # __dictoffset__ 0: instances have no __dict__ (slots all the way down)
    assert Connection.__dictoffset__ == ConnectionShared.__dictoffset__ == ConnectionState.__dictoffset__ == 0


async def test_running_costs_appear_on_the_first_2x_transaction_event_only() -> None:
    class NoCost:
        async def total_cost(self, *args: object) -> None:
            return None

    h = a_harness("2.0.1", running_cost=NoCost())  # type: ignore[arg-type]
    await h.call("Heartbeat", {})
    assert h.ctx.state.tx_costs is None
    await h.call("TransactionEvent", {
        "eventType": "Started", "timestamp": "2026-11-28T04:21:16Z", "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": "tx-1"}, "evse": {"id": 1, "connectorId": 1},
    })
    assert isinstance(h.ctx.state.tx_costs, RunningCosts)


def test_faulted_connectors_say_when_the_station_as_a_whole_changes() -> None:
    state = ConnectionState()
    assert state.faulted is None  # nothing until the first Faulted
    assert state.connector_status(1, 1, False) is None
    assert state.connector_status(1, 1, True) is True
    assert state.connector_status(2, 1, True) is None      # already faulted
    assert state.connector_status(1, 1, False) is None     # EVSE 2 still is
    assert state.connector_status(2, 1, False) is False
    assert state.connector_status(0, 0, True) is True      # the station as a whole
    assert state.clear_faults() is True and state.clear_faults() is False
    assert state.connector_status(1, 1, True) is None      # a handler finishing after the disconnect
    assert not state.faulted

"""Cost updates (ADR 018 §6, services/billing/cost_updates.py) on the real in-memory store,
with a clock the test moves and a recording command sender (what `CommandRouter.send`
answers is the test's choice: Sent, Offline, Unroutable, or a bus failure)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.billing.codec import SessionSnapshot
from services.billing.cost_updates import (
    COSTMSG_VENDOR,
    CostUpdates,
    cost_update_view,
    user_price_text,
)
from services.billing.documents import SessionReadings
from services.billing.domain import Tariff, TariffBand
from services.common import codec, kinds
from services.common.errors import BusUnavailable
from services.common.routing import Offline, Routed, Sent, Unroutable
from services.common.store.port import Station
from services.common.store.sqlite import SqliteStore
from tests.support import FixedClock, opened
from tests.unit.billing_worker.builders import (
    a_completed_session,
    a_tariff,
    an_active_session,
    at,
    domain_tariff,
    energy,
)

TARIFF = a_tariff(id="T-EN", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0"),
                  session_fee=Decimal("0"), tax_rate=Decimal("0.19"))


class Recorder:
    """A `Sender` that records what it was asked to send and answers `answer`."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.answer: str = "sent"

    async def send(self, station_id: str, command_type: str, params: Mapping[str, Any], *, ttl: timedelta,
                   command_id: str | None = None) -> Routed:
        if self.answer == "bus_down":
            raise BusUnavailable("bus is down")
        if self.answer == "offline":
            return Offline("station is not connected")
        if self.answer == "unroutable":
            return Unroutable("no partition")
        self.sent.append((station_id, command_type, dict(params), command_id))
        cmd = codec.Command(command_id=command_id or "x", station_id=station_id, command_type=command_type,
                            params_json=json.dumps(dict(params)), issued_at=at(0), expires_at=at(0) + ttl)
        return Sent(cmd, 0)


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    async with opened() as s:
        await s.put_doc(kinds.TARIFF, TARIFF["id"], TARIFF)
        await s.put_station(Station(id="CS1", password_hash="", tariff_id="T-EN"))
        await s.put_station(Station(id="CS16", password_hash="", tariff_id="T-EN", cost_messages=True))
        yield s


def updates(store: SqliteStore, sender: Recorder, clock: FixedClock, interval_s: float = 60) -> CostUpdates:
    return CostUpdates(store=store, readings=SessionReadings(store), sender=sender, clock=clock, interval_s=interval_s)


async def first_seen(costs: CostUpdates, clock: FixedClock, *snaps: SessionSnapshot, interval_s: float = 60) -> None:
    """Billing sees the transactions for the first time: nothing is sent (and nothing read);
    their first update is due one interval later, where the clock is moved."""
    assert await costs.handle(list(snaps)) == ["first_seen"] * len(snaps)
    clock.advance(seconds=interval_s)


def message_ids(sender: Recorder) -> list[str]:
    """The costmsg messageIds sent, in order."""
    return [p["message_id"] for _, command, p, _ in sender.sent if command == "DataTransfer"]


def a_201_session(wh: int = 3000, minutes: float = 10, **overrides: Any) -> SessionSnapshot:
    """Register 1000 at the start (10:00); `wh` at `minutes`; the accumulator priced with T-EN."""
    fields: dict[str, Any] = dict(
        id="CS1-tx-a", station_id="CS1", transaction_id="tx-a", ocpp_version="2.0.1",
        energy_wh=wh - 1000, samples=(energy(minutes, wh),), priced_with=domain_tariff(TARIFF),
    )
    fields.update(overrides)
    return an_active_session(**fields)


def a_16_session(wh: int = 3000, minutes: float = 10, **overrides: Any) -> SessionSnapshot:
    fields: dict[str, Any] = dict(id="CS16-7", station_id="CS16", transaction_id="7", ocpp_version="1.6")
    fields.update(overrides)
    return a_201_session(wh, minutes, **fields)


async def test_a_201_session_gets_cost_updated_with_the_tariffs_total_incl_tax(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(9))
    costs = updates(store, sender, clock)
    ops = sum(store.ops.values())
    await first_seen(costs, clock, a_201_session())
    assert sum(store.ops.values()) == ops and sender.sent == []
    assert await costs.handle([a_201_session()]) == ["sent"]

    [(station, command, params, command_id)] = sender.sent
    # 2 kWh x 0.30 = 0.60, + 19 % = 0.714 -> 0.71
    assert (station, command, params) == ("CS1", "CostUpdated", {"total_cost": "0.71", "transaction_id": "tx-a"})
    doc = await store.get_doc(kinds.COST_UPDATE, "CS1-tx-a")
    assert doc is not None and doc["command_id"] == command_id
    assert cost_update_view(doc) == {
        "total_cost": {"amount": "0.71", "currency": "EUR"}, "sent_at": "2026-11-28T10:10:00.000Z",
        "kind": "CostUpdated", "count": 1, "state": "sent",
    }


async def test_not_due_is_answered_from_memory_and_the_next_one_goes_after_the_interval(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(9))
    costs = updates(store, sender, clock, interval_s=60)
    await first_seen(costs, clock, a_201_session())
    assert await costs.handle([a_201_session()]) == ["sent"]

    clock.advance(seconds=30)
    ops = sum(store.ops.values())
    assert await costs.handle([a_201_session(wh=3500, minutes=10.5)]) == ["not_due"]
    assert sum(store.ops.values()) == ops  # the hot path touches no store
    assert len(sender.sent) == 1

    clock.advance(seconds=31)
    assert await costs.handle([a_201_session(wh=5000, minutes=11)]) == ["sent"]
    # 4 kWh x 0.30 x 1.19 = 1.428 -> 1.43
    assert [p["total_cost"] for _, _, p, _ in sender.sent] == ["0.71", "1.43"]
    doc = await store.get_doc(kinds.COST_UPDATE, "CS1-tx-a")
    assert doc is not None and doc["count"] == 2 and sender.sent[0][3] != sender.sent[1][3]


async def test_an_unchanged_total_is_not_sent_again(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(10))
    costs = updates(store, sender, clock, interval_s=5)
    await first_seen(costs, clock, a_201_session(), interval_s=5)
    assert await costs.handle([a_201_session()]) == ["sent"]
    clock.advance(seconds=10)
    assert await costs.handle([a_201_session()]) == ["unchanged"]
    assert len(sender.sent) == 1


async def test_two_replicas_or_a_redelivery_send_once(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(10))
    one, two = updates(store, sender, clock), updates(store, sender, clock)
    await one.handle([a_201_session()])
    await first_seen(two, clock, a_201_session())
    assert await one.handle([a_201_session()]) == ["sent"]
    # the other replica (or this one after a restart) reads the document: sent a moment ago
    assert await two.handle([a_201_session()]) == ["not_due"]
    assert await one.handle([a_201_session()]) == ["not_due"]
    assert len(sender.sent) == 1


async def test_the_write_before_the_send_lets_only_one_of_two_racing_replicas_send(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(10))
    one, two = updates(store, sender, clock), updates(store, sender, clock)
    real_get = store.get_doc
    seen: list[dict[str, Any] | None] = []

    async def stale_get(kind: str, doc_id: str) -> dict[str, Any] | None:
        got = await real_get(kind, doc_id)
        if kind == kinds.COST_UPDATE:
            seen.append(got)
            if len(seen) == 2:  # the second replica read before the first one wrote
                return seen[0]
        return got

    store.get_doc = stale_get  # type: ignore[method-assign]
    await one.handle([a_201_session()])
    await first_seen(two, clock, a_201_session())
    assert await one.handle([a_201_session()]) == ["sent"]
    assert await two.handle([a_201_session()]) == ["lost"]
    assert len(sender.sent) == 1


async def test_an_offline_station_is_tried_again_by_the_next_record(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(10))
    costs = updates(store, sender, clock)
    await first_seen(costs, clock, a_201_session())
    sender.answer = "offline"
    assert await costs.handle([a_201_session()]) == ["offline"]
    doc = await store.get_doc(kinds.COST_UPDATE, "CS1-tx-a")
    assert doc is not None and (doc["state"], doc["count"]) == ("offline", 0)

    sender.answer = "sent"
    clock.advance(seconds=1)
    assert await costs.handle([a_201_session()]) == ["sent"]
    doc = await store.get_doc(kinds.COST_UPDATE, "CS1-tx-a")
    assert doc is not None and (doc["state"], doc["count"]) == ("sent", 1)


async def test_unroutable_and_bus_failures_never_fail_the_running_path(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(10))
    costs = updates(store, sender, clock)
    await first_seen(costs, clock, a_201_session())
    sender.answer = "unroutable"
    assert await costs.handle([a_201_session()]) == ["unroutable"]
    sender.answer = "bus_down"
    clock.advance(seconds=1)
    assert await costs.handle([a_201_session()]) == ["error"]


async def test_interval_zero_sends_no_running_costs_but_still_the_drivers_price(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(10))
    costs = updates(store, sender, clock, interval_s=0)
    assert await costs.handle([a_201_session(), a_16_session()]) == []
    clock.advance(seconds=600)
    assert await costs.handle([a_201_session(), a_16_session()]) == []
    assert message_ids(sender) == ["SetUserPrice"]


async def test_no_tariff_a_refused_token_or_an_unknown_station_send_nothing(store: SqliteStore) -> None:
    await store.put_station(Station(id="CS-free", password_hash=""))
    sender, clock = Recorder(), FixedClock(at(10))
    costs = updates(store, sender, clock)
    snaps = [
        a_201_session(id="free-1", station_id="CS-free"),
        a_201_session(id="refused-1", authorization="Blocked"),
    ]
    await first_seen(costs, clock, *snaps)
    assert await costs.handle(snaps) == ["no_tariff", "refused_token"]
    assert sender.sent == []


async def test_a_16_station_without_the_flag_gets_nothing(store: SqliteStore) -> None:
    await store.put_station(Station(id="CS16-off", password_hash="", tariff_id="T-EN"))
    sender, clock = Recorder(), FixedClock(at(10))
    costs = updates(store, sender, clock)
    await first_seen(costs, clock, a_16_session(id="off-1", station_id="CS16-off"))
    assert await costs.handle([a_16_session(id="off-1", station_id="CS16-off")]) == ["disabled"]
    done = a_completed_session(id="off-1", station_id="CS16-off", ocpp_version="1.6")
    assert await costs.handle([done]) == ["disabled"]
    assert sender.sent == []


async def test_a_16_station_with_the_flag_gets_running_cost_as_costmsg_data_transfer(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(9))
    costs = updates(store, sender, clock)
    await first_seen(costs, clock, a_16_session())
    assert await costs.handle([a_16_session()]) == ["sent"]

    assert message_ids(sender) == ["SetUserPrice", "RunningCost"]
    (station, command, params, _) = sender.sent[1]
    assert (station, command) == ("CS16", "DataTransfer")
    assert (params["vendor_id"], params["message_id"]) == (COSTMSG_VENDOR, "RunningCost")
    data = json.loads(params["data"])
    assert data == {
        "transactionId": 7, "timestamp": "2026-11-28T10:10:00.000Z", "meterValue": 3000, "cost": 0.71,
        "state": "Charging", "chargingPrice": {"kWhPrice": 0.357, "hourPrice": 0, "flatFee": 0},
    }
    doc = await store.get_doc(kinds.COST_UPDATE, "CS16-7")
    assert doc is not None and doc["kind"] == "RunningCost"


async def test_a_16_transaction_id_that_is_not_an_integer_is_logged_not_sent(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(10))
    costs = updates(store, sender, clock)
    await first_seen(costs, clock, a_16_session(transaction_id="abc"))
    assert await costs.handle([a_16_session(transaction_id="abc")]) == ["bad_transaction_id"]
    assert message_ids(sender) == ["SetUserPrice"]  # it names the token, not the transaction


async def _a_cdr(store: SqliteStore, session_id: str, amount: str) -> None:
    await store.put_doc(kinds.CDR, f"{session_id}-v1", {
        "id": f"{session_id}-v1", "session_id": session_id, "version": 1,
        "total_cost": {"amount": "0.60", "currency": "EUR"},
        "total_cost_incl_tax": {"amount": amount, "currency": "EUR"},
    }, parent=session_id, version=1)


async def test_final_cost_goes_once_with_the_cdrs_total_incl_tax(store: SqliteStore) -> None:
    await _a_cdr(store, "CS16-7", "0.71")
    sender, clock = Recorder(), FixedClock(at(41))
    costs = updates(store, sender, clock)
    done = a_completed_session(id="CS16-7", station_id="CS16", transaction_id="7", ocpp_version="1.6")

    assert await costs.handle([done]) == ["sent"]
    assert await costs.handle([done]) == ["done"]  # a redelivery
    assert await updates(store, sender, clock).handle([done]) == ["done"]  # another replica / a restart

    [(station, command, params, _)] = sender.sent
    assert (station, command, params["message_id"]) == ("CS16", "DataTransfer", "FinalCost")
    assert json.loads(params["data"]) == {"transactionId": 7, "cost": 0.71, "priceText": "Total 0.71 EUR incl. tax"}
    view = cost_update_view(await store.get_doc(kinds.COST_UPDATE, "CS16-7"))
    assert view is not None and (view["kind"], view["state"], view["total_cost"]["amount"]) == ("FinalCost", "sent", "0.71")
    # a stale active record after the end sends no running cost any more
    assert await costs.handle([a_16_session()]) == ["not_due"]
    other = updates(store, sender, clock)
    await first_seen(other, clock, a_16_session())
    assert await other.handle([a_16_session()]) == ["ended"]
    assert len(sender.sent) == 1


async def test_a_final_cost_that_could_not_be_produced_fails_the_batch_and_goes_on_redelivery(store: SqliteStore) -> None:
    await _a_cdr(store, "CS16-7", "0.71")
    sender, clock = Recorder(), FixedClock(at(41))
    done = a_completed_session(id="CS16-7", station_id="CS16", transaction_id="7", ocpp_version="1.6")
    sender.answer = "bus_down"
    with pytest.raises(BusUnavailable):
        await updates(store, sender, clock).handle([done])
    doc = await store.get_doc(kinds.COST_UPDATE, "CS16-7")
    assert doc is not None and doc["state"] == "sending"

    sender.answer = "sent"
    assert await updates(store, sender, clock).handle([done]) == ["sent"]  # the redelivered batch
    assert len(sender.sent) == 1
    doc = await store.get_doc(kinds.COST_UPDATE, "CS16-7")
    assert doc is not None and (doc["state"], doc["count"]) == ("sent", 1)


async def test_no_final_cost_without_a_cdr_and_nothing_for_201_at_the_end(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(41))
    costs = updates(store, sender, clock)
    unpriced = a_completed_session(id="CS16-9", station_id="CS16", transaction_id="9", ocpp_version="1.6")
    ended_201 = dataclasses.replace(a_201_session(), status="completed", stopped_at=at(40))
    assert await costs.handle([unpriced, ended_201]) == ["no_cost"]
    assert sender.sent == []


def test_the_view_of_no_document_is_null() -> None:
    assert cost_update_view(None) is None
    assert cost_update_view({"kind": "CostUpdated"}) is None


# --- SetUserPrice (the driver's price, 1.6 costmsg) -------------------------------------------

T_IDLE = a_tariff(id="T-IDLE", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0"), session_fee=Decimal("0"),
                  idle_fee_per_minute=Decimal("0.10"), idle_grace_minutes=15, tax_rate=Decimal("0.19"))


async def test_set_user_price_goes_once_on_the_first_record_before_the_first_running_cost(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(9))
    costs = updates(store, sender, clock)
    assert await costs.handle([a_16_session(wh=1000, minutes=0)]) == ["first_seen"]

    [(station, command, params, command_id)] = sender.sent
    assert (station, command, params["vendor_id"], params["message_id"]) == (
        "CS16", "DataTransfer", COSTMSG_VENDOR, "SetUserPrice")
    assert json.loads(params["data"]) == {"idToken": "TOKEN1", "priceText": "0.357 EUR/kWh (incl. tax)"}
    doc = await store.get_doc(kinds.COST_UPDATE, "CS16-7")
    assert doc is not None and doc["user_price"] == {
        "state": "sent", "sent_at": "2026-11-28T10:09:00.000Z", "command_id": command_id,
        "price_text": "0.357 EUR/kWh (incl. tax)",
    }
    assert cost_update_view(doc) is None  # no cost told yet: the session's cost_update stays null

    # later records of the session: no second SetUserPrice, and nothing read for it
    ops = sum(store.ops.values())
    clock.advance(seconds=30)
    assert await costs.handle([a_16_session(wh=2000, minutes=5)]) == ["not_due"]
    assert sum(store.ops.values()) == ops
    clock.advance(seconds=30)
    assert await costs.handle([a_16_session()]) == ["sent"]
    assert message_ids(sender) == ["SetUserPrice", "RunningCost"]
    doc = await store.get_doc(kinds.COST_UPDATE, "CS16-7")
    assert doc is not None and doc["kind"] == "RunningCost" and doc["user_price"]["state"] == "sent"

    # another replica, or this process after a restart: the document says it went
    other = updates(store, sender, clock)
    await other.handle([a_16_session()])
    assert message_ids(sender) == ["SetUserPrice", "RunningCost"]


async def test_a_redelivered_batch_or_a_second_replica_sends_set_user_price_once(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(1))
    one, two = updates(store, sender, clock), updates(store, sender, clock)
    await one.handle([a_16_session(wh=1000, minutes=0)])
    await one.handle([a_16_session(wh=1000, minutes=0)])  # the same batch again
    await two.handle([a_16_session(wh=1000, minutes=0)])  # a second replica read the record too
    assert message_ids(sender) == ["SetUserPrice"]
    doc = await store.get_doc(kinds.COST_UPDATE, "CS16-7")
    assert doc is not None and doc["user_price"]["state"] == "sent"


async def test_of_two_racing_replicas_only_the_one_that_wrote_first_sends_set_user_price(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(1))
    one, two = updates(store, sender, clock), updates(store, sender, clock)
    real_get = store.get_doc
    reads: list[dict[str, Any] | None] = []

    async def stale_get(kind: str, doc_id: str) -> dict[str, Any] | None:
        got = await real_get(kind, doc_id)
        if kind == kinds.COST_UPDATE:
            reads.append(got)
            if len(reads) == 2:  # the second replica read before the first one wrote
                return reads[0]
        return got

    store.get_doc = stale_get  # type: ignore[method-assign]
    await one.handle([a_16_session(wh=1000, minutes=0)])
    await two.handle([a_16_session(wh=1000, minutes=0)])
    assert len(reads) == 2  # the second replica did read (and was told nothing had been sent)
    doc = await store.get_doc(kinds.COST_UPDATE, "CS16-7")
    assert doc is not None and doc["version"] == 2  # "sending", then "sent": the loser wrote nothing
    assert message_ids(sender) == ["SetUserPrice"]
    # the loser does not try again with its next record either
    await two.handle([a_16_session(wh=1200, minutes=1)])
    assert message_ids(sender) == ["SetUserPrice"]


async def test_set_user_price_to_an_offline_station_or_a_failed_send_is_tried_by_the_next_record(
    store: SqliteStore,
) -> None:
    sender, clock = Recorder(), FixedClock(at(1))
    costs = updates(store, sender, clock)
    sender.answer = "offline"
    await costs.handle([a_16_session(wh=1000, minutes=0)])
    doc = await store.get_doc(kinds.COST_UPDATE, "CS16-7")
    assert doc is not None and doc["user_price"]["state"] == "offline"

    sender.answer = "bus_down"  # produced or not, nobody knows: "sending" stays, it goes again
    await costs.handle([a_16_session(wh=1100, minutes=0.5)])
    doc = await store.get_doc(kinds.COST_UPDATE, "CS16-7")
    assert doc is not None and doc["user_price"]["state"] == "sending"
    assert sender.sent == []

    sender.answer = "sent"
    await updates(store, sender, clock).handle([a_16_session(wh=1200, minutes=1)])  # even after a restart
    assert message_ids(sender) == ["SetUserPrice"]
    doc = await store.get_doc(kinds.COST_UPDATE, "CS16-7")
    assert doc is not None and doc["user_price"]["state"] == "sent"


async def test_a_session_that_already_had_a_running_cost_gets_no_set_user_price(store: SqliteStore) -> None:
    sender, clock = Recorder(), FixedClock(at(9))
    # the flag was turned on mid-session, or billing restarted: a RunningCost is on record
    await store.put_doc(kinds.COST_UPDATE, "CS16-8", {
        "id": "CS16-8", "kind": "RunningCost", "state": "sent", "sent_at": "2026-11-28T10:09:30.000Z",
        "total_cost": {"amount": "0.50", "currency": "EUR"}, "count": 1, "version": 1,
    }, parent="CS16", version=1)
    costs = updates(store, sender, clock)
    await costs.handle([a_16_session(id="CS16-8", transaction_id="8")])
    assert sender.sent == []  # too late to matter: the driver already sees the cost
    clock.advance(seconds=90)  # one interval after the RunningCost on record
    await costs.handle([a_16_session(id="CS16-8", transaction_id="8")])
    assert message_ids(sender) == ["RunningCost"]


async def test_no_set_user_price_without_the_flag_for_201_for_a_refused_token_or_without_a_tariff(
    store: SqliteStore,
) -> None:
    await store.put_station(Station(id="CS16-off", password_hash="", tariff_id="T-EN"))
    await store.put_station(Station(id="CS16-free", password_hash="", cost_messages=True))
    sender, clock = Recorder(), FixedClock(at(1))
    costs = updates(store, sender, clock)
    await costs.handle([
        a_16_session(id="off-1", station_id="CS16-off"),
        a_16_session(id="free-1", station_id="CS16-free"),
        a_16_session(id="refused-1", authorization="Blocked"),
        a_16_session(id="no-token-1", id_token=""),
        a_201_session(),
    ])
    assert sender.sent == []
    for session_id in ("off-1", "free-1", "refused-1", "no-token-1", "CS1-tx-a"):
        assert await store.get_doc(kinds.COST_UPDATE, session_id) is None


async def test_the_running_cost_and_final_cost_keep_the_drivers_price_on_record(store: SqliteStore) -> None:
    await store.put_doc(kinds.TARIFF, T_IDLE["id"], T_IDLE)
    await store.put_station(Station(id="CS16-idle", password_hash="", tariff_id="T-IDLE", cost_messages=True))
    sender, clock = Recorder(), FixedClock(at(1))
    costs = updates(store, sender, clock)
    await costs.handle([a_16_session(id="idle-7", station_id="CS16-idle", wh=1000, minutes=0)])
    assert json.loads(sender.sent[0][2]["data"])["priceText"] == "0.357 EUR/kWh, 7.14 EUR/h after 15 min idle (incl. tax)"
    await _a_cdr(store, "idle-7", "0.71")
    done = a_completed_session(id="idle-7", station_id="CS16-idle", transaction_id="7", ocpp_version="1.6")
    assert await costs.handle([done]) == ["sent"]
    assert message_ids(sender) == ["SetUserPrice", "FinalCost"]
    doc = await store.get_doc(kinds.COST_UPDATE, "idle-7")
    assert doc is not None and doc["kind"] == "FinalCost" and doc["user_price"]["state"] == "sent"
    # a stale active record after the end: no second SetUserPrice
    await costs.handle([a_16_session(id="idle-7", station_id="CS16-idle")])
    assert message_ids(sender) == ["SetUserPrice", "FinalCost"]


def _price_text(**fields: Any) -> str:
    base: dict[str, Any] = dict(id="T", currency="EUR", price_per_kwh=Decimal("0"), price_per_minute=Decimal("0"),
                                session_fee=Decimal("0"), tax_rate=Decimal("0"))
    base.update(fields)
    return user_price_text(Tariff(**base), at(0))


def test_the_price_text_shows_every_price_incl_tax_with_the_currencys_places_at_least() -> None:
    assert _price_text(price_per_kwh=Decimal("0.30")) == "0.30 EUR/kWh"
    assert _price_text(price_per_kwh=Decimal("0.30"), tax_rate=Decimal("0.19")) == "0.357 EUR/kWh (incl. tax)"
    assert _price_text(price_per_kwh=Decimal("0.123456")) == "0.1235 EUR/kWh"
    assert _price_text(price_per_minute=Decimal("0.05"), session_fee=Decimal("1"), tax_rate=Decimal("0.2")) == (
        "3.60 EUR/h, 1.20 EUR per session (incl. tax)")
    assert _price_text(idle_fee_per_minute=Decimal("0.10")) == "6.00 EUR/h idle"
    assert _price_text(price_per_kwh=Decimal("0.30"), min_price=Decimal("1"), max_price=Decimal("20"),
                       tax_rate=Decimal("0.19")) == "0.357 EUR/kWh, at least 1.19 EUR, at most 23.80 EUR (incl. tax)"
    assert _price_text(currency="JPY", price_per_kwh=Decimal("30")) == "30 JPY/kWh"
    assert _price_text(currency="JPY", price_per_kwh=Decimal("30.5")) == "30.5 JPY/kWh"
    assert _price_text() == "Free of charge"


def test_the_price_text_shows_the_band_in_force_now() -> None:
    band = TariffBand(start="10:00", end="11:00", price_per_kwh=Decimal("0.50"))  # at(0) is 10:00 UTC
    tariff = Tariff(id="T", currency="EUR", price_per_kwh=Decimal("0.30"), bands=(band,))
    assert user_price_text(tariff, at(0)) == "0.50 EUR/kWh, time-of-day prices apply"
    assert user_price_text(tariff, at(61)) == "0.30 EUR/kWh, time-of-day prices apply"

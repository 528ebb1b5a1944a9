"""Both stages on batches (ADR 015): stage 1 drops what smart charging does not need
before decoding it and forwards the rest with one `publish_many`; stage 2 reads each
site's state once per batch and writes it once, only when something changed, commands
after the write. The store traffic is counted in the SQLite adapter (`store.ops`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from services.common import codec, topics
from services.common import events as ev
from services.common.bus.delivery import DeliveryPolicy
from services.common.bus.port import Outgoing, Record
from services.common.errors import ConflictError
from services.common.kinds import SITE_STATE
from services.smart_charging.repartition import BY_SITE, Regrouper, is_relevant

from .builders import T0, booted, command_result, current, envelope, latest_limits, later, started
from .conftest import World


def by_site(env: ev.Envelope, site_id: str, offset: int = 0) -> Record:
    """A record of the by-site topic, as stage 1 forwards it."""
    headers = tuple(codec.event_headers(env)) + (("site_id", site_id.encode()),)
    return Record(BY_SITE, 0, offset, site_id.encode(), codec.encode_event(env), headers)


def on_events(env: ev.Envelope, offset: int = 0) -> Record:
    return Record(topics.EVENTS, 0, offset, env.station_id.encode(), codec.encode_event(env), tuple(codec.event_headers(env)))


async def two_sites_charging(world: World) -> None:
    """SITE1: A1, A2; SITE2: B1, B2; 32 A each, every station charging at 16 A."""
    for site_id, stations in (("SITE1", ("A1", "A2")), ("SITE2", ("B1", "B2"))):
        await world.site(site_id, grid_limit_a=32)
        for station_id in stations:
            await world.station(station_id, site_id=site_id)
    await world.service.start()
    await world.feed(started("A1", "1"), started("A2", "2"), started("B1", "3"), started("B2", "4"))
    assert latest_limits(world.sent()) == {"A1": 16.0, "A2": 16.0, "B1": 16.0, "B2": 16.0}
    world.clock.advance(60)  # past the 30 s settling time


def readings(per_station: int, amps: float = 16.0, start_s: int = 60) -> list[Record]:
    out = []
    for k in range(per_station):
        for station_id, tx, site_id in (("A1", "1", "SITE1"), ("A2", "2", "SITE1"), ("B1", "3", "SITE2"), ("B2", "4", "SITE2")):
            out.append(by_site(current(station_id, tx, {"L1": amps, "L2": amps}, at=later(start_s + k)), site_id, len(out)))
    return out


def ops_since(world: World, before: Counter[Any]) -> Counter[Any]:
    return Counter({k: v - before[k] for k, v in world.rt.store.ops.items() if v - before[k]})  # type: ignore[attr-defined]


async def versions(world: World) -> dict[str, int]:
    return {site_id: (await world.state(site_id))["version"] for site_id in ("SITE1", "SITE2")}


async def test_readings_that_change_no_allocation_read_each_state_once_per_batch_and_write_nothing(world: World) -> None:
    await two_sites_charging(world)
    await world.sites.handle_batch(readings(1))  # the sites' 30 s re-read happens here
    before_versions = await versions(world)

    for per_station in (1, 10):
        before = Counter(world.rt.store.ops)  # type: ignore[attr-defined]
        outcomes = await world.sites.handle_batch(readings(per_station))

        assert outcomes == {"unchanged": 4 * per_station}
        assert ops_since(world, before) == Counter({("read", "docs"): 1})  # one get_docs for both sites
    assert await versions(world) == before_versions


async def test_a_batch_writes_a_changed_site_once_and_sends_its_profiles_after_the_write(world: World) -> None:
    await two_sites_charging(world)
    await world.sites.handle_batch(readings(1))
    before_versions, mark = await versions(world), len(world.sent())
    batch = readings(3)
    batch.insert(5, by_site(current("A1", "1", {"L1": 5.0}, at=later(90)), "SITE1"))  # A1 uses clearly less
    writes: list[tuple[str, int, int]] = []  # (site, version, profiles sent before the write)
    real_put_doc = world.rt.store.put_doc

    async def put_doc(kind: str, doc_id: str, doc: dict[str, Any], **kw: Any) -> bool:
        if kind == SITE_STATE:
            writes.append((doc_id, kw.get("version") or 0, len(world.sent()) - mark))
        return await real_put_doc(kind, doc_id, doc, **kw)

    world.rt.store.put_doc = put_doc  # type: ignore[method-assign]
    outcomes = await world.sites.handle_batch(batch)
    await world.settled()

    assert outcomes == {"allocated": 1, "unchanged": 12}
    assert latest_limits(world.sent_since(mark)) == {"A1": 6.0, "A2": 26.0}
    # SITE1: one fenced write with the outbox before any profile went out, then the outbox cleared.
    assert writes == [("SITE1", before_versions["SITE1"] + 1, 0)]
    after = await versions(world)
    assert after == {"SITE1": before_versions["SITE1"] + 2, "SITE2": before_versions["SITE2"]}
    assert (await world.state("SITE1"))["outbox"] == []


async def test_a_change_undone_in_the_same_batch_sends_nothing_and_is_written_once(world: World) -> None:
    await two_sites_charging(world)
    await world.sites.handle_batch(readings(1))
    before_versions, mark = await versions(world), len(world.sent())
    world.clock.advance(60)

    # A1 draws 5 A (capped, A2 raised), then, once settled, its whole limit again (cap lifted).
    outcomes = await world.sites.handle_batch([
        by_site(current("A1", "1", {"L1": 5.0}, at=later(130)), "SITE1", 0),
        by_site(current("A1", "1", {"L1": 5.8}, at=later(200)), "SITE1", 1),
    ])
    await world.settled()

    assert outcomes == {"allocated": 2}
    assert world.sent_since(mark) == []  # each session is back where it was: nothing to send
    assert (await versions(world))["SITE1"] == before_versions["SITE1"] + 1


async def test_a_consumer_that_lost_the_site_sends_nothing(world: World) -> None:
    await two_sites_charging(world)
    await world.sites.handle_batch(readings(1))
    mark = len(world.sent())

    async def newer_version_stored(*args: Any, **kwargs: Any) -> bool:
        return False  # another consumer wrote a newer state meanwhile

    world.rt.store.put_doc = newer_version_stored  # type: ignore[method-assign]
    with pytest.raises(ConflictError):
        await world.sites.handle_batch([by_site(current("A1", "1", {"L1": 5.0}, at=later(90)), "SITE1")])
    await world.settled()

    assert world.sent_since(mark) == []


async def test_a_poison_record_is_dead_lettered_alone_and_its_batch_is_applied(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    await world.site("SITE1", grid_limit_a=32)
    for station_id in ("CS-A", "POISON", "CS-B"):
        await world.station(station_id)
    world.bus.policy = DeliveryPolicy(max_attempts=2, backoff_s=0.01)
    real_on_event = world.sites._on_event

    async def on_event(site_id: str, env: ev.Envelope, step: Any) -> None:
        if env.station_id == "POISON":
            raise RuntimeError("a bug this record triggers")
        await real_on_event(site_id, env, step)

    monkeypatch.setattr(world.sites, "_on_event", on_event)
    await world.service.start()

    await world.feed(started("CS-A", "1"), started("POISON", "2"), started("CS-B", "3"))

    assert latest_limits(world.sent()) == {"CS-A": 16.0, "CS-B": 16.0}
    dead = await world.bus.read(topics.dlq_topic(BY_SITE))
    assert [codec.decode_event(r.value).station_id for r in dead] == ["POISON"]


async def test_the_state_keeps_only_each_sessions_latest_profile_so_it_does_not_grow(world: World) -> None:
    await two_sites_charging(world)
    for k in range(6):  # A1 alternately uses clearly less and its whole limit: a profile each time
        world.clock.advance(40)
        amps = 5.0 if k % 2 == 0 else 5.8
        await world.sites.handle_batch([by_site(current("A1", "1", {"L1": amps}, at=world.clock.now), "SITE1")])
    await world.settled()

    sent = [s for s in world.sent() if s.purpose == "tx"]
    assert len(sent) >= 4 + 12  # the starts, then A1 and A2 re-limited six times
    latest = {s.station_id: s.command.command_id for s in sent if s.station_id in ("A1", "A2")}
    assert sorted((await world.state("SITE1"))["issued"]) == sorted(latest.values())


# ------------------------------------------------------------------------ stage 1


async def test_stage_1_drops_kinds_it_does_not_need_without_decoding_them(world: World) -> None:
    await world.site("SITE1")
    await world.station("CS-A")
    garbage = b"\xff\x00 not protobuf"
    for kind in ("Heartbeat", "ConnectorStatus", "StationConnected", "Authorization"):
        record = Record(topics.EVENTS, 0, 0, b"CS-A", garbage, (("ce_type", f"csms.events.v1.{kind}".encode()),))
        assert await world.regroup.handle_event_record(record) == "ignored"
    # Meter values without any current sample are dropped on their bytes.
    record = Record(topics.EVENTS, 0, 0, b"CS-A", garbage, (("ce_type", b"csms.events.v1.MeterValues"),))
    assert await world.regroup.handle_event_record(record) == "ignored"


def _events() -> list[ev.Envelope]:
    """One of every kind stage 1 judges, relevant or not."""
    def sample(measurand: str, unit: str = "A", phase: str = "L1", value: float = 10.0) -> ev.MeterSample:
        return ev.MeterSample(timestamp=T0, value=value, unit=unit, measurand=measurand, phase=phase)

    sample_sets = [
        (sample("Current.Import"),),
        (sample("Current.Import", phase="N"),),
        (sample("Current.Import", unit="Wh"),),
        (sample("Current.Import", value=float("nan")),),
        (sample("Current.Offered"), sample("Energy.Active.Import.Register", unit="Wh")),
        (sample("Energy.Active.Import.Register", unit="Wh"), sample("Current.Import", unit="", phase="L2")),
        (),
    ]
    out = []
    for samples in sample_sets:
        out.append(envelope("CS-A", ev.MeterValues(transaction_id="1", connector_id=1, samples=samples)))
        out.append(envelope("CS-A", ev.TransactionUpdated(transaction_id="1", evse_id=1, samples=samples), version="2.0.1"))
    out += [
        started("CS-A", "1"),
        envelope("CS-A", ev.TransactionStarted(transaction_id="2", evse_id=1, id_token_status="Invalid")),
        envelope("CS-A", ev.TransactionEnded(transaction_id="1")),
        booted("CS-A"),
        booted("CS-A", status="Pending"),
        command_result("CS-A", "c1", "Accepted"),
        envelope("CS-A", ev.CommandResult(command_id="c2", command_type="Reset", status="Accepted")),
        envelope("CS-A", ev.Heartbeat()),
        envelope("CS-A", ev.ConnectorStatus(evse_id=1, connector_id=1, status="Charging")),
    ]
    return out


async def test_stage_1_keeps_exactly_what_is_relevant_and_forwards_it_in_order_at_once(world: World) -> None:
    await world.site("SITE1")
    await world.station("CS-A")
    envs = _events()
    calls: list[int] = []

    async def publish_many(items: Sequence[Outgoing]) -> None:
        calls.append(len(items))
        await world.bus.publish_many(items)

    async def publish(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("stage 1 forwards a batch with publish_many")

    regroup = Regrouper(stations=world.rt.store, publish=publish, publish_many=publish_many)
    outcomes = await regroup.handle_event_batch([on_events(env, i) for i, env in enumerate(envs)])

    relevant = [env for env in envs if is_relevant(env)]
    assert outcomes == {"forwarded": len(relevant), "ignored": len(envs) - len(relevant), "no_site": 0, "undecodable": 0}
    assert calls == [len(relevant)]
    forwarded = await world.bus.read(BY_SITE)
    assert [codec.decode_event(r.value).event_id for r in forwarded] == [env.event_id for env in relevant]
    assert all(r.key == b"SITE1" and r.header("site_id") == "SITE1" for r in forwarded)

"""Stage 1: station events regrouped by site, same bytes and headers, key = site id."""

from __future__ import annotations

from services.common import codec, sites_codec, topics
from services.common import events as ev
from services.common.bus.port import Record
from services.smart_charging.repartition import BY_SITE, is_relevant

from .builders import T0, booted, command_result, envelope, site_change, site_updated, started
from .conftest import World


def as_record(env: ev.Envelope) -> Record:
    return Record(topics.EVENTS, 0, 0, env.station_id.encode(), codec.encode_event(env), tuple(codec.event_headers(env)))


def by_site(world: World) -> list[Record]:
    return [r for part in world.bus._topic(BY_SITE) for r in part.records]


async def test_the_by_site_topic_is_derived_from_the_events_topic() -> None:
    assert BY_SITE == topics.EVENTS.replace("csms.events.v1", "csms.smart-charging.by-site.v1")


async def test_an_event_is_forwarded_with_the_same_bytes_and_headers_keyed_by_its_site(world: World) -> None:
    await world.site("SITE1")
    await world.station("CS-A")
    record = as_record(started("CS-A", "1"))

    assert await world.regroup.handle_event_record(record) == "forwarded"

    [out] = by_site(world)
    assert out.key == b"SITE1"
    assert out.value == record.value
    assert out.headers == record.headers + (("site_id", b"SITE1"),)


def as_site_record(change: sites_codec.SiteChange) -> Record:
    return Record(
        topics.SITES, 0, 0, change.site_id.encode(), sites_codec.encode_site_updated(change),
        tuple(sites_codec.site_headers(change)),
    )


async def test_a_site_updated_is_forwarded_to_its_site_with_the_same_bytes_and_headers(world: World) -> None:
    record = as_site_record(site_change({"id": "SITE9", "grid_limit_a": 40}))

    assert await world.regroup.handle_sites_record(record) == "forwarded"

    [out] = by_site(world)
    assert out.key == b"SITE9"
    assert out.value == record.value
    assert out.headers == record.headers + (("site_id", b"SITE9"),)
    assert out.header("ce_type") == "csms.sites.v1.SiteUpdated"


async def test_a_site_updated_without_its_ce_type_gets_it_so_the_site_stage_can_tell_it_apart(world: World) -> None:
    change = site_change({"id": "SITE9", "grid_limit_a": 40})
    record = Record(topics.SITES, 0, 0, b"SITE9", sites_codec.encode_site_updated(change), (("ce_type", b"other"),))

    assert await world.regroup.handle_sites_record(record) == "forwarded"

    [out] = by_site(world)
    assert out.headers == (("ce_type", b"csms.sites.v1.SiteUpdated"), ("site_id", b"SITE9"))


async def test_a_station_that_joins_a_site_is_regrouped_after_the_site_updated(world: World) -> None:
    await world.site("SITE1")
    await world.station("CS-A", site_id=None)
    assert await world.regroup.handle_event_record(as_record(started("CS-A", "1"))) == "no_site"
    await world.station("CS-A", site_id="SITE1")

    await world.regroup.handle_sites_record(as_site_record(site_change({"id": "SITE1", "grid_limit_a": 32})))

    assert await world.regroup.handle_event_record(as_record(started("CS-A", "2"))) == "forwarded"


async def test_an_undecodable_site_updated_is_counted_and_skipped(world: World) -> None:
    no_site_id = sites_codec.encode_site_updated(site_change({"id": "X", "grid_limit_a": 1}))
    no_site_id = sites_codec.sites_pb2.SiteUpdated.FromString(no_site_id)
    no_site_id.site_id = ""
    not_an_object = sites_codec.sites_pb2.SiteUpdated(site_id="S", site_json="[1]").SerializeToString()
    for value in (b"\xff\x00garbage", no_site_id.SerializeToString(), not_an_object):
        record = Record(topics.SITES, 0, 0, b"S", value, (("ce_type", b"csms.sites.v1.SiteUpdated"),))
        assert await world.regroup.handle_sites_record(record) == "undecodable"
    assert by_site(world) == []


async def test_a_legacy_site_notification_is_still_forwarded_to_its_site(world: World) -> None:
    record = as_record(site_updated({"id": "SITE9", "grid_limit_a": 40}))

    assert await world.regroup.handle_event_record(record) == "forwarded"

    [out] = by_site(world)
    assert out.key == b"SITE9" and out.header("site_id") == "SITE9"


async def test_events_smart_charging_does_not_need_are_ignored(world: World) -> None:
    await world.site("SITE1")
    await world.station("CS-A")
    energy_only = ev.MeterValues(transaction_id="1", evse_id=1, connector_id=1, samples=(
        ev.MeterSample(timestamp=T0, value=1000.0),
    ))
    other_command = ev.CommandResult(command_id="c1", command_type="Reset", status="Accepted")

    for body in (ev.Heartbeat(), energy_only, other_command, ev.ConnectorStatus(evse_id=1, connector_id=1, status="Charging")):
        assert await world.regroup.handle_event_record(as_record(envelope("CS-A", body))) == "ignored"
    assert by_site(world) == []


async def test_the_relevant_events_are_transactions_currents_profile_answers_boots_and_sites() -> None:
    current = ev.MeterSample(timestamp=T0, value=16.0, unit="A", measurand="Current.Import", phase="L1")
    assert is_relevant(started("CS", "1"))
    assert is_relevant(envelope("CS", ev.MeterValues(evse_id=1, samples=(current,))))
    assert is_relevant(envelope("CS", ev.TransactionUpdated(transaction_id="t", samples=(current,))))
    assert not is_relevant(envelope("CS", ev.TransactionUpdated(transaction_id="t")))
    assert is_relevant(command_result("CS", "c1", "Rejected"))
    # the answer to an outbox entry of the version before SetChargingLimit
    assert is_relevant(envelope("CS", ev.CommandResult(command_id="c2", command_type="SetChargingProfile", status="Rejected")))
    assert is_relevant(booted("CS"))
    assert not is_relevant(booted("CS", status="Pending"))
    assert is_relevant(site_updated({"id": "S"}))
    assert not is_relevant(envelope("CS", ev.Notification(payload_json="{}"), action="StatusNotification"))


async def test_a_station_that_joins_a_site_is_regrouped_after_a_legacy_site_notification(world: World) -> None:
    await world.site("SITE1")
    await world.station("CS-A", site_id=None)
    assert await world.regroup.handle_event_record(as_record(started("CS-A", "1"))) == "no_site"
    await world.station("CS-A", site_id="SITE1")

    await world.regroup.handle_event_record(as_record(site_updated({"id": "SITE1", "grid_limit_a": 32})))

    assert await world.regroup.handle_event_record(as_record(started("CS-A", "2"))) == "forwarded"


async def test_undecodable_bytes_are_counted_and_skipped(world: World) -> None:
    record = Record(topics.EVENTS, 0, 0, b"CS-A", b"\xff\x00garbage", (("ce_type", b"csms.events.v1.TransactionStarted"),))

    assert await world.regroup.handle_event_record(record) == "undecodable"

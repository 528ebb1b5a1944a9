"""Site changes on their own topic (ADR 015): smart charging applies a csms.sites.v1
`SiteUpdated` through the site's one writer, the older `site:` notification on
csms.events.v1 is still understood during an upgrade, and a redelivered older change
never undoes a newer one. (Through the API and the sessions processor:
test_sites_topic_system.py.)"""

from __future__ import annotations

from decimal import Decimal

from services.common import sites_codec
from services.common.bus.port import Record
from services.common.kinds import SITE, SITE_STATE
from services.smart_charging.repartition import BY_SITE

from .builders import latest_limits, site_change, site_updated, started
from .conftest import World


async def test_the_legacy_site_notification_on_csms_events_v1_is_still_applied(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("CS-A")
    await world.station("CS-B")
    await world.service.start()
    await world.feed(started("CS-A", "1"), started("CS-B", "2"))

    await world.feed(site_updated({"id": "SITE1", "grid_limit_a": 20, "phases": 3}))

    assert latest_limits(world.sent()) == {"CS-A": 10.0, "CS-B": 10.0}
    await world.rt.store.delete_doc(SITE, "SITE1")
    await world.feed(site_updated({"id": "SITE1", "deleted": True}))
    assert await world.rt.store.get_doc(SITE_STATE, "SITE1") is None


async def test_an_older_site_change_redelivered_after_a_newer_one_changes_nothing(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("CS-A")
    await world.station("CS-B")
    await world.service.start()
    await world.feed(started("CS-A", "1"), started("CS-B", "2"))
    older = {"id": "SITE1", "grid_limit_a": 32, "phases": 3, "external_limit_a": None}
    newer = {**older, "external_limit_a": 12}

    await world.site_changed(older, version=100)
    await world.site_changed(newer, version=200)
    mark = len(world.sent())
    state = await world.state()
    await world.site_changed(older, version=100)  # a redelivery

    assert world.sent_since(mark) == []
    assert latest_limits(world.sent()) == {"CS-A": 6.0, "CS-B": 6.0}
    after = await world.state()
    assert (after["external_cap_a"], after["site_version"], after["version"]) == ("12", 200, state["version"])


async def test_the_site_stage_says_which_site_changes_it_ignored(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    site = {"id": "SITE1", "grid_limit_a": 25, "phases": 3, "external_limit_a": None}

    def record(change: sites_codec.SiteChange) -> Record:
        return Record(BY_SITE, 0, 0, b"SITE1", sites_codec.encode_site_updated(change), (
            *sites_codec.site_headers(change), ("site_id", b"SITE1"),
        ))

    assert await world.sites.handle_record(record(site_change(site, version=7))) == "updated"
    assert (await world.state())["limit_a"] == str(Decimal(25))
    assert await world.sites.handle_record(record(site_change(site, version=7))) == "stale"
    assert await world.sites.handle_record(record(site_change(site, version=5, deleted=True))) == "stale"
    assert await world.rt.store.get_doc(SITE_STATE, "SITE1") is not None
    assert await world.sites.handle_record(record(site_change(site, version=8, deleted=True))) == "site_deleted"
    assert await world.rt.store.get_doc(SITE_STATE, "SITE1") is None
    garbage = Record(BY_SITE, 0, 0, b"SITE1", b"\xff\x00", (("ce_type", b"csms.sites.v1.SiteUpdated"),))
    assert await world.sites.handle_record(garbage) == "undecodable"

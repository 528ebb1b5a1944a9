"""Per-site gauges follow the site's owner (ADR 019 §6): after a rebalance moves a site's
by-site partition to another member, the former owner stops exporting
`csms_smart_charging_site_limit_amps{site}` and `..._allocated_amps{site}`, so the
over-allocation alert never fires on a former pod's stale values."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import REGISTRY

from services.common.bus.port import Record, partition_for
from services.smart_charging.handlers import CONSUMER_GROUP
from services.smart_charging.repartition import BY_SITE
from tests.support import eventually

from .builders import started
from .conftest import open_world


def gauges(site: str) -> tuple[float | None, float | None]:
    return (
        REGISTRY.get_sample_value("csms_smart_charging_site_limit_amps", {"site": site}),
        REGISTRY.get_sample_value("csms_smart_charging_allocated_amps", {"site": site}),
    )


def site_on(parity: int, partitions: int) -> str:
    """A site id whose by-site partition is even (0) or odd (1)."""
    return next(s for i in range(100) if partition_for((s := f"STALE-{i}").encode(), partitions) % 2 == parity)


async def another_member(records: Sequence[Record]) -> None:
    """The by-site stage of another pod (does nothing here)."""


async def test_a_site_whose_partition_moved_to_another_member_is_no_longer_exported() -> None:
    async with open_world(consumer_lag_interval_s=0.05) as world:
        partitions = await world.bus.partitions(BY_SITE)
        kept, moved = site_on(0, partitions), site_on(1, partitions)
        for site in (kept, moved):
            await world.site(site, grid_limit_a=32)
            await world.station(f"CS-{site}", site)
        await world.service.start()
        await world.feed(started(f"CS-{kept}", "1"), started(f"CS-{moved}", "2"))
        assert gauges(kept) == (32.0, 32.0) and gauges(moved) == (32.0, 32.0)

        # a second pod joins the group: the memory bus deals partitions in join order, so
        # this member keeps the even ones and hands over the odd ones
        other = await world.bus.subscribe_batch(BY_SITE, CONSUMER_GROUP, another_member)
        try:
            await eventually(lambda: gauges(moved) == (None, None), 5, what=f"the gauges of {moved} removed")
            assert gauges(kept) == (32.0, 32.0)
        finally:
            await other.stop()


async def test_forget_unowned_keeps_the_sites_of_held_partitions() -> None:
    async with open_world() as world:
        site = "SITE-HELD"
        await world.site(site, grid_limit_a=20)
        await world.station("CS-H", site)
        await world.service.start()
        await world.feed(started("CS-H", "7"))
        partition = partition_for(site.encode(), await world.bus.partitions(BY_SITE))
        assert world.sites.forget_unowned({partition}) == [] and gauges(site) == (20.0, 20.0)
        assert world.sites.forget_unowned(None) == [site] and gauges(site) == (None, None)

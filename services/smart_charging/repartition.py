"""Stage 1 of smart charging: regroup station events by site (a faust `group_by`).

csms.events.v1 is keyed by station id, but an allocation is a decision about a whole
site, so its state must have one writer. This stage consumes csms.events.v1 (group
`csms-smart-charging-repartition`), keeps the events smart charging needs, resolves
each station's site (store, cached for a few seconds) and re-publishes the SAME
encoded bytes and headers, plus a `site_id` header, to `BY_SITE` keyed by site id.
Stage 2 (`handlers.handle_site_record`) consumes that topic: one consumer per site
partition applies the site's events in order. Per-station order is kept, since a
station's events come from one partition here and go to one partition there.

Site changes come on their own topic, csms.sites.v1 (ADR 015): `handle_sites_record`
consumes it (group `csms-smart-charging-sites`) and forwards each `SiteUpdated`, same
bytes and headers plus `site_id`, to `BY_SITE` keyed by site id too. So a site change
lands in the partition of the site's station events and is applied by the same single
writer, in one sequence with them: no second consumer writes the site's state, and a
limit change is never raced by an allocation decided on the old limit. The older
`site:<id>` Notification on csms.events.v1 (written by API versions before ADR 015;
records of it may still be in the topic during an upgrade) is still accepted and
forwarded the same way; nothing produces it any more.

Events of stations without a site are dropped, and so are transaction starts whose
token the CSMS refused (`id_token_status` not "" / "Accepted"): such a session is
never limited nor reserved (issue 7: a ghost Invalid session kept 32 A of a site).
`SessionAbandoned` (decided by the sessions processor) is forwarded: it releases the
session's current at once, like a stop.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from typing import Any

from prometheus_client import Counter

from services.common import codec, sites_codec, topics
from services.common import events as ev
from services.common.bus.port import Record
from services.common.runtime import Runtime

__all__ = [
    "ACCEPTED_TOKEN_STATUSES",
    "BY_SITE",
    "REPARTITION_GROUP",
    "SITE_HEADER",
    "SITE_KEY_PREFIX",
    "SITES_GROUP",
    "SITE_UPDATED",
    "StationSiteCache",
    "current_samples",
    "handle_event_record",
    "handle_sites_record",
    "is_relevant",
    "site_of_notification",
]

log = logging.getLogger("csms.smart_charging.repartition")

BY_SITE = topics.EVENTS.replace("csms.events.v1", "csms.smart-charging.by-site.v1")  # key = site id
REPARTITION_GROUP = topics.group("csms-smart-charging-repartition")
SITES_GROUP = topics.group("csms-smart-charging-sites")  # consumes topics.SITES
SITE_HEADER = "site_id"
SITE_KEY_PREFIX = "site:"
SITE_UPDATED = "SiteUpdated"
CURRENT_MEASURAND = "Current.Import"

_CACHE_KEY = "smart_charging.station_sites"
_CE_PREFIX = "csms.events.v1."
# Cheap pre-filter on the CloudEvents type header (no protobuf decoding for heartbeats,
# status notifications, ...); the decoded envelope is checked by `is_relevant`.
_RELEVANT_TYPES = frozenset(
    _CE_PREFIX + name
    for name in (
        "TransactionStarted",
        "TransactionUpdated",
        "TransactionEnded",
        "MeterValues",
        "CommandResult",
        "Notification",
        "StationBooted",
        "SessionAbandoned",
    )
)
# Token statuses that start a session smart charging manages ("" = not asked / unknown).
ACCEPTED_TOKEN_STATUSES = frozenset({"", "Accepted"})

REPARTITIONED = Counter(
    "csms_smart_charging_repartitioned_total",
    "csms.events.v1 records seen by the smart-charging regrouping stage, by outcome "
    "(forwarded, ignored, no_site, undecodable)",
    ["outcome"],
)


class StationSiteCache:
    """station id -> site id (or None), for `ttl_s` seconds; bounded (oldest out first)."""

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 100_000) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    async def site_of(self, rt: Runtime, station_id: str) -> str | None:
        now = time.monotonic()
        hit = self._entries.get(station_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        station = await rt.store.get_station(station_id)
        site_id = station.site_id if station is not None and station.site_id else None
        self._entries[station_id] = (now + self.ttl_s, site_id)
        self._entries.move_to_end(station_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return site_id

    def clear(self) -> None:
        self._entries.clear()


def _cache(rt: Runtime) -> StationSiteCache:
    cache = rt.extras.get(_CACHE_KEY)
    if cache is None:
        cache = rt.extras[_CACHE_KEY] = StationSiteCache()
    return cache  # type: ignore[no-any-return]


def current_samples(samples: tuple[ev.MeterSample, ...]) -> list[ev.MeterSample]:
    """Per-phase current drawn (A); the neutral conductor does not count."""
    return [
        s for s in samples
        if s.measurand == CURRENT_MEASURAND and s.unit in ("A", "") and s.phase != "N" and math.isfinite(s.value)
    ]


def site_of_notification(env: ev.Envelope) -> str | None:
    """The site id of a legacy SiteUpdated notification on csms.events.v1 (published by
    the API before ADR 015; still accepted, never produced), else None."""
    if env.action != SITE_UPDATED or not isinstance(env.body, ev.Notification):
        return None
    if env.station_id.startswith(SITE_KEY_PREFIX):
        return env.station_id[len(SITE_KEY_PREFIX):] or None
    try:
        payload: Any = json.loads(env.body.payload_json or "{}")
    except ValueError:
        return None
    site_id = payload.get("id") if isinstance(payload, dict) else None
    return site_id if isinstance(site_id, str) and site_id else None


def is_relevant(env: ev.Envelope) -> bool:
    """Does smart charging need this event?"""
    body = env.body
    if isinstance(body, ev.TransactionStarted):
        return body.id_token_status in ACCEPTED_TOKEN_STATUSES
    if isinstance(body, (ev.TransactionEnded, ev.SessionAbandoned)):
        return True
    if isinstance(body, (ev.TransactionUpdated, ev.MeterValues)):
        return bool(current_samples(body.samples))
    if isinstance(body, ev.CommandResult):
        return body.command_type == "SetChargingProfile"
    if isinstance(body, ev.StationBooted):
        return body.registration_status == "Accepted"
    if isinstance(body, ev.Notification):
        return site_of_notification(env) is not None
    return False


async def handle_event_record(rt: Runtime, record: Record) -> str:
    """Forward one csms.events.v1 record to BY_SITE if relevant; returns the outcome."""
    ce_type = record.header("ce_type")
    if ce_type is not None and ce_type not in _RELEVANT_TYPES:
        REPARTITIONED.labels("ignored").inc()
        return "ignored"
    try:
        env = codec.decode_event(record.value)
    except Exception as exc:  # permanent: the same bytes will never decode
        REPARTITIONED.labels("undecodable").inc()
        log.error("undecodable event %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
        return "undecodable"
    if not is_relevant(env):
        REPARTITIONED.labels("ignored").inc()
        return "ignored"
    cache = _cache(rt)
    site_id = site_of_notification(env)
    if site_id is not None:
        cache.clear()  # a station may have joined or left a site
    else:
        site_id = await cache.site_of(rt, env.station_id)
    if site_id is None:
        REPARTITIONED.labels("no_site").inc()
        return "no_site"
    headers = [(k, v) for k, v in record.headers if k != SITE_HEADER]
    headers.append((SITE_HEADER, site_id.encode()))
    await rt.bus.publish(BY_SITE, site_id, record.value, headers)
    REPARTITIONED.labels("forwarded").inc()
    log.debug("%s station=%s -> site %s", env.type_name, env.station_id, site_id)
    return "forwarded"


async def handle_sites_record(rt: Runtime, record: Record) -> str:
    """Forward one csms.sites.v1 `SiteUpdated` to BY_SITE (key = its site id, same bytes
    and headers plus `site_id`); returns the outcome. The station -> site cache is
    cleared: a station may have joined or left the site."""
    try:
        change = sites_codec.decode_site_updated(record.value)
    except ValueError as exc:  # permanent: the same bytes will never decode
        REPARTITIONED.labels("undecodable").inc()
        log.error("undecodable site change %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
        return "undecodable"
    _cache(rt).clear()
    headers = [(k, v) for k, v in record.headers if k != SITE_HEADER]
    if record.header("ce_type") != sites_codec.CE_TYPE:  # stage 2 tells the record kinds apart by it
        headers = [(k, v) for k, v in headers if k != "ce_type"] + [("ce_type", sites_codec.CE_TYPE.encode())]
    headers.append((SITE_HEADER, change.site_id.encode()))
    await rt.bus.publish(BY_SITE, change.site_id, record.value, headers)
    REPARTITIONED.labels("forwarded").inc()
    log.debug("SiteUpdated %s version %d%s -> by site", change.site_id, change.version, " (deleted)" if change.deleted else "")
    return "forwarded"

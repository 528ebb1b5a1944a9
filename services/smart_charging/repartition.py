"""Stage 1 of smart charging: regroup station events by site (a faust `group_by`).

csms.events.v1 is keyed by station id, but an allocation is a decision about a whole
site, so its state must have one writer. This stage consumes csms.events.v1 (group
`csms-smart-charging-repartition`), keeps the events smart charging needs, resolves
each station's site (store, cached for a few seconds) and re-publishes the SAME
encoded bytes and headers, plus a `site_id` header, to `BY_SITE` keyed by site id.
Stage 2 (`handlers.SiteStage`) consumes that topic: one consumer per site
partition applies the site's events in order. Per-station order is kept, since a
station's events come from one partition here and go to one partition there.

Site changes come on their own topic, csms.sites.v1 (ADR 015): `Regrouper.handle_sites_record`
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
session's current at once, like a stop. So are (ADR 018 §5) the outside limits
(`ChargingLimitSet`, `ChargingLimitCleared`) and the EV charging needs the gateway
answered Accepted (`EvChargingNeeds`).

Cost (ADR 015, bench/smart_charging_processor.py): the worker hands this stage a poll's
records at a time (`Regrouper.handle_event_batch`). Most of csms.events.v1 is not for smart
charging, so a record is dropped as early as possible: on its `ce_type` header (no
decoding at all: heartbeats, status notifications, ...), then, for meter values, on
its bytes (no `Current.Import` in them), then on the parsed protobuf message (no
dataclasses are built; the full decode is kept for the rare kinds that need it). The
sites of the batch's stations are resolved together (misses read concurrently) and the
kept records are forwarded with one `publish_many`.

`Regrouper` holds its ports (the station lookup, `publish`, `publish_many`) and its
station -> site cache, created once by services/smart_charging/wiring.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from prometheus_client import Counter

from services.common import codec, sites_codec, topics
from services.common import events as ev
from services.common.bus.port import Header, Outgoing, Record
from services.common.store.port import Station
from services.smart_charging.commands import COMMAND_TYPES

__all__ = [
    "ACCEPTED_TOKEN_STATUSES",
    "BY_SITE",
    "REPARTITION_GROUP",
    "Regrouper",
    "StationLookup",
    "SITE_HEADER",
    "SITE_KEY_PREFIX",
    "SITES_GROUP",
    "SITE_UPDATED",
    "StationSiteCache",
    "current_samples",
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

_READ_CONCURRENCY = 128  # station reads in flight when a batch resolves its sites
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
        "ChargingLimitSet",  # ADR 018 §5: outside limits and EV charging needs (rare)
        "ChargingLimitCleared",
        "EvChargingNeeds",
    )
)
_RELEVANT_TYPE_BYTES = frozenset(t.encode() for t in _RELEVANT_TYPES)
# Kinds whose relevance is read from their bytes / the parsed message without decoding
# the envelope (the bulk of the topic); the others are decoded and judged by `is_relevant`.
_READING_TYPES = frozenset({(_CE_PREFIX + "MeterValues").encode(), (_CE_PREFIX + "TransactionUpdated").encode()})
_CURRENT_BYTES = CURRENT_MEASURAND.encode()
# Token statuses that start a session smart charging manages ("" = not asked / unknown).
ACCEPTED_TOKEN_STATUSES = frozenset({"", "Accepted"})

REPARTITIONED = Counter(
    "csms_smart_charging_repartitioned_total",
    "csms.events.v1 records seen by the smart-charging regrouping stage, by outcome "
    "(forwarded, ignored, no_site, undecodable)",
    ["outcome"],
)


class StationLookup(Protocol):
    async def get_station(self, station_id: str) -> Station | None: ...


Publish = Callable[[str, str, bytes, Sequence[Header]], Awaitable[None]]
PublishMany = Callable[[Sequence[Outgoing]], Awaitable[None]]


class StationSiteCache:
    """station id -> site id (or None), for `ttl_s` seconds; bounded (oldest out first)."""

    def __init__(self, stations: StationLookup, ttl_s: float = 5.0, max_entries: int = 100_000) -> None:
        self._stations = stations
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    async def site_of(self, station_id: str) -> str | None:
        now = time.monotonic()
        hit = self._entries.get(station_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        station = await self._stations.get_station(station_id)
        site_id = station.site_id if station is not None and station.site_id else None
        self._entries[station_id] = (now + self.ttl_s, site_id)
        self._entries.move_to_end(station_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return site_id

    async def sites_of(self, station_ids: set[str]) -> dict[str, str | None]:
        """`site_of` for many stations: the misses are read from the store concurrently."""
        now = time.monotonic()
        out: dict[str, str | None] = {}
        missing: list[str] = []
        for station_id in station_ids:
            hit = self._entries.get(station_id)
            if hit is not None and hit[0] > now:
                out[station_id] = hit[1]
            else:
                missing.append(station_id)
        if missing:
            stations: list[Station | None] = []
            for i in range(0, len(missing), _READ_CONCURRENCY):
                stations += await asyncio.gather(*(self._stations.get_station(s) for s in missing[i:i + _READ_CONCURRENCY]))
            for station_id, station in zip(missing, stations):
                site_id = station.site_id if station is not None and station.site_id else None
                out[station_id] = site_id
                self._entries[station_id] = (now + self.ttl_s, site_id)
                self._entries.move_to_end(station_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return out

    def clear(self) -> None:
        self._entries.clear()


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
        return body.command_type in COMMAND_TYPES
    if isinstance(body, ev.StationBooted):
        return body.registration_status == "Accepted"
    if isinstance(body, ev.Notification):
        return site_of_notification(env) is not None
    if isinstance(body, (ev.ChargingLimitSet, ev.ChargingLimitCleared)):
        return True
    if isinstance(body, ev.EvChargingNeeds):
        return body.status == "Accepted"  # answered Rejected: no schedule is owed
    return False


def _ce_type(record: Record) -> bytes | None:
    for k, v in record.headers:
        if k == "ce_type":
            return v
    return None


def _reading_station(value: bytes) -> str | None:
    """The station id of a MeterValues / TransactionUpdated record that carries a usable
    `Current.Import` sample (what `is_relevant` decides, read off the protobuf message
    without building the envelope), else None. Raises on bytes that do not parse."""
    if _CURRENT_BYTES not in value:
        return None  # no current sample at all: not even parsed
    pb = codec.events_pb2.Event()
    pb.ParseFromString(value)
    field = pb.WhichOneof("body")
    if field not in ("meter_values", "transaction_updated"):
        # Another kind than its header says: judge it the slow, exact way.
        env = codec.decode_event(value)
        return env.station_id if is_relevant(env) and site_of_notification(env) is None else None
    for s in getattr(pb, field).samples:
        if s.measurand == CURRENT_MEASURAND and s.unit in ("A", "") and s.phase != "N" and math.isfinite(s.value):
            return str(pb.station_id)
    return None


def _forward(record: Record, site_id: str) -> Outgoing:
    """The same bytes and headers, plus (instead of any earlier) `site_id`."""
    site_header = (SITE_HEADER, site_id.encode())
    for k, _ in record.headers:
        if k == SITE_HEADER:
            return (BY_SITE, site_id, record.value, [h for h in record.headers if h[0] != SITE_HEADER] + [site_header])
    return (BY_SITE, site_id, record.value, (*record.headers, site_header))


_OUTCOMES = ("forwarded", "ignored", "no_site", "undecodable")
_COUNTERS = {o: REPARTITIONED.labels(o) for o in _OUTCOMES}


class Regrouper:
    """Stage 1: `handle_event_batch` (csms.events.v1) and `handle_sites_record`
    (csms.sites.v1) forward what smart charging needs to `BY_SITE`."""

    def __init__(self, *, stations: StationLookup, publish: Publish, publish_many: PublishMany,
                 cache: StationSiteCache | None = None) -> None:
        self._publish = publish
        self._publish_many = publish_many
        self.cache = cache if cache is not None else StationSiteCache(stations)

    async def handle_event_batch(self, records: Sequence[Record]) -> dict[str, int]:
        """Forward a batch of csms.events.v1 records (a poll's, each partition's in offset
        order) to BY_SITE: the relevant ones, in order, with one `publish_many`. Returns the
        count per outcome (forwarded, ignored, no_site, undecodable). Raises on transient
        failures (store, bus): the batch is then delivered again; forwarding twice is
        harmless (stage 2 applies an event twice as once)."""
        outcomes = dict.fromkeys(_OUTCOMES, 0)
        cache = self.cache
        out: list[Outgoing] = []
        waiting: list[tuple[Record, str]] = []  # (record, station id): site to resolve

        async def resolve() -> None:
            sites = await cache.sites_of({station_id for _, station_id in waiting})
            for rec, station_id in waiting:
                site_id = sites.get(station_id)
                if site_id is None:
                    outcomes["no_site"] += 1
                else:
                    out.append(_forward(rec, site_id))
                    outcomes["forwarded"] += 1
            waiting.clear()

        for record in records:
            ce_type = _ce_type(record)
            if ce_type is not None and ce_type not in _RELEVANT_TYPE_BYTES:
                outcomes["ignored"] += 1
                continue
            try:
                if ce_type in _READING_TYPES:
                    station_id = _reading_station(record.value)
                    if station_id is None:
                        outcomes["ignored"] += 1
                    else:
                        waiting.append((record, station_id))
                    continue
                env = codec.decode_event(record.value)
            except Exception as exc:  # permanent: the same bytes will never decode
                outcomes["undecodable"] += 1
                log.error("undecodable event %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
                continue
            if not is_relevant(env):
                outcomes["ignored"] += 1
                continue
            site_id = site_of_notification(env)
            if site_id is None:
                waiting.append((record, env.station_id))
                continue
            # A (legacy) site change: the stations before it are resolved with the old cache,
            # the ones after it afresh (a station may have joined or left the site).
            await resolve()
            cache.clear()
            out.append(_forward(record, site_id))
            outcomes["forwarded"] += 1
        if waiting:
            await resolve()
        if out:
            await self._publish_many(out)
        for outcome, n in outcomes.items():
            if n:
                _COUNTERS[outcome].inc(n)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("batch of %d: %s", len(records), outcomes)
        return outcomes

    async def handle_event_record(self, record: Record) -> str:
        """Forward one csms.events.v1 record to BY_SITE if relevant; returns the outcome."""
        outcomes = await self.handle_event_batch([record])
        return next(o for o, n in outcomes.items() if n)

    async def handle_sites_record(self, record: Record) -> str:
        """Forward one csms.sites.v1 `SiteUpdated` to BY_SITE (key = its site id, same bytes
        and headers plus `site_id`); returns the outcome. The station -> site cache is
        cleared: a station may have joined or left the site."""
        try:
            change = sites_codec.decode_site_updated(record.value)
        except ValueError as exc:  # permanent: the same bytes will never decode
            REPARTITIONED.labels("undecodable").inc()
            log.error("undecodable site change %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
            return "undecodable"
        self.cache.clear()
        headers = [(k, v) for k, v in record.headers if k != SITE_HEADER]
        if record.header("ce_type") != sites_codec.CE_TYPE:  # stage 2 tells the record kinds apart by it
            headers = [(k, v) for k, v in headers if k != "ce_type"] + [("ce_type", sites_codec.CE_TYPE.encode())]
        headers.append((SITE_HEADER, change.site_id.encode()))
        await self._publish(BY_SITE, change.site_id, record.value, headers)
        REPARTITIONED.labels("forwarded").inc()
        log.debug("SiteUpdated %s version %d%s -> by site", change.site_id, change.version, " (deleted)" if change.deleted else "")
        return "forwarded"

    # The processor shell's handlers (they return nothing).

    async def consume_events(self, records: Sequence[Record]) -> None:
        await self.handle_event_batch(records)

    async def consume_site_change(self, record: Record) -> None:
        await self.handle_sites_record(record)

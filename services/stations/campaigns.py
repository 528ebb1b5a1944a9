"""The `firmware-campaigns` controller (ADR 016 §5): a periodic job, no consumer.

Every `CSMS_CAMPAIGN_TICK_S` it lists the active campaigns (FIRMWARE_CAMPAIGN documents
of parent `ACTIVE`), and for each reads what it needs of its unfinished stations in
three batched reads: STATION_OPS (the firmware transfer, the boot and connection as the
stations processor folded them in order with the firmware statuses), the sessions
processor's STATION_STATUS (boot, connection: used when newer) and the COMMAND records
of the in-flight attempts. `domain.campaigns.tick` decides; the moved campaign is
written with a versioned `put_doc` BEFORE any UpdateFirmware is sent, so of two
controllers (every stations process runs one) that read the same revision only one
writes it and sends; the other skips and reads again at the next tick. A send the router
cannot deliver (station offline, unroutable) puts the station back to pending with
another versioned write. The command id is derived from (campaign, station, attempt):
a send repeated after a crash is the same command.

One campaign failing to load or tick is logged and skipped; the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from prometheus_client import Counter

from services.common import kinds
from services.common.processor import Periodic, Processor
from services.common.routing import CommandRouter, Routed, Sent
from services.common.runtime import Runtime
from services.common.store.port import DocumentStore
from services.common.timeutil import Clock, to_ocpp
from services.sessions.documents import station_status_from_doc
from services.stations.campaign_documents import campaign_from_doc, campaign_parent, campaign_to_doc
from services.stations.documents import station_ops_from_doc
from services.stations.domain.campaigns import ACTIVE, Campaign, Dispatch, StationView, is_active, tick, undispatch

__all__ = ["CampaignController", "ISSUER", "NAME", "build_campaigns", "station_view"]

log = logging.getLogger("csms.stations.campaigns")

NAME = "firmware-campaigns"
ISSUER = "firmware_campaign"
COMMAND_TTL = timedelta(seconds=120)
UPDATE_FIRMWARE = "UpdateFirmware"  # services/common/ocpp/commands.py builds it for the station's version
MAX_ACTIVE = 1000  # campaigns followed per tick

DISPATCHES = Counter(
    "csms_firmware_campaign_dispatches_total",
    "UpdateFirmware sends of the campaign controller, by result (sent; offline: back to pending; "
    "lost: another controller wrote the campaign first)",
    ["result"],
)


class Sender(Protocol):
    async def send(self, station_id: str, command_type: str, params: Mapping[str, Any], *, ttl: timedelta,
                   command_id: str | None = None) -> Routed: ...


def _later(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and (b is None or a > b)


def station_view(ops: Mapping[str, Any] | None, status: Mapping[str, Any] | None, command: Mapping[str, Any] | None) -> StationView:
    """A station's view from its documents (any of them may be missing)."""
    connected, boot_version, boot_at = False, "", None
    fw_status: str | None = None
    fw_rid: int | None = None
    fw_cmd = ""
    fw_at: datetime | None = None
    ops_epoch = -1
    if ops is not None:
        o = station_ops_from_doc(ops)
        connected, ops_epoch = o.connectivity.connected, o.connectivity.epoch
        boot_version, boot_at = o.boot_firmware_version, o.booted_at
        if o.firmware is not None:
            fw_status, fw_rid, fw_cmd = o.firmware.status or None, o.firmware.request_id, o.firmware.command_id
            fw_at = o.firmware.updated_at or o.firmware.requested_at
    if status is not None:
        s = station_status_from_doc(status)
        if ops_epoch <= s.epoch:
            connected = s.connected
        if s.boot is not None and (boot_at is None or _later(s.boot.at, boot_at)):
            boot_version, boot_at = s.boot.firmware_version, s.boot.at
    command_status = None if command is None else str(command.get("status") or "") or None
    if command_status == "Pending":
        command_status = None
    return StationView(connected=connected, boot_version=boot_version, boot_at=boot_at, firmware_status=fw_status,
                       firmware_request_id=fw_rid, firmware_command_id=fw_cmd, firmware_at=fw_at,
                       command_status=command_status)


class CampaignController:
    def __init__(self, docs: DocumentStore, sender: Sender, clock: Clock, *, station_timeout: timedelta) -> None:
        self._docs = docs
        self._sender = sender
        self._clock = clock
        self._timeout = station_timeout

    async def run(self) -> int:
        """One tick over every active campaign; the number of UpdateFirmware sent."""
        listed = await self._docs.list_docs(kinds.FIRMWARE_CAMPAIGN, parent=ACTIVE, limit=MAX_ACTIVE)
        ids = [str(d["id"]) for d in listed if d.get("id")]
        current = await self._docs.get_docs(kinds.FIRMWARE_CAMPAIGN, ids) if ids else {}
        sent = 0
        for campaign_id in ids:
            doc = current.get(campaign_id)
            if doc is None:
                continue
            try:
                sent += await self.tick_one(campaign_from_doc(doc))
            except Exception:
                log.exception("campaign %s: tick failed; trying again next tick", campaign_id)
        return sent

    async def _views(self, c: Campaign) -> dict[str, StationView]:
        open_ = [s for s in c.stations if not s.finished]
        ids = [s.station_id for s in open_]
        if not ids:
            return {}
        ops = await self._docs.get_docs(kinds.STATION_OPS, ids)
        status = await self._docs.get_docs(kinds.STATION_STATUS, ids)
        command_ids = [s.command_id for s in open_ if s.status == "in_flight" and s.command_id]
        commands = await self._docs.get_docs(kinds.COMMAND, command_ids) if command_ids else {}
        out: dict[str, StationView] = {}
        for s in open_:
            if s.station_id not in ops and s.station_id not in status:
                continue  # never seen: waits like an offline station
            out[s.station_id] = station_view(ops.get(s.station_id), status.get(s.station_id),
                                             commands.get(s.command_id) if s.status == "in_flight" else None)
        return out

    async def _write(self, before: Campaign, after: Campaign) -> Campaign | None:
        moved = replace(after, revision=before.revision + 1)
        # compare-and-set: of two controllers moving one campaign, exactly one wins (and
        # only the winner sends its UpdateFirmware commands)
        ok = await self._docs.put_doc_if(kinds.FIRMWARE_CAMPAIGN, moved.id, campaign_to_doc(moved),
                                         parent=campaign_parent(moved), expected_version=before.revision,
                                         version=moved.revision)
        return moved if ok else None

    async def tick_one(self, campaign: Campaign) -> int:
        if not is_active(campaign):
            return 0
        now = self._clock()
        moved, dispatches = tick(campaign, await self._views(campaign), now, station_timeout=self._timeout)
        if moved is campaign:
            return 0
        stored = await self._write(campaign, moved)
        if stored is None:
            DISPATCHES.labels("lost").inc(len(dispatches))
            log.info("campaign %s: revision %d was written by another controller; reading again next tick",
                     campaign.id, campaign.revision + 1)
            return 0
        if moved.status != campaign.status:
            log.info("campaign %s: %s -> %s", campaign.id, campaign.status, moved.status)
        sent = 0
        undelivered: list[tuple[str, str]] = []
        for d in dispatches:
            routed = await self._send(stored, d)
            if isinstance(routed, Sent):
                sent += 1
                DISPATCHES.labels("sent").inc()
            else:
                DISPATCHES.labels("offline").inc()
                undelivered.append((d.station_id, routed.reason))
        if undelivered:
            back = stored
            for station_id, reason in undelivered:
                back = undispatch(back, station_id, "command_StationOffline", now)
                log.info("campaign %s: station %s not reached (%s); pending again", campaign.id, station_id, reason)
            if await self._write(stored, back) is None:
                log.info("campaign %s: could not put stations back to pending; the command results will", campaign.id)
        return sent

    async def _send(self, c: Campaign, d: Dispatch) -> Routed:
        params: dict[str, Any] = {"location": c.location, "request_id": d.request_id}
        if c.retrieve_at is not None:
            params["retrieve_date"] = to_ocpp(c.retrieve_at)
        if c.signing_certificate:
            params["signing_certificate"] = c.signing_certificate
        if c.signature:
            params["signature"] = c.signature
        log.info("campaign %s: UpdateFirmware to %s (attempt %d, command %s)", c.id, d.station_id, d.attempt, d.command_id)
        return await self._sender.send(d.station_id, UPDATE_FIRMWARE, params, ttl=COMMAND_TTL, command_id=d.command_id)


def build_campaigns(rt: Runtime) -> Processor:
    """The `firmware-campaigns` controller: a processor of one periodic job."""
    router = CommandRouter(owners=rt.store, publish=rt.bus.publish, partitions=rt.bus.partitions, clock=rt.clock,
                           issuer=ISSUER)
    controller = CampaignController(rt.store, router, rt.clock,
                                    station_timeout=timedelta(seconds=rt.settings.campaign_station_timeout_s))

    def store_healthy() -> bool:
        return bool(rt.store.healthy)

    return Processor(NAME, rt.bus, "", NAME, None, periodic=[Periodic("tick", rt.settings.campaign_tick_s, controller.run)],
                     healthy=[store_healthy])

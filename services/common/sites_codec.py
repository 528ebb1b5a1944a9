"""Encode/decode `csms.sites.v1` records (`SiteUpdated`), plus their CloudEvents headers.

Site changes have their own topic (ADR 015, "Sites have their own topic"): station
events are about stations only. The REST API publishes one `SiteUpdated` per change,
after the site document is stored, keyed by site id; smart charging consumes it.

`version` orders a site's publications: the site document's own `version` when it
carries one, else a value the publisher makes increase (the API uses microseconds since
the epoch, strictly increasing within one process; see `next_site_version`). A consumer
that has applied version n can ignore a redelivered record <= n. 0 means "unknown".
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from services.common.codec import cloudevent_headers, get_timestamp, set_timestamp, sites_pb2

__all__ = [
    "CE_TYPE",
    "SiteChange",
    "decode_site_updated",
    "encode_site_updated",
    "next_site_version",
    "site_change",
    "site_headers",
]

CE_TYPE = "csms.sites.v1.SiteUpdated"
CE_SOURCE = "/csms/api"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class SiteChange:
    """One `SiteUpdated`: the stored site document (REST shape), or a deletion."""

    site_id: str
    deleted: bool
    site: dict[str, Any] | None  # None when deleted
    version: int
    updated_at: datetime
    event_id: str


def next_site_version(doc: dict[str, Any] | None, now: datetime, previous: int = 0) -> int:
    """The version to publish: the document's own integer `version` when it has one,
    else `now` in microseconds since the epoch, raised above `previous` (the last version
    this publisher issued) so two changes in the same microsecond still increase."""
    own = doc.get("version") if doc is not None else None
    if isinstance(own, int) and not isinstance(own, bool) and own > 0:
        return own
    delta = now - _EPOCH
    us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return max(us, previous + 1)


def site_change(
    site_id: str, doc: dict[str, Any] | None, now: datetime, *, version: int, event_id: str | None = None
) -> SiteChange:
    """The SiteUpdated for `site_id` whose stored document is `doc` (None: deleted)."""
    return SiteChange(
        site_id=site_id,
        deleted=doc is None,
        site=doc,
        version=version,
        updated_at=now,
        event_id=event_id or str(uuid.uuid4()),
    )


def encode_site_updated(change: SiteChange) -> bytes:
    pb = sites_pb2.SiteUpdated(
        site_id=change.site_id,
        deleted=change.deleted,
        site_json="" if change.deleted or change.site is None else json.dumps(change.site, separators=(",", ":"), default=str),
        version=change.version,
        event_id=change.event_id,
    )
    set_timestamp(pb.updated_at, change.updated_at)
    return pb.SerializeToString()


def decode_site_updated(data: bytes) -> SiteChange:
    """Raises ValueError for bytes that are not a usable SiteUpdated (no site id, or a
    live site whose document is not a JSON object): the same bytes never will be."""
    pb = sites_pb2.SiteUpdated()
    try:
        pb.ParseFromString(data)
    except Exception as exc:  # google.protobuf.message.DecodeError
        raise ValueError(f"not a SiteUpdated: {exc}") from exc
    if not pb.site_id:
        raise ValueError("SiteUpdated without a site id")
    site: dict[str, Any] | None = None
    if not pb.deleted:
        try:
            parsed = json.loads(pb.site_json)
        except ValueError as exc:
            raise ValueError(f"SiteUpdated {pb.site_id}: site_json is not JSON ({exc})") from exc
        if not isinstance(parsed, dict):
            raise ValueError(f"SiteUpdated {pb.site_id}: site_json is not an object")
        site = parsed
    return SiteChange(
        site_id=pb.site_id,
        deleted=pb.deleted,
        site=site,
        version=pb.version,
        updated_at=get_timestamp(pb, "updated_at") or _EPOCH,
        event_id=pb.event_id,
    )


def site_headers(change: SiteChange, *, traceparent: str | None = None) -> list[tuple[str, bytes]]:
    """CloudEvents attributes for a record on csms.sites.v1 (subject = site id)."""
    return cloudevent_headers(
        change.event_id, CE_TYPE, CE_SOURCE, change.updated_at, change.site_id, traceparent=traceparent
    )

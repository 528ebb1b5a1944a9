"""The operator API's audit log (ADR 017 §8): entries, where they go, how they are listed.

One `AuditEntry` (proto/csms/audit/v1/audit.proto) per mutating call under /api/v1
(POST, PUT, PATCH, DELETE, whatever the outcome) and per refused authentication. Each is
written twice:

- to the store: an `audit` document (kind AUDIT, parent = the UTC day `YYYY-MM-DD`, id =
  the entry id), listed by `GET /api/v1/audit`;
- to the bus: topic csms.audit.v1, key = actor, value = the protobuf, CloudEvents headers
  (ce_type `csms.audit.v1.AuditEntry`), for a SIEM to consume.

Entry ids sort by time: `YYYYMMDDTHHMMSSffffffZ-<8 hex>` (the CSMS clock, microseconds,
then randomness for uniqueness across pods), so "newest first" is "largest id first" and
a page cursor is just an id bound.

Failure policy (fail open, counted): the entry is written after the call has run, so an
audit write that fails cannot undo what was done; answering 5xx would tell the client
that a change which did happen failed, and its retry would repeat it. A store failure is
also the store the call itself needed (a mutating call whose store is down has already
failed, and is audited on the bus). So a failed audit write is logged (WARNING, without
credentials) and counted in `csms_api_audit_write_failures_total{sink}`, which deployments
alert on; it never changes the answer. See docs/security.md "Audit log".

Retention: `prune` deletes the documents of days older than CSMS_AUDIT_RETENTION_DAYS
(0 = keep for ever); the API runs it hourly (services/api/app.py). The bus topic has the
bus's own retention.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Final, Sequence

from prometheus_client import Counter

from services.common import codec, kinds, topics
from services.common.bus.port import Header
from services.common.protogen import ensure_generated
from services.common.store.port import DocumentStore
from services.common.timeutil import Clock, parse_ocpp, to_ocpp

ensure_generated()

from services.common.gen.csms.audit.v1 import audit_pb2  # noqa: E402

__all__ = [
    "AUDIT_CE_TYPE",
    "AUDIT_WRITE_FAILURES",
    "AuditEntry",
    "AuditFilter",
    "AuditLog",
    "audit_record",
    "entry_from_doc",
    "entry_to_doc",
    "is_cursor",
    "new_entry_id",
    "prune",
    "result_of",
]

log = logging.getLogger("csms.api.audit")

AUDIT_CE_TYPE: Final = "csms.audit.v1.AuditEntry"
DAY_SCAN_MAX: Final = 50_000     # entries read of one day per listing (a busier day shows its newest)
DAYS_PER_PAGE: Final = 31        # days one listing request looks at before handing back a cursor
PRUNE_LOOKBACK_DAYS: Final = 30  # days before the retention cutoff a prune run looks at
PUBLISH_TIMEOUT_S: Final = 2.0   # a bus that does not take the entry by then does not hold up the answer
_ID = re.compile(r"\d{8}T\d{12}Z(-[0-9a-f]{8})?\Z")
UTC = timezone.utc

AUDIT_WRITE_FAILURES = Counter(
    "csms_api_audit_write_failures_total",
    "Audit entries that could not be written, by sink (store, bus); the call itself was answered",
    ["sink"],
)
AUDIT_PRUNED = Counter("csms_api_audit_pruned_total", "Audit entries deleted as older than the retention")

Publish = Callable[[str, str, bytes, Sequence[Header]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    status: int
    result: str
    source: str
    request_id: str = ""
    detail: str = ""


def new_entry_id(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}"


def _day_of_id(entry_id: str) -> date:
    return date(int(entry_id[0:4]), int(entry_id[4:6]), int(entry_id[6:8]))


def _bound_of_day(day: date) -> str:
    """The id bound below which are the entries of days before `day`."""
    return f"{day:%Y%m%d}T000000000000Z"


def is_cursor(text: str) -> bool:
    return bool(_ID.match(text))


def result_of(status: int) -> str:
    if status < 400:
        return "ok"
    return {401: "unauthenticated", 403: "denied", 429: "throttled"}.get(status, "error")


def entry_to_doc(entry: AuditEntry) -> dict[str, Any]:
    doc = asdict(entry)
    doc["at"] = to_ocpp(entry.at)
    return doc


def entry_from_doc(doc: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        id=str(doc["id"]), at=parse_ocpp(str(doc["at"])), actor=str(doc.get("actor", "")),
        role=str(doc.get("role", "")), action=str(doc.get("action", "")), target=str(doc.get("target", "")),
        status=int(doc.get("status", 0)), result=str(doc.get("result", "")), source=str(doc.get("source", "")),
        request_id=str(doc.get("request_id", "")), detail=str(doc.get("detail", "")),
    )


def audit_record(entry: AuditEntry) -> tuple[str, str, bytes, list[Header]]:
    """(topic, key, value, headers) of an entry on csms.audit.v1."""
    pb = audit_pb2.AuditEntry(
        id=entry.id, actor=entry.actor, role=entry.role, action=entry.action, target=entry.target,
        status=entry.status, result=entry.result, source=entry.source, request_id=entry.request_id,
        detail=entry.detail,
    )
    pb.at.FromDatetime(entry.at.astimezone(UTC).replace(tzinfo=None))
    headers = codec.cloudevent_headers(entry.id, AUDIT_CE_TYPE, "/csms/api", entry.at, entry.actor)
    return topics.AUDIT, entry.actor, pb.SerializeToString(), headers


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def keeps(self, e: AuditEntry) -> bool:
        return (
            (self.actor is None or e.actor == self.actor)
            and (self.action is None or e.action == self.action)
            and (self.target is None or e.target == self.target)
            and (self.result is None or e.result == self.result)
            and (self.since is None or e.at >= self.since)
            and (self.until is None or e.at < self.until)
        )


class AuditLog:
    """Writes entries (store + bus, failures counted, never raised) and lists them."""

    def __init__(self, docs: DocumentStore, publish: Publish, clock: Clock, *, retention_days: float = 0.0) -> None:
        self._docs = docs
        self._publish = publish
        self.clock = clock
        self.retention_days = retention_days

    async def write(self, entry: AuditEntry) -> bool:
        """Store and publish `entry`; False (logged and counted) when a sink failed."""
        ok = True
        try:
            await self._docs.put_doc(kinds.AUDIT, entry.id, entry_to_doc(entry), parent=f"{entry.at.astimezone(UTC):%Y-%m-%d}")
        except Exception as exc:  # noqa: BLE001 - see the module doc: fail open, counted
            ok = False
            AUDIT_WRITE_FAILURES.labels("store").inc()
            log.warning("audit entry %s (%r %r) not stored: %s", entry.id, entry.actor, entry.action, exc)
        try:
            topic, key, value, headers = audit_record(entry)
            await asyncio.wait_for(self._publish(topic, key, value, headers), PUBLISH_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 (asyncio.TimeoutError included)
            ok = False
            AUDIT_WRITE_FAILURES.labels("bus").inc()
            log.warning("audit entry %s (%r %r) not published: %s", entry.id, entry.actor, entry.action, exc)
        return ok

    async def list(self, flt: AuditFilter, *, limit: int, cursor: str | None = None) -> tuple[list[AuditEntry], str | None]:
        """Entries newest first, at most `limit`, and the cursor of the next page (None: no
        more). Looks at DAYS_PER_PAGE days per call; a page can be short with a cursor."""
        now = self.clock()
        newest = now if flt.until is None else min(now, flt.until)
        bound = cursor if cursor is not None else None
        day = _day_of_id(cursor) if cursor is not None else newest.astimezone(UTC).date()
        if cursor is not None and cursor == _bound_of_day(day):
            day -= timedelta(days=1)  # a page that ended at a day boundary
        oldest_day = self._oldest_day(flt, now)
        items: list[AuditEntry] = []
        for _ in range(DAYS_PER_PAGE):
            if day < oldest_day:
                return items, None
            docs = await self._docs.list_docs(kinds.AUDIT, parent=f"{day:%Y-%m-%d}", limit=DAY_SCAN_MAX)
            entries = sorted((entry_from_doc(d) for d in docs), key=lambda e: e.id, reverse=True)
            for e in entries:
                if bound is not None and e.id >= bound:
                    continue
                if flt.keeps(e):
                    items.append(e)
                    if len(items) == limit:
                        return items, e.id
            bound = _bound_of_day(day)
            day -= timedelta(days=1)
        return items, (bound if day >= oldest_day else None)

    def _oldest_day(self, flt: AuditFilter, now: datetime) -> date:
        floor = now - timedelta(days=self.retention_days if self.retention_days > 0 else 3660)
        if flt.since is not None and flt.since > floor:
            floor = flt.since
        return floor.astimezone(UTC).date()


async def prune(docs: DocumentStore, clock: Clock, retention_days: float) -> int:
    """Delete the entries of the days older than `retention_days` (0: keep for ever), looking
    PRUNE_LOOKBACK_DAYS back from the cutoff (an hourly run never falls that far behind);
    how many went."""
    if retention_days <= 0:
        return 0
    cutoff = (clock() - timedelta(days=retention_days)).astimezone(UTC).date()
    n = 0
    for back in range(1, PRUNE_LOOKBACK_DAYS + 1):
        parent = f"{cutoff - timedelta(days=back):%Y-%m-%d}"
        while True:
            page = await docs.list_docs(kinds.AUDIT, parent=parent, limit=1000)
            gone = 0
            for d in page:
                if await docs.delete_doc(kinds.AUDIT, str(d["id"])):
                    gone += 1
            n += gone
            if not gone:
                break
    if n:
        AUDIT_PRUNED.inc(n)
        log.info("pruned %d audit entries of days before %s", n, cutoff.isoformat())
    return n

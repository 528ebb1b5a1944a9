"""Local authorization list sync (ADR 018 §2): a fold of the `stations-drivers` stage and
its sync loop (a periodic job every `CSMS_LOCAL_LIST_TICK_S`).

The API stores each station's desired list (LOCAL_LIST: explicit entries, or a rule over
the token store: every token or the tokens of some groups) and bumps TOKENS_REVISION on
every token change. This module keeps LOCAL_LIST_SYNC per station (`SyncState`) and moves
it on:

- The loop lists every desired list header and, for each station whose desired state
  (list version, and tokens revision for a rule) differs from what it confirmed, or whose
  confirmation is not verified since its last boot, and that is connected (STATION_OPS /
  STATION_STATUS, as the firmware campaigns decide it), starts an attempt:
  - its maximum entries per message: the device model inventory (1.6
    `SendLocalListMaxLength`, 2.0.1 `LocalAuthListCtrlr.ItemsPerMessage`); when the
    inventory has none the station is asked once (GetConfiguration / GetVariables), and
    one that does not say gets `CSMS_LOCAL_LIST_DEFAULT_CHUNK`;
  - the update: Full when nothing usable is confirmed (first time, after any failure,
    after a boot that showed another version), else Differential of the changed entries
    (removals without status); nothing to send when the content is the same (a token
    outside the list's groups changed): the list is in sync at once;
  - its chunks: the first with the update's type, the others Differential, all with the
    target version (a new version only when the desired content changed; a retry keeps it).
- The fold reads the CommandResult of each command it sent (by command id): an Accepted
  chunk sends the next one; after the last, GetLocalListVersion; the station reporting the
  target version confirms the list (`in_sync`). Anything else (Failed, VersionMismatch,
  NotSupported, a CALLERROR, Timeout, offline, another version) fails the attempt: retried
  after `CSMS_LOCAL_LIST_RETRY_S`, doubling, at most an hour, as a Full update. A command
  with no result within `LOST_AFTER` (a gateway restart) fails the same way.
- StationBooted makes the confirmed version unverified (the loop asks GetLocalListVersion
  and sends a Full list when the station lost it); StationConnected retries a failed
  attempt at once.

Every move is written (compare-and-set on the state's revision) BEFORE its command is
sent, so of two processor replicas only one sends; the command id is derived from the
station and the revision written, so a send repeated after a crash is the same command.
A result that does not match the command in flight (redelivered, or from an older
attempt) is ignored: the fold is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from prometheus_client import Counter

from services.common import events as ev
from services.common import kinds
from services.common.processor import Periodic
from services.common.routing import CommandRouter, Routed, Sent
from services.common.runtime import Runtime
from services.common.store.port import DocumentStore, Token, TokenStore
from services.common.timeutil import Clock
from services.sessions.documents import station_status_from_doc
from services.stations.campaigns import station_view
from services.stations.domain.local_lists import (
    MAX_SYNCED_TOKENS,
    MODE_ALL,
    MODE_EXPLICIT,
    ListEntry,
    Plan,
    Source,
    SyncState,
    backoff,
    chunks,
    confirmed_after,
    entries_from_tokens,
    fingerprints,
    fit_for_version,
    plan_update,
    reported_max,
    reported_version,
)
from services.stations.drivers.fold import Fold, ce_type
from services.stations.local_list_documents import (
    HEADER_PARENT,
    DesiredList,
    desired_from_docs,
    entries_doc_id,
    read_tokens_revision,
    sync_from_doc,
    write_sync,
)

__all__ = ["COMMAND_TTL", "ISSUER", "LOST_AFTER", "LocalListSync", "MAX_SYNCED_TOKENS", "build", "command_id_of"]

log = logging.getLogger("csms.stations.local_lists")

ISSUER = "local_list_sync"
COMMAND_TTL = timedelta(seconds=120)
LOST_AFTER = COMMAND_TTL + timedelta(seconds=30)  # no result by then: the command is taken as lost
_PAGE = 500
_WRITE_TRIES = 4
SEND_LOCAL_LIST = "SendLocalList"
GET_LOCAL_LIST_VERSION = "GetLocalListVersion"
GET_CONFIGURATION = "GetConfiguration"
GET_VARIABLES = "GetVariables"
_OURS = frozenset({SEND_LOCAL_LIST, GET_LOCAL_LIST_VERSION, GET_CONFIGURATION, GET_VARIABLES})
_IN_FLIGHT = ("probing", "sending", "verifying")

SYNC = Counter(
    "csms_local_list_sync_total",
    "Local list sync steps, by outcome (sent: a command sent; confirmed; in_sync without a send; failed; "
    "offline: not sent, station offline; lost: another replica wrote first; stale: a result not in flight)",
    ["outcome"],
)


class Sender(Protocol):
    async def send(self, station_id: str, command_type: str, params: Mapping[str, Any], *, ttl: timedelta,
                   command_id: str | None = None) -> Routed: ...


def command_id_of(station_id: str, revision: int) -> str:
    """The command sent with the sync state written at `revision`."""
    return f"local-list/{station_id}/{revision}"


def _max_from_inventory(doc: Mapping[str, Any] | None) -> int | None:
    """SendLocalListMaxLength (1.6: component "") or LocalAuthListCtrlr.ItemsPerMessage
    from a DEVICE_MODEL document, without decoding the whole inventory."""
    if doc is None:
        return None
    for e in doc.get("entries") or ():
        if not isinstance(e, dict) or str(e.get("attribute_type") or "Actual") != "Actual" or e.get("evse_id") is not None:
            continue
        if (e.get("component"), e.get("variable")) in (("", "SendLocalListMaxLength"), ("LocalAuthListCtrlr", "ItemsPerMessage")):
            try:
                value = int(str(e.get("value")).strip())
            except ValueError:
                return None
            return value if value > 0 else None
    return None


def _is_16(version: str) -> bool:
    return version.lower().removeprefix("ocpp").startswith("1.")


class LocalListSync:
    def __init__(self, docs: DocumentStore, tokens: TokenStore, sender: Sender, clock: Clock, *,
                 default_chunk: int, retry_s: float) -> None:
        self._docs = docs
        self._tokens = tokens
        self._sender = sender
        self._clock = clock
        self._default_chunk = max(1, int(default_chunk))
        self._retry_s = float(retry_s)

    # -- the loop --------------------------------------------------------------------------

    async def _headers(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page, cursor = await self._docs.list_docs_page(kinds.LOCAL_LIST, parent=HEADER_PARENT, limit=_PAGE,
                                                           cursor=cursor)
            out.extend(page)
            if cursor is None:
                return out

    async def tick(self) -> int:
        """One pass over every station with a desired list; the number of commands sent."""
        headers = [h for h in await self._headers() if h.get("station_id")]
        if not headers:
            return 0
        ids = [str(h["station_id"]) for h in headers]
        states = await self._docs.get_docs(kinds.LOCAL_LIST_SYNC, ids)
        tokens_revision = await read_tokens_revision(self._docs)
        now = self._clock()
        due: list[tuple[DesiredList, SyncState]] = []
        for header in headers:
            try:
                desired = desired_from_docs(header, None)
                doc = states.get(desired.station_id)
                state = sync_from_doc(doc) if doc is not None else SyncState(desired.station_id)
            except (KeyError, TypeError, ValueError):
                log.exception("local list of %s: unreadable documents; skipped", header.get("station_id"))
                continue
            if self._due(desired, state, tokens_revision, now):
                due.append((desired, state))
        sent = 0
        tokens: list[Token] | None = None
        for desired, state in due:
            try:
                if desired.mode != MODE_EXPLICIT and tokens is None:
                    tokens = await self._tokens.list_tokens(limit=MAX_SYNCED_TOKENS + 1)
                sent += await self._attempt(desired, state, tokens_revision, tokens or [])
            except Exception:
                log.exception("local list of %s: sync step failed; trying again next tick", desired.station_id)
        return sent

    def _source(self, desired: DesiredList, tokens_revision: int) -> Source:
        return Source(desired.desired_version, None if desired.mode == MODE_EXPLICIT else tokens_revision)

    def _due(self, desired: DesiredList, state: SyncState, tokens_revision: int, now: datetime) -> bool:
        if state.status in _IN_FLIGHT:
            return state.sent_at is None or now - state.sent_at > LOST_AFTER
        if state.next_attempt_at is not None and state.next_attempt_at > now and state.status in ("failed", "pending"):
            return False
        return not (state.status == "in_sync" and state.verified and state.source == self._source(desired, tokens_revision))

    async def _station(self, station_id: str) -> tuple[bool, str]:
        """(connected, OCPP version) as the stations and sessions processors folded them."""
        ops = await self._docs.get_doc(kinds.STATION_OPS, station_id)
        status = await self._docs.get_doc(kinds.STATION_STATUS, station_id)
        if ops is None and status is None:
            return False, ""
        version = ""
        if status is not None:
            try:
                version = station_status_from_doc(status).ocpp_version
            except (KeyError, TypeError, ValueError):
                version = ""
        return station_view(ops, status, None).connected, str(version)

    async def _attempt(self, desired: DesiredList, state: SyncState, tokens_revision: int,
                       tokens: Sequence[Token]) -> int:
        now = self._clock()
        sid = desired.station_id
        if state.status in _IN_FLIGHT:  # due only when lost
            await self._fail(state, f"no answer to {state.command_type or 'the command'} within {LOST_AFTER.seconds} s")
            return 0
        connected, version = await self._station(sid)
        if not connected:
            return 0
        # the entries per message
        chunk = _max_from_inventory(await self._docs.get_doc(kinds.DEVICE_MODEL, sid))
        max_source = "device_model"
        if chunk is None:
            if not state.probed and version:
                return await self._probe(state, version)
            chunk, max_source = (state.max_per_message, "station") if state.max_per_message else (self._default_chunk, "default")
        # the desired entries
        if desired.mode == MODE_EXPLICIT:
            doc = await self._docs.get_doc(kinds.LOCAL_LIST, entries_doc_id(sid))
            if doc is None or int(doc.get("desired_version") or 0) != desired.desired_version:
                log.info("local list of %s: entries of version %d not written yet; next tick", sid, desired.desired_version)
                return 0
            entries: list[ListEntry] = list(desired_from_docs({"station_id": sid}, doc).entries)
        else:
            if len(tokens) > MAX_SYNCED_TOKENS:
                await self._fail(state, f"the token store holds more than {MAX_SYNCED_TOKENS} tokens; "
                                        "sync a list of groups instead", full=False)
                return 0
            entries = entries_from_tokens(tokens, None if desired.mode == MODE_ALL else desired.groups)
        entries, skipped = fit_for_version(entries, _is_16(version))
        source = self._source(desired, tokens_revision)
        base = replace(state, source=source, max_per_message=chunk, max_source=max_source, skipped=skipped,
                       updated_at=now, last_error=state.last_error)
        if state.confirmed is not None and dict(state.confirmed) == fingerprints(entries):
            if state.verified:
                done = replace(base, status="in_sync", plan=None, command_id="", command_type="", sent_at=None,
                               next_attempt_at=None, attempts=0, last_error=None)
                if await self._write(state, done) is not None:
                    SYNC.labels("in_sync").inc()
                return 0
            # the same content: only ask the station whether it still holds it
            expect = state.confirmed_version if state.confirmed_version is not None else state.target_version
            return await self._step(state, replace(base, status="verifying", plan=None, target_version=expect),
                                    GET_LOCAL_LIST_VERSION, {})
        plan = plan_update(state, entries, chunk)
        if plan is None:  # unreachable: the content differs
            return 0
        if state.source == source and state.target_version is not None:
            target = state.target_version  # a retry of the same content keeps its version
        else:
            target = max(desired.desired_version, max(state.target_version or 0, state.confirmed_version or 0) + 1)
        moved = replace(base, status="sending", plan=plan, target_version=target)
        log.info("local list of %s: version %d, %s update of %d entries in %d message(s) of at most %d",
                 sid, target, plan.update_type, len(plan.ops), plan.chunk_count, chunk)
        return await self._send_chunk(state, moved)

    async def _probe(self, state: SyncState, version: str) -> int:
        params: dict[str, Any]
        if _is_16(version):
            command, params = GET_CONFIGURATION, {"keys": ["SendLocalListMaxLength"]}
        else:
            command, params = GET_VARIABLES, {"variables": [{"component": "LocalAuthListCtrlr", "variable": "ItemsPerMessage"}]}
        return await self._step(state, replace(state, status="probing", probed=True, updated_at=self._clock()), command, params)

    async def _send_chunk(self, before: SyncState, moved: SyncState) -> int:
        plan = moved.plan
        assert plan is not None
        parts = chunks(plan)
        update_type, entries = parts[plan.accepted]
        params = {"list_version": moved.target_version, "update_type": update_type,
                  "local_authorization_list": [e.params() for e in entries]}
        return await self._step(before, moved, SEND_LOCAL_LIST, params)

    async def _step(self, before: SyncState, moved: SyncState, command: str, params: Mapping[str, Any]) -> int:
        """Write `moved` (the command in flight) and send the command; 1 if sent."""
        now = self._clock()
        revision = before.revision + 1
        cid = command_id_of(moved.station_id, revision)
        written = await self._write(before, replace(moved, command_id=cid, command_type=command, sent_at=now, updated_at=now))
        if written is None:
            return 0
        routed = await self._sender.send(moved.station_id, command, params, ttl=COMMAND_TTL, command_id=cid)
        if isinstance(routed, Sent):
            SYNC.labels("sent").inc()
            return 1
        SYNC.labels("offline").inc()
        log.info("local list of %s: %s not sent (%s)", moved.station_id, command, getattr(routed, "reason", ""))
        # a chunk already accepted left the station's list partial: Full next time
        partial = written.plan is not None and written.plan.accepted > 0
        back = replace(written, status="pending", plan=None, command_id="", command_type="", sent_at=None,
                       next_attempt_at=None, probed=written.probed and written.status != "probing",
                       confirmed=None if partial else written.confirmed, verified=written.verified and not partial)
        await self._write(written, back)
        return 0

    async def _write(self, before: SyncState | None, after: SyncState) -> SyncState | None:
        written = await write_sync(self._docs, before, after)
        if written is None:
            SYNC.labels("lost").inc()
            log.info("local list of %s: state written by another replica first; reading again", after.station_id)
        return written

    async def _fail(self, state: SyncState, error: str, *, full: bool = True) -> SyncState | None:
        attempts = state.attempts + 1
        now = self._clock()
        failed = replace(state, status="failed", attempts=attempts, last_error=error[:300],
                         next_attempt_at=now + backoff(self._retry_s, attempts), plan=None, command_id="",
                         command_type="", sent_at=None, updated_at=now,
                         confirmed=None if full else state.confirmed, verified=state.verified and not full)
        written = await self._write(state, failed)
        if written is not None:
            SYNC.labels("failed").inc()
            log.warning("local list of %s: %s (attempt %d; next at %s)", state.station_id, error, attempts,
                        failed.next_attempt_at)
        return written

    # -- the fold ----------------------------------------------------------------------------

    async def _load(self, station_id: str) -> SyncState | None:
        doc = await self._docs.get_doc(kinds.LOCAL_LIST_SYNC, station_id)
        return None if doc is None else sync_from_doc(doc)

    async def apply(self, envs: Sequence[ev.Envelope]) -> None:
        for env in envs:
            body = env.body
            try:
                if isinstance(body, ev.CommandResult):
                    if body.command_type in _OURS and body.command_id.startswith("local-list/"):
                        await self._on_result(env.station_id, body)
                elif isinstance(body, ev.StationBooted):
                    await self._on_connection(env.station_id, booted=True)
                elif isinstance(body, ev.StationConnected):
                    await self._on_connection(env.station_id, booted=False)
            except (KeyError, TypeError, ValueError):
                # bad input (an unreadable answer or document) never stops the consumer
                SYNC.labels("unreadable").inc()
                log.exception("local list of %s: event %s not applied", env.station_id, env.event_id)

    async def _on_connection(self, station_id: str, *, booted: bool) -> None:
        for _ in range(_WRITE_TRIES):
            state = await self._load(station_id)
            if state is None:
                return
            moved = state
            if booted and state.verified:
                moved = replace(moved, verified=False)  # does it still hold its list?
            if state.status in ("failed", "pending") and state.next_attempt_at is not None:
                moved = replace(moved, next_attempt_at=None)  # try again now it is back
            if moved is state or await write_sync(self._docs, state, moved) is not None:
                return

    async def _on_result(self, station_id: str, result: ev.CommandResult) -> None:
        state = await self._load(station_id)
        if state is None or state.command_id != result.command_id or state.status not in _IN_FLIGHT:
            SYNC.labels("stale").inc()
            return
        try:
            response = orjson.loads(result.response_json or "{}")
        except orjson.JSONDecodeError:
            response = {}
        if not isinstance(response, dict):
            response = {}
        if state.status == "probing":
            value = reported_max(response) if result.status == "Accepted" else None
            moved = replace(state, status="pending", command_id="", command_type="", sent_at=None, next_attempt_at=None,
                            max_per_message=value, max_source="station" if value else "default")
            written = await self._write(state, moved)
            if written is not None:
                log.info("local list of %s: the station takes %s entries per message", station_id,
                         value if value else f"an unknown number of (default {self._default_chunk})")
                await self._continue(written)
            return
        if state.status == "sending":
            if result.status != "Accepted":
                await self._fail(state, f"SendLocalList answered {result.status}{_why(result)}")
                return
            plan = state.plan
            assert plan is not None
            plan = replace(plan, accepted=plan.accepted + 1)
            if plan.accepted < plan.chunk_count:
                await self._send_chunk(state, replace(state, plan=plan))
            else:
                await self._step(state, replace(state, status="verifying", plan=plan), GET_LOCAL_LIST_VERSION, {})
            return
        # verifying
        reported = reported_version(response) if result.status == "Accepted" else None
        if reported is not None and reported == state.target_version:
            now = self._clock()
            confirmed = confirmed_after(state.confirmed, state.plan) if state.plan is not None else state.confirmed
            done = replace(state, status="in_sync", confirmed=dict(confirmed or {}), confirmed_version=reported,
                           verified=True, plan=None, command_id="", command_type="", sent_at=None, attempts=0,
                           last_error=None, next_attempt_at=None, confirmed_at=now, updated_at=now)
            if await self._write(state, done) is not None:
                SYNC.labels("confirmed").inc()
                log.info("local list of %s: version %d confirmed", station_id, reported)
            return
        if reported == -1:
            await self._fail(state, "the station does not support local authorization lists (version -1)")
        elif reported is not None:
            await self._fail(state, f"the station reports list version {reported}, expected {state.target_version}")
        else:
            await self._fail(state, f"GetLocalListVersion answered {result.status}{_why(result)}")

    async def _continue(self, state: SyncState) -> None:
        """Start the attempt at once (after the station said its maximum)."""
        header = await self._docs.get_doc(kinds.LOCAL_LIST, state.station_id)
        if header is None:
            return
        desired = desired_from_docs(header, None)
        tokens: list[Token] = []
        if desired.mode != MODE_EXPLICIT:
            tokens = await self._tokens.list_tokens(limit=MAX_SYNCED_TOKENS + 1)
        await self._attempt(desired, state, await read_tokens_revision(self._docs), tokens)


def _why(result: ev.CommandResult) -> str:
    detail = " ".join(x for x in (result.error_code, result.error_description) if x)
    return f" ({detail})" if detail else ""


def build(rt: Runtime) -> Fold:
    router = CommandRouter(owners=rt.store, publish=rt.bus.publish, partitions=rt.bus.partitions, clock=rt.clock,
                           issuer=ISSUER)
    sync = LocalListSync(rt.store, rt.store, router, rt.clock, default_chunk=rt.settings.local_list_default_chunk,
                         retry_s=rt.settings.local_list_retry_s)
    return Fold(
        "local_lists",
        frozenset({ce_type(ev.CommandResult), ce_type(ev.StationBooted), ce_type(ev.StationConnected)}),
        sync.apply,
        (Periodic("local-list-sync", rt.settings.local_list_tick_s, sync.tick),),
    )

"""Local authorization lists (ADR 018 §2), pure: entries, differences, chunks, backoff.

A station's desired list is either explicit entries (`MODE_EXPLICIT`) or a rule over the
token store: every token (`MODE_ALL`) or the tokens of some groups (`MODE_GROUPS`). What
the station confirmed is kept as a fingerprint per id token (`ListEntry.fingerprint`):
the next update is the difference between the two (`differences`), changed and added
entries with their status, removed entries without one (OCPP's deletion in a
Differential update).

An update longer than the station takes in one message goes out in chunks (`chunks`):
the first with the update's type (Full or Differential), the rest Differential, all with
the same target version (ADR 018 §2).

`SyncState` is what the sync loop keeps per station (the `local_list_sync` document);
its statuses:
- `in_sync`: the station confirmed the list computed from `source`;
- `pending`: something to send (or to ask) at the next tick;
- `probing`: asked the station for its maximum entries per message;
- `sending`: a SendLocalList chunk of `plan` is in flight (`command_id`);
- `verifying`: GetLocalListVersion in flight, expecting `target_version`;
- `failed`: the last attempt failed (`last_error`); tried again at `next_attempt_at`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from services.common.timeutil import to_ocpp

__all__ = [
    "ENTRY_STATUSES",
    "FULL",
    "DIFFERENTIAL",
    "MAX_BACKOFF",
    "MAX_SYNCED_TOKENS",
    "TokenLike",
    "MODES",
    "MODE_ALL",
    "MODE_EXPLICIT",
    "MODE_GROUPS",
    "ListEntry",
    "Plan",
    "Source",
    "SyncState",
    "STATUSES",
    "backoff",
    "chunks",
    "confirmed_after",
    "differences",
    "entries_from_tokens",
    "fingerprints",
    "fit_for_version",
    "plan_update",
    "reported_max",
    "reported_version",
]

MODE_EXPLICIT = "explicit"
MODE_ALL = "all"
MODE_GROUPS = "groups"
MODES = (MODE_EXPLICIT, MODE_ALL, MODE_GROUPS)
FULL = "Full"
DIFFERENTIAL = "Differential"
ENTRY_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")
STATUSES = ("in_sync", "pending", "probing", "sending", "verifying", "failed")
MAX_BACKOFF = timedelta(hours=1)
MAX_ID_16 = 20  # 1.6 idTag / parentIdTag (CiString20)
MAX_SYNCED_TOKENS = 100_000  # a token-store rule over more tokens fails (the list is not sent)


class TokenLike(Protocol):
    """What a list takes of a token of the token store (`services.common.store.port.Token`)."""

    @property
    def id_token(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def group_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One entry of a list; `status` None is a removal (only in a Differential plan)."""

    id_token: str
    status: str | None = "Accepted"
    expires_at: datetime | None = None
    group_id: str | None = None
    id_token_type: str | None = None

    def fingerprint(self) -> str:
        """12 hex characters over what the station stores of the entry."""
        text = "|".join((self.status or "", "" if self.expires_at is None else to_ocpp(self.expires_at),
                         self.group_id or "", self.id_token_type or ""))
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()

    def params(self) -> dict[str, object]:
        """The entry as the command vocabulary's SendLocalList takes it."""
        out: dict[str, object] = {"id_token": self.id_token}
        if self.id_token_type:
            out["id_token_type"] = self.id_token_type
        if self.status is None:
            return out
        out["status"] = self.status
        if self.expires_at is not None:
            out["expires_at"] = to_ocpp(self.expires_at)
        if self.group_id:
            out["group_id"] = self.group_id
        return out


@dataclass(frozen=True, slots=True)
class Source:
    """What a desired list was computed from: the operator's list version and, for a list
    that follows the token store, the tokens revision."""

    list_version: int
    tokens_revision: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """One attempt's update: its type, its entries (removals without status), the entries
    per message, and how many chunks the station accepted so far."""

    update_type: str
    ops: tuple[ListEntry, ...]
    chunk_size: int
    accepted: int = 0

    @property
    def chunk_count(self) -> int:
        return len(chunks(self))


@dataclass(frozen=True, slots=True)
class SyncState:
    station_id: str
    status: str = "pending"
    revision: int = 0
    source: Source | None = None              # the desired list the current/last attempt was computed from
    target_version: int | None = None         # the list version being sent (or last sent)
    confirmed_version: int | None = None      # what GetLocalListVersion last confirmed
    confirmed: Mapping[str, str] | None = None  # id token -> fingerprint the station holds (None: unknown -> Full)
    verified: bool = False                    # the station is known to hold `confirmed` (False after a boot)
    plan: Plan | None = None
    command_id: str = ""
    command_type: str = ""
    sent_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    max_per_message: int | None = None
    max_source: str = ""                      # device_model | station | default
    probed: bool = False                      # the station was asked for its maximum
    skipped: int = 0                          # entries left out (too long for OCPP 1.6)
    updated_at: datetime | None = None
    confirmed_at: datetime | None = None


def entries_from_tokens(tokens: Iterable[TokenLike], groups: Sequence[str] | None) -> list[ListEntry]:
    """The list a token-store rule gives: every token (`groups` None) or those of `groups`."""
    wanted = None if groups is None else frozenset(groups)
    out = [ListEntry(t.id_token, t.status, t.expires_at, t.group_id)
           for t in tokens if wanted is None or (t.group_id is not None and t.group_id in wanted)]
    out.sort(key=lambda e: e.id_token)
    return out


def fit_for_version(entries: Sequence[ListEntry], is_16: bool) -> tuple[list[ListEntry], int]:
    """(the entries a station of this version can hold, how many were left out): a 1.6
    idTag has at most 20 characters (a longer one is left out; a longer group is dropped)."""
    if not is_16:
        return list(entries), 0
    kept: list[ListEntry] = []
    for e in entries:
        if len(e.id_token) > MAX_ID_16:
            continue
        if e.group_id is not None and len(e.group_id) > MAX_ID_16:
            e = ListEntry(e.id_token, e.status, e.expires_at, None, e.id_token_type)
        kept.append(e)
    return kept, len(entries) - len(kept)


def fingerprints(entries: Iterable[ListEntry]) -> dict[str, str]:
    return {e.id_token: e.fingerprint() for e in entries if e.status is not None}


def differences(confirmed: Mapping[str, str], desired: Sequence[ListEntry]) -> list[ListEntry]:
    """The Differential update from `confirmed` to `desired`: changed and added entries,
    then removals (sorted by id token)."""
    wanted = {e.id_token: e for e in desired}
    changed = [e for e in desired if confirmed.get(e.id_token) != e.fingerprint()]
    removed = [ListEntry(token, None) for token in sorted(set(confirmed) - set(wanted))]
    return changed + removed


def plan_update(state: SyncState, desired: Sequence[ListEntry], chunk_size: int) -> Plan | None:
    """The update that brings the station from what it confirmed to `desired`; None when
    it holds it already. Full when nothing usable is confirmed."""
    size = max(1, int(chunk_size))
    if state.confirmed is None:
        return Plan(FULL, tuple(desired), size)
    ops = differences(state.confirmed, desired)
    return Plan(DIFFERENTIAL, tuple(ops), size) if ops else None


def chunks(plan: Plan) -> list[tuple[str, tuple[ListEntry, ...]]]:
    """(update type, entries) per message: the first with the plan's type, the rest
    Differential. A Full plan of no entries is one empty Full message (clears the list)."""
    if not plan.ops:
        return [(plan.update_type, ())] if plan.update_type == FULL else []
    out: list[tuple[str, tuple[ListEntry, ...]]] = []
    for i in range(0, len(plan.ops), plan.chunk_size):
        out.append((plan.update_type if i == 0 else DIFFERENTIAL, plan.ops[i:i + plan.chunk_size]))
    return out


def confirmed_after(before: Mapping[str, str] | None, plan: Plan) -> dict[str, str]:
    """What the station holds once it applied the whole plan."""
    out: dict[str, str] = {} if plan.update_type == FULL or before is None else dict(before)
    for e in plan.ops:
        if e.status is None:
            out.pop(e.id_token, None)
        else:
            out[e.id_token] = e.fingerprint()
    return out


def backoff(base_s: float, attempts: int) -> timedelta:
    """The wait before attempt `attempts` + 1: base, doubling, at most an hour."""
    exponent = min(max(attempts - 1, 0), 20)
    return min(timedelta(seconds=max(base_s, 0.0) * (2 ** exponent)), MAX_BACKOFF)


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def reported_version(response: Mapping[str, object]) -> int | None:
    """The list version in a GetLocalListVersion answer (snake_case: 1.6 `list_version`,
    2.0.1 `version_number`); None when it has none."""
    for name in ("list_version", "version_number", "listVersion", "versionNumber"):
        if name in response:
            return _as_int(response[name])
    return None


def reported_max(response: Mapping[str, object]) -> int | None:
    """The entries-per-message maximum in a GetConfiguration (`SendLocalListMaxLength`) or
    GetVariables (`LocalAuthListCtrlr.ItemsPerMessage`) answer; None when not given or
    not a positive integer."""
    keys = response.get("configuration_key")
    if isinstance(keys, list):
        for item in keys:
            if isinstance(item, dict) and item.get("key") == "SendLocalListMaxLength":
                value = _as_int(item.get("value"))
                return value if value is not None and value > 0 else None
    results = response.get("get_variable_result")
    if isinstance(results, list):
        for item in results:
            if not isinstance(item, dict) or item.get("attribute_status", "Accepted") != "Accepted":
                continue
            var = item.get("variable")
            if isinstance(var, dict) and var.get("name") == "ItemsPerMessage":
                value = _as_int(item.get("attribute_value"))
                return value if value is not None and value > 0 else None
    return None

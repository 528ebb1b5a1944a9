"""Reading and replaying dead letters (`csms dlq`, `GET /api/v1/dead-letters`).

A dead letter is a record of a dead-letter topic (`topics.dlq_topic(topic)`), written
by `delivery.deliver`: the original key, value and headers plus the `dlq_*` headers.
Its id is `<partition>-<offset>` in the dead-letter topic.

Replaying re-publishes the original key, value and headers to the original topic and
partition with `csms_replay_group: <group>`, so only the group that gave up on it
handles it again (the bus adapters make every other group skip it). Kafka cannot
delete a record, so a replay also appends a small marker to the dead-letter topic
(empty value, header `dlq_replayed_id`); listings hide replayed dead letters unless
asked, and `replay --all` does not replay the same dead letter twice.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, replace as _with
from typing import Any

from services.common import topics
from services.common.bus.delivery import (
    DLQ_HEADERS,
    H_AT,
    H_ATTEMPTS,
    H_ERROR,
    H_GROUP,
    H_OFFSET,
    H_PARTITION,
    H_TOPIC,
    H_TRUNCATED,
)
from services.common.bus.port import REPLAY_GROUP_HEADER, Bus, Header, Record
from services.common.timeutil import to_ocpp, utcnow

__all__ = [
    "DeadLetter",
    "H_REPLAYED_ID",
    "dead_letter_topic",
    "parse_id",
    "list_dead_letters",
    "get_dead_letter",
    "replay",
    "replay_all",
]

H_REPLAYED_ID = "dlq_replayed_id"
H_REPLAYED_AT = "dlq_replayed_at"
# How many records per dead-letter partition a listing looks at (markers included).
WINDOW = 10_000

_ID_RE = re.compile(r"^(\d{1,6})-(\d{1,19})$")


@dataclass(frozen=True)
class DeadLetter:
    id: str
    dlq_topic: str
    topic: str
    partition: int
    offset: int
    group: str
    error: str
    attempts: int
    dead_lettered_at: str
    key: bytes
    value: bytes
    headers: tuple[Header, ...]  # the original record's
    replayed_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "group": self.group,
            "error": self.error,
            "attempts": self.attempts,
            "dead_lettered_at": self.dead_lettered_at,
            "key": self.key.decode("utf-8", "replace"),
            "value_base64": base64.b64encode(self.value).decode("ascii"),
            "headers": [{"name": k, "value": v.decode("utf-8", "replace")} for k, v in self.headers],
            "replayed_at": self.replayed_at,
        }

    def line(self) -> str:
        """One line for `csms dlq list`."""
        replayed = f"  replayed {self.replayed_at}" if self.replayed_at else ""
        return (f"{self.id}  group={self.group}  {self.topic}[{self.partition}]@{self.offset}  "
                f"attempts={self.attempts}  at={self.dead_lettered_at}{replayed}  error={self.error}")


def dead_letter_topic(topic: str) -> str:
    """`topic` may name the consumed topic (usual) or its dead-letter topic."""
    if topic == topics.EVENTS_DLQ or topic.endswith(".dlq"):
        return topic
    return topics.dlq_topic(topic)


def parse_id(dead_letter_id: str) -> tuple[int, int]:
    """'<partition>-<offset>' -> (partition, offset); ValueError otherwise."""
    m = _ID_RE.match(dead_letter_id)
    if m is None:
        raise ValueError(f"not a dead letter id (expected <partition>-<offset>): {dead_letter_id!r}")
    return int(m.group(1)), int(m.group(2))


def _int(value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        return -1


def _of(record: Record) -> DeadLetter | None:
    """The dead letter a DLQ record holds; None for a replay marker or a foreign record."""
    topic = record.header(H_TOPIC)
    if topic is None or record.header(H_REPLAYED_ID) is not None:
        return None
    own = set(DLQ_HEADERS) | {H_TRUNCATED}
    return DeadLetter(
        id=f"{record.partition}-{record.offset}",
        dlq_topic=record.topic,
        topic=topic,
        partition=_int(record.header(H_PARTITION)),
        offset=_int(record.header(H_OFFSET)),
        group=record.header(H_GROUP) or "",
        error=record.header(H_ERROR) or "",
        attempts=_int(record.header(H_ATTEMPTS)),
        dead_lettered_at=record.header(H_AT) or "",
        key=record.key,
        value=record.value,
        headers=tuple((k, v) for k, v in record.headers if k not in own),
    )


def _replays(records: list[Record]) -> dict[str, str]:
    """id -> when it was (last) replayed, from the markers."""
    out: dict[str, str] = {}
    for r in records:
        rid = r.header(H_REPLAYED_ID)
        if rid is not None:
            out[rid] = r.header(H_REPLAYED_AT) or ""
    return out


async def list_dead_letters(
    bus: Bus,
    topic: str = topics.EVENTS,
    *,
    group: str | None = None,
    limit: int = 100,
    include_replayed: bool = False,
) -> list[DeadLetter]:
    """Dead letters of `topic` (oldest first), optionally of one group only."""
    records = await bus.read(dead_letter_topic(topic), limit=WINDOW)
    replayed = _replays(records)
    out: list[DeadLetter] = []
    for r in records:
        dl = _of(r)
        if dl is None or (group is not None and dl.group != group):
            continue
        if dl.id in replayed:
            if not include_replayed:
                continue
            dl = _with(dl, replayed_at=replayed[dl.id])
        out.append(dl)
        if len(out) >= limit:
            break
    return out


async def get_dead_letter(bus: Bus, topic: str, dead_letter_id: str) -> DeadLetter | None:
    """One dead letter by id; None if there is none (a malformed id included)."""
    try:
        partition, offset = parse_id(dead_letter_id)
    except ValueError:
        return None
    found = await bus.read(dead_letter_topic(topic), limit=1, partition=partition, start=offset)
    if not found or found[0].offset != offset:
        return None
    return _of(found[0])


async def replay(bus: Bus, dl: DeadLetter) -> dict[str, Any]:
    """Re-publish `dl` for its group only (module docstring); returns what was done."""
    headers = [(k, v) for k, v in dl.headers if k != REPLAY_GROUP_HEADER]
    headers.append((REPLAY_GROUP_HEADER, dl.group.encode()))
    # no usable original partition (header missing): place by key
    partition = dl.partition if 0 <= dl.partition < await bus.partitions(dl.topic) else None
    key = dl.key.decode("utf-8", "surrogateescape")
    await bus.publish(dl.topic, key, dl.value, headers, partition=partition)
    at = to_ocpp(utcnow())
    await bus.publish(
        dl.dlq_topic,
        key,
        b"",
        [(H_REPLAYED_ID, dl.id.encode()), (H_REPLAYED_AT, at.encode()), (H_GROUP, dl.group.encode())],
    )
    return {"id": dl.id, "topic": dl.topic, "partition": dl.partition, "offset": dl.offset,
            "group": dl.group, "replayed_at": at}


async def replay_all(bus: Bus, topic: str = topics.EVENTS, *, group: str | None = None) -> list[dict[str, Any]]:
    """Replay every dead letter of `topic` (of `group`) not replayed yet, oldest first."""
    pending = await list_dead_letters(bus, topic, group=group, limit=WINDOW)
    return [await replay(bus, dl) for dl in pending]

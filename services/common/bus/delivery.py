"""How a group consumer hands one record to its handler: poison vs outage, dead letters.

One policy for every adapter (memory://, kafka://, and bench/faust_runner.py), so the buses
cannot drift apart (docs/dead-letters.md):

- Outage: the handler raised something `is_transient` (Cassandra or Kafka did not
  answer). Nothing is wrong with the record: pause the partition and retry with a
  capped back-off for as long as it takes. Never dead-lettered.
- Poison: anything else (a bug, a record the domain code cannot process, a cancelled
  await inside the handler). Retried `max_attempts` times in all, the back-off starting
  at `backoff_s` and doubling up to `max_backoff_s`; then the record is published to
  `topics.dlq_topic(record.topic)` with its key, value and headers plus the `dlq_*`
  headers below, counted in `csms_bus_dead_letters_total{topic,group}`, and handled:
  the caller commits it and the partition moves on. If that publish fails (the bus is
  down) it is retried until it lands: a record is never skipped without a dead letter.
- Replays: a record whose `csms_replay_group` header names another group is skipped
  (handled without calling the handler); see `dead_letters.py`.

`deliver` returns what happened; the adapter commits on HANDLED, SKIPPED and
DEAD_LETTERED, and leaves the record uncommitted on REVOKED (the partition moved to
another member or the reader is stopping: the next owner redelivers it).

Batches (`deliver_batch`, ADR 015) follow the same policy with the batch as the unit
while nothing is wrong with any record: replays for other groups are filtered out before
the handler sees the batch; an outage retries the whole batch for as long as it takes;
anything else hands the batch over again one record at a time (each a 1-record batch)
through `deliver`, so the poison record alone is dead-lettered after its bounded tries
and the others are processed. A partition that stops being ours while its records wait
is dropped from the batch (the next owner redelivers them); the others go on.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

import services.common.bus.metrics as metrics
from services.common import topics
from services.common.bus.port import REPLAY_GROUP_HEADER, BatchHandler, Handler, Header, Record, is_transient
from services.common.errors import RecordTooLarge
from services.common.timeutil import to_ocpp, utcnow

__all__ = [
    "DLQ_HEADERS",
    "DLQ_HEADROOM_BYTES",
    "DeliveryPolicy",
    "Outcome",
    "DeadLetterSink",
    "BatchResult",
    "deliver",
    "deliver_batch",
    "dead_letter_headers",
    "skips",
]

log = logging.getLogger("csms.bus.delivery")

# Headers a dead letter carries on top of the original record's.
H_TOPIC, H_PARTITION, H_OFFSET = "dlq_topic", "dlq_partition", "dlq_offset"
H_GROUP, H_ERROR, H_ATTEMPTS, H_AT = "dlq_group", "dlq_error", "dlq_attempts", "dlq_at"
H_TRUNCATED = "dlq_truncated"
DLQ_HEADERS = (H_TOPIC, H_PARTITION, H_OFFSET, H_GROUP, H_ERROR, H_ATTEMPTS, H_AT)
MAX_ERROR_CHARS = 1000
# A dead letter is the original record plus the dlq_* headers (about 1.2 KB at most):
# the buses accept dead letters up to max_record_bytes + this, so a record at the limit
# can always be dead-lettered.
DLQ_HEADROOM_BYTES = 16 << 10

# (dlq topic, the failed record, the headers to publish with its key and value)
DeadLetterSink = Callable[[str, Record, list[Header]], Awaitable[None]]


class Outcome(enum.Enum):
    HANDLED = "handled"
    SKIPPED = "skipped"              # a replay for another group
    DEAD_LETTERED = "dead_lettered"
    REVOKED = "revoked"              # not ours any more (rebalance, stop): do not commit


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Settings `dlq_max_attempts` and `dlq_backoff_s`; the caps are fixed."""

    max_attempts: int = 5
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    outage_backoff_s: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.backoff_s < 0:
            raise ValueError("backoff_s must be >= 0")

    def poison_delay(self, failures: int) -> float:
        """Pause after the `failures`-th poison failure (1-based): backoff_s, doubling, capped."""
        return min(self.backoff_s * (2.0 ** min(failures - 1, 30)), self.max_backoff_s)

    def outage_delay(self, failures: int) -> float:
        """Pause after the `failures`-th consecutive outage failure (1-based), capped."""
        return self.outage_backoff_s[min(failures - 1, len(self.outage_backoff_s) - 1)]


def skips(record: Record, group: str) -> bool:
    """A replay meant for another group (consumers without a group skip every replay)."""
    target = record.header(REPLAY_GROUP_HEADER)
    return target is not None and target != group


def describe(exc: BaseException) -> str:
    """`Type: message`, at most MAX_ERROR_CHARS characters."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def dead_letter_headers(record: Record, group: str, error: str, attempts: int, at: str | None = None) -> list[Header]:
    """The original headers (minus an earlier replay's or dead letter's own) + the dlq_* ones."""
    own = set(DLQ_HEADERS) | {H_TRUNCATED, REPLAY_GROUP_HEADER}
    headers = [(k, v) for k, v in record.headers if k not in own]
    headers += [
        (H_TOPIC, record.topic.encode()),
        (H_PARTITION, str(record.partition).encode()),
        (H_OFFSET, str(record.offset).encode()),
        (H_GROUP, group.encode()),
        (H_ERROR, error[:MAX_ERROR_CHARS].encode("utf-8", "replace")),
        (H_ATTEMPTS, str(attempts).encode()),
        (H_AT, (at or to_ocpp(utcnow())).encode()),
    ]
    return headers


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def deliver(
    record: Record,
    handler: Handler,
    *,
    group: str,
    policy: DeliveryPolicy,
    dead_letter: DeadLetterSink | None,
    owned: Callable[[], bool] = lambda: True,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_failure: Callable[[], None] = lambda: None,
) -> Outcome:
    """Hand `record` to `handler` under `policy` (module docstring).

    `dead_letter=None` (a reader without a group) retries poison for ever, as before
    dead letters existed. `owned()` is asked after every pause; `pause` may return early
    when the reader is stopping. `on_failure` is called once per failed try (metrics).
    """
    if skips(record, group):
        log.debug("%s[%d]@%d is a replay for group %s; %r skips it",
                  record.topic, record.partition, record.offset, record.header(REPLAY_GROUP_HEADER), group)
        return Outcome.SKIPPED
    poison = outages = 0
    while True:
        try:
            await handler(record)
            return Outcome.HANDLED
        except asyncio.CancelledError as exc:
            if _being_cancelled():
                raise  # we are being stopped
            error: BaseException = exc  # the handler's own awaited work was cancelled
        except Exception as exc:
            error = exc
        on_failure()
        if is_transient(error):
            outages += 1
            delay = policy.outage_delay(outages)
            if outages == 1 or outages % 60 == 0:
                log.warning("handler of %r: outage on %s[%d]@%d (%s; try %d); retrying, never dead-lettered",
                            group, record.topic, record.partition, record.offset, describe(error), outages)
        else:
            poison += 1
            if dead_letter is not None and poison >= policy.max_attempts:
                log.error("handler of %r failed %d times on %s[%d]@%d (%s): dead-lettering it",
                          group, poison, record.topic, record.partition, record.offset, describe(error),
                          exc_info=error)
                landed = await _dead_letter(record, group, describe(error), poison, policy, dead_letter, owned, pause)
                return Outcome.DEAD_LETTERED if landed else Outcome.REVOKED
            delay = policy.poison_delay(poison)
            log.error("handler of %r failed on %s[%d]@%d (try %d of %s); retrying in %.2fs",
                      group, record.topic, record.partition, record.offset, poison,
                      policy.max_attempts if dead_letter is not None else "unbounded", delay, exc_info=error)
        await pause(delay)
        if not owned():
            return Outcome.REVOKED


async def _dead_letter(
    record: Record,
    group: str,
    error: str,
    attempts: int,
    policy: DeliveryPolicy,
    sink: DeadLetterSink,
    owned: Callable[[], bool],
    pause: Callable[[float], Awaitable[object]],
) -> bool:
    """Publish the dead letter until it lands (True), or until the partition is not ours (False)."""
    dlq = topics.dlq_topic(record.topic)
    headers = dead_letter_headers(record, group, error, attempts)
    failures = 0
    trimmed = False
    while True:
        try:
            await sink(dlq, record, headers)
            break
        except RecordTooLarge as exc:
            if trimmed:  # cannot happen: the dlq_* headers alone are far below any limit
                failures += 1
                log.error("dead letter of %s[%d]@%d still too large (%s); retrying",
                          record.topic, record.partition, record.offset, exc)
                await pause(policy.outage_delay(failures))
                if not owned():
                    return False
                continue
            # Only possible for a record over our own limit (written by a foreign producer):
            # keep the trace (where it is, why it failed) and drop the payload.
            log.error("dead letter of %s[%d]@%d too large (%s): dead-lettering it without its payload",
                      record.topic, record.partition, record.offset, exc)
            record = Record(record.topic, record.partition, record.offset, b"", b"", (), record.timestamp_ms)
            headers = [h for h in headers if h[0].startswith("dlq_")]
            headers.append((H_TRUNCATED, b"key, value and headers dropped: too large"))
            trimmed = True
            continue
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
            failures += 1
        except Exception as exc:
            failures += 1
            if failures == 1 or failures % 60 == 0:
                log.warning("dead letter of %s[%d]@%d not published yet (%s); retrying",
                            record.topic, record.partition, record.offset, describe(exc))
        await pause(policy.outage_delay(failures))
        if not owned():
            return False
    metrics.DEAD_LETTERS.labels(record.topic, group).inc()
    log.error("dead-lettered %s[%d]@%d of group %r to %s after %d tries: %s",
              record.topic, record.partition, record.offset, group, dlq, attempts, error)
    return True


@dataclass(slots=True)
class BatchResult:
    """What `deliver_batch` did: `done` maps (topic, partition) to the offset to commit
    (the last record of that partition handled, skipped or dead-lettered, + 1; only
    partitions with at least one such record, and never past a record left undone);
    `handled` counts the records the handler accepted (metrics)."""

    done: dict[tuple[str, int], int]
    handled: int = 0


async def deliver_batch(
    records: Sequence[Record],
    handler: BatchHandler,
    *,
    group: str,
    policy: DeliveryPolicy,
    dead_letter: DeadLetterSink | None,
    owned: Callable[[Record], bool] = lambda r: True,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_failure: Callable[[], None] = lambda: None,
) -> BatchResult:
    """Hand `records` (each partition's in offset order) to `handler` as one batch under
    `policy` (module docstring). `owned(record)` says whether the record's partition is
    still ours; it is asked after every pause."""
    done: dict[tuple[str, int], int] = {}
    batch = list(records)
    # Replays for other groups: never shown to the handler, committed with the batch.
    given = [r for r in batch if not skips(r, group)]
    if not given:
        for r in batch:
            done[(r.topic, r.partition)] = r.offset + 1
        return BatchResult(done)
    outages = 0
    while len(given) > 1:
        try:
            await handler(given)
        except asyncio.CancelledError as exc:
            if _being_cancelled():
                raise
            error: BaseException = exc
        except Exception as exc:
            error = exc
        else:
            for r in batch:
                done[(r.topic, r.partition)] = r.offset + 1
            return BatchResult(done, len(given))
        on_failure()
        if not is_transient(error):
            log.warning("handler of %r failed on a batch of %d records of %s (%s): handing them over one by one",
                        group, len(given), given[0].topic, describe(error))
            break
        outages += 1
        if outages == 1 or outages % 60 == 0:
            log.warning("handler of %r: outage on a batch of %d records of %s (%s; try %d); retrying, never dead-lettered",
                        group, len(given), given[0].topic, describe(error), outages)
        await pause(policy.outage_delay(outages))
        firsts = {(r.topic, r.partition): r for r in reversed(batch)}  # one record per partition
        gone = {tp for tp, r in firsts.items() if not owned(r)}
        if gone:  # not ours any more: the next owner redelivers from the last commit
            batch = [r for r in batch if (r.topic, r.partition) not in gone]
            given = [r for r in given if (r.topic, r.partition) not in gone]
            if not given:
                for r in batch:
                    done[(r.topic, r.partition)] = r.offset + 1
                return BatchResult(done)
    # One record at a time (a single record, or a batch that raised something else).
    async def one(record: Record) -> None:
        await handler([record])

    handled = 0
    revoked: set[tuple[str, int]] = set()
    for r in batch:
        tp = (r.topic, r.partition)
        if tp in revoked:
            continue
        if not owned(r):
            revoked.add(tp)
            continue
        outcome = await deliver(r, one, group=group, policy=policy, dead_letter=dead_letter,
                                owned=functools.partial(owned, r), pause=pause, on_failure=on_failure)
        if outcome is Outcome.REVOKED:
            revoked.add(tp)
            continue
        handled += outcome is Outcome.HANDLED
        done[tp] = r.offset + 1
    return BatchResult(done, handled)

"""Run a bus handler (`async def handler(record: Record) -> None`) as a faust agent.

The processors' logic is a plain async `handle(record)`; embedded mode feeds it from
the bus port (`memory://` or `KafkaBus.subscribe`). This module feeds the same handler
from a faust-streaming agent in a consumer group, with the port's semantics as far as
faust allows:

- bytes in, bytes out: the topic's keys and values use the ``raw`` codec and the
  handler gets the untouched ``event.message`` as a `Record`;
- at-least-once: the event is acked only after the handler returned (faust's stream
  acks an event when the agent asks for the next one), and faust commits the highest
  contiguous acked offset every `broker_commit_every` records or
  `broker_commit_interval` seconds;
- a handler that raises is treated by the same policy as `KafkaBus`
  (`delivery.deliver`): an outage is retried for as long as it takes, a poison record
  is dead-lettered after `policy.max_attempts` tries (published with faust's producer
  to the dead-letter topic, created first if missing) and acked; an exception never
  escapes the agent (it would ack the event on the way out and lose it). If the
  partition moved to another member in the meantime the record is not dead-lettered
  (the new owner redelivers it from the last commit);
- replays for another consumer group (`csms_replay_group`) are skipped.

Batches (ADR 015): `build_batch_app` / `run_batch_worker` feed a batch handler from
faust's `stream.take_events(max_records, within_s)`, under `delivery.deliver_batch` (the
policy `KafkaBus.subscribe_batch` applies); faust acks a batch's events when the agent
asks for the next batch, i.e. after the handler returned.

It is the runtime under test in ADR 009 (bench/rebalance_experiment.py), and lives here,
beside that experiment, so the experiment can be re-run (for instance after a bump of
faust-streaming or aiokafka, which are pinned together). It is not part of the product:
the processors' one runtime is the aiokafka consumer group behind the bus port
(services/common/bus/kafka.py; ADR 009, update). Run from bench/ scripts, which put the
repository root on `sys.path`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, NoReturn

import faust
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from faust.types import TP

import services.common.bus.metrics as metrics
from services.common.bus.delivery import DLQ_HEADROOM_BYTES, DeliveryPolicy, deliver, deliver_batch
from services.common.bus.port import BatchHandler, Handler, Header, Record
from services.common.errors import RecordTooLarge

__all__ = ["build_app", "build_batch_app", "run_worker", "run_batch_worker", "record_of"]

log = logging.getLogger("csms.bus.faust")

DEFAULT_BROKER = "kafka://127.0.0.1:9092"


def record_of(message: Any) -> Record:
    """faust's `Message` (the raw consumer record) -> our `Record`."""
    headers = message.headers or ()
    if isinstance(headers, dict):
        headers = headers.items()
    ts = message.timestamp
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key or b"",
        value=message.value or b"",
        headers=tuple((str(k), v or b"") for k, v in headers),
        timestamp_ms=int(ts * 1000) if ts else 0,
    )


def build_app(
    group: str,
    topic: str,
    handler: Handler,
    partitions: int,
    *,
    broker: str = DEFAULT_BROKER,
    web_port: int | None = None,
    datadir: str | Path | None = None,
    policy: DeliveryPolicy | None = None,
    **settings: Any,
) -> faust.App:
    """A faust app whose only agent feeds `topic` (consumer group `group`) to `handler`.

    `web_port=None` disables faust's web server. Group timings default to the ones
    `KafkaBus.subscribe` uses (10 s session, 1 s heartbeat) so both runtimes detect a
    dead member equally fast; anything in `settings` overrides the defaults. `policy`
    (default: the settings' defaults) decides when a record is dead-lettered.
    """
    policy = policy or DeliveryPolicy()
    app, source, dead_letter, owned = _app(group, topic, partitions, broker, web_port, datadir, settings)
    failures = metrics.HANDLER_FAILURES.labels(topic, group)

    async def deliver_one(record: Record) -> None:
        # Every outcome acks the event: REVOKED too, since faust only commits what this
        # member still owns (the new owner redelivers from the last commit).
        await deliver(
            record,
            handler,
            group=group,
            policy=policy,
            dead_letter=dead_letter,
            owned=lambda: owned(record),
            on_failure=failures.inc,
        )

    async def process(stream: faust.StreamT) -> None:
        # The event is acked when the loop asks for the next one, i.e. after `deliver`
        # returned; faust commits acked offsets (contiguous only) in the background.
        async for event in stream.events():
            await deliver_one(record_of(event.message))

    app.agent(source, name=f"{group}.process")(process)
    return app


def build_batch_app(
    group: str,
    topic: str,
    handler: BatchHandler,
    partitions: int,
    *,
    max_records: int = 500,
    within_s: float = 0.05,
    broker: str = DEFAULT_BROKER,
    web_port: int | None = None,
    datadir: str | Path | None = None,
    policy: DeliveryPolicy | None = None,
    **settings: Any,
) -> faust.App:
    """`build_app` for a batch handler: up to `max_records` events, or what arrived within
    `within_s`, at a time (faust's `take_events`), under `delivery.deliver_batch`."""
    if max_records < 1:
        raise ValueError("max_records must be >= 1")
    policy = policy or DeliveryPolicy()
    app, source, dead_letter, owned = _app(group, topic, partitions, broker, web_port, datadir, settings)
    failures = metrics.HANDLER_FAILURES.labels(topic, group)
    sizes = metrics.BATCH_RECORDS.labels(topic, group)
    handled = metrics.RECORDS.labels(topic, group)

    async def process(stream: faust.StreamT) -> None:
        # take_events acks a batch's events when the loop asks for the next batch (after
        # deliver_batch returned; REVOKED records too: faust commits only what this member
        # owns). deliver_batch never raises but for cancellation, so no batch is acked unhandled.
        async for events in stream.take_events(max_records, within_s):
            records = [record_of(e.message) for e in events]
            sizes.observe(len(records))
            result = await deliver_batch(
                records,
                handler,
                group=group,
                policy=policy,
                dead_letter=dead_letter,
                owned=owned,
                on_failure=failures.inc,
            )
            if result.handled:
                handled.inc(result.handled)

    app.agent(source, name=f"{group}.process")(process)
    return app


def _app(
    group: str,
    topic: str,
    partitions: int,
    broker: str,
    web_port: int | None,
    datadir: str | Path | None,
    settings: dict[str, Any],
) -> tuple[faust.App, Any, Any, Any]:
    """The app, its raw source topic, the dead-letter sink and the ownership test."""
    conf: dict[str, Any] = dict(
        broker=broker,
        store="memory://",
        topic_partitions=partitions,
        autodiscover=False,
        web_enabled=web_port is not None,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_max_poll_interval=300.0,
        stream_wait_empty=False,
        topic_disable_leader=True,
        topic_allow_declare=False,  # topics are created by `csms` (ensure_topic), not by faust
        worker_redirect_stdouts=False,
        producer_acks=-1,
        # room for a dead letter's headers on top of a record at the bus limit
        producer_max_request_size=(1 << 20) + DLQ_HEADROOM_BYTES,
    )
    if web_port is not None:
        conf.update(web_port=web_port, web_bind="127.0.0.1")
    if datadir is not None:
        conf["datadir"] = str(datadir)
    conf.update(settings)
    app = faust.App(group, **conf)
    source = app.topic(
        topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=False,
    )

    dlq_ready: set[str] = set()

    async def dead_letter(dlq: str, record: Record, headers: list[Header]) -> None:
        if dlq not in dlq_ready:
            from services.common.bus.kafka import KafkaBus  # its admin path creates the topic

            await KafkaBus(broker).ensure_topic(dlq, partitions)
            dlq_ready.add(dlq)
        try:
            await app.producer.send_and_wait(dlq, record.key, record.value, None, None, headers)
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            raise RecordTooLarge(f"dead letter refused for its size: {exc!r}") from exc

    def owned(record: Record) -> bool:
        return TP(record.topic, record.partition) in app.consumer.assignment()

    metrics.DEAD_LETTERS.labels(topic, group)
    return app, source, dead_letter, owned


def run_worker(
    group: str,
    topic: str,
    handler: Handler,
    partitions: int,
    *,
    loglevel: str = "info",
    **kwargs: Any,
) -> NoReturn:
    """Run the agent in this process until SIGTERM/SIGINT (faust's Worker; blocks)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = build_app(group, topic, handler, partitions, **kwargs)
    worker = faust.Worker(app, loglevel=loglevel, loop=loop, redirect_stdouts=False)
    worker.execute_from_commandline()


def run_batch_worker(
    group: str,
    topic: str,
    handler: BatchHandler,
    partitions: int,
    *,
    loglevel: str = "info",
    **kwargs: Any,
) -> NoReturn:
    """`run_worker` for a batch handler (`build_batch_app`'s keywords)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = build_batch_app(group, topic, handler, partitions, **kwargs)
    worker = faust.Worker(app, loglevel=loglevel, loop=loop, redirect_stdouts=False)
    worker.execute_from_commandline()

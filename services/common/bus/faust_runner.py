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
- a handler that raises gets the same record again after a backoff, as with
  `KafkaBus` (an exception escaping a faust agent would ack the event on the way out
  and lose it, so it never escapes), unless the partition moved to another member in
  the meantime (the new owner redelivers from the last commit).

It is the runtime under test in ADR 009 (bench/rebalance_experiment.py); see that ADR
before using it in production.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, NoReturn

import faust
from faust.types import TP

from services.common.bus.port import Handler, Record

__all__ = ["build_app", "run_worker", "record_of"]

log = logging.getLogger("csms.bus.faust")

_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)

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
    **settings: Any,
) -> faust.App:
    """A faust app whose only agent feeds `topic` (consumer group `group`) to `handler`.

    `web_port=None` disables faust's web server. Group timings default to the ones
    `KafkaBus.subscribe` uses (10 s session, 1 s heartbeat) so both runtimes detect a
    dead member equally fast; anything in `settings` overrides the defaults.
    """
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

    async def deliver(record: Record) -> None:
        attempt = 0
        while True:
            try:
                await handler(record)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                attempt += 1
                log.exception("handler failed on %s[%d]@%d (attempt %d); retrying in %.1fs",
                              record.topic, record.partition, record.offset, attempt, delay)
                await asyncio.sleep(delay)
                if TP(record.topic, record.partition) not in app.consumer.assignment():
                    return  # partition moved: the new owner redelivers from the last commit

    async def process(stream: faust.StreamT) -> None:
        # The event is acked when the loop asks for the next one, i.e. after `deliver`
        # returned; faust commits acked offsets (contiguous only) in the background.
        async for event in stream.events():
            await deliver(record_of(event.message))

    app.agent(source, name=f"{group}.process")(process)
    return app


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

"""Processor crashes and rebalances on real Kafka + Cassandra: at-least-once delivery and
idempotent upserts mean nothing is lost and nothing changes twice."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from services.common import codec, events as ev
from services.common.bus.kafka import KafkaBus
from services.common.store.cassandra import CassandraStore
from services.common.timeutil import utcnow
from tests.integration.conftest import Cluster, new_cluster
from tests.support.waiting import eventually

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]


def envelope(station: str, body: ev.Body, message_id: str) -> ev.Envelope:
    now = utcnow()
    return ev.Envelope(event_id=str(uuid.uuid4()), station_id=station, received_at=now, body=body,
                       gateway_id="gateway-0", ocpp_version="1.6", station_time=now, message_id=message_id,
                       action=type(body).__name__)


async def publish_sessions(bus: KafkaBus, prefix: str, stations: list[str], first: int = 0) -> None:
    """One complete 1.6 session per station: start at 1000 Wh, stop at 1000 + 10*(i+1) Wh,
    i being the station's index in the whole test's list."""
    for i, sid in enumerate(stations, start=first):
        start = envelope(sid, ev.TransactionStarted(transaction_id=str(1000 + i), evse_id=1, connector_id=1, id_token="T", meter_start_wh=1000), f"{sid}-start")
        stop = envelope(sid, ev.TransactionEnded(transaction_id=str(1000 + i), evse_id=1, connector_id=1, meter_stop_wh=1000 + 10 * (i + 1), stop_reason="Local"), f"{sid}-stop")
        for env in (start, stop):
            await bus.publish(prefix + "csms.events.v1", sid, codec.encode_event(env), codec.event_headers(env))


def processed(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    return sum(float(m) for m in re.findall(r'^csms_sessions_events_processed_total\{[^}]*\} ([0-9.e+]+)$', text, re.M))


async def all_sessions_complete(store: CassandraStore, stations: list[str]) -> bool:
    for i, sid in enumerate(stations):
        docs = await store.list_docs("session", parent=sid)
        if len(docs) != 1 or docs[0]["status"] != "completed" or docs[0]["energy_wh"] != 10 * (i + 1):
            return False
    return True


def env_of(cluster: Cluster) -> tuple[str, str, str]:
    return cluster.env["CSMS_TOPIC_PREFIX"], cluster.env["CSMS_STORE_URL"], cluster.env["CSMS_BUS_URL"]


async def test_a_processor_killed_after_its_write_and_before_its_commit_gets_the_event_again_without_changing_state(tmp_path: Path) -> None:
    cluster = new_cluster(tmp_path, roles=())
    prefix, store_url, bus_url = env_of(cluster)
    stations = [f"CRASH{i}" for i in range(3)]
    bus = KafkaBus(bus_url)
    store = CassandraStore(store_url)
    await bus.start()
    await store.start()
    try:
        await bus.ensure_topic(prefix + "csms.events.v1", 6)
        await publish_sessions(bus, prefix, stations)
        marker = tmp_path / "crashed"
        env = dict(cluster.env, CRASH_ON="CRASH1-stop", CRASH_MARKER=str(marker))
        crasher = subprocess.run([sys.executable, "-m", "tests.integration.crash_after_write"], env=env, cwd=ROOT, capture_output=True, timeout=120)
        assert crasher.returncode == 137, crasher.stdout + crasher.stderr
        assert marker.exists()
        before = await store.list_docs("session", parent="CRASH1")
        assert len(before) == 1 and before[0]["status"] == "completed", before  # the write happened

        survivor = cluster.spawn("sessions", "sessions")
        cluster.wait_ready(survivor)
        port = int(survivor.env["CSMS_METRICS_PORT"])
        # the uncommitted stop is delivered again to the new member of the group
        await eventually(lambda: processed(port) >= 1, 60, interval=0.25, what="a processed record in the metrics")
        await eventually(lambda: all_sessions_complete(store, stations), 60, interval=0.25, what="every session complete")
        after = await store.list_docs("session", parent="CRASH1")
        assert len(after) == 1
        assert after[0]["version"] == before[0]["version"], "the redelivered event must not change the session"
        assert after[0]["energy_wh"] == before[0]["energy_wh"] == 20
    finally:
        cluster.stop_all()
        await bus.close()
        await store.close()


async def test_two_processors_one_killed_the_group_rebalances_and_every_event_is_processed(tmp_path: Path) -> None:
    cluster = new_cluster(tmp_path, roles=())
    prefix, store_url, bus_url = env_of(cluster)
    stations = [f"RB{i:03d}" for i in range(120)]
    bus = KafkaBus(bus_url)
    store = CassandraStore(store_url)
    await bus.start()
    await store.start()
    try:
        await bus.ensure_topic(prefix + "csms.events.v1", 6)
        a = cluster.spawn("sessions-a", "sessions")
        b = cluster.spawn("sessions-b", "sessions")
        cluster.wait_ready(a)
        cluster.wait_ready(b)
        await publish_sessions(bus, prefix, stations[:40])
        await asyncio.sleep(1.0)
        a.kill(signal.SIGKILL)
        await publish_sessions(bus, prefix, stations[40:], first=40)
        await eventually(
            lambda: all_sessions_complete(store, stations), 90, interval=0.25,
            what="every session complete (a partition got stuck after the rebalance)",
        )
        assert b.alive()
    finally:
        cluster.stop_all()
        await bus.close()
        await store.close()

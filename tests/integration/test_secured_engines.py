"""Secured Kafka and Cassandra (ADR 019 §2) on the local engines of deploy/local/infra.sh:
the same broker as every other test, on its SASL_SSL (127.0.0.1:9094) and SASL_PLAINTEXT
(127.0.0.1:9095) listeners, and `cassandra-secure` (TLS and PasswordAuthenticator on
127.0.0.1:9142). The user `csms` / `csms-local-secret` and the CA deploy/local/tls/ca.pem
are infra.sh's. Everything is configured the way a deployment does it: CSMS_* variables,
read by `load_settings`, turned into adapters by `bus_options` / `store_options`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.common.bus import bus_from_url
from services.common.bus.kafka import KafkaBus
from services.common.bus.port import Record
from services.common.config import Settings, load_settings
from services.common.errors import ConfigError, StoreUnavailable
from services.common.runtime import bus_options, store_options
from services.common.store import store_from_url
from services.common.store.port import Station
from tests.integration.conftest import CSMS, ROOT, Cluster, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.infra

CA = str(ROOT / "deploy" / "local" / "tls" / "ca.pem")
USER, PASSWORD = "csms", "csms-local-secret"
SASL_SSL, SASL_PLAINTEXT, CASSANDRA_SECURE = 9094, 9095, 9142
# a refused connection must end the start within this (it is retried forever otherwise)
BOUND_S = 60.0


def require_secured_engines() -> None:
    """Fail (never skip) when the secured endpoints are not there: `make test` starts them."""
    for name, port in (("Kafka SASL_SSL", SASL_SSL), ("Kafka SASL_PLAINTEXT", SASL_PLAINTEXT),
                       ("cassandra-secure", CASSANDRA_SECURE)):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        except OSError as exc:
            pytest.fail(f"{name} is not reachable on 127.0.0.1:{port} ({exc}); run `deploy/local/infra.sh up`")
    assert Path(CA).is_file(), f"{CA} missing: deploy/local/infra.sh up makes it"


@pytest.fixture(scope="module", autouse=True)
def engines() -> None:
    require_secured_engines()


def kafka_env(mechanism: str, *, tls: bool, password: str = PASSWORD) -> dict[str, str]:
    env = {
        "CSMS_BUS_URL": f"kafka://127.0.0.1:{SASL_SSL if tls else SASL_PLAINTEXT}",
        "CSMS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL" if tls else "SASL_PLAINTEXT",
        "CSMS_KAFKA_SASL_MECHANISM": mechanism,
        "CSMS_KAFKA_SASL_USERNAME": USER,
        "CSMS_KAFKA_SASL_PASSWORD": password,
    }
    if tls:
        env["CSMS_KAFKA_SSL_CAFILE"] = CA
    return env


def cassandra_env(keyspace: str, *, password: str = PASSWORD) -> dict[str, str]:
    return {
        "CSMS_STORE_URL": f"cassandra://127.0.0.1:{CASSANDRA_SECURE}/{keyspace}",
        "CSMS_CASSANDRA_USERNAME": USER,
        "CSMS_CASSANDRA_PASSWORD": password,
        "CSMS_CASSANDRA_SSL": "true",
        "CSMS_CASSANDRA_SSL_CAFILE": CA,
    }


def secured_bus(settings: Settings) -> KafkaBus:
    bus = bus_from_url(settings.bus_url, **bus_options(settings))
    assert isinstance(bus, KafkaBus)
    return bus


async def round_trip(settings: Settings) -> None:
    """Create a topic, publish, consume it back in a group: every client kind on the
    secured listener (admin, producer, group consumer)."""
    topic = f"sec.{uuid.uuid4().hex[:10]}"
    bus = secured_bus(settings)
    got: list[Record] = []

    async def handler(record: Record) -> None:
        got.append(record)

    try:
        await asyncio.wait_for(bus.start(), BOUND_S)
        assert bus.healthy
        await bus.ensure_topic(topic, 2)
        await bus.publish(topic, "CP-1", b"over a secured listener")
        await bus.subscribe(topic, f"g-{topic}", handler)
        await eventually(lambda: got, 60, interval=0.1, what=f"the record back from {topic}")
        assert (got[0].key, got[0].value) == (b"CP-1", b"over a secured listener")
        assert await described_topic(settings, topic) == {"replication": 1, "min.insync.replicas": ("1", True)}
    finally:
        await bus.close()


async def described_topic(settings: Settings, topic: str) -> dict[str, Any]:
    """The topic as the broker describes it: replicas per partition, and min.insync.replicas
    with whether it is the topic's own setting (not the broker default)."""
    bus = secured_bus(settings)  # the admin client with the same security options
    admin = AIOKafkaAdminClient(bootstrap_servers=bus.servers, **bus._client_options)
    await admin.start()
    try:
        [meta] = await admin.describe_topics([topic])
        replicas = {len(p["replicas"]) for p in meta["partitions"]}
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = {e[0]: e for res in response.resources for e in res[4]}
        isr = entries["min.insync.replicas"]
        # DescribeConfigs v1+: (name, value, read_only, config_source, ...); 1 = DYNAMIC_TOPIC_CONFIG
        return {"replication": replicas.pop() if len(replicas) == 1 else replicas, "min.insync.replicas": (isr[1], isr[3] == 1)}
    finally:
        await admin.close()


# -- Kafka ---------------------------------------------------------------------------------

async def test_the_bus_publishes_and_consumes_over_sasl_ssl_with_scram_sha_512() -> None:
    await round_trip(load_settings(kafka_env("SCRAM-SHA-512", tls=True)))


async def test_the_bus_publishes_and_consumes_over_sasl_plaintext_with_plain() -> None:
    await round_trip(load_settings(kafka_env("PLAIN", tls=False)))


async def test_scram_sha_256_over_tls_works_too() -> None:
    await round_trip(load_settings(kafka_env("SCRAM-SHA-256", tls=True)))


@pytest.mark.parametrize(("mechanism", "tls"), [("SCRAM-SHA-512", True), ("PLAIN", False)])
async def test_a_wrong_kafka_password_stops_the_start_with_the_brokers_reason(mechanism: str, tls: bool) -> None:
    bus = secured_bus(load_settings(kafka_env(mechanism, tls=tls, password="not-the-password")))
    try:
        with pytest.raises(ConfigError) as err:
            await asyncio.wait_for(bus.start(), BOUND_S)  # bounded: never a silent retry loop
    finally:
        await bus.close()
    text = str(err.value)
    assert "refused" in text and "Authentication failed" in text and "CSMS_KAFKA_SASL_PASSWORD" in text
    assert "not-the-password" not in text
    assert not bus.healthy


async def test_a_broker_certificate_we_do_not_trust_stops_the_start() -> None:
    env = kafka_env("SCRAM-SHA-512", tls=True)
    del env["CSMS_KAFKA_SSL_CAFILE"]  # the system CAs do not know the local test CA
    bus = secured_bus(load_settings(env))
    try:
        with pytest.raises(ConfigError, match="CERTIFICATE_VERIFY_FAILED.*CSMS_KAFKA_SSL_CAFILE"):
            await asyncio.wait_for(bus.start(), BOUND_S)
    finally:
        await bus.close()


# -- Cassandra -------------------------------------------------------------------------------

async def test_the_store_writes_and_reads_over_tls_with_a_password() -> None:
    keyspace = f"sec_{uuid.uuid4().hex[:8]}"
    settings = load_settings(cassandra_env(keyspace))
    store = store_from_url(settings.store_url, **store_options(settings))
    try:
        await asyncio.wait_for(store.start(), BOUND_S)
        await store.migrate()
        await store.put_station(Station(id="CP-SEC-1", password_hash="", site_id="site-1"))
        got = await store.get_station("CP-SEC-1")
        assert got is not None and got.site_id == "site-1"
    finally:
        await drop_keyspace(store, keyspace)
        await store.close()


async def test_a_wrong_cassandra_password_stops_the_start_with_the_nodes_reason() -> None:
    settings = load_settings(cassandra_env("sec_never", password="not-the-password"))
    store = store_from_url(settings.store_url, **store_options(settings))
    try:
        with pytest.raises(ConfigError) as err:
            await asyncio.wait_for(store.start(), BOUND_S)
    finally:
        await store.close()
    text = str(err.value)
    assert "refused" in text and "CSMS_CASSANDRA_PASSWORD" in text and "not-the-password" not in text


async def test_cassandra_without_tls_is_not_served_on_the_secured_port() -> None:
    env = cassandra_env("sec_never")
    del env["CSMS_CASSANDRA_SSL"], env["CSMS_CASSANDRA_SSL_CAFILE"]
    settings = load_settings(env)
    store = store_from_url(settings.store_url, **store_options(settings))
    try:
        with pytest.raises(StoreUnavailable):  # the node drops a plaintext client: nothing is served
            await asyncio.wait_for(store.start(), BOUND_S)
    finally:
        await store.close()


async def drop_keyspace(store: Any, keyspace: str) -> None:
    try:
        await store._run(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    except Exception:  # clean-up only
        pass


# -- a real `csms` role on both --------------------------------------------------------------

@pytest.fixture()
def secured_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update(kafka_env("SCRAM-SHA-512", tls=True))
    env.update(cassandra_env(f"sec_{tag}"))
    env.update({
        "CSMS_TOPIC_PREFIX": f"sec{tag}.",
        "CSMS_AUTH_PEPPER": "integration-pepper",
        "CSMS_HOST": "127.0.0.1",
        "CSMS_EVENTS_PARTITIONS": "2",
        "CSMS_COMMANDS_PARTITIONS": "2",
        "CSMS_LOG_LEVEL": "INFO",
    })
    yield env
    settings = load_settings(env)

    async def drop() -> None:
        store = store_from_url(settings.store_url, **store_options(settings))
        await store.start()
        await drop_keyspace(store, f"sec_{tag}")
        await store.close()

    asyncio.run(drop())


def test_a_csms_role_runs_on_secured_kafka_and_cassandra_and_a_wrong_password_exits_it(
    secured_env: dict[str, str], tmp_path: Path
) -> None:
    migrate = subprocess.run([CSMS, "migrate"], env=secured_env, capture_output=True, timeout=240)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    cluster = Cluster(tmp_path, secured_env, api_key="")
    sessions = cluster.spawn("sessions", "sessions")
    try:
        cluster.wait_ready(sessions, timeout=120)  # /readyz: its store and bus probes pass
        assert "SASL_SSL SCRAM-SHA-512 as 'csms'" in sessions.log()
    finally:
        sessions.kill(signal.SIGTERM)

    wrong = dict(secured_env, CSMS_KAFKA_SASL_PASSWORD="not-the-password", CSMS_METRICS_PORT=str(free_port()))
    run = subprocess.run([CSMS, "sessions"], env=wrong, capture_output=True, timeout=BOUND_S + 60)
    err = run.stderr.decode(errors="replace")
    assert run.returncode == 2, err[-3000:]
    assert "csms: kafka at 127.0.0.1:9094 refused the connection" in err and "Authentication failed" in err
    assert "not-the-password" not in err + run.stdout.decode(errors="replace")

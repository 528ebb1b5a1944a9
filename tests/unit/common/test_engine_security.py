"""Secured Kafka and Cassandra (ADR 019 §2), without the engines: the typed options built
from the CSMS_* variables, the TLS contexts, the checks that stop a process with an
impossible combination (naming the variable), topic and keyspace replication, and what
the adapters hand their drivers. The engines themselves: tests/integration/test_secured_engines.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, TopicAlreadyExistsError
from cassandra import AuthenticationFailed
from cassandra.cluster import NoHostAvailable
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.common.bus import bus_from_url
from services.common.bus.kafka import KafkaBus
from services.common.config import load_settings
from services.common.engine_security import CassandraAuth, KafkaSecurity, client_ssl_context
from services.common.errors import BusUnavailable, ConfigError
from services.common.runtime import bus_options, store_options
from services.common.store.cassandra.connection import CassandraConnection, _refusal


def _self_signed(tmp: Path, name: str = "client") -> tuple[Path, Path]:
    """A throwaway certificate and key (PEM files); the certificate is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return cert_path, key_path


# -- Kafka -------------------------------------------------------------------------------

def test_plaintext_is_the_default_and_hands_aiokafka_no_tls_or_sasl() -> None:
    sec = KafkaSecurity.from_settings(load_settings({}))
    assert sec == KafkaSecurity()
    assert sec.client_options() == {"security_protocol": "PLAINTEXT"}
    assert sec.ssl_context is None and sec.describe() == "PLAINTEXT"


def test_sasl_ssl_with_scram_from_the_environment(tmp_path: Path) -> None:
    ca, _ = _self_signed(tmp_path, "ca")
    settings = load_settings({
        "CSMS_BUS_URL": "kafka://broker-1:9094,broker-2:9094",
        "CSMS_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "CSMS_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "CSMS_KAFKA_SASL_USERNAME": "csms",
        "CSMS_KAFKA_SASL_PASSWORD": "s3cret",
        "CSMS_KAFKA_SSL_CAFILE": str(ca),
    })
    sec = KafkaSecurity.from_settings(settings)
    assert (sec.protocol, sec.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")  # normalised
    options = sec.client_options()
    ctx = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "csms",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert sec.client_options()["ssl_context"] is ctx  # one context for every client
    assert "s3cret" not in repr(sec) and "s3cret" not in sec.describe()
    assert sec.describe() == "SASL_SSL SCRAM-SHA-512 as 'csms'"


def test_sasl_plaintext_with_plain_has_no_tls() -> None:
    sec = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", username="u", password="p")
    assert sec.client_options() == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u", "sasl_plain_password": "p",
    }


def test_ssl_without_hostname_check_still_verifies_the_chain_and_offers_a_client_certificate(tmp_path: Path) -> None:
    ca, _ = _self_signed(tmp_path, "ca")
    cert, key = _self_signed(tmp_path, "client")
    sec = KafkaSecurity(protocol="SSL", cafile=str(ca), certfile=str(cert), keyfile=str(key), check_hostname=False)
    ctx = sec.ssl_context
    assert ctx is not None and not ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in sec.client_options()
    # the certificate and its key in one file work too
    both = tmp_path / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    assert KafkaSecurity(protocol="SSL", certfile=str(both)).ssl_context is not None


@pytest.mark.parametrize(("env", "names"), [
    ({"CSMS_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CSMS_KAFKA_SECURITY_PROTOCOL='TLS'"),
    ({"CSMS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CSMS_KAFKA_SASL_USERNAME": "u", "CSMS_KAFKA_SASL_PASSWORD": "p"},
     "CSMS_KAFKA_SASL_MECHANISM=''"),
    ({"CSMS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CSMS_KAFKA_SASL_MECHANISM": "GSSAPI",
      "CSMS_KAFKA_SASL_USERNAME": "u", "CSMS_KAFKA_SASL_PASSWORD": "p"}, "CSMS_KAFKA_SASL_MECHANISM='GSSAPI'"),
    ({"CSMS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CSMS_KAFKA_SASL_MECHANISM": "PLAIN",
      "CSMS_KAFKA_SASL_PASSWORD": "p"}, "CSMS_KAFKA_SASL_USERNAME is empty"),
    ({"CSMS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CSMS_KAFKA_SASL_MECHANISM": "PLAIN",
      "CSMS_KAFKA_SASL_USERNAME": "u"}, "CSMS_KAFKA_SASL_PASSWORD is empty"),
    ({"CSMS_KAFKA_SASL_MECHANISM": "PLAIN", "CSMS_KAFKA_SASL_USERNAME": "u", "CSMS_KAFKA_SASL_PASSWORD": "p"},
     "CSMS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL"),
    ({"CSMS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CSMS_KAFKA_SASL_MECHANISM": "PLAIN",
      "CSMS_KAFKA_SASL_USERNAME": "u", "CSMS_KAFKA_SASL_PASSWORD": "p", "CSMS_KAFKA_SSL_CAFILE": "/ca.pem"},
     "CSMS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS"),
    ({"CSMS_KAFKA_SECURITY_PROTOCOL": "SSL", "CSMS_KAFKA_SSL_CAFILE": "/nowhere/ca.pem"}, "CSMS_KAFKA_SSL_CAFILE='/nowhere/ca.pem'"),
    ({"CSMS_KAFKA_SECURITY_PROTOCOL": "SSL", "CSMS_KAFKA_SSL_KEYFILE": "/k.pem"}, "CSMS_KAFKA_SSL_KEYFILE is set but CSMS_KAFKA_SSL_CERTFILE"),
    ({"CSMS_KAFKA_SECURITY_PROTOCOL": "SSL", "CSMS_KAFKA_SSL_CERTFILE": "/nowhere/c.pem"}, "CSMS_KAFKA_SSL_CERTFILE='/nowhere/c.pem'"),
])
def test_an_impossible_kafka_setting_stops_the_start_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        # what a process does first (the settings table may already refuse a value)
        bus_options(load_settings({"CSMS_BUS_URL": "kafka://127.0.0.1:9092", **env}))
    assert names in str(err.value).replace(": '", "='")
    # the same checks hold for options built without the settings
    with pytest.raises(ConfigError) as direct:
        KafkaSecurity(
            protocol=env.get("CSMS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=env.get("CSMS_KAFKA_SASL_MECHANISM", ""),
            username=env.get("CSMS_KAFKA_SASL_USERNAME", ""),
            password=env.get("CSMS_KAFKA_SASL_PASSWORD", ""),
            cafile=env.get("CSMS_KAFKA_SSL_CAFILE", ""),
            certfile=env.get("CSMS_KAFKA_SSL_CERTFILE", ""),
            keyfile=env.get("CSMS_KAFKA_SSL_KEYFILE", ""),
        )
    assert names in str(direct.value)


def test_a_wrong_password_is_never_in_the_error_text() -> None:
    with pytest.raises(ConfigError) as err:
        KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", username="", password="hunter2-secret")
    assert "hunter2-secret" not in str(err.value)
    with pytest.raises(ConfigError) as err2:
        CassandraAuth(username="", password="hunter2-secret")
    assert "hunter2-secret" not in str(err2.value)


def test_bus_options_carry_replication_min_insync_and_security_for_kafka_only(tmp_path: Path) -> None:
    env = {
        "CSMS_KAFKA_REPLICATION_FACTOR": "3", "CSMS_KAFKA_MIN_INSYNC_REPLICAS": "2",
        "CSMS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CSMS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "CSMS_KAFKA_SASL_USERNAME": "csms", "CSMS_KAFKA_SASL_PASSWORD": "pw",
    }
    kafka = bus_options(load_settings({"CSMS_BUS_URL": "kafka://b:9092", **env}))
    assert (kafka["replication_factor"], kafka["min_insync_replicas"]) == (3, 2)
    assert kafka["security"] == KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                                              username="csms", password="pw")
    memory = bus_options(load_settings({"CSMS_BUS_URL": "memory://", **env}))
    assert not {"replication_factor", "min_insync_replicas", "security"} & set(memory)
    bus = bus_from_url("kafka://b:9092", **kafka)  # not started: no connection
    assert isinstance(bus, KafkaBus)
    assert (bus.replication_factor, bus.min_insync_replicas) == (3, 2)
    assert bus._client_options["sasl_mechanism"] == "SCRAM-SHA-256"


@pytest.mark.parametrize(("rf", "isr", "names"), [
    (0, 1, "CSMS_KAFKA_REPLICATION_FACTOR=0"),
    (1, 2, "CSMS_KAFKA_MIN_INSYNC_REPLICAS=2"),
    (3, 0, "CSMS_KAFKA_MIN_INSYNC_REPLICAS=0"),
])
def test_topic_replication_that_could_never_take_a_write_stops_the_start(rf: int, isr: int, names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        KafkaBus("kafka://b:9092", replication_factor=rf, min_insync_replicas=isr)


# -- Cassandra ---------------------------------------------------------------------------

def test_cassandra_defaults_have_no_credentials_and_no_tls() -> None:
    auth = CassandraAuth.from_settings(load_settings({}))
    assert auth == CassandraAuth() and auth.ssl_context is None and auth.describe() == "plaintext"


def test_cassandra_tls_and_password_from_the_environment(tmp_path: Path) -> None:
    ca, _ = _self_signed(tmp_path, "ca")
    settings = load_settings({
        "CSMS_STORE_URL": "cassandra://n1,n2:9142/csms",
        "CSMS_CASSANDRA_USERNAME": "csms", "CSMS_CASSANDRA_PASSWORD": "pw",
        "CSMS_CASSANDRA_SSL": "true", "CSMS_CASSANDRA_SSL_CAFILE": str(ca),
        "CSMS_CASSANDRA_SSL_CHECK_HOSTNAME": "false",
        "CSMS_CASSANDRA_REPLICATION_FACTOR": "3", "CSMS_CASSANDRA_LOCAL_DC": "eu-west-1",
    })
    options = store_options(settings)
    auth = options["auth"]
    assert (auth.username, auth.password, auth.ssl) == ("csms", "pw", True)
    ctx = auth.ssl_context
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname
    assert "pw" not in repr(auth) and auth.describe() == "TLS as 'csms'"
    assert (options["replication_factor"], options["local_dc"]) == (3, "eu-west-1")
    assert store_options(load_settings({"CSMS_STORE_URL": "sqlite:///x.db"})) == {}


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"username": "u"}, "CSMS_CASSANDRA_USERNAME is set but CSMS_CASSANDRA_PASSWORD is empty"),
    ({"password": "p"}, "CSMS_CASSANDRA_PASSWORD is set but CSMS_CASSANDRA_USERNAME is empty"),
    ({"cafile": "/ca.pem"}, "CSMS_CASSANDRA_SSL is false"),
    ({"ssl": True, "cafile": "/nowhere/ca.pem"}, "CSMS_CASSANDRA_SSL_CAFILE='/nowhere/ca.pem'"),
])
def test_an_impossible_cassandra_setting_stops_the_start_naming_the_variable(kwargs: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        CassandraAuth(**kwargs)  # type: ignore[arg-type]
    assert names in str(err.value)


def test_keyspace_replication_from_the_url_the_setting_or_per_data_centre() -> None:
    assert CassandraConnection("cassandra://h/ks").replication_map() == \
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    assert CassandraConnection("cassandra://h/ks?replication=2").replication_map() == \
        "{'class': 'SimpleStrategy', 'replication_factor': 2}"
    # the setting wins over the URL; 0 = the URL's
    assert CassandraConnection("cassandra://h/ks?replication=2", replication_factor=3).replication == 3
    assert CassandraConnection("cassandra://h/ks?replication=2", replication_factor=0).replication == 2
    assert CassandraConnection("cassandra://h/ks", replication_factor=3, local_dc="dc1").replication_map() == \
        "{'class': 'NetworkTopologyStrategy', 'dc1': 3}"
    with pytest.raises(ConfigError, match="CSMS_CASSANDRA_REPLICATION_FACTOR=-1"):
        CassandraConnection("cassandra://h/ks", replication_factor=-1)


def test_a_node_refusing_our_credentials_or_certificate_is_a_config_error_and_an_unreachable_one_is_not() -> None:
    refused = NoHostAvailable("x", {"127.0.0.1:9142": AuthenticationFailed("Bad credentials")})
    hint = _refusal(refused)
    assert hint is not None and "CSMS_CASSANDRA_PASSWORD" in hint
    untrusted = NoHostAvailable("x", {"127.0.0.1:9142": ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED]")})
    hint = _refusal(untrusted)
    assert hint is not None and "CSMS_CASSANDRA_SSL_CAFILE" in hint
    assert _refusal(NoHostAvailable("x", {"127.0.0.1:9142": ConnectionRefusedError(111, "refused")})) is None


def test_client_context_names_the_prefix_it_was_given(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CSMS_CASSANDRA_SSL_CAFILE"):
        client_ssl_context(str(tmp_path / "missing.pem"), "", "", True, prefix="CSMS_CASSANDRA")
    not_pem = tmp_path / "garbage.pem"
    not_pem.write_text("not a certificate")
    with pytest.raises(ConfigError, match="CSMS_KAFKA_SSL_CAFILE"):
        client_ssl_context(str(not_pem), "", "", True, prefix="CSMS_KAFKA")


# -- what KafkaBus hands aiokafka ----------------------------------------------------------

def _scram_tls(tmp_path: Path) -> KafkaSecurity:
    ca, _ = _self_signed(tmp_path, "ca")
    return KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", username="csms",
                         password="pw", cafile=str(ca))


async def test_every_kafka_client_of_the_bus_gets_the_same_security(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import services.common.bus.kafka as kafka_module

    sec = _scram_tls(tmp_path)
    bus = KafkaBus("kafka://127.0.0.1:9094", security=sec)
    for consumer in (bus._group_consumer("t", "g", True), bus._groupless_consumer("read")):
        client = consumer._client
        assert (client._security_protocol, client._sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
        assert client._ssl_context is sec.ssl_context
    seen: dict[str, dict[str, Any]] = {}

    class Recorder:
        def __init__(self, name: str, **kwargs: Any) -> None:
            seen[name] = kwargs

        async def start(self) -> None:
            raise KafkaError("stop here")

        async def stop(self) -> None:
            pass

        async def close(self) -> None:
            pass

    async def refused(*_a: Any, **_k: Any) -> None:
        raise SaslAuthenticationFailed("Authentication failed: Invalid username or password")

    monkeypatch.setattr(kafka_module, "AIOKafkaProducer", lambda **kw: Recorder("producer", **kw))
    monkeypatch.setattr(kafka_module, "AIOKafkaAdminClient", lambda **kw: Recorder("admin", **kw))
    monkeypatch.setattr(kafka_module, "create_conn", refused)
    with pytest.raises(BusUnavailable):
        await bus.ensure_topic("t", 2)
    # a broker refusing the credentials ends the start at once: no retry loop
    with pytest.raises(ConfigError) as err:
        await asyncio.wait_for(bus.start(wait_s=30), 10)
    await bus.close()
    assert "refused the connection (SASL_SSL SCRAM-SHA-512 as 'csms')" in str(err.value)
    assert "CSMS_KAFKA_SASL_PASSWORD" in str(err.value) and "'pw'" not in str(err.value)
    for name in ("producer", "admin"):
        assert seen[name]["security_protocol"] == "SASL_SSL", name
        assert seen[name]["sasl_mechanism"] == "SCRAM-SHA-512", name
        assert (seen[name]["sasl_plain_username"], seen[name]["sasl_plain_password"]) == ("csms", "pw"), name
        assert seen[name]["ssl_context"] is sec.ssl_context, name


async def test_topics_are_created_with_the_replication_and_min_insync_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    import services.common.bus.kafka as kafka_module

    created: list[Any] = []

    class Admin:
        def __init__(self, **_kw: Any) -> None:
            pass

        async def start(self) -> None:
            pass

        async def create_topics(self, topics: list[Any]) -> None:
            created.extend(topics)
            if len(created) > 1:
                raise TopicAlreadyExistsError()  # an existing topic: left alone

        async def close(self) -> None:
            pass

    monkeypatch.setattr(kafka_module, "AIOKafkaAdminClient", Admin)
    bus = KafkaBus("kafka://b:9092", replication_factor=3, min_insync_replicas=2, max_record_bytes=10_000)
    await bus.ensure_topic("t", 12)
    await bus.ensure_topic("t", 12)
    topic = created[0]
    assert (topic.name, topic.num_partitions, topic.replication_factor) == ("t", 12, 3)
    assert topic.topic_configs["min.insync.replicas"] == "2"
    assert int(topic.topic_configs["max.message.bytes"]) > 10_000


async def test_an_unreachable_broker_is_an_outage_not_a_refusal() -> None:
    bus = KafkaBus("kafka://127.0.0.1:1", security=KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                                                                 username="u", password="p"))
    assert await bus._refusal() is None  # connection refused: retried, the process stays up (not ready)

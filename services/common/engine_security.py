"""How the CSMS authenticates to Kafka and Cassandra on a secured cluster (ADR 019 §2).

Two typed, immutable option sets built from the settings (`CSMS_KAFKA_*`,
`CSMS_CASSANDRA_*`; secrets come from the environment, e.g. a Kubernetes secret mounted
as variables) and handed to the adapters as one keyword each:

- `KafkaSecurity`: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; SASL with PLAIN,
  SCRAM-SHA-256 or SCRAM-SHA-512. `client_options()` are the keywords every aiokafka
  client takes (producer, consumers, admin client), the TLS context built once.
- `CassandraAuth`: username/password (the driver's PlainTextAuthProvider) and TLS.

Both check themselves when built and raise `ConfigError` naming the `CSMS_*` variable, so
a process with an impossible combination (SASL without a mechanism, a key without its
certificate, a CA file that cannot be read) does not start. No driver is imported here:
the composition root builds these for every process, whichever adapters it uses.

TLS: the peer's certificate must chain to `*_SSL_CAFILE` (the system CAs when empty) and,
unless `*_SSL_CHECK_HOSTNAME` is false, name the host the client connects to (for
Cassandra the node's address: its certificate needs IP subject-alternative names). A
client certificate (`*_SSL_CERTFILE`, with its key in `*_SSL_KEYFILE` or in the same
file) is sent when the server asks for one (mutual TLS). TLS 1.2 is the minimum.
"""

from __future__ import annotations

import functools
import ssl
from ssl import SSLContext
from dataclasses import dataclass, field
from typing import Any

from services.common.config import Settings
from services.common.errors import ConfigError

__all__ = ["KAFKA_PROTOCOLS", "KAFKA_SASL_MECHANISMS", "CassandraAuth", "KafkaSecurity", "client_ssl_context"]

KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def client_ssl_context(cafile: str, certfile: str, keyfile: str, check_hostname: bool, *, prefix: str) -> SSLContext:
    """A client TLS context: the server's certificate verified against `cafile` (system CAs
    when empty), its name checked when `check_hostname`, `certfile`/`keyfile` offered for
    mutual TLS. `prefix` (e.g. "CSMS_KAFKA") names the variables in errors."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{prefix}_SSL_CAFILE={cafile!r}: cannot load the CA bundle ({exc})") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # the chain is always verified (CERT_REQUIRED); only the name check can be turned off
    ctx.check_hostname = check_hostname
    if certfile:
        try:
            ctx.load_cert_chain(certfile, keyfile or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{prefix}_SSL_CERTFILE={certfile!r} / {prefix}_SSL_KEYFILE={keyfile!r}: "
                f"cannot load the client certificate and key ({exc})"
            ) from exc
    elif keyfile:
        raise ConfigError(f"{prefix}_SSL_KEYFILE is set but {prefix}_SSL_CERTFILE is not")
    return ctx


@dataclass(frozen=True)
class KafkaSecurity:
    """How every Kafka client of the process connects (CSMS_KAFKA_SECURITY_PROTOCOL ...)."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""
    check_hostname: bool = True

    def __post_init__(self) -> None:
        protocol = self.protocol.strip().upper() or "PLAINTEXT"
        mechanism = self.sasl_mechanism.strip().upper()
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "sasl_mechanism", mechanism)
        if protocol not in KAFKA_PROTOCOLS:
            raise ConfigError(f"CSMS_KAFKA_SECURITY_PROTOCOL={self.protocol!r}: expected one of {', '.join(KAFKA_PROTOCOLS)}")
        if self.sasl:
            if mechanism not in KAFKA_SASL_MECHANISMS:
                raise ConfigError(
                    f"CSMS_KAFKA_SASL_MECHANISM={mechanism!r}: {protocol} needs one of {', '.join(KAFKA_SASL_MECHANISMS)}"
                )
            if not self.username:
                raise ConfigError(f"CSMS_KAFKA_SASL_USERNAME is empty: {protocol} with {mechanism} needs a user")
            if not self.password:
                raise ConfigError(f"CSMS_KAFKA_SASL_PASSWORD is empty: {protocol} with {mechanism} needs a password")
        elif mechanism or self.username or self.password:
            raise ConfigError(
                f"CSMS_KAFKA_SASL_* is set but CSMS_KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL "
                "(SASL_PLAINTEXT or SASL_SSL)"
            )
        if not self.tls and (self.cafile or self.certfile or self.keyfile):
            raise ConfigError(
                f"CSMS_KAFKA_SSL_* files are set but CSMS_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS (SSL or SASL_SSL)"
            )
        if self.tls:
            self.ssl_context  # noqa: B018 - built now: a bad file stops the start, not the first connect

    @classmethod
    def from_settings(cls, settings: Settings) -> "KafkaSecurity":
        return cls(
            protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            check_hostname=settings.kafka_ssl_check_hostname,
        )

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @functools.cached_property
    def ssl_context(self) -> SSLContext | None:
        """One context for every client of the process (None without TLS)."""
        if not self.tls:
            return None
        return client_ssl_context(self.cafile, self.certfile, self.keyfile, self.check_hostname, prefix="CSMS_KAFKA")

    def client_options(self) -> dict[str, Any]:
        """The aiokafka keywords (AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context
        if self.sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password
        return options

    def describe(self) -> str:
        """For logs: how we connect, never the password."""
        if self.sasl:
            return f"{self.protocol} {self.sasl_mechanism} as {self.username!r}"
        return self.protocol


@dataclass(frozen=True)
class CassandraAuth:
    """Credentials and TLS of the store's Cassandra session (CSMS_CASSANDRA_USERNAME ...)."""

    username: str = ""
    password: str = field(default="", repr=False)
    ssl: bool = False
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""
    check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.password and not self.username:
            raise ConfigError("CSMS_CASSANDRA_PASSWORD is set but CSMS_CASSANDRA_USERNAME is empty")
        if self.username and not self.password:
            raise ConfigError("CSMS_CASSANDRA_USERNAME is set but CSMS_CASSANDRA_PASSWORD is empty")
        if not self.ssl and (self.cafile or self.certfile or self.keyfile):
            raise ConfigError("CSMS_CASSANDRA_SSL_* files are set but CSMS_CASSANDRA_SSL is false")
        if self.ssl:
            self.ssl_context  # noqa: B018 - built now: a bad file stops the start, not the first connect

    @classmethod
    def from_settings(cls, settings: Settings) -> "CassandraAuth":
        return cls(
            username=settings.cassandra_username,
            password=settings.cassandra_password,
            ssl=settings.cassandra_ssl,
            cafile=settings.cassandra_ssl_cafile,
            certfile=settings.cassandra_ssl_certfile,
            keyfile=settings.cassandra_ssl_keyfile,
            check_hostname=settings.cassandra_ssl_check_hostname,
        )

    @functools.cached_property
    def ssl_context(self) -> SSLContext | None:
        if not self.ssl:
            return None
        return client_ssl_context(self.cafile, self.certfile, self.keyfile, self.check_hostname, prefix="CSMS_CASSANDRA")

    def describe(self) -> str:
        """For logs: how we connect, never the password."""
        parts = ["TLS" if self.ssl else "plaintext"]
        if self.username:
            parts.append(f"as {self.username!r}")
        return " ".join(parts)

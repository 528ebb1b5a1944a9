"""Settings from the environment (and matching CLI flags). Names are a public contract.

Every tunable is declared once in `TABLE` (ADR 019 §1): its `CSMS_*` variable, type,
bounds or choices, one line of documentation and the section it is documented in.
`Settings` is the frozen dataclass the processes read (`settings.<field>`), and its field
defaults are the settings' defaults: a row does not repeat them (two copies of a default
only ever agree because a test makes them), the loader and the docs read them from the
field. `load_settings(env)` is driven by the table and fails at start with one
`ConfigError` naming every bad variable (`CSMS_OCPP_PORT: 'abc' is not an integer`). A few
variables are read before `Settings` exists (the topic prefix at import, the pepper,
tracing, the simulator's defaults): they are rows without a field, carrying their own
default, read with `env_value(variable)`, so they are validated and documented the same
way.

`docs/configuration.md` is generated from the table:

    python -m services.common.config --markdown > docs/configuration.md

and tests/unit/common/test_config_table.py fails when it differs, when the code, the
chart or the docs name a `CSMS_*` variable the table does not know, or when the table and
the dataclass disagree on a field or its type.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import socket
import sys
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Callable, Literal, Mapping, Sequence

from services.common.errors import ConfigError

__all__ = ["Settings", "Setting", "TABLE", "SECTIONS", "load_settings", "env_value", "field_default", "gateway_ordinal",
           "markdown", "unknown_variables"]

log = logging.getLogger("csms.config")


def _default_gateway_id() -> str:
    # StatefulSet pods are named <name>-<ordinal>; keep the ordinal, name the role.
    m = re.search(r"-(\d+)$", socket.gethostname())
    return f"gateway-{m.group(1) if m else 0}"


def gateway_ordinal(gateway_id: str) -> int:
    """The command partition of a gateway (ADR 001), from its id alone: P for a
    SO_REUSEPORT worker `gateway-N-pP` (the pod's supervisor put the partition in the id,
    services/gateway/workers.py), N for a single gateway `gateway-N`. No role needs to
    know how many workers a pod runs."""
    m = re.search(r"-p(\d+)$", gateway_id) or re.search(r"(\d+)$", gateway_id)
    if not m:
        raise ConfigError(f"gateway id {gateway_id!r} has no ordinal (expected gateway-N or gateway-N-pP)")
    return int(m.group(1))


@dataclass(frozen=True)
class Settings:
    """What a process runs with. A field's default is its setting's default, the one place it
    is written: `TABLE`, `load_settings` and docs/configuration.md read it from here, except
    where a row names another one for `load_settings` (default_security_profile, gateway_id)."""

    bus_url: str = "memory://"
    store_url: str = "sqlite:///./csms.db"
    host: str = "0.0.0.0"
    ocpp_port: int = 9000
    api_port: int = 8080
    metrics_port: int = 9100
    gateway_id: str = "gateway-0"
    api_key: str | None = field(default=None, repr=False)  # bootstrap admin key: never in a repr or log
    open_registration: bool = False
    heartbeat_interval: int = 300
    max_frame_bytes: int = 1 << 20
    max_json_depth: int = 32
    command_timeout_s: float = 30.0
    events_partitions: int = 12
    commands_partitions: int = 16          # >= gateway pods x gateway_workers (ADR 001)
    gateway_workers: int = 1
    boot_rate_per_s: float = 0.0
    admit_max_loop_lag_s: float = 0.25
    admit_max_publishes: int = 5000
    admit_max_store_s: float = 2.0
    admit_retry_max_s: int = 120
    upgrade_rate_per_ip: float = 200.0
    upgrade_burst_per_ip: float = 1000.0
    upgrade_max_wait_s: float = 10.0
    ocpp21: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    log_level: str = "INFO"
    dlq_max_attempts: int = 5
    dlq_backoff_s: float = 0.2
    memory_retention_bytes: int = 8 << 20
    memory_retention_s: float = 86_400.0
    bus_max_record_bytes: int = 1 << 20
    batch_max_records: int = 500
    batch_linger_ms: float = 50.0
    kafka_linger_ms: int = 2
    kafka_batch_bytes: int = 64 << 10
    clock_floor: str = "2010-01-01T00:00:00Z"
    clock_max_ahead_s: float = 300.0
    meter_max_power_kw: float = 1000.0
    session_max_duration_h: float = 72.0
    session_max_energy_wh: int = 1_000_000
    session_idle_timeout_h: float = 24.0
    session_sweep_interval_s: float = 300.0
    tariff_cache_s: float = 30.0
    sessions_cache_entries: int = 10_000
    station_events_retention_days: float = 90.0
    files_dir: str = ""
    upload_max_bytes: int = 50 << 20
    upload_ttl_s: float = 3600.0
    upload_base_url: str = ""
    campaign_tick_s: float = 5.0
    campaign_station_timeout_s: float = 3600.0
    device_model_cache_stations: int = 500
    datatransfer_vendors: tuple[str, ...] = ()
    default_security_profile: int = 1            # load_settings: 2; csms run: 1
    ocpp_tls_port: int = 9443
    tls_client_ca: str = ""
    trusted_proxies: tuple[str, ...] = ()
    client_cert_header: str = ""
    metrics_on_ocpp_port: bool = False
    ws_ping_interval_s: float = 60.0
    ws_pong_timeout_s: float = 30.0
    ws_close_timeout_s: float = 5.0
    ws_send_buffer_bytes: int = 256 << 10
    auth_fail_limit: int = 5
    auth_fail_window_s: float = 60.0
    auth_lock_s: float = 60.0
    auth_station_fail_limit: int = 50
    auth_ip_fail_limit: int = 30
    auth_slow_max_s: float = 60.0
    auth_max_tracked: int = 100_000
    auth_station_cache_size: int = 200_000
    auth_station_cache_ttl_s: float = 10.0
    auth_station_negative_ttl_s: float = 2.0
    auth_reread_interval_s: float = 1.0
    auth_certificate_cache_ttl_s: float = 10.0
    auth_verified_ttl_s: float = 3600.0
    auth_scrypt_concurrency: int = 4
    ca_dir: str = ""
    ca_url: str = ""
    cert_validity_days: int = 365
    cert_renew_before_days: int = 30
    cert_renew_interval_s: float = 3600.0
    csr_min_rsa_bits: int = 2048
    ocsp_responder_url: str = ""
    ocsp_follow_station_url: bool = False
    contract_cert_provider: str = "none"
    pki_timeout_s: float = 5.0
    oidc_jwks_url: str = ""
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_role_claim: str = "roles"
    api_auth_fail_limit: int = 20
    audit_retention_days: float = 365.0
    local_list_tick_s: float = 5.0
    local_list_default_chunk: int = 100
    local_list_retry_s: float = 60.0
    reservation_tick_s: float = 10.0
    cost_update_interval_s: float = 60.0
    ev_voltage_v: float = 230.0
    smart_charging_reprobe_h: float = 24.0
    handshake_timeout_s: float = 10.0
    connection_queue_cap: int = 16
    msg_rate_per_s: float = 20.0
    msg_burst: float = 60.0
    command_concurrency: int = 256
    token_cache_ttl_s: float = 30.0
    token_cache_size: int = 100_000
    call_timeout_s: float = 30.0
    running_cost: bool = True
    ocpi_country_code: str = "DE"
    ocpi_party_id: str = "CSM"
    kafka_replication_factor: int = 1
    kafka_min_insync_replicas: int = 1
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_ssl_check_hostname: bool = True
    cassandra_username: str = ""
    cassandra_password: str = field(default="", repr=False)
    cassandra_ssl: bool = False
    cassandra_ssl_cafile: str = ""
    cassandra_ssl_certfile: str = ""
    cassandra_ssl_keyfile: str = ""
    cassandra_ssl_check_hostname: bool = True
    cassandra_replication_factor: int = 0
    cassandra_local_dc: str = ""
    readiness_probe_interval_s: float = 5.0
    readiness_probe_timeout_s: float = 2.0
    drain_window_s: float = 30.0
    loop_lag_interval_s: float = 0.5
    consumer_lag_interval_s: float = 5.0

    def with_overrides(self, **kw: Any) -> "Settings":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


# -- the table ---------------------------------------------------------------------------
# kind: how a value is read. "str?" = a string whose empty value is None; "list" = comma-
# separated names (empty items dropped); "cidrs" = comma-separated addresses or networks.
Kind = Literal["str", "str?", "int", "float", "bool", "list", "cidrs"]
_FIELD: Any = object()  # env_default of a row that has none: its field's default
_FIELDS = {f.name: f for f in fields(Settings)}


def field_default(name: str) -> Any:
    """The default of the `Settings` field `name` (its default_factory called); KeyError for
    a field `Settings` does not have, ValueError for one without a default."""
    f = _FIELDS[name]
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise ValueError(f"Settings.{name} has no default")


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the table. `field` None: read where it is used (`env_value`), before any
    `Settings` exists. The default is the field's (`Settings`); `env_default` is what is used
    when the variable is unset where that differs (a callable: computed at load), and the
    only default of a row without a field. `shown` is the docs' default when the value is
    computed. `empty_is_default`: an empty value means unset (always so for numbers and
    booleans). `check` returns an error text for a bad value."""

    variable: str
    field: str | None
    kind: Kind
    doc: str
    section: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    pattern: str = ""
    secret: bool = False
    env_default: Any = _FIELD
    shown: str = ""
    empty_is_default: bool = False
    check: Callable[[Any], str | None] | None = None

    def __post_init__(self) -> None:
        if self.field is None and self.env_default is _FIELD:
            raise ValueError(f"{self.variable}: a row without a field needs an env_default")
        if self.field is not None:
            if self.field not in _FIELDS:
                raise ValueError(f"{self.variable}: Settings has no field {self.field!r}")
            field_default(self.field)  # ValueError: a field without a default

    @property
    def default(self) -> Any:
        """The default as declared: the field's, or `env_default` (a callable not yet called)."""
        if self.env_default is not _FIELD:
            return self.env_default
        assert self.field is not None
        return field_default(self.field)

    def load_default(self) -> Any:
        d = self.default
        return d() if callable(d) else d


def _timestamp(value: Any) -> str | None:
    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        return f"{value!r} is not an ISO 8601 timestamp"
    return None


def _provider(value: Any) -> str | None:
    v = str(value)
    if v in ("none", "test") or re.match(r"^https?://\S+$", v):
        return None
    return f"{v!r} is not none, test or an http(s) URL"


# Sections in the order docs/configuration.md shows them.
SECTIONS: tuple[str, ...] = (
    "Processes and ports", "Bus and Kafka", "Kafka security", "Store and Cassandra", "Cassandra security",
    "Gateway", "Gateway limits", "Admission", "WebSockets", "Station authentication", "TLS and proxies",
    "Certificates", "Operator API", "Sessions and plausibility", "Station operations", "Drivers and energy",
    "Operations", "Logging and tracing", "Tests and tools",
)

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _rows() -> tuple[Setting, ...]:
    rows: list[Setting] = []

    def add(section: str, variable: str, fld: str, kind: Kind, doc: str, **kw: Any) -> None:
        rows.append(Setting(variable, fld, kind, doc, section, **kw))  # default: Settings.<fld>

    def early(section: str, variable: str, kind: Kind, default: Any, doc: str, **kw: Any) -> None:
        rows.append(Setting(variable, None, kind, doc, section, env_default=default, **kw))

    s = "Processes and ports"
    add(s, "CSMS_HOST", "host", "str", "listen address (`csms run`: 127.0.0.1 unless set)")
    add(s, "CSMS_OCPP_PORT", "ocpp_port", "int", "OCPP WebSocket port (also health and metrics of the gateway)", minimum=0, maximum=65535)
    add(s, "CSMS_API_PORT", "api_port", "int", "REST API port (also health and metrics of the API)", minimum=0, maximum=65535)
    add(s, "CSMS_METRICS_PORT", "metrics_port", "int", "processors' `/healthz` `/readyz` `/metrics` port (0 = off)", minimum=0, maximum=65535)
    add(s, "CSMS_GATEWAY_ID", "gateway_id", "str",
        "stable gateway id `gateway-N`; N is its command partition (ADR 001)",
        env_default=_default_gateway_id, shown="gateway-N from the host name's trailing -N, else gateway-0",
        empty_is_default=True, pattern=r"^\S*\d$")
    add(s, "CSMS_GATEWAY_WORKERS", "gateway_workers", "int",
        "SO_REUSEPORT gateway processes per pod (gateway role only); pods x workers <= CSMS_COMMANDS_PARTITIONS", minimum=1)
    add(s, "CSMS_API_KEY", "api_key", "str?",
        "bootstrap admin API key (`csms run` generates one into CSMS_STATE_DIR/api_key); never logged", secret=True)
    early(s, "CSMS_STATE_DIR", "str", ".csms", "where `csms run` keeps its generated API key, pepper and built-in CA")

    s = "Bus and Kafka"
    add(s, "CSMS_BUS_URL", "bus_url", "str", "`memory://` or `kafka://host:9092[,host2:9092]`", pattern=r"^(memory|kafka)://")
    early(s, "CSMS_TOPIC_PREFIX", "str", "", "prefixes every topic and consumer group (test runs sharing a broker); empty in production")
    add(s, "CSMS_EVENTS_PARTITIONS", "events_partitions", "int", "partitions of csms.events.v1 and the topics created with it", minimum=1)
    add(s, "CSMS_COMMANDS_PARTITIONS", "commands_partitions", "int",
        "partitions of csms.commands.v1; must be >= gateway pods x CSMS_GATEWAY_WORKERS", minimum=1)
    add(s, "CSMS_KAFKA_REPLICATION_FACTOR", "kafka_replication_factor", "int", "replication factor of topics the CSMS creates (chart: 3)", minimum=1)
    add(s, "CSMS_KAFKA_MIN_INSYNC_REPLICAS", "kafka_min_insync_replicas", "int", "min.insync.replicas of topics the CSMS creates (chart: 2)", minimum=1)
    add(s, "CSMS_BUS_MAX_RECORD_BYTES", "bus_max_record_bytes", "int",
        "largest bus record (producer max_request_size, topics' max.message.bytes); frame limits follow it", minimum=1024)
    add(s, "CSMS_BATCH_MAX_RECORDS", "batch_max_records", "int", "records per batch handed to a processor (ADR 015)", minimum=1)
    add(s, "CSMS_BATCH_LINGER_MS", "batch_linger_ms", "float", "how long a batch that is not full waits for more records", minimum=0)
    add(s, "CSMS_KAFKA_LINGER_MS", "kafka_linger_ms", "int", "Kafka producer: linger before a produce request", minimum=0)
    add(s, "CSMS_KAFKA_BATCH_BYTES", "kafka_batch_bytes", "int", "Kafka producer: largest produce batch per partition", minimum=1024)
    add(s, "CSMS_DLQ_MAX_ATTEMPTS", "dlq_max_attempts", "int", "tries of a failing record before it is dead-lettered (docs/dead-letters.md)", minimum=1)
    add(s, "CSMS_DLQ_BACKOFF_S", "dlq_backoff_s", "float", "first pause between tries; doubles, at most 5 s", minimum=0)
    add(s, "CSMS_MEMORY_RETENTION_BYTES", "memory_retention_bytes", "int", "`memory://` keeps this many bytes per partition ...", minimum=0)
    add(s, "CSMS_MEMORY_RETENTION_S", "memory_retention_s", "float", "... and no record older than this", minimum=0)

    s = "Kafka security"
    add(s, "CSMS_KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol", "str", "how the brokers are reached",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    add(s, "CSMS_KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism", "str", "SASL mechanism of the SASL_* protocols",
        choices=("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    add(s, "CSMS_KAFKA_SASL_USERNAME", "kafka_sasl_username", "str", "SASL user name")
    add(s, "CSMS_KAFKA_SASL_PASSWORD", "kafka_sasl_password", "str", "SASL password (from a Kubernetes secret)", secret=True)
    add(s, "CSMS_KAFKA_SSL_CAFILE", "kafka_ssl_cafile", "str", "PEM bundle the brokers' certificates must chain to (empty = system CAs)")
    add(s, "CSMS_KAFKA_SSL_CERTFILE", "kafka_ssl_certfile", "str", "client certificate for mutual TLS, PEM")
    add(s, "CSMS_KAFKA_SSL_KEYFILE", "kafka_ssl_keyfile", "str", "its private key, PEM")
    add(s, "CSMS_KAFKA_SSL_CHECK_HOSTNAME", "kafka_ssl_check_hostname", "bool", "check the brokers' host names against their certificates")

    s = "Store and Cassandra"
    add(s, "CSMS_STORE_URL", "store_url", "str", "`sqlite:///path.db` or `cassandra://host:9042/keyspace`",
        pattern=r"^(sqlite|cassandra)://")
    add(s, "CSMS_CASSANDRA_REPLICATION_FACTOR", "cassandra_replication_factor", "int",
        "keyspace replication factor (0 = the URL's ?replication=, else 1)", minimum=0)
    add(s, "CSMS_CASSANDRA_LOCAL_DC", "cassandra_local_dc", "str",
        "NetworkTopologyStrategy in this data centre and DC-aware routing (empty = SimpleStrategy)")
    add(s, "CSMS_STATION_EVENTS_RETENTION_DAYS", "station_events_retention_days", "float",
        "station history rows are kept this long (0 = forever)", minimum=0)
    add(s, "CSMS_AUDIT_RETENTION_DAYS", "audit_retention_days", "float", "audit entries are kept this long (0 = forever)", minimum=0)

    s = "Cassandra security"
    add(s, "CSMS_CASSANDRA_USERNAME", "cassandra_username", "str", "PasswordAuthenticator user name (empty = none)")
    add(s, "CSMS_CASSANDRA_PASSWORD", "cassandra_password", "str", "its password (from a Kubernetes secret)", secret=True)
    add(s, "CSMS_CASSANDRA_SSL", "cassandra_ssl", "bool", "TLS to the nodes")
    add(s, "CSMS_CASSANDRA_SSL_CAFILE", "cassandra_ssl_cafile", "str", "PEM bundle the nodes' certificates must chain to (empty = system CAs)")
    add(s, "CSMS_CASSANDRA_SSL_CERTFILE", "cassandra_ssl_certfile", "str", "client certificate (require_client_auth), PEM")
    add(s, "CSMS_CASSANDRA_SSL_KEYFILE", "cassandra_ssl_keyfile", "str", "its private key, PEM")
    add(s, "CSMS_CASSANDRA_SSL_CHECK_HOSTNAME", "cassandra_ssl_check_hostname", "bool", "check the nodes' host names against their certificates")

    s = "Gateway"
    add(s, "CSMS_OPEN_REGISTRATION", "open_registration", "bool", "accept (and register) unknown stations at connect")
    add(s, "CSMS_HEARTBEAT_INTERVAL", "heartbeat_interval", "int", "heartbeat interval (s) given to accepted stations", minimum=1)
    add(s, "CSMS_OCPP21", "ocpp21", "bool", "offer ocpp2.1 (handled like 2.0.1)")
    add(s, "CSMS_MAX_FRAME_BYTES", "max_frame_bytes", "int", "largest WebSocket frame; a larger one closes the socket (1009)", minimum=1024)
    add(s, "CSMS_MAX_JSON_DEPTH", "max_json_depth", "int", "deepest JSON nesting of an OCPP message", minimum=2)
    add(s, "CSMS_COMMAND_TIMEOUT", "command_timeout_s", "float", "seconds the API waits for a station's answer by default", minimum=0.1)
    add(s, "CSMS_DATATRANSFER_VENDORS", "datatransfer_vendors", "list",
        "DataTransfer vendor ids answered Accepted and republished; others get UnknownVendorId")
    add(s, "CSMS_RUNNING_COST", "running_cost", "bool", "the gateway prices transactions as they run (2.0.1 totalCost, running-cost DataTransfer)")
    add(s, "CSMS_METRICS_ON_OCPP_PORT", "metrics_on_ocpp_port", "bool", "serve /metrics on the OCPP port too (default: only on CSMS_METRICS_PORT)")

    s = "Gateway limits"
    add(s, "CSMS_HANDSHAKE_TIMEOUT_S", "handshake_timeout_s", "float", "whole WebSocket handshake, and slowloris on the upgrade request", minimum=0.1)
    add(s, "CSMS_CONNECTION_QUEUE_CAP", "connection_queue_cap", "int", "queued CALLs per connection before \"message flood\"", minimum=1)
    add(s, "CSMS_MSG_RATE_PER_S", "msg_rate_per_s", "float", "CALLs per second per connection (token bucket)", minimum=0.01)
    add(s, "CSMS_MSG_BURST", "msg_burst", "float", "... and the burst it saves up", minimum=1)
    add(s, "CSMS_COMMAND_CONCURRENCY", "command_concurrency", "int", "commands in flight per gateway", minimum=1)
    add(s, "CSMS_TOKEN_CACHE_TTL_S", "token_cache_ttl_s", "float", "authorization answers are cached this long ...", minimum=0)
    add(s, "CSMS_TOKEN_CACHE_SIZE", "token_cache_size", "int", "... and at most this many", minimum=1)
    add(s, "CSMS_CALL_TIMEOUT_S", "call_timeout_s", "float", "upper bound of a CSMS -> station CALL", minimum=0.1)

    s = "Admission"
    add(s, "CSMS_BOOT_RATE", "boot_rate_per_s", "float", "optional fixed cap on accepted BootNotifications per second per gateway (0 = none)", minimum=0)
    add(s, "CSMS_ADMIT_MAX_LOOP_LAG_S", "admit_max_loop_lag_s", "float", "overload: event-loop lag past which upgrades get 503 and boots Pending (0 = off)", minimum=0)
    add(s, "CSMS_ADMIT_MAX_PUBLISHES", "admit_max_publishes", "int", "overload: bus publishes in flight (0 = off)", minimum=0)
    add(s, "CSMS_ADMIT_MAX_STORE_S", "admit_max_store_s", "float", "overload: average store round trip of a handshake (0 = off)", minimum=0)
    add(s, "CSMS_ADMIT_RETRY_MAX_S", "admit_retry_max_s", "int", "longest Retry-After / Pending interval handed out", minimum=1)
    add(s, "CSMS_UPGRADE_RATE_PER_IP", "upgrade_rate_per_ip", "float", "WebSocket upgrades per second per remote address ...", minimum=0)
    add(s, "CSMS_UPGRADE_BURST_PER_IP", "upgrade_burst_per_ip", "float", "... the burst saved up ...", minimum=0)
    add(s, "CSMS_UPGRADE_MAX_WAIT_S", "upgrade_max_wait_s", "float", "... and the longest wait past the burst before 429", minimum=0)

    s = "WebSockets"
    add(s, "CSMS_WS_PING_INTERVAL_S", "ws_ping_interval_s", "float", "server ping period (0 = none); a station may override it", minimum=0)
    add(s, "CSMS_WS_PONG_TIMEOUT_S", "ws_pong_timeout_s", "float", "no pong this long after a ping closes the socket", minimum=1)
    add(s, "CSMS_WS_CLOSE_TIMEOUT_S", "ws_close_timeout_s", "float", "a close handshake the peer does not finish is aborted after this", minimum=0.1)
    add(s, "CSMS_WS_SEND_BUFFER_BYTES", "ws_send_buffer_bytes", "int", "unsent bytes a socket may hold before it is aborted", minimum=16 << 10)

    s = "Station authentication"
    early(s, "CSMS_AUTH_PEPPER", "str", "", "secret key of the password fingerprints (empty: random, kept in CSMS_STATE_DIR/pepper)", secret=True)
    add(s, "CSMS_DEFAULT_SECURITY_PROFILE", "default_security_profile", "int",
        "security profile of stations created without one (`csms run`: 1)", choices=(1, 2, 3), env_default=2)
    add(s, "CSMS_AUTH_FAIL_LIMIT", "auth_fail_limit", "int", "failures per (station, source) within the window before that pair is locked", minimum=1)
    add(s, "CSMS_AUTH_FAIL_WINDOW_S", "auth_fail_window_s", "float", "the failure window", minimum=1)
    add(s, "CSMS_AUTH_LOCK_S", "auth_lock_s", "float", "how long a (station, source) pair stays locked", minimum=0)
    add(s, "CSMS_AUTH_STATION_FAIL_LIMIT", "auth_station_fail_limit", "int", "failures per station (all sources) before its failing sources are slowed", minimum=1)
    add(s, "CSMS_AUTH_IP_FAIL_LIMIT", "auth_ip_fail_limit", "int", "failures per source address before it is slowed", minimum=1)
    add(s, "CSMS_AUTH_SLOW_MAX_S", "auth_slow_max_s", "float", "longest Retry-After a slowed source is given", minimum=1)
    add(s, "CSMS_AUTH_MAX_TRACKED", "auth_max_tracked", "int", "entries per failure table (pairs, stations, addresses); the oldest are evicted", minimum=1)
    add(s, "CSMS_AUTH_STATION_CACHE_SIZE", "auth_station_cache_size", "int", "gateway: stations (and their verified passwords and certificates) cached", minimum=1)
    add(s, "CSMS_AUTH_STATION_CACHE_TTL_S", "auth_station_cache_ttl_s", "float", "... for this long (a load shield: revocations invalidate at once)", minimum=0)
    add(s, "CSMS_AUTH_STATION_NEGATIVE_TTL_S", "auth_station_negative_ttl_s", "float", "an unknown station id is remembered this long", minimum=0)
    add(s, "CSMS_AUTH_REREAD_INTERVAL_S", "auth_reread_interval_s", "float", "a failed check re-reads the station at most this often", minimum=0)
    add(s, "CSMS_AUTH_CERTIFICATE_CACHE_TTL_S", "auth_certificate_cache_ttl_s", "float", "client-certificate checks are cached this long", minimum=0)
    add(s, "CSMS_AUTH_VERIFIED_TTL_S", "auth_verified_ttl_s", "float", "successful password checks (scrypt) are remembered this long", minimum=0)
    add(s, "CSMS_AUTH_SCRYPT_CONCURRENCY", "auth_scrypt_concurrency", "int", "scrypt password checks run at once per gateway", minimum=1)

    s = "TLS and proxies"
    add(s, "CSMS_TLS_CERT", "tls_cert", "str?", "server certificate chain (PEM) of the wss:// listener")
    add(s, "CSMS_TLS_KEY", "tls_key", "str?", "its private key (PEM)")
    add(s, "CSMS_OCPP_TLS_PORT", "ocpp_tls_port", "int", "wss:// port when CSMS_TLS_CERT/KEY are set (0 = none)", minimum=0, maximum=65535)
    add(s, "CSMS_TLS_CLIENT_CA", "tls_client_ca", "str", "PEM bundle client certificates (profile 3) must chain to (empty = the CA in CSMS_CA_DIR)")
    add(s, "CSMS_TRUSTED_PROXIES", "trusted_proxies", "cidrs", "CIDRs whose X-Forwarded-For and client-certificate header are believed")
    add(s, "CSMS_CLIENT_CERT_HEADER", "client_cert_header", "str", "header in which a trusted TLS-terminating proxy passes the client certificate (URL-encoded PEM)")

    s = "Certificates"
    add(s, "CSMS_CA_DIR", "ca_dir", "str", "built-in CA material (ca.pem, ca.key, ocsp.pem, ocsp.key); empty = no built-in CA")
    add(s, "CSMS_CA_URL", "ca_url", "str", "an external CA's signing endpoint instead of the built-in one")
    add(s, "CSMS_CERT_VALIDITY_DAYS", "cert_validity_days", "int", "lifetime of certificates issued to stations", minimum=1)
    add(s, "CSMS_CERT_RENEW_BEFORE_DAYS", "cert_renew_before_days", "int", "a station is asked for a new CSR this long before its certificate expires", minimum=0)
    add(s, "CSMS_CERT_RENEW_INTERVAL_S", "cert_renew_interval_s", "float", "how often certificates to renew or expire are looked for", minimum=1)
    add(s, "CSMS_CSR_MIN_RSA_BITS", "csr_min_rsa_bits", "int", "smallest RSA key a CSR may carry (EC: P-256 and P-384)", minimum=1024)
    add(s, "CSMS_OCSP_RESPONDER_URL", "ocsp_responder_url", "str", "GetCertificateStatus is forwarded to this OCSP responder (empty = the built-in CA's list)")
    add(s, "CSMS_OCSP_FOLLOW_STATION_URL", "ocsp_follow_station_url", "bool", "for other issuers, POST to the responder URL the station names")
    add(s, "CSMS_CONTRACT_CERT_PROVIDER", "contract_cert_provider", "str", "Get15118EVCertificate: none, test, or an http(s) URL",
        empty_is_default=True, check=_provider)
    add(s, "CSMS_PKI_TIMEOUT_S", "pki_timeout_s", "float", "each OCSP, provider and store call of those requests", minimum=0.1)

    s = "Operator API"
    add(s, "CSMS_OIDC_JWKS_URL", "oidc_jwks_url", "str", "accept OIDC bearer tokens signed by these keys (empty = API keys only)")
    add(s, "CSMS_OIDC_ISSUER", "oidc_issuer", "str", "required `iss` of OIDC tokens")
    add(s, "CSMS_OIDC_AUDIENCE", "oidc_audience", "str", "required `aud` of OIDC tokens")
    add(s, "CSMS_OIDC_ROLE_CLAIM", "oidc_role_claim", "str", "claim holding the caller's role(s)", empty_is_default=True)
    add(s, "CSMS_API_AUTH_FAIL_LIMIT", "api_auth_fail_limit", "int", "wrong API credentials per source address per minute before 429", minimum=1)
    add(s, "CSMS_OCPI_COUNTRY_CODE", "ocpi_country_code", "str", "OCPI CDR export: our country code (ISO 3166-1 alpha-2)", pattern=r"^[A-Za-z]{2}$")
    add(s, "CSMS_OCPI_PARTY_ID", "ocpi_party_id", "str", "OCPI CDR export: our party id", pattern=r"^[A-Za-z0-9]{3}$")

    s = "Sessions and plausibility"
    add(s, "CSMS_CLOCK_FLOOR", "clock_floor", "str", "station times before this are implausible", check=_timestamp)
    add(s, "CSMS_CLOCK_MAX_AHEAD_S", "clock_max_ahead_s", "float", "... and so are times this far ahead of the receive time", minimum=0)
    add(s, "CSMS_METER_MAX_POWER_KW", "meter_max_power_kw", "float", "energy rising faster than this is implausible", minimum=0)
    add(s, "CSMS_SESSION_MAX_DURATION_H", "session_max_duration_h", "float",
        "longer sessions' CDRs are held; time-based prices stop here (not above 0: billing uses 72 and logs it)")
    add(s, "CSMS_SESSION_MAX_ENERGY_WH", "session_max_energy_wh", "int", "sessions with more energy are held from export", minimum=0)
    add(s, "CSMS_SESSION_IDLE_TIMEOUT_H", "session_idle_timeout_h", "float", "open sessions with no event this long are abandoned", minimum=0)
    add(s, "CSMS_SESSION_SWEEP_INTERVAL_S", "session_sweep_interval_s", "float", "how often the sessions processor looks for them", minimum=0.1)
    add(s, "CSMS_TARIFF_CACHE_S", "tariff_cache_s", "float", "sessions processor: a station's tariff and site are cached this long", minimum=0)
    add(s, "CSMS_SESSIONS_CACHE_ENTRIES", "sessions_cache_entries", "int", "sessions processor: sessions it wrote, kept decoded", minimum=0)

    s = "Station operations"
    add(s, "CSMS_FILES_DIR", "files_dir", "str", "uploaded files go to this directory (empty = the store; `csms run`: ./csms-files)")
    add(s, "CSMS_UPLOAD_MAX_BYTES", "upload_max_bytes", "int", "largest upload a slot takes", minimum=0)
    add(s, "CSMS_UPLOAD_TTL_S", "upload_ttl_s", "float", "how long an upload slot stays open", minimum=0)
    add(s, "CSMS_UPLOAD_BASE_URL", "upload_base_url", "str", "stations upload here (empty = http://127.0.0.1:<CSMS_OCPP_PORT>)")
    add(s, "CSMS_CAMPAIGN_TICK_S", "campaign_tick_s", "float", "the firmware campaign controller runs this often", minimum=0.1)
    add(s, "CSMS_CAMPAIGN_STATION_TIMEOUT_S", "campaign_station_timeout_s", "float", "a campaign's station without progress this long has failed", minimum=1)
    add(s, "CSMS_DEVICE_MODEL_CACHE_STATIONS", "device_model_cache_stations", "int", "device model stage: inventories it wrote, kept decoded (0 = none)", minimum=0)

    s = "Drivers and energy"
    add(s, "CSMS_LOCAL_LIST_TICK_S", "local_list_tick_s", "float", "the local-list sync loop looks for stations to sync this often", minimum=0.1)
    add(s, "CSMS_LOCAL_LIST_DEFAULT_CHUNK", "local_list_default_chunk", "int", "entries per SendLocalList when the station names no maximum", minimum=1)
    add(s, "CSMS_LOCAL_LIST_RETRY_S", "local_list_retry_s", "float", "a failed sync is tried again after this (doubling, at most 1 h)", minimum=1)
    add(s, "CSMS_RESERVATION_TICK_S", "reservation_tick_s", "float", "reservations past their expiry are marked Expired this often", minimum=0.1)
    add(s, "CSMS_COST_UPDATE_INTERVAL_S", "cost_update_interval_s", "float", "at most one CostUpdated / RunningCost per transaction this often (0 = never; 1.6 SetUserPrice and FinalCost still go)", minimum=0)
    add(s, "CSMS_EV_VOLTAGE_V", "ev_voltage_v", "float", "phase voltage that turns power and energy needs into a current", minimum=1)
    add(s, "CSMS_SMART_CHARGING_REPROBE_H", "smart_charging_reprobe_h", "float", "hours after which a station marked as not taking profiles is asked again, at its next session's start (0: only its next boot)", minimum=0)

    s = "Operations"
    add(s, "CSMS_READINESS_PROBE_INTERVAL_S", "readiness_probe_interval_s", "float", "API and processors probe the store and bus this often; /readyz reports the last probe", minimum=0.1)
    add(s, "CSMS_READINESS_PROBE_TIMEOUT_S", "readiness_probe_timeout_s", "float", "a probe slower than this has failed", minimum=0.1)
    add(s, "CSMS_DRAIN_WINDOW_S", "drain_window_s", "float", "gateway on SIGTERM: sockets are closed spread over this window, with jitter", minimum=0)
    add(s, "CSMS_LOOP_LAG_INTERVAL_S", "loop_lag_interval_s", "float", "event-loop lag is sampled this often (csms_event_loop_lag_seconds)", minimum=0.01)
    add(s, "CSMS_CONSUMER_LAG_INTERVAL_S", "consumer_lag_interval_s", "float", "consumer lag is measured this often, even while a handler is stuck", minimum=0.1)

    s = "Logging and tracing"
    add(s, "CSMS_LOG_LEVEL", "log_level", "str", "log level (operator tools and the simulator: WARNING when unset)", choices=_LOG_LEVELS)
    early(s, "CSMS_TRACE_SAMPLE_RATIO", "float", 0.01, "share of traces sampled when tracing is on", minimum=0, maximum=1)
    early(s, "CSMS_TRACE_CONSOLE", "bool", False, "turn tracing on with spans printed on stderr")
    early(s, "OTEL_EXPORTER_OTLP_ENDPOINT", "str", "", "turn tracing on with spans exported over OTLP/HTTP here (needs opentelemetry-exporter-otlp)")

    s = "Tests and tools"
    early(s, "CSMS_INFRA", "bool", False, "tests: run the tests that need the local Kafka and Cassandra (`make test` sets it)")
    early(s, "CSMS_SIM_URL", "str", "ws://127.0.0.1:9000/ocpp", "`csms simulate`: the OCPP endpoint base")
    early(s, "CSMS_SIM_API_URL", "str", "http://127.0.0.1:8080", "`csms simulate`: the REST API base (station registration)")
    return tuple(rows)


TABLE: tuple[Setting, ...] = _rows()
_BY_VARIABLE: dict[str, Setting] = {row.variable: row for row in TABLE}
_FIELD_ROWS: tuple[Setting, ...] = tuple(row for row in TABLE if row.field is not None)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _range(row: Setting) -> str:
    lo, hi = row.minimum, row.maximum
    if lo is not None and hi is not None:
        return f"{_num(lo)} to {_num(hi)}"
    return f">= {_num(lo)}" if lo is not None else f"<= {_num(hi)}"


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _parse(row: Setting, raw: str) -> Any:
    """The typed value of one variable, or ConfigError naming it."""
    name, kind = row.variable, row.kind
    value: Any
    text = raw if row.secret else raw.strip()
    if text == "" and (kind in ("int", "float", "bool") or row.empty_is_default):
        return row.load_default()
    if kind == "int":
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not an integer") from None
    elif kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not a number") from None
        if math.isnan(value):
            raise ConfigError(f"{name}: {raw!r} is not a number")
    elif kind == "bool":
        low = text.lower()
        if low not in _TRUE and low not in _FALSE:
            raise ConfigError(f"{name}: {raw!r} is not a boolean (true/false, 1/0, yes/no, on/off)")
        value = low in _TRUE
    elif kind == "str?":
        value = text or None
    elif kind == "list":
        value = tuple(v.strip() for v in text.split(",") if v.strip())
    elif kind == "cidrs":
        out = []
        for item in (v.strip() for v in text.split(",")):
            if not item:
                continue
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ConfigError(f"{name}: {item!r} is not an address or CIDR") from None
        value = tuple(out)
    else:
        value = text
    if row.choices:
        canonical = {str(c).casefold(): c for c in row.choices}
        key = str(value).casefold()
        if key not in canonical:
            shown = ", ".join(repr(c) if c == "" else str(c) for c in row.choices)
            raise ConfigError(f"{name}: {raw!r} is not one of {shown}")
        value = canonical[key]
    if (row.minimum is not None and value < row.minimum) or (row.maximum is not None and value > row.maximum):
        raise ConfigError(f"{name}: {raw!r} is out of range (allowed: {_range(row)})")
    if row.pattern and value and not re.search(row.pattern, str(value)):
        raise ConfigError(f"{name}: {raw!r} does not match {row.pattern}")
    if row.check is not None and (problem := row.check(value)) is not None:
        raise ConfigError(f"{name}: {problem}")
    return value


def env_value(variable: str, env: Mapping[str, str] | None = None) -> Any:
    """One declared variable's typed value (its default when unset); ConfigError when bad.
    For the rows read before `Settings` exists; a variable the table lacks is a KeyError."""
    row = _BY_VARIABLE[variable]
    raw = (os.environ if env is None else env).get(variable)
    return row.load_default() if raw is None else _parse(row, raw)


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """`CSMS_*` names in `env` the table does not declare (typos)."""
    return sorted(k for k in env if k.startswith("CSMS_") and k not in _BY_VARIABLE)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `env` (default: the process environment). Every bad variable is named
    in one ConfigError; unknown `CSMS_*` names are logged (a typo is otherwise silent)."""
    e = os.environ if env is None else env
    values: dict[str, Any] = {}
    errors: list[str] = []
    for row in _FIELD_ROWS:
        assert row.field is not None
        raw = e.get(row.variable)
        try:
            values[row.field] = row.load_default() if raw is None else _parse(row, raw)
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError(errors[0] if len(errors) == 1 else "bad settings: " + "; ".join(errors))
    for name in unknown_variables(e):
        log.warning("%s is not a setting of this version (docs/configuration.md); ignored", name)
    return Settings(**values)


# -- docs/configuration.md ---------------------------------------------------------------
_TYPES = {"str": "string", "str?": "string", "int": "integer", "float": "number", "bool": "boolean",
          "list": "list (comma-separated)", "cidrs": "CIDRs (comma-separated)"}

_INTRO = """\
# Configuration

Every setting of the CSMS is an environment variable, read and checked when a process
starts: a bad value stops it with a message naming the variable (for example
`CSMS_OCPP_PORT: 'abc' is not an integer`), and an unknown `CSMS_*` name is logged as a
warning. Numbers and booleans left empty take their default. Booleans are `true`/`false`,
`1`/`0`, `yes`/`no` or `on`/`off`; choices are not case-sensitive. Secrets are never
logged; in Kubernetes they come from secrets (see the chart's values). A few settings also
have a command-line flag of the same name (`csms run --ocpp-port 9000`), which wins.

Generated from the table in `services/common/config.py` by
`python -m services.common.config --markdown > docs/configuration.md`; do not edit by hand
(tests/unit/common/test_config_table.py checks that it is current).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _shown_default(row: Setting) -> str:
    if row.secret:
        return "(secret)"
    if row.shown:
        return row.shown
    d = row.default
    if d is None or d == "" or d == ():
        return "(empty)"
    if isinstance(d, bool):
        return "`true`" if d else "`false`"
    if isinstance(d, tuple):
        return "`" + ",".join(d) + "`"
    return f"`{_num(d)}`"


def _shown_type(row: Setting) -> str:
    if row.choices:
        return "one of " + ", ".join("(empty)" if c == "" else f"`{c}`" for c in row.choices)
    text = _TYPES[row.kind]
    if row.minimum is not None or row.maximum is not None:
        text += ", " + _range(row).replace(">=", "≥").replace("<=", "≤")
    return text


def markdown() -> str:
    """docs/configuration.md: the introduction, then one table per section."""
    out = [_INTRO]
    for section in SECTIONS:
        rows = [r for r in TABLE if r.section == section]
        if not rows:
            continue
        out.append(f"\n## {section}\n\n| Variable | Type | Default | Description |\n|---|---|---|---|\n")
        for r in rows:
            out.append(f"| `{r.variable}` | {_cell(_shown_type(r))} | {_cell(_shown_default(r))} | {_cell(r.doc)} |\n")
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["--markdown"]:
        print("usage: python -m services.common.config --markdown", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Settings from the environment (and matching CLI flags). Names are a public contract."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field, replace
from typing import Any

from services.common.errors import ConfigError

__all__ = ["Settings", "load_settings", "gateway_ordinal"]


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _profile(value: str) -> int:
    p = int(value)
    if p not in (1, 2, 3):
        raise ConfigError(f"CSMS_DEFAULT_SECURITY_PROFILE must be 1, 2 or 3, not {value!r}")
    return p


def _cidrs(value: str) -> tuple[str, ...]:
    """Comma-separated CIDRs (or addresses), checked now so a typo fails at start."""
    out = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError as exc:
            raise ConfigError(f"CSMS_TRUSTED_PROXIES: {item!r} is not an address or CIDR") from exc
    return tuple(out)


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
    bus_url: str = "memory://"
    store_url: str = "sqlite:///./csms.db"
    host: str = "0.0.0.0"
    ocpp_port: int = 9000
    api_port: int = 8080
    metrics_port: int = 9100               # processors' /healthz /readyz /metrics (0 = off)
    gateway_id: str = "gateway-0"
    api_key: str | None = field(default=None, repr=False)  # bootstrap admin key: never in a repr or log
    open_registration: bool = False
    heartbeat_interval: int = 300
    max_frame_bytes: int = 1 << 20
    max_json_depth: int = 32
    command_timeout_s: float = 30.0
    events_partitions: int = 12
    commands_partitions: int = 16          # >= gateway pods x gateway_workers (ADR 001)
    gateway_workers: int = 1               # SO_REUSEPORT gateway processes per pod, gateway role only (services/gateway/workers.py)
    boot_rate_per_s: float = 0.0           # optional fixed cap on Accepted boots per second per pod (0 = none)
    # Admission by measured overload (services/gateway/admission.py): upgrades answered 503
    # and boots Pending while one signal is past its threshold (0 switches a signal off).
    admit_max_loop_lag_s: float = 0.25
    admit_max_publishes: int = 5000        # bus publishes in flight
    admit_max_store_s: float = 2.0         # EWMA of the handshake's store round trip (handshake timeout: 10 s)
    admit_retry_max_s: int = 120           # longest Retry-After / Pending interval handed out
    # Per remote address: rate and burst of upgrades; past the burst an upgrade waits up
    # to upgrade_max_wait_s (a site's chargers behind one NAT address), beyond it 429.
    upgrade_rate_per_ip: float = 200.0
    upgrade_burst_per_ip: float = 1000.0
    upgrade_max_wait_s: float = 10.0
    ocpp21: bool = False                   # offer ocpp2.1 (library schemas; handled like 2.0.1)
    tls_cert: str | None = None
    tls_key: str | None = None
    log_level: str = "INFO"
    # Dead letters (docs/dead-letters.md): tries per record before it is dead-lettered,
    # and the first back-off between tries (doubles, capped at 5 s).
    dlq_max_attempts: int = 5
    dlq_backoff_s: float = 0.2
    # memory:// keeps a bounded window per partition, like Kafka's retention.
    memory_retention_bytes: int = 8 << 20
    memory_retention_s: float = 86_400.0
    # Largest record the bus accepts (Kafka producer max_request_size; topics we create
    # get max.message.bytes to match). The gateway sizes per-action frame limits from it.
    bus_max_record_bytes: int = 1 << 20
    # Batch consumption (ADR 015): records per batch handed to a processor, and how long
    # a batch that is not full may wait for more (both buses; bench/bus_batches.py --live-rate).
    batch_max_records: int = 500
    batch_linger_ms: float = 50.0
    # Kafka producer (bus adapter defaults): linger before a produce request, and the
    # largest produce batch per partition.
    kafka_linger_ms: int = 2
    kafka_batch_bytes: int = 64 << 10
    # Plausibility (docs/plausibility.md)
    clock_floor: str = "2010-01-01T00:00:00Z"   # station times before this are suspect
    clock_max_ahead_s: float = 300.0             # ... and so are times this far ahead of ours
    meter_max_power_kw: float = 1000.0           # energy jumps beyond kW x elapsed are implausible
    session_max_duration_h: float = 72.0         # longer sessions' CDRs are held from export
    session_max_energy_wh: int = 1_000_000       # ... and so are CDRs of more energy
    session_idle_timeout_h: float = 24.0         # open sessions with no event this long are abandoned
    session_sweep_interval_s: float = 300.0      # how often the sweeper looks
    tariff_cache_s: float = 30.0                 # sessions processor: station tariff/site cached this long
    sessions_cache_entries: int = 10_000         # sessions processor: sessions it wrote, kept decoded
    # Station operations (ADR 016): history retention, where files go, the log upload slots.
    station_events_retention_days: float = 90.0  # station history rows kept this long (0 = forever)
    files_dir: str = ""                          # uploaded files in this directory ("" = in the store)
    upload_max_bytes: int = 50 << 20             # largest upload a slot takes
    upload_ttl_s: float = 3600.0                 # how long an upload slot stays open
    upload_base_url: str = ""                    # stations upload here ("" = http://127.0.0.1:<ocpp_port>)
    campaign_tick_s: float = 5.0                 # the firmware campaign controller runs this often
    campaign_station_timeout_s: float = 3600.0   # a campaign's station with no progress this long has failed
    device_model_cache_stations: int = 500       # device model stage: inventories it wrote, kept decoded (0 = none)
    datatransfer_vendors: tuple[str, ...] = ()   # DataTransfer vendor ids answered Accepted (and republished); others UnknownVendorId
    # Security (ADR 017, docs/security.md).
    default_security_profile: int = 1            # profile given to stations created without one (load_settings: 2; csms run: 1)
    ocpp_tls_port: int = 9443                    # wss:// listener when CSMS_TLS_CERT/KEY are set (0 = none)
    tls_client_ca: str = ""                      # PEM bundle that client certificates (profile 3) must chain to ("" = the CA in ca_dir)
    trusted_proxies: tuple[str, ...] = ()        # CIDRs whose X-Forwarded-For / client-certificate header are believed
    client_cert_header: str = ""                 # header a trusted TLS-terminating proxy puts the client certificate in (URL-encoded PEM)
    metrics_on_ocpp_port: bool = False           # serve /metrics on the OCPP port too (default: only on metrics_port)
    ws_ping_interval_s: float = 60.0             # server WebSocket ping period (0 = none); a station may override it
    ws_pong_timeout_s: float = 30.0              # no pong this long after a ping: the socket is closed
    ws_close_timeout_s: float = 5.0              # a close handshake the peer does not finish is aborted after this
    ws_send_buffer_bytes: int = 256 << 10        # unsent bytes a socket may hold before it is aborted (a peer that stops reading)
    auth_fail_limit: int = 5                     # failures per (station, source) within auth_fail_window_s before that pair is locked
    auth_fail_window_s: float = 60.0
    auth_lock_s: float = 60.0                    # how long a (station, source) pair stays locked
    auth_station_fail_limit: int = 50            # failures per station (all sources) in the window before failing sources are slowed
    auth_ip_fail_limit: int = 30                 # failures per source address in the window before it is slowed
    auth_slow_max_s: float = 60.0                # longest Retry-After a slowed source is given
    ca_dir: str = ""                             # built-in CA material (ca.pem, ca.key, ocsp.pem, ocsp.key); "" = no built-in CA
    ca_url: str = ""                             # an external CA's signing endpoint instead of the built-in one
    cert_validity_days: int = 365                # lifetime of certificates the CA issues to stations
    cert_renew_before_days: int = 30             # ask a station for a new CSR this long before its certificate expires
    cert_renew_interval_s: float = 3600.0        # how often the certificates processor looks for certificates to renew or expire
    csr_min_rsa_bits: int = 2048                 # smallest RSA key a CSR may carry (EC: P-256 and P-384)
    ocsp_responder_url: str = ""                 # GetCertificateStatus: forward to this OCSP responder ("" = the built-in CA's list)
    ocsp_follow_station_url: bool = False        # GetCertificateStatus for other issuers: POST to the responderURL the station names
    contract_cert_provider: str = "none"         # Get15118EVCertificate: "none", "test", or an http(s) URL
    pki_timeout_s: float = 5.0                   # GetCertificateStatus / Get15118EVCertificate: OCSP, provider and store calls, each
    oidc_jwks_url: str = ""                      # operator API: accept OIDC bearer tokens signed by these keys ("" = API keys only)
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_role_claim: str = "roles"               # claim holding the caller's role(s)
    api_auth_fail_limit: int = 20                # wrong API credentials per source address per minute before 429
    audit_retention_days: float = 365.0         # audit entries kept this long (0 = forever)
    # Drivers and energy (ADR 018, docs/drivers-and-energy.md).
    local_list_tick_s: float = 5.0               # the local-list sync loop looks for stations to sync this often
    local_list_default_chunk: int = 100          # entries per SendLocalList when the station reported no maximum
    local_list_retry_s: float = 60.0             # a failed or unconfirmed sync is tried again after this (doubling, at most 1 h)
    reservation_tick_s: float = 10.0             # reservations past their expiry are marked Expired this often
    cost_update_interval_s: float = 60.0         # at most one CostUpdated / RunningCost per transaction this often (0 = never)
    ev_voltage_v: float = 230.0                  # phase voltage assumed to turn an EV's energy need into a current
    # Gateway limits (formerly Settings.extra; services/gateway/limits.py Limits).
    handshake_timeout_s: float = 10.0            # whole WebSocket handshake, and slowloris on the upgrade request
    connection_queue_cap: int = 16               # queued CALLs per connection before "message flood"
    msg_rate_per_s: float = 20.0                 # CALLs per second per connection (token bucket)
    msg_burst: float = 60.0                      # ... and the burst it saves up
    command_concurrency: int = 256               # commands in flight per gateway
    token_cache_ttl_s: float = 30.0              # gateway: authorization answers cached this long
    token_cache_size: int = 100_000              # ... and at most this many
    call_timeout_s: float = 30.0                 # CSMS -> station CALL, upper bound
    running_cost: bool = True                    # gateway answers running-cost DataTransfers / keeps the running cost
    ocpi_country_code: str = "DE"                # OCPI CDR export: our country code
    ocpi_party_id: str = "CSM"                   # OCPI CDR export: our party id
    # Kafka on a real cluster (ADR 019, docs/configuration.md).
    kafka_replication_factor: int = 1            # replication factor of topics the CSMS creates (chart: 3)
    kafka_min_insync_replicas: int = 1           # min.insync.replicas of topics the CSMS creates (chart: 2)
    kafka_security_protocol: str = "PLAINTEXT"   # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    kafka_sasl_mechanism: str = ""               # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* protocols)
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""                   # PEM bundle the brokers' certificates must chain to ("" = system CAs)
    kafka_ssl_certfile: str = ""                 # client certificate (mutual TLS), PEM
    kafka_ssl_keyfile: str = ""                  # its key, PEM
    kafka_ssl_check_hostname: bool = True
    # Cassandra on a real cluster.
    cassandra_username: str = ""                 # PasswordAuthenticator credentials ("" = none)
    cassandra_password: str = field(default="", repr=False)
    cassandra_ssl: bool = False                  # TLS to the nodes
    cassandra_ssl_cafile: str = ""               # PEM bundle the nodes' certificates must chain to ("" = system CAs)
    cassandra_ssl_certfile: str = ""             # client certificate (require_client_auth), PEM
    cassandra_ssl_keyfile: str = ""
    cassandra_ssl_check_hostname: bool = True
    cassandra_replication_factor: int = 0        # keyspace replication factor (0 = the URL's ?replication=, else 1)
    cassandra_local_dc: str = ""                 # NetworkTopologyStrategy in this data centre, DC-aware routing ("" = SimpleStrategy)
    # Operations (ADR 019): readiness, drain, loop and lag measurement.
    readiness_probe_interval_s: float = 5.0      # API/processors: the store and bus are probed this often; /readyz reports the last probe
    readiness_probe_timeout_s: float = 2.0       # a probe slower than this counts as failed
    drain_window_s: float = 30.0                 # gateway on SIGTERM: sockets are closed spread over this window (with jitter)
    loop_lag_interval_s: float = 0.5             # event-loop lag is sampled this often (csms_event_loop_lag_seconds)
    consumer_lag_interval_s: float = 5.0         # consumer lag is measured this often, whether or not handlers make progress
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **kw: Any) -> "Settings":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


def load_settings(env: dict[str, str] | None = None) -> Settings:
    e = os.environ if env is None else env
    try:
        return Settings(
            bus_url=e.get("CSMS_BUS_URL", "memory://"),
            store_url=e.get("CSMS_STORE_URL", "sqlite:///./csms.db"),
            host=e.get("CSMS_HOST", "0.0.0.0"),
            ocpp_port=int(e.get("CSMS_OCPP_PORT", "9000")),
            api_port=int(e.get("CSMS_API_PORT", "8080")),
            metrics_port=int(e.get("CSMS_METRICS_PORT", "9100")),
            gateway_id=e.get("CSMS_GATEWAY_ID") or _default_gateway_id(),
            api_key=e.get("CSMS_API_KEY") or None,
            open_registration=_bool(e.get("CSMS_OPEN_REGISTRATION")),
            heartbeat_interval=int(e.get("CSMS_HEARTBEAT_INTERVAL", "300")),
            max_frame_bytes=int(e.get("CSMS_MAX_FRAME_BYTES", str(1 << 20))),
            command_timeout_s=float(e.get("CSMS_COMMAND_TIMEOUT", "30")),
            events_partitions=int(e.get("CSMS_EVENTS_PARTITIONS", "12")),
            commands_partitions=int(e.get("CSMS_COMMANDS_PARTITIONS", "16")),
            gateway_workers=max(1, int(e.get("CSMS_GATEWAY_WORKERS", "1") or 1)),
            boot_rate_per_s=float(e.get("CSMS_BOOT_RATE", "0")),
            admit_max_loop_lag_s=float(e.get("CSMS_ADMIT_MAX_LOOP_LAG_S", "0.25")),
            admit_max_publishes=int(e.get("CSMS_ADMIT_MAX_PUBLISHES", "5000")),
            admit_max_store_s=float(e.get("CSMS_ADMIT_MAX_STORE_S", "2.0")),
            admit_retry_max_s=int(e.get("CSMS_ADMIT_RETRY_MAX_S", "120")),
            upgrade_rate_per_ip=float(e.get("CSMS_UPGRADE_RATE_PER_IP", "200")),
            upgrade_burst_per_ip=float(e.get("CSMS_UPGRADE_BURST_PER_IP", "1000")),
            upgrade_max_wait_s=float(e.get("CSMS_UPGRADE_MAX_WAIT_S", "10")),
            ocpp21=_bool(e.get("CSMS_OCPP21")),
            tls_cert=e.get("CSMS_TLS_CERT") or None,
            tls_key=e.get("CSMS_TLS_KEY") or None,
            log_level=e.get("CSMS_LOG_LEVEL", "INFO"),
            dlq_max_attempts=max(1, int(e.get("CSMS_DLQ_MAX_ATTEMPTS", "5"))),
            dlq_backoff_s=float(e.get("CSMS_DLQ_BACKOFF_S", "0.2")),
            memory_retention_bytes=int(e.get("CSMS_MEMORY_RETENTION_BYTES", str(8 << 20))),
            memory_retention_s=float(e.get("CSMS_MEMORY_RETENTION_S", "86400")),
            bus_max_record_bytes=int(e.get("CSMS_BUS_MAX_RECORD_BYTES", str(1 << 20))),
            batch_max_records=max(1, int(e.get("CSMS_BATCH_MAX_RECORDS", "500"))),
            batch_linger_ms=max(0.0, float(e.get("CSMS_BATCH_LINGER_MS", "50"))),
            kafka_linger_ms=max(0, int(e.get("CSMS_KAFKA_LINGER_MS", "2"))),
            kafka_batch_bytes=max(1024, int(e.get("CSMS_KAFKA_BATCH_BYTES", str(64 << 10)))),
            clock_floor=e.get("CSMS_CLOCK_FLOOR", "2010-01-01T00:00:00Z"),
            clock_max_ahead_s=float(e.get("CSMS_CLOCK_MAX_AHEAD_S", "300")),
            meter_max_power_kw=float(e.get("CSMS_METER_MAX_POWER_KW", "1000")),
            session_max_duration_h=float(e.get("CSMS_SESSION_MAX_DURATION_H", "72")),
            session_max_energy_wh=int(e.get("CSMS_SESSION_MAX_ENERGY_WH", "1000000")),
            session_idle_timeout_h=float(e.get("CSMS_SESSION_IDLE_TIMEOUT_H", "24")),
            session_sweep_interval_s=float(e.get("CSMS_SESSION_SWEEP_INTERVAL_S", "300")),
            tariff_cache_s=max(0.0, float(e.get("CSMS_TARIFF_CACHE_S", "30"))),
            sessions_cache_entries=max(0, int(e.get("CSMS_SESSIONS_CACHE_ENTRIES", "10000"))),
            station_events_retention_days=max(0.0, float(e.get("CSMS_STATION_EVENTS_RETENTION_DAYS", "90"))),
            files_dir=e.get("CSMS_FILES_DIR", ""),
            upload_max_bytes=max(0, int(e.get("CSMS_UPLOAD_MAX_BYTES", str(50 << 20)))),
            upload_ttl_s=max(0.0, float(e.get("CSMS_UPLOAD_TTL_S", "3600"))),
            upload_base_url=e.get("CSMS_UPLOAD_BASE_URL", ""),
            campaign_tick_s=max(0.1, float(e.get("CSMS_CAMPAIGN_TICK_S", "5"))),
            campaign_station_timeout_s=max(1.0, float(e.get("CSMS_CAMPAIGN_STATION_TIMEOUT_S", "3600"))),
            device_model_cache_stations=max(0, int(e.get("CSMS_DEVICE_MODEL_CACHE_STATIONS", "500"))),
            datatransfer_vendors=tuple(v.strip() for v in e.get("CSMS_DATATRANSFER_VENDORS", "").split(",") if v.strip()),
            default_security_profile=_profile(e.get("CSMS_DEFAULT_SECURITY_PROFILE", "2")),
            ocpp_tls_port=int(e.get("CSMS_OCPP_TLS_PORT", "9443")),
            tls_client_ca=e.get("CSMS_TLS_CLIENT_CA", ""),
            trusted_proxies=_cidrs(e.get("CSMS_TRUSTED_PROXIES", "")),
            client_cert_header=e.get("CSMS_CLIENT_CERT_HEADER", "").strip(),
            metrics_on_ocpp_port=_bool(e.get("CSMS_METRICS_ON_OCPP_PORT")),
            ws_ping_interval_s=max(0.0, float(e.get("CSMS_WS_PING_INTERVAL_S", "60"))),
            ws_pong_timeout_s=max(1.0, float(e.get("CSMS_WS_PONG_TIMEOUT_S", "30"))),
            ws_close_timeout_s=max(0.1, float(e.get("CSMS_WS_CLOSE_TIMEOUT_S", "5"))),
            ws_send_buffer_bytes=max(16 << 10, int(e.get("CSMS_WS_SEND_BUFFER_BYTES", str(256 << 10)))),
            auth_fail_limit=max(1, int(e.get("CSMS_AUTH_FAIL_LIMIT", "5"))),
            auth_fail_window_s=max(1.0, float(e.get("CSMS_AUTH_FAIL_WINDOW_S", "60"))),
            auth_lock_s=max(0.0, float(e.get("CSMS_AUTH_LOCK_S", "60"))),
            auth_station_fail_limit=max(1, int(e.get("CSMS_AUTH_STATION_FAIL_LIMIT", "50"))),
            auth_ip_fail_limit=max(1, int(e.get("CSMS_AUTH_IP_FAIL_LIMIT", "30"))),
            auth_slow_max_s=max(1.0, float(e.get("CSMS_AUTH_SLOW_MAX_S", "60"))),
            ca_dir=e.get("CSMS_CA_DIR", ""),
            ca_url=e.get("CSMS_CA_URL", ""),
            cert_validity_days=max(1, int(e.get("CSMS_CERT_VALIDITY_DAYS", "365"))),
            cert_renew_before_days=max(0, int(e.get("CSMS_CERT_RENEW_BEFORE_DAYS", "30"))),
            cert_renew_interval_s=max(1.0, float(e.get("CSMS_CERT_RENEW_INTERVAL_S", "3600"))),
            csr_min_rsa_bits=max(1024, int(e.get("CSMS_CSR_MIN_RSA_BITS", "2048"))),
            ocsp_responder_url=e.get("CSMS_OCSP_RESPONDER_URL", ""),
            ocsp_follow_station_url=_bool(e.get("CSMS_OCSP_FOLLOW_STATION_URL")),
            contract_cert_provider=e.get("CSMS_CONTRACT_CERT_PROVIDER", "none").strip() or "none",
            pki_timeout_s=max(0.1, float(e.get("CSMS_PKI_TIMEOUT_S", "5"))),
            oidc_jwks_url=e.get("CSMS_OIDC_JWKS_URL", ""),
            oidc_issuer=e.get("CSMS_OIDC_ISSUER", ""),
            oidc_audience=e.get("CSMS_OIDC_AUDIENCE", ""),
            oidc_role_claim=e.get("CSMS_OIDC_ROLE_CLAIM", "roles") or "roles",
            api_auth_fail_limit=max(1, int(e.get("CSMS_API_AUTH_FAIL_LIMIT", "20"))),
            audit_retention_days=max(0.0, float(e.get("CSMS_AUDIT_RETENTION_DAYS", "365"))),
            local_list_tick_s=max(0.1, float(e.get("CSMS_LOCAL_LIST_TICK_S", "5"))),
            local_list_default_chunk=max(1, int(e.get("CSMS_LOCAL_LIST_DEFAULT_CHUNK", "100"))),
            local_list_retry_s=max(1.0, float(e.get("CSMS_LOCAL_LIST_RETRY_S", "60"))),
            reservation_tick_s=max(0.1, float(e.get("CSMS_RESERVATION_TICK_S", "10"))),
            cost_update_interval_s=max(0.0, float(e.get("CSMS_COST_UPDATE_INTERVAL_S", "60"))),
            ev_voltage_v=max(1.0, float(e.get("CSMS_EV_VOLTAGE_V", "230"))),
            handshake_timeout_s=float(e.get("CSMS_HANDSHAKE_TIMEOUT_S", "10")),
            connection_queue_cap=int(e.get("CSMS_CONNECTION_QUEUE_CAP", "16")),
            msg_rate_per_s=float(e.get("CSMS_MSG_RATE_PER_S", "20")),
            msg_burst=float(e.get("CSMS_MSG_BURST", "60")),
            command_concurrency=int(e.get("CSMS_COMMAND_CONCURRENCY", "256")),
            token_cache_ttl_s=float(e.get("CSMS_TOKEN_CACHE_TTL_S", "30")),
            token_cache_size=int(e.get("CSMS_TOKEN_CACHE_SIZE", "100000")),
            call_timeout_s=float(e.get("CSMS_CALL_TIMEOUT_S", "30")),
            running_cost=_bool(e.get("CSMS_RUNNING_COST"), True),
            ocpi_country_code=e.get("CSMS_OCPI_COUNTRY_CODE", "DE"),
            ocpi_party_id=e.get("CSMS_OCPI_PARTY_ID", "CSM"),
            kafka_replication_factor=int(e.get("CSMS_KAFKA_REPLICATION_FACTOR", "1")),
            kafka_min_insync_replicas=int(e.get("CSMS_KAFKA_MIN_INSYNC_REPLICAS", "1")),
            kafka_security_protocol=e.get("CSMS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            kafka_sasl_mechanism=e.get("CSMS_KAFKA_SASL_MECHANISM", ""),
            kafka_sasl_username=e.get("CSMS_KAFKA_SASL_USERNAME", ""),
            kafka_sasl_password=e.get("CSMS_KAFKA_SASL_PASSWORD", ""),
            kafka_ssl_cafile=e.get("CSMS_KAFKA_SSL_CAFILE", ""),
            kafka_ssl_certfile=e.get("CSMS_KAFKA_SSL_CERTFILE", ""),
            kafka_ssl_keyfile=e.get("CSMS_KAFKA_SSL_KEYFILE", ""),
            kafka_ssl_check_hostname=_bool(e.get("CSMS_KAFKA_SSL_CHECK_HOSTNAME"), True),
            cassandra_username=e.get("CSMS_CASSANDRA_USERNAME", ""),
            cassandra_password=e.get("CSMS_CASSANDRA_PASSWORD", ""),
            cassandra_ssl=_bool(e.get("CSMS_CASSANDRA_SSL")),
            cassandra_ssl_cafile=e.get("CSMS_CASSANDRA_SSL_CAFILE", ""),
            cassandra_ssl_certfile=e.get("CSMS_CASSANDRA_SSL_CERTFILE", ""),
            cassandra_ssl_keyfile=e.get("CSMS_CASSANDRA_SSL_KEYFILE", ""),
            cassandra_ssl_check_hostname=_bool(e.get("CSMS_CASSANDRA_SSL_CHECK_HOSTNAME"), True),
            cassandra_replication_factor=int(e.get("CSMS_CASSANDRA_REPLICATION_FACTOR", "0")),
            cassandra_local_dc=e.get("CSMS_CASSANDRA_LOCAL_DC", ""),
            readiness_probe_interval_s=float(e.get("CSMS_READINESS_PROBE_INTERVAL_S", "5")),
            readiness_probe_timeout_s=float(e.get("CSMS_READINESS_PROBE_TIMEOUT_S", "2")),
            drain_window_s=float(e.get("CSMS_DRAIN_WINDOW_S", "30")),
            loop_lag_interval_s=float(e.get("CSMS_LOOP_LAG_INTERVAL_S", "0.5")),
            consumer_lag_interval_s=float(e.get("CSMS_CONSUMER_LAG_INTERVAL_S", "5")),
        )
    except ValueError as exc:
        raise ConfigError(f"bad setting: {exc}") from exc

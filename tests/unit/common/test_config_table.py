"""The table of settings (services/common/config.py, ADR 019 §1): one row per tunable, the
dataclass agreeing with it and holding the defaults, load_settings failing fast with the
variable's name, and docs/configuration.md plus every `CSMS_*` name in the code, chart and
docs matching it."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import typing
from pathlib import Path

import pytest

from services.common import config
from services.common.config import (TABLE, Setting, Settings, env_value, field_default, load_settings, markdown,
                                    unknown_variables)
from services.common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
FIELD_ROWS = [r for r in TABLE if r.field is not None]
KNOWN = {r.variable for r in TABLE}
# The annotation each kind of row reads into.
ANNOTATIONS = {"str": str, "str?": str | None, "int": int, "float": float, "bool": bool,
               "list": tuple[str, ...], "cidrs": tuple[str, ...]}
# The types a field's default may have, per kind (bool is not an int here).
DEFAULT_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "str?": (str, type(None)), "int": (int,), "float": (float,),
                                             "bool": (bool,), "list": (tuple,), "cidrs": (tuple,)}


# -- the table and the dataclass -------------------------------------------------------------
def test_every_field_has_exactly_one_row_and_every_row_a_field_or_a_reason() -> None:
    fields = [f.name for f in dataclasses.fields(Settings)]
    rows = [r.field for r in FIELD_ROWS if r.field is not None]
    assert sorted(rows) == sorted(fields)
    assert len(set(rows)) == len(rows)
    variables = [r.variable for r in TABLE]
    assert len(set(variables)) == len(variables), "a variable is declared twice"
    assert "extra" not in fields


def test_the_types_of_the_table_are_the_dataclass_ones_and_so_are_its_defaults() -> None:
    hints = typing.get_type_hints(Settings)
    for row in FIELD_ROWS:
        assert row.field is not None
        assert hints[row.field] == ANNOTATIONS[row.kind], row.variable
        # a default of the type the loader reads (`= 5` on a float field would load as 5.0 only when set)
        default = field_default(row.field)
        assert type(default) in DEFAULT_TYPES[row.kind], (row.variable, default)
        if row.kind in ("list", "cidrs"):
            assert all(type(v) is str for v in default), row.variable
    # a field's default is written once, in the dataclass; a row names another only where load_settings differs
    overrides = {r.field: r for r in FIELD_ROWS if r.env_default is not config._FIELD}
    assert set(overrides) == {"default_security_profile", "gateway_id"}
    assert overrides["default_security_profile"].load_default() == 2 != field_default("default_security_profile")
    assert callable(overrides["gateway_id"].env_default)


def test_a_row_reads_its_default_from_a_real_field_or_carries_its_own() -> None:
    assert Setting("CSMS_X", "ocpp_port", "int", "doc", "Operations").load_default() == Settings().ocpp_port == 9000
    assert Setting("CSMS_X", None, "int", "doc", "Operations", env_default=3).load_default() == 3
    with pytest.raises(ValueError, match="^CSMS_X: Settings has no field 'ocpp_prot'$"):
        Setting("CSMS_X", "ocpp_prot", "int", "doc", "Operations")
    with pytest.raises(ValueError, match="^CSMS_X: a row without a field needs an env_default$"):
        Setting("CSMS_X", None, "int", "doc", "Operations")
    with pytest.raises(KeyError):
        field_default("ocpp_prot")


def test_rows_are_well_formed() -> None:
    for row in TABLE:
        assert re.fullmatch(r"(CSMS|OTEL)_[A-Z0-9_]+", row.variable), row.variable
        assert row.section in config.SECTIONS, row.variable
        assert row.doc and "\n" not in row.doc, row.variable
        # the documented default passes the row's own checks
        if row.kind in ("int", "float") and not row.secret:
            default = row.load_default()
            assert row.minimum is None or default >= row.minimum, row.variable
            assert row.maximum is None or default <= row.maximum, row.variable
        if row.choices:
            assert row.load_default() in row.choices, row.variable


def test_secrets_never_show() -> None:
    secrets = {r.field for r in FIELD_ROWS if r.secret}
    assert secrets == {"api_key", "kafka_sasl_password", "cassandra_password"}
    s = load_settings({"CSMS_API_KEY": "k-123456", "CSMS_KAFKA_SASL_PASSWORD": "p-123456", "CSMS_CASSANDRA_PASSWORD": "c-123456"})
    assert (s.api_key, s.kafka_sasl_password, s.cassandra_password) == ("k-123456", "p-123456", "c-123456")
    assert not {"k-123456", "p-123456", "c-123456"} & set(re.findall(r"[a-z]-\d+", repr(s)))
    doc = markdown()
    for row in TABLE:
        if row.secret:
            assert f"| `{row.variable}` | string | (secret) |" in doc


# -- load_settings ---------------------------------------------------------------------------
def test_the_defaults_of_an_empty_environment() -> None:
    s = load_settings({})
    assert s.default_security_profile == 2 and Settings().default_security_profile == 1  # csms run: 1
    assert re.fullmatch(r"gateway-\d+", s.gateway_id)
    assert dataclasses.replace(s, default_security_profile=1, gateway_id="gateway-0") == Settings()


@pytest.mark.parametrize("env, message", [
    ({"CSMS_OCPP_PORT": "abc"}, "CSMS_OCPP_PORT: 'abc' is not an integer"),
    ({"CSMS_DLQ_BACKOFF_S": "soon"}, "CSMS_DLQ_BACKOFF_S: 'soon' is not a number"),
    ({"CSMS_GATEWAY_WORKERS": "0"}, "CSMS_GATEWAY_WORKERS: '0' is out of range (allowed: >= 1)"),
    ({"CSMS_OCPP_PORT": "70000"}, "CSMS_OCPP_PORT: '70000' is out of range (allowed: 0 to 65535)"),
    ({"CSMS_WS_SEND_BUFFER_BYTES": "1024"}, "CSMS_WS_SEND_BUFFER_BYTES: '1024' is out of range (allowed: >= 16384)"),
    ({"CSMS_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CSMS_KAFKA_SECURITY_PROTOCOL: 'TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ({"CSMS_KAFKA_SASL_MECHANISM": "GSSAPI"}, "CSMS_KAFKA_SASL_MECHANISM: 'GSSAPI' is not one of"),
    ({"CSMS_LOG_LEVEL": "loud"}, "CSMS_LOG_LEVEL: 'loud' is not one of DEBUG"),
    ({"CSMS_DEFAULT_SECURITY_PROFILE": "4"}, "CSMS_DEFAULT_SECURITY_PROFILE: '4' is not one of 1, 2, 3"),
    ({"CSMS_CONTRACT_CERT_PROVIDER": "ftp://x"}, "CSMS_CONTRACT_CERT_PROVIDER: 'ftp://x' is not none, test or an http(s) URL"),
    ({"CSMS_TRUSTED_PROXIES": "10.0.0.0/8, nope"}, "CSMS_TRUSTED_PROXIES: 'nope' is not an address or CIDR"),
    ({"CSMS_OPEN_REGISTRATION": "maybe"}, "CSMS_OPEN_REGISTRATION: 'maybe' is not a boolean"),
    ({"CSMS_CLOCK_FLOOR": "yesterday"}, "CSMS_CLOCK_FLOOR: 'yesterday' is not an ISO 8601 timestamp"),
    ({"CSMS_OCPI_PARTY_ID": "TOOLONG"}, "CSMS_OCPI_PARTY_ID: 'TOOLONG' does not match"),
    ({"CSMS_BUS_URL": "amqp://x"}, "CSMS_BUS_URL: 'amqp://x' does not match"),
])
def test_a_bad_value_stops_the_start_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value).startswith(message)


def test_every_bad_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"CSMS_OCPP_PORT": "x", "CSMS_AUTH_FAIL_LIMIT": "0", "CSMS_API_PORT": "8081"})
    text = str(info.value)
    assert "CSMS_OCPP_PORT" in text and "CSMS_AUTH_FAIL_LIMIT" in text and "CSMS_API_PORT" not in text


def test_the_former_clamps_are_documented_minimums() -> None:
    # formerly max(1, ...) silently: now the minimum itself is accepted and below it refused
    assert load_settings({"CSMS_DLQ_MAX_ATTEMPTS": "1", "CSMS_KAFKA_BATCH_BYTES": "1024"}).dlq_max_attempts == 1
    for variable in ("CSMS_DLQ_MAX_ATTEMPTS", "CSMS_BATCH_MAX_RECORDS", "CSMS_AUTH_FAIL_LIMIT", "CSMS_CERT_VALIDITY_DAYS"):
        with pytest.raises(ConfigError, match=f"^{variable}: '0' is out of range"):
            load_settings({variable: "0"})


def test_values_are_typed_and_normalised() -> None:
    s = load_settings({
        "CSMS_OCPP_PORT": " 9001 ", "CSMS_OPEN_REGISTRATION": "Yes", "CSMS_RUNNING_COST": "off", "CSMS_BOOT_RATE": "2.5",
        "CSMS_LOG_LEVEL": "debug", "CSMS_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "CSMS_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "CSMS_DATATRANSFER_VENDORS": " com.acme, org.x ,,", "CSMS_TRUSTED_PROXIES": "10.1.2.3/8,::1",
        "CSMS_CONTRACT_CERT_PROVIDER": "", "CSMS_OIDC_ROLE_CLAIM": "", "CSMS_API_KEY": "", "CSMS_TLS_CERT": "/tls/crt",
        "CSMS_GATEWAY_WORKERS": "", "CSMS_GATEWAY_ID": "gateway-3",
    })
    assert (s.ocpp_port, s.open_registration, s.running_cost, s.boot_rate_per_s) == (9001, True, False, 2.5)
    assert (s.log_level, s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("DEBUG", "SASL_SSL", "SCRAM-SHA-512")
    assert s.datatransfer_vendors == ("com.acme", "org.x")
    assert s.trusted_proxies == ("10.0.0.0/8", "::1/128")
    assert (s.contract_cert_provider, s.oidc_role_claim, s.api_key, s.tls_cert) == ("none", "roles", None, "/tls/crt")
    assert (s.gateway_workers, s.gateway_id) == (1, "gateway-3")
    assert load_settings({"CSMS_CONTRACT_CERT_PROVIDER": "https://pki.example/ev"}).contract_cert_provider == "https://pki.example/ev"


def test_the_pinned_settings_of_issue_12_are_read() -> None:
    s = load_settings({
        "CSMS_KAFKA_REPLICATION_FACTOR": "3", "CSMS_KAFKA_MIN_INSYNC_REPLICAS": "2", "CSMS_KAFKA_SASL_USERNAME": "csms",
        "CSMS_KAFKA_SSL_CHECK_HOSTNAME": "false", "CSMS_CASSANDRA_SSL": "1", "CSMS_CASSANDRA_LOCAL_DC": "dc1",
        "CSMS_CASSANDRA_REPLICATION_FACTOR": "3", "CSMS_READINESS_PROBE_INTERVAL_S": "1", "CSMS_DRAIN_WINDOW_S": "0",
        "CSMS_RUNNING_COST": "false", "CSMS_OCPI_COUNTRY_CODE": "NL", "CSMS_OCPI_PARTY_ID": "ABC", "CSMS_MSG_BURST": "5",
    })
    assert (s.kafka_replication_factor, s.kafka_min_insync_replicas, s.kafka_sasl_username, s.kafka_ssl_check_hostname) == (3, 2, "csms", False)
    assert (s.cassandra_ssl, s.cassandra_local_dc, s.cassandra_replication_factor) == (True, "dc1", 3)
    assert (s.readiness_probe_interval_s, s.drain_window_s, s.running_cost, s.msg_burst) == (1.0, 0.0, False, 5.0)
    assert (s.ocpi_country_code, s.ocpi_party_id) == ("NL", "ABC")


def test_unknown_names_are_reported_and_the_early_variables_read_from_the_table() -> None:
    assert unknown_variables({"CSMS_OCPP_POTR": "1", "CSMS_INFRA": "1", "HOME": "/"}) == ["CSMS_OCPP_POTR"]
    assert env_value("CSMS_STATE_DIR", {}) == ".csms"
    assert env_value("CSMS_TRACE_SAMPLE_RATIO", {"CSMS_TRACE_SAMPLE_RATIO": "0.5"}) == 0.5
    assert env_value("CSMS_TRACE_CONSOLE", {"CSMS_TRACE_CONSOLE": "1"}) is True
    with pytest.raises(ConfigError, match=r"^CSMS_TRACE_SAMPLE_RATIO: '2' is out of range \(allowed: 0 to 1\)"):
        env_value("CSMS_TRACE_SAMPLE_RATIO", {"CSMS_TRACE_SAMPLE_RATIO": "2"})
    with pytest.raises(KeyError):
        env_value("CSMS_NOT_DECLARED", {})


def test_the_cli_refuses_to_start_on_a_bad_variable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from services.common import cli

    monkeypatch.setenv("CSMS_OCPP_PORT", "abc")
    assert cli.main(["migrate"]) == 2
    assert "CSMS_OCPP_PORT: 'abc' is not an integer" in capsys.readouterr().err


# -- docs/configuration.md and the names used elsewhere ---------------------------------------
def test_docs_configuration_md_is_generated_from_the_table() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == markdown(), (
        "docs/configuration.md is not the table's: run `.venv/bin/python -m services.common.config --markdown "
        "> docs/configuration.md`"
    )
    for row in TABLE:
        assert f"| `{row.variable}` |" in doc


def test_the_markdown_shows_types_bounds_and_defaults() -> None:
    doc = markdown()
    assert "| `CSMS_OCPP_PORT` | integer, 0 to 65535 | `9000` |" in doc
    assert "| `CSMS_GATEWAY_WORKERS` | integer, ≥ 1 | `1` |" in doc
    assert "| `CSMS_KAFKA_SECURITY_PROTOCOL` | one of `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL` | `PLAINTEXT` |" in doc
    assert "| `CSMS_DEFAULT_SECURITY_PROFILE` | one of `1`, `2`, `3` | `2` |" in doc
    assert "| `CSMS_RUNNING_COST` | boolean | `true` |" in doc
    assert config.main(["--nonsense"]) == 2


# Where `CSMS_*` names are written for operators: every one must be a declared setting.
SCANNED = ("services", "deploy", "docs", "bench", "README.md", "Makefile")
NAME = re.compile(r"(?<![A-Za-z0-9_])CSMS_[A-Z0-9_]*[A-Z0-9]_?")
# Test-harness names that are not settings of any process (none today: CSMS_INFRA is a row).
ALLOWED: frozenset[str] = frozenset()


def _declared(name: str) -> bool:
    if name in KNOWN or name in ALLOWED:
        return True
    # a prefix standing for a family (`CSMS_ADMIT_*`, prefix="CSMS_KAFKA" in code)
    stem = name if name.endswith("_") else name + "_"
    return any(v.startswith(stem) for v in KNOWN)


def _files() -> list[Path]:
    """The scanned files git knows or would add (not the engines deploy/local downloads)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", *SCANNED],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return sorted({ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()})


def test_every_csms_variable_named_in_code_chart_and_docs_is_declared() -> None:
    unknown: dict[str, list[str]] = {}
    for path in _files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for name in set(NAME.findall(text)):
            if not _declared(name):
                unknown.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not unknown, f"CSMS_* names without a row in services/common/config.py TABLE: {unknown}"


def test_the_scan_sees_the_chart_and_would_catch_a_stray_name() -> None:
    scanned = {str(p.relative_to(ROOT)) for p in _files()}
    assert "deploy/helm/csms/values.yaml" in scanned and "deploy/local/infra.sh" in scanned and "Makefile" in scanned
    assert not _declared("CSMS_OCPP_POTR") and _declared("CSMS_ADMIT_") and _declared("CSMS_KAFKA")
    assert NAME.findall("x _CSMS_ROOT_16 `CSMS_WS_*` CSMS_TLS_CERT/KEY") == ["CSMS_WS_", "CSMS_TLS_CERT"]


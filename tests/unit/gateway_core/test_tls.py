"""The `wss://` context and what a connection proves (services/gateway/tls.py)."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from services.common import pki
from services.common.config import Settings
from services.common.errors import ConfigError
from services.gateway.auth import Transport
from services.gateway.proxies import Forwarded
from services.gateway.tls import (
    TLS12_CIPHERS,
    ClientTrust,
    Refusal,
    client_ca_path,
    client_trust,
    listener_context,
    load_trust,
    server_context,
    transport_of,
)
from tests.support.certs import issue, make_ca, pem, write_pem

NOW = dt.datetime.now(dt.timezone.utc)
CA = make_ca("CSMS CA")
OTHER = make_ca("Other CA")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    cert, key = write_pem(tmp_path, "server", issue(CA, "localhost", server=True, client=False))
    bundle = tmp_path / "clients.pem"
    bundle.write_text(pem(CA.cert) + pem(OTHER.cert))
    return {"cert": str(cert), "key": str(key), "ca": str(bundle), "dir": str(tmp_path)}


# -- where the client CA comes from ----------------------------------------------------

def test_the_client_ca_setting_wins(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(pem(CA.cert))
    assert client_ca_path("/etc/clients.pem", str(tmp_path)) == "/etc/clients.pem"


def test_the_built_in_ca_is_the_default_when_it_exists(tmp_path: Path) -> None:
    assert client_ca_path("", str(tmp_path)) == ""
    (tmp_path / "ca.pem").write_text(pem(CA.cert))
    assert client_ca_path("", str(tmp_path)) == str(tmp_path / "ca.pem")
    assert client_ca_path("", "") == ""


def test_the_trust_bundle_holds_every_certificate(files: dict[str, str]) -> None:
    assert [c.subject for c in load_trust(files["ca"])] == [CA.cert.subject, OTHER.cert.subject]
    assert load_trust("") == []
    assert client_trust(Settings(tls_client_ca=files["ca"])).certificates[0] == CA.cert


def test_an_unreadable_or_empty_bundle_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CSMS_TLS_CLIENT_CA"):
        load_trust(str(tmp_path / "missing.pem"))
    (tmp_path / "empty.pem").write_text("nothing here\n")
    with pytest.raises(ConfigError, match="CSMS_TLS_CLIENT_CA"):
        load_trust(str(tmp_path / "empty.pem"))


# -- the server context ----------------------------------------------------------------------

def test_tls_1_2_minimum_ocpp_suites_and_client_certificates_optional(files: dict[str, str]) -> None:
    context = server_context(files["cert"], files["key"], files["ca"])
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_OPTIONAL
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == set(TLS12_CIPHERS.split(":"))


def test_without_a_client_ca_no_certificate_is_asked_for(files: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    context = server_context(files["cert"], files["key"], "")
    assert context.verify_mode == ssl.CERT_NONE
    assert "security profile 3 is unavailable" in caplog.text


@pytest.mark.parametrize("which, variable", [("cert", "CSMS_TLS_CERT"), ("key", "CSMS_TLS_KEY"), ("ca", "CSMS_TLS_CLIENT_CA")])
def test_an_unreadable_file_names_its_variable(files: dict[str, str], which: str, variable: str) -> None:
    paths = {**files, which: files["dir"] + "/does-not-exist.pem"}
    with pytest.raises(ConfigError, match=variable):
        server_context(paths["cert"], paths["key"], paths["ca"])


def test_a_key_that_is_not_the_certificates_is_a_config_error(files: dict[str, str], tmp_path: Path) -> None:
    _, other_key = write_pem(tmp_path / "other", "other", issue(CA, "x"))
    with pytest.raises(ConfigError, match="CSMS_TLS_CERT/CSMS_TLS_KEY"):
        server_context(files["cert"], str(other_key), files["ca"])


def test_the_listener_context_needs_both_files(files: dict[str, str]) -> None:
    assert listener_context(Settings()) is None
    with pytest.raises(ConfigError, match="CSMS_TLS_KEY"):
        listener_context(Settings(tls_cert=files["cert"]))
    with pytest.raises(ConfigError, match="CSMS_TLS_CERT"):
        listener_context(Settings(tls_key=files["key"]))
    context = listener_context(Settings(tls_cert=files["cert"], tls_key=files["key"], ca_dir=files["dir"]))
    assert context is not None and context.verify_mode == ssl.CERT_NONE  # no ca.pem in the dir


# -- what a connection proves ---------------------------------------------------------------

TRUST = ClientTrust((CA.cert,))


def der(cert_pem: str) -> bytes:
    return pki.load_certificate(cert_pem.encode()).public_bytes(serialization.Encoding.DER)


def test_plain_ws_proves_nothing() -> None:
    assert transport_of(None, False, Forwarded("1.2.3.4"), TRUST, NOW) == Transport(False, None, None)


def test_direct_tls_without_a_certificate_is_tls() -> None:
    assert transport_of(None, True, Forwarded("1.2.3.4"), TRUST, NOW) == Transport(True, None, None)


def test_a_verified_socket_certificate_gives_its_cn_and_serial() -> None:
    station = issue(CA, "CP-1")
    got = transport_of(der(station.pem), True, Forwarded("1.2.3.4"), TRUST, NOW)
    assert got == Transport(True, "CP-1", pki.serial_hex(station.cert))


def test_https_from_a_trusted_proxy_is_tls() -> None:
    assert transport_of(None, False, Forwarded("1.2.3.4", https=True, via_proxy=True), TRUST, NOW) == Transport(True, None, None)


def test_a_header_certificate_that_verifies_gives_its_identity() -> None:
    station = issue(CA, "CP-1")
    got = transport_of(None, False, Forwarded("1.2.3.4", client_cert=station.pem.encode(), via_proxy=True), TRUST, NOW)
    assert got == Transport(True, "CP-1", pki.serial_hex(station.cert))


def test_a_header_certificate_wins_over_the_proxys_own_socket_certificate() -> None:
    station, proxy = issue(CA, "CP-1"), issue(CA, "proxy")
    fwd = Forwarded("1.2.3.4", client_cert=station.pem.encode(), via_proxy=True)
    got = transport_of(der(proxy.pem), True, fwd, TRUST, NOW)
    assert isinstance(got, Transport) and got.client_cert_cn == "CP-1"


@pytest.mark.parametrize("cert_pem, trust, reason", [
    (issue(OTHER, "CP-1").pem, TRUST, "unknown issuer"),
    (issue(CA, "CP-1", not_before=NOW - dt.timedelta(days=9), not_after=NOW - dt.timedelta(days=1)).pem, TRUST, "expired"),
    (issue(CA, "CP-1", not_before=NOW + dt.timedelta(days=1)).pem, TRUST, "not yet valid"),
    (issue(CA, "CP-1").pem, ClientTrust(), "no client CA"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", TRUST, "unreadable"),
])
def test_a_header_certificate_that_does_not_verify_is_refused(cert_pem: str, trust: ClientTrust, reason: str) -> None:
    fwd = Forwarded("1.2.3.4", https=True, client_cert=cert_pem.encode(), via_proxy=True)
    assert transport_of(None, False, fwd, trust, NOW) == Refusal("certificate_invalid", reason)


def test_a_certificate_header_that_held_no_certificate_is_refused() -> None:
    fwd = Forwarded("1.2.3.4", https=True, via_proxy=True, client_cert_error="not a PEM certificate")
    assert transport_of(None, False, fwd, TRUST, NOW) == Refusal("certificate_invalid", "not a PEM certificate")

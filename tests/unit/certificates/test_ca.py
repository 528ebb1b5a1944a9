"""The CA adapters (LocalCA, HttpCA) and the `csms ca` tool."""

from __future__ import annotations

import json
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.certificates import ca
from services.certificates.cli import ensure_embedded_ca, main, provisioned_certificate
from services.common import pki
from tests.unit.certificates.builders import csr_pem, ec_key, new_ca_dir, rsa_key

def now() -> datetime:
    """Now, when asked (a module-level constant goes stale in a long test run)."""
    return datetime.now(timezone.utc)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_the_ca_and_its_ocsp_delegate_with_private_keys_0600(tmp_path: Path) -> None:
    ca_dir = new_ca_dir(tmp_path)
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca.key", "ca.pem", "ocsp.key", "ocsp.pem"]
    assert _mode(ca_dir) == 0o700
    assert _mode(ca_dir / "ca.key") == 0o600 and _mode(ca_dir / "ocsp.key") == 0o600
    cert = pki.load_certificate((ca_dir / "ca.pem").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(FileExistsError):
        ca.init_ca(ca_dir)


async def test_local_ca_signs_only_the_csr_key_and_cn_and_the_chain_verifies(tmp_path: Path) -> None:
    ca_dir = new_ca_dir(tmp_path, org="Example CPO")
    key = ec_key()
    local = ca.LocalCA(ca_dir, validity_days=30)
    issued = await local.sign("CS-1", csr_pem("CS-1", key, org="Evil Corp", extra_san="evil.example"),
                              "ChargingStationCertificate")
    chain = pki.load_certificates(issued.chain_pem.encode())
    leaf, root = chain
    assert root == local.ca_certificate()
    assert pki.verify_chain(leaf, [root], now()) is None
    assert leaf.public_key() == key.public_key()
    assert leaf.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CS-1"),
                                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example CPO")])
    assert issued.subject == leaf.subject.rfc4514_string()
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)  # nothing copied from the CSR
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert issued.serial == pki.serial_hex(leaf) and leaf.serial_number.bit_length() == 128
    assert issued.fingerprint_sha256 == pki.fingerprint_sha256(leaf)
    assert 29 <= (issued.not_after - issued.not_before).days <= 30
    # a second certificate gets another serial
    again = await local.sign("CS-1", csr_pem("CS-1", rsa_key()), "ChargingStationCertificate")
    assert again.serial != issued.serial


async def test_local_ca_without_files_raises_ca_error(tmp_path: Path) -> None:
    with pytest.raises(ca.CAError):
        await ca.LocalCA(tmp_path / "nothing").sign("CS-1", csr_pem("CS-1"), "ChargingStationCertificate")


async def test_http_ca_posts_the_csr_and_reads_the_chain(tmp_path: Path) -> None:
    ca_dir = new_ca_dir(tmp_path)
    local = ca.LocalCA(ca_dir)
    received: list[dict[str, Any]] = []

    async def sign(request: web.Request) -> web.Response:
        body = await request.json()
        received.append(body)
        if body["station_id"] == "broken":
            return web.json_response({"error": "nope"}, status=500)
        if body["station_id"] == "confused":
            return web.json_response({"certificate_chain": local.sign_sync("someone-else", body["csr"]).chain_pem})
        issued = local.sign_sync(body["station_id"], body["csr"])
        return web.json_response({"certificate_chain": issued.chain_pem})

    app = web.Application()
    app.router.add_post("/sign", sign)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        remote = ca.HttpCA(f"http://127.0.0.1:{port}/sign")
        pem = csr_pem("CS-9")
        issued = await remote.sign("CS-9", pem, "ChargingStationCertificate")
        assert received == [{"station_id": "CS-9", "csr": pem, "certificate_type": "ChargingStationCertificate"}]
        leaf = pki.load_certificate(issued.pem.encode())
        assert pki.certificate_identity(leaf) == "CS-9"
        assert remote.ca_certificate() == local.ca_certificate()
        with pytest.raises(ca.CAError):
            await remote.sign("broken", pem, "ChargingStationCertificate")
        with pytest.raises(ca.CAError):
            await remote.sign("confused", csr_pem("confused"), "ChargingStationCertificate")
        with pytest.raises(ca.CAError):
            await ca.HttpCA("http://127.0.0.1:1/sign", timeout_s=2).sign("CS-9", pem, "ChargingStationCertificate")
    finally:
        await runner.cleanup()


def test_authority_from_settings_prefers_the_url_then_a_dir_holding_a_ca(tmp_path: Path) -> None:
    from tests.support.builders import settings_for_tests

    ca_dir = new_ca_dir(tmp_path)
    assert isinstance(ca.authority_from_settings(settings_for_tests(ca_url="http://x/sign", ca_dir=str(ca_dir))), ca.HttpCA)
    assert isinstance(ca.authority_from_settings(settings_for_tests(ca_dir=str(ca_dir))), ca.LocalCA)
    assert ca.authority_from_settings(settings_for_tests(ca_dir=str(tmp_path / "empty"))) is None
    assert ca.authority_from_settings(settings_for_tests()) is None


def test_ensure_embedded_ca_creates_once(tmp_path: Path) -> None:
    ca_dir = tmp_path / "state" / "ca"
    ensure_embedded_ca(ca_dir, None)
    first = (ca_dir / "ca.pem").read_bytes()
    ensure_embedded_ca(ca_dir, None)
    assert (ca_dir / "ca.pem").read_bytes() == first
    (ca_dir / "ocsp.pem").unlink()
    (ca_dir / "ocsp.key").unlink()
    ensure_embedded_ca(ca_dir, None)  # a CA without a delegate gets one
    assert (ca_dir / "ocsp.pem").exists() and _mode(ca_dir / "ocsp.key") == 0o600


def test_cli_init_show_and_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CSMS_CA_DIR", raising=False)
    monkeypatch.delenv("CSMS_STORE_URL", raising=False)  # not recorded (see below)
    ca_dir = tmp_path / "ca"
    assert main(["init"]) == 2  # no directory
    assert main(["--dir", str(ca_dir), "init", "--cn", "My CA", "--org", "CPO"]) == 0
    assert main(["--dir", str(ca_dir), "init"]) == 1  # refuses to overwrite
    monkeypatch.setenv("CSMS_CA_DIR", str(ca_dir))
    capsys.readouterr()
    assert main(["show"]) == 0
    shown = capsys.readouterr().out
    assert "CN=My CA" in shown and "sha256" in shown and "PRIVATE" not in shown

    cert_f, key_f = tmp_path / "server.pem", tmp_path / "server.key"
    assert main(["issue-server-cert", "--host", "csms.example", "--ip", "127.0.0.1",
                 "--out-cert", str(cert_f), "--out-key", str(key_f)]) == 0
    assert _mode(key_f) == 0o600
    server = pki.load_certificate(cert_f.read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["csms.example"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert main(["issue-server-cert", "--host", "x", "--out-cert", str(cert_f), "--out-key", str(tmp_path / "k2")]) == 1

    st_cert, st_key = tmp_path / "cs.pem", tmp_path / "cs.key"
    assert main(["issue-station-cert", "CS-7", "--out-cert", str(st_cert), "--out-key", str(st_key)]) == 0
    station = pki.load_certificates(st_cert.read_bytes())
    assert pki.certificate_identity(station[0]) == "CS-7" and len(station) == 2
    assert pki.verify_chain(station[0], [station[1]], now()) is None
    assert "PRIVATE KEY" in st_key.read_text() and _mode(st_key) == 0o600
    out = capsys.readouterr().out
    assert "PRIVATE" not in out and json.dumps(out)  # no key material printed


def test_cli_without_a_ca_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path / "none"), "show"]) == 1
    assert "no CA" in capsys.readouterr().err


def test_csms_ca_takes_its_options_before_or_after_the_subcommand(tmp_path: Path) -> None:
    from services.common.cli import main as csms

    assert csms(["ca", "--dir", str(tmp_path / "a"), "init", "--cn", "A"]) == 0
    assert csms(["ca", "init", "--dir", str(tmp_path / "b")]) == 0
    assert csms(["ca", "show", "--dir", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "ca.pem").exists() and (tmp_path / "b" / "ca.pem").exists()


# -- csms ca issue-station-cert records what it issues ---------------------------------------

def test_a_provisioned_certificate_is_an_installed_charging_station_certificate_without_a_command(
        tmp_path: Path) -> None:
    ca_dir = new_ca_dir(tmp_path)
    chain, _key = ca.issue_station_certificate(ca_dir, "CS-7", days=30)
    issued = ca.issued_from_chain(chain.decode())
    at = now()
    cert = provisioned_certificate(issued, "CS-7", at)
    assert (cert.serial, cert.station_id, cert.status, cert.certificate_type) == (
        issued.serial, "CS-7", "installed", "ChargingStationCertificate")
    assert cert.issued_at == at and cert.not_after == issued.not_after and cert.pem == issued.pem
    assert cert.command_id == "" and cert.revision == 0


def test_the_cli_records_a_station_certificate_in_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from services.certificates.documents import Certificates
    from services.common.store.sqlite import SqliteStore

    ca_dir = new_ca_dir(tmp_path)
    monkeypatch.setenv("CSMS_STORE_URL", f"sqlite:///{tmp_path}/store.db")
    cert_f, key_f = tmp_path / "cs.pem", tmp_path / "cs.key"
    assert main(["--dir", str(ca_dir), "issue-station-cert", "CS-7", "--out-cert", str(cert_f),
                 "--out-key", str(key_f)]) == 0
    serial = pki.serial_hex(pki.load_certificate(cert_f.read_bytes()))

    async def recorded() -> list[Any]:
        store = SqliteStore(f"sqlite:///{tmp_path}/store.db")
        await store.start()
        try:
            return list(await Certificates(store).of_station("CS-7"))
        finally:
            await store.close()

    [cert] = asyncio.run(recorded())
    assert (cert.serial, cert.status, cert.certificate_type) == (serial, "installed", "ChargingStationCertificate")
    # --no-record: issued, not recorded
    assert main(["--dir", str(ca_dir), "issue-station-cert", "CS-7", "--out-cert", str(tmp_path / "b.pem"),
                 "--out-key", str(tmp_path / "b.key"), "--no-record"]) == 0
    assert len(asyncio.run(recorded())) == 1


def test_an_unreachable_store_fails_the_issue_and_writes_nothing_unless_no_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ca_dir = new_ca_dir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("CSMS_STORE_URL", f"sqlite:///{tmp_path}/a-file/store.db")  # its directory cannot be made
    cert_f, key_f = tmp_path / "cs.pem", tmp_path / "cs.key"
    args = ["--dir", str(ca_dir), "issue-station-cert", "CS-7", "--out-cert", str(cert_f), "--out-key", str(key_f)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "could not be recorded" in err and "--no-record" in err
    assert not cert_f.exists() and not key_f.exists()
    assert main([*args, "--no-record"]) == 0
    assert cert_f.exists() and key_f.exists()


def test_without_a_store_url_the_cli_says_the_certificate_is_not_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CSMS_STORE_URL", raising=False)
    ca_dir = new_ca_dir(tmp_path)
    assert main(["--dir", str(ca_dir), "issue-station-cert", "CS-7", "--out-cert", str(tmp_path / "c.pem"),
                 "--out-key", str(tmp_path / "c.key")]) == 0
    assert "not recorded" in capsys.readouterr().err

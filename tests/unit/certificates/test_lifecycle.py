"""The certificate rules (services/certificates/lifecycle.py) and the document mapper."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from services.certificates import lifecycle
from services.certificates.documents import Certificate, from_doc, ocsp_status, revoked, to_api, to_doc

T0 = datetime(2026, 11, 28, 4, 21, 16, 4000, tzinfo=timezone.utc)
MARGIN = timedelta(days=30)


def cert(serial: str = "a1", status: str = "installed", *, issued: datetime = T0, days: int = 365, **kw: object) -> Certificate:
    base = Certificate(
        serial=serial, station_id="CS-1", certificate_type="ChargingStationCertificate", status=status,
        subject="CN=CS-1", not_before=issued, not_after=issued + timedelta(days=days), fingerprint_sha256="ff",
        pem="PEM", issued_at=issued, command_id=lifecycle.command_id_for(serial),
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("given", "expected"), [
    ("", "ChargingStationCertificate"), ("ChargingStationCertificate", "ChargingStationCertificate"),
    ("V2GCertificate", None), ("anything", None),
])
def test_signed_type(given: str, expected: str | None) -> None:
    assert lifecycle.signed_type(given) == expected


def test_command_ids_lead_back_to_the_serial() -> None:
    assert lifecycle.serial_of_command(lifecycle.command_id_for("0ab3")) == "0ab3"
    assert lifecycle.serial_of_command("b3f0c7e2-uuid") is None
    assert lifecycle.serial_of_command("cert-") is None and lifecycle.serial_of_command("cert-XYZ") is None


@pytest.mark.parametrize(("before", "answer", "after"), [
    ("issued", "Accepted", "installed"), ("issued", "Rejected", "rejected"), ("issued", "Timeout", "issued"),
    ("rejected", "Accepted", "installed"), ("revoked", "Accepted", "revoked"), ("superseded", "Accepted", "superseded"),
    ("expired", "Accepted", "expired"), ("installed", "Rejected", "installed"),
])
def test_apply_result(before: str, answer: str, after: str) -> None:
    changed = lifecycle.apply_result(cert(status=before), answer)
    assert (changed.status, changed.command_status) == (after, answer)


def test_only_earlier_installed_certificates_of_the_type_are_superseded() -> None:
    new = cert("b2", issued=T0 + timedelta(days=1))
    others = [
        cert("a1"),                                                   # superseded
        cert("a0", status="revoked"),                                 # stays
        cert("a2", certificate_type="V2GCertificate"),               # another type
        cert("a3", station_id="CS-2"),                                # another station
        cert("c3", issued=T0 + timedelta(days=2)),                    # newer
        new,
    ]
    assert [c.serial for c in lifecycle.superseded_by(new, others)] == ["a1"]
    assert all(c.status == "superseded" for c in lifecycle.superseded_by(new, others))


def test_renewal_step() -> None:
    c = cert(days=100)
    assert lifecycle.renewal_step(c, T0 + timedelta(days=69), MARGIN) is None
    assert lifecycle.renewal_step(c, T0 + timedelta(days=70), MARGIN) == "renew"
    asked = dataclasses.replace(c, renew_requested_at=T0 + timedelta(days=70))
    assert lifecycle.renewal_step(asked, T0 + timedelta(days=70, hours=23), MARGIN) is None
    assert lifecycle.renewal_step(asked, T0 + timedelta(days=71), MARGIN) == "renew"
    assert lifecycle.renewal_step(c, T0 + timedelta(days=100), MARGIN) == "expire"
    assert lifecycle.renewal_step(cert(status="issued", days=100), T0 + timedelta(days=80), MARGIN) is None
    assert lifecycle.renewal_step(cert(status="issued", days=100), T0 + timedelta(days=101), MARGIN) == "expire"
    assert lifecycle.renewal_step(cert(status="revoked", days=100), T0 + timedelta(days=101), MARGIN) is None


def test_document_round_trip_and_views() -> None:
    c = cert(renew_requested_at=T0, event_id="e1", chain_pem="CHAIN", revision=3)
    assert from_doc(to_doc(c)) == c
    r = revoked(c, reason="key compromise", now=T0 + timedelta(hours=1))
    assert (r.status, r.revoked_at, r.revocation_reason) == ("revoked", T0 + timedelta(hours=1), "key compromise")
    assert revoked(r, reason="again", now=T0) is r
    view = to_api(r)
    assert set(view) == {"serial", "certificate_type", "status", "subject", "not_before", "not_after",
                         "fingerprint_sha256", "issued_at", "revoked_at", "revocation_reason", "command_status"}
    assert view["revoked_at"] == "2026-11-28T05:21:16.004Z"
    assert (ocsp_status(None), ocsp_status(c), ocsp_status(r)) == ("unknown", "good", "revoked")

"""What happens to a station certificate, as pure functions (the processor's rules).

- Only a station's own certificate is signed: `ChargingStationCertificate` (2.0.1) and
  1.6's SignCertificate, which has no type (`signed_type`). ISO 15118 (V2G) certificates
  belong to a V2G PKI the CSMS does not run.
- The CertificateSigned command of a certificate has the id `cert-<serial>`
  (`command_id_for`), so a CommandResult leads to its document without an index, and a
  re-sent command keeps its id.
- The station's answer (`apply_result`): Accepted -> installed, Rejected -> rejected; any
  other outcome (StationOffline, Timeout, NotSupported) is recorded in `command_status`
  only. A revoked, expired or superseded certificate keeps its status.
- A certificate installed supersedes the station's earlier installed ones of its type
  (`superseded_by`).
- Renewal (`renewal_step`): an installed certificate past its `not_after` is `expired`;
  one expiring within the margin is due for a TriggerMessage, at most once per
  `RENEW_REPEAT`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta

from services.certificates.ca import Issued
from services.certificates.documents import (
    CHARGING_STATION_CERTIFICATE,
    EXPIRED,
    INSTALLED,
    ISSUED,
    REJECTED,
    SUPERSEDED,
    Certificate,
)

__all__ = [
    "COMMAND_PREFIX",
    "RENEW_REPEAT",
    "apply_result",
    "command_id_for",
    "expired",
    "new_certificate",
    "renewal_step",
    "serial_of_command",
    "signed_type",
    "supersede",
    "superseded_by",
]

COMMAND_PREFIX = "cert-"
RENEW_REPEAT = timedelta(days=1)
_SIGNED_TYPES = {"": CHARGING_STATION_CERTIFICATE, CHARGING_STATION_CERTIFICATE: CHARGING_STATION_CERTIFICATE,
                 "ChargePointCertificate": CHARGING_STATION_CERTIFICATE}


def signed_type(certificate_type: str) -> str | None:
    """The type a CSR of `certificate_type` is signed as, or None (not signed here)."""
    return _SIGNED_TYPES.get(certificate_type)


def command_id_for(serial: str) -> str:
    return COMMAND_PREFIX + serial


def serial_of_command(command_id: str) -> str | None:
    if not command_id.startswith(COMMAND_PREFIX):
        return None
    serial = command_id[len(COMMAND_PREFIX):]
    return serial if serial and all(ch in "0123456789abcdef" for ch in serial) else None


def certificate_of(issued: Issued, *, station_id: str, certificate_type: str, status: str, now: datetime,
                   command_id: str = "", event_id: str = "") -> Certificate:
    """The `certificate` document of what the CA just issued."""
    return Certificate(
        serial=issued.serial,
        station_id=station_id,
        certificate_type=certificate_type,
        status=status,
        subject=issued.subject,
        not_before=issued.not_before,
        not_after=issued.not_after,
        fingerprint_sha256=issued.fingerprint_sha256,
        pem=issued.pem,
        issued_at=now,
        command_id=command_id,
        chain_pem=issued.chain_pem,
        event_id=event_id,
    )


def new_certificate(issued: Issued, *, station_id: str, certificate_type: str, event_id: str, now: datetime) -> Certificate:
    """Signed from a station's CSR: `issued` until the station answers its CertificateSigned."""
    return certificate_of(issued, station_id=station_id, certificate_type=certificate_type, status=ISSUED, now=now,
                          command_id=command_id_for(issued.serial), event_id=event_id)


def apply_result(cert: Certificate, status: str) -> Certificate:
    """The certificate after the station's answer to its CertificateSigned."""
    new_status = cert.status
    if cert.status in (ISSUED, REJECTED, INSTALLED):
        if status == "Accepted":
            new_status = INSTALLED
        elif status == "Rejected" and cert.status == ISSUED:
            new_status = REJECTED
    if new_status == cert.status and status == cert.command_status:
        return cert
    return dataclasses.replace(cert, status=new_status, command_status=status)


def supersede(installed: Certificate, other: Certificate) -> Certificate:
    """`other` superseded by `installed` when it is the same station's installed
    certificate of the same type, issued before it; else `other` unchanged."""
    if (
        other.serial != installed.serial
        and other.station_id == installed.station_id
        and other.certificate_type == installed.certificate_type
        and other.status == INSTALLED
        and (other.issued_at, other.serial) < (installed.issued_at, installed.serial)
    ):
        return dataclasses.replace(other, status=SUPERSEDED)
    return other


def superseded_by(installed: Certificate, others: Iterable[Certificate]) -> list[Certificate]:
    """The station's other installed certificates of `installed`'s type, issued before it,
    now superseded."""
    return [changed for c in others if (changed := supersede(installed, c)) is not c]


def renewal_step(cert: Certificate, now: datetime, margin: timedelta) -> str | None:
    """`expire`, `renew` or None for one certificate at `now`."""
    if cert.status not in (INSTALLED, ISSUED):
        return None
    if now >= cert.not_after:
        return "expire"
    if cert.status != INSTALLED or now < cert.not_after - margin:
        return None
    if cert.renew_requested_at is not None and now - cert.renew_requested_at < RENEW_REPEAT:
        return None
    return "renew"


def expired(cert: Certificate) -> Certificate:
    return dataclasses.replace(cert, status=EXPIRED)

"""The certificates processor's handler: CSRs in, certificates and CertificateSigned out.

`CertificatesHandler.handle_batch(records)` gets csms.events.v1 batches (group
`csms-certificates`). The `ce_type` header is read first: only CertificateSigningRequest
and CommandResult records are decoded (a record without the header, from an older
producer, is decoded and looked at).

A CertificateSigningRequest the gateway accepted:
1. its type must be one this CA signs (`lifecycle.signed_type`), else logged, skipped;
2. a certificate of the station carrying this event id already exists -> the event is a
   redelivery: nothing is signed again (its CertificateSigned is re-sent only if it never
   went out);
3. `pki.check_csr` again (CN = station id, key policy): a CSR that fails is logged with
   the reason, counted (`csms_certificates_csr_total{result="invalid"}`), no document;
4. the CA signs; the `certificate` document is written (status issued, command id
   `cert-<serial>`), then CertificateSigned `{certificate_chain, certificate_type}` goes
   through the command router and `command_status` records how it went (`Sent`, or
   `StationOffline` / the router's reason).

A CommandResult of a `cert-<serial>` CertificateSigned moves that certificate
(`lifecycle.apply_result`); an installed one supersedes the station's earlier installed
ones. CA failures (unreadable CA files, an external CA down) raise: the bus retries the
batch and dead-letters the record after its bounded retries (docs/dead-letters.md), so
an operator can replay it. Without a CA every CSR is skipped (logged, counted `no_ca`).

`Renewer.run()` is the periodic renewal job (`lifecycle.renewal_step`): TriggerMessage
SignChargingStationCertificate for installed certificates within
CSMS_CERT_RENEW_BEFORE_DAYS of their end (once a day each, while the station is connected),
`expired` for those past it.
The document is written (compare-and-set) before the trigger is sent, so two processor
replicas never both ask.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Callable, Protocol

from prometheus_client import Counter

from services.certificates import lifecycle
from services.certificates.ca import CAError, CertificateAuthority
from services.certificates.documents import INSTALLED, Certificate, Certificates
from services.common import codec, pki
from services.common import events as ev
from services.common.bus.port import Record
from services.common.routing import Offline, Routed, Sent
from services.common.store.port import Owner
from services.common.timeutil import Clock

__all__ = ["CE_TYPES", "COMMAND_TTL", "ISSUER", "CertificatesHandler", "CommandSender", "Renewer"]

log = logging.getLogger("csms.certificates")

ISSUER = "certificates"
COMMAND_TTL = timedelta(minutes=2)
TRIGGER_TTL = timedelta(minutes=2)
_CE_PREFIX = "csms.events.v1."
CE_TYPES = frozenset(_CE_PREFIX + name for name in ("CertificateSigningRequest", "CommandResult"))
CERTIFICATE_SIGNED = "CertificateSigned"
RENEW_MESSAGE = "SignChargingStationCertificate"

CSRS = Counter(
    "csms_certificates_csr_total",
    "Certificate signing requests seen by the certificates processor, by result (signed, invalid: "
    "the CSR failed the checks, skipped: not a type this CA signs or the gateway rejected it, "
    "duplicate: a redelivered event, no_ca: no CA configured, ca_error: the CA failed, the event is retried)",
    ["result"],
)
RESULTS = Counter(
    "csms_certificates_results_total", "Station answers to CertificateSigned, by status", ["status"]
)
RENEWALS = Counter(
    "csms_certificates_renewals_total",
    "Renewal job actions: triggered (TriggerMessage sent), offline (due, station not connected: asked at a later tick), expired",
    ["action"],
)


class CommandSender(Protocol):
    async def owner(self, station_id: str) -> Owner | None: ...

    async def send(
        self, station_id: str, command_type: str, params: Mapping[str, Any], *, ttl: timedelta, command_id: str | None = None
    ) -> Routed: ...


def _routed_status(routed: Routed) -> str:
    if isinstance(routed, Sent):
        return "Sent"
    if isinstance(routed, Offline):
        return "StationOffline"
    return "Unroutable"


class CertificatesHandler:
    def __init__(
        self,
        *,
        authority: CertificateAuthority | None,
        certificates: Certificates,
        sender: CommandSender,
        clock: Clock,
        min_rsa_bits: int,
    ) -> None:
        self.authority = authority
        self.certificates = certificates
        self.sender = sender
        self.clock = clock
        self.min_rsa_bits = min_rsa_bits

    def decode(self, records: Sequence[Record]) -> list[ev.Envelope]:
        out: list[ev.Envelope] = []
        for record in records:
            ce_type = record.header("ce_type")
            if ce_type is not None and ce_type not in CE_TYPES:
                continue
            try:
                env = codec.decode_event(record.value)
            except Exception:
                log.exception("undecodable record %s[%d]@%d skipped", record.topic, record.partition, record.offset)
                continue
            if isinstance(env.body, (ev.CertificateSigningRequest, ev.CommandResult)):
                out.append(env)
        return out

    async def handle_batch(self, records: Sequence[Record]) -> None:
        for env in self.decode(records):
            await self.handle(env)

    async def handle(self, env: ev.Envelope) -> None:
        body = env.body
        if isinstance(body, ev.CertificateSigningRequest):
            await self.on_csr(env, body)
        elif isinstance(body, ev.CommandResult) and body.command_type == CERTIFICATE_SIGNED:
            await self.on_result(env.station_id, body)

    async def on_csr(self, env: ev.Envelope, body: ev.CertificateSigningRequest) -> None:
        station_id = env.station_id
        if body.status == "Rejected":
            CSRS.labels(result="skipped").inc()
            log.info("station=%s SignCertificate was answered Rejected: not signed", station_id)
            return
        kind = lifecycle.signed_type(body.certificate_type)
        if kind is None:
            CSRS.labels(result="skipped").inc()
            log.warning("station=%s CSR of type %r: not signed (this CA signs only ChargingStationCertificate)",
                        station_id, body.certificate_type)
            return
        if self.authority is None:
            CSRS.labels(result="no_ca").inc()
            log.warning("station=%s CSR not signed: no CA is configured (CSMS_CA_DIR / CSMS_CA_URL)", station_id)
            return
        existing = [c for c in await self.certificates.of_station(station_id) if c.event_id == env.event_id]
        if existing:
            CSRS.labels(result="duplicate").inc()
            cert = existing[0]
            if not cert.command_status:
                await self._send(cert)  # written, then the process stopped before sending
            return
        reason = pki.check_csr(body.csr, station_id, min_rsa_bits=self.min_rsa_bits)
        if reason is not None:
            CSRS.labels(result="invalid").inc()
            log.warning("station=%s CSR rejected: %s", station_id, reason)
            return
        try:
            issued = await self.authority.sign(station_id, body.csr, kind)
        except CAError as exc:
            CSRS.labels(result="ca_error").inc()
            log.error("station=%s CSR not signed: %s (the event is retried)", station_id, exc)
            raise
        cert = lifecycle.new_certificate(issued, station_id=station_id, certificate_type=kind,
                                         event_id=env.event_id, now=self.clock())
        stored = await self.certificates.put(cert)
        if stored is None:  # pragma: no cover - a random 128-bit serial collided
            raise RuntimeError(f"certificate serial {cert.serial} already stored")
        CSRS.labels(result="signed").inc()
        log.info("station=%s certificate %s issued (%s, until %s)", station_id, stored.serial, stored.subject,
                 stored.not_after.isoformat())
        await self._send(stored)

    async def _send(self, cert: Certificate) -> None:
        routed = await self.sender.send(
            cert.station_id, CERTIFICATE_SIGNED,
            {"certificate_chain": cert.chain_pem or cert.pem, "certificate_type": cert.certificate_type},
            ttl=COMMAND_TTL, command_id=cert.command_id,
        )
        status = _routed_status(routed)
        if not isinstance(routed, Sent):
            log.info("station=%s CertificateSigned %s not sent: %s", cert.station_id, cert.serial, status)
        await self._update(cert, lambda c: c if c.command_status else _with_command_status(c, status))

    async def on_result(self, station_id: str, body: ev.CommandResult) -> None:
        serial = lifecycle.serial_of_command(body.command_id)
        if serial is None:
            return  # an operator's own CertificateSigned: not one of ours
        cert = await self.certificates.get(serial)
        if cert is None or cert.station_id != station_id:
            log.warning("station=%s answer %s to CertificateSigned %s: no such certificate", station_id, body.status, serial)
            return
        RESULTS.labels(status=body.status or "unknown").inc()
        after = await self._update(cert, lambda c: lifecycle.apply_result(c, body.status))
        if after is None or after.status != INSTALLED:
            log.info("station=%s certificate %s: CertificateSigned answered %s", station_id, serial, body.status)
            return
        log.info("station=%s certificate %s installed", station_id, serial)
        for other in await self.certificates.of_station(station_id):
            if lifecycle.supersede(after, other) is not other:
                await self._update(other, lambda c: lifecycle.supersede(after, c))

    async def _update(self, cert: Certificate, change: Callable[[Certificate], Certificate]) -> Certificate | None:
        """Apply `change` (Certificate -> Certificate) and write it; on a lost
        compare-and-set re-read and apply again (the API revoked it meanwhile)."""
        current: Certificate | None = cert
        for _ in range(5):
            if current is None:
                return None
            changed = change(current)
            if changed == current:
                return current
            stored = await self.certificates.put(changed)
            if stored is not None:
                return stored
            current = await self.certificates.get(cert.serial)
        raise RuntimeError(f"certificate {cert.serial}: kept losing the compare-and-set")


def _with_command_status(cert: Certificate, status: str) -> Certificate:
    return dataclasses.replace(cert, command_status=status)


class Renewer:
    """The periodic renewal job (see the module docstring)."""

    def __init__(self, *, certificates: Certificates, sender: CommandSender, clock: Clock, renew_before_days: int,
                 page_size: int = 200) -> None:
        self.certificates = certificates
        self.sender = sender
        self.clock = clock
        self.margin = timedelta(days=renew_before_days)
        self.page_size = page_size

    async def run(self) -> None:
        cursor: str | None = None
        while True:
            page, cursor = await self.certificates.page(limit=self.page_size, cursor=cursor)
            for cert in page:
                await self.step(cert)
            if cursor is None:
                return

    async def step(self, cert: Certificate) -> None:
        now = self.clock()
        action = lifecycle.renewal_step(cert, now, self.margin)
        if action == "expire":
            if await self.certificates.put(lifecycle.expired(cert)) is not None:
                RENEWALS.labels(action="expired").inc()
                log.info("station=%s certificate %s expired", cert.station_id, cert.serial)
            return
        if action != "renew":
            return
        owner = await self.sender.owner(cert.station_id)
        if owner is None or not owner.connected:
            RENEWALS.labels(action="offline").inc()
            return  # asked at the first tick it is connected
        if await self.certificates.put(dataclasses.replace(cert, renew_requested_at=now)) is None:
            return  # another replica (or the API) wrote it first
        routed = await self.sender.send(
            cert.station_id, "TriggerMessage", {"requested_message": RENEW_MESSAGE}, ttl=TRIGGER_TTL,
        )
        RENEWALS.labels(action="triggered" if isinstance(routed, Sent) else "offline").inc()
        log.info("station=%s certificate %s ends %s: asked for a new CSR (%s)", cert.station_id, cert.serial,
                 cert.not_after.isoformat(), _routed_status(routed))

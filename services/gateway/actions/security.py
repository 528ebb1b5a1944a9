"""The station's certificate requests (ADR 017 §3): SignCertificate, GetCertificateStatus,
Get15118EVCertificate, shared by 1.6 (security whitepaper: SignCertificate only) and 2.x.

Each answer promises only what the CSMS will do, and the published event records it:

- SignCertificate is `Accepted` only when a CA is configured (`CsrSigning.ca_configured`),
  the type is one we sign (the charging station certificate; 1.6 has no type) and the CSR
  passes `pki.check_csr` (CN = station id, RSA >= CSMS_CSR_MIN_RSA_BITS or EC P-256/P-384,
  a valid self-signature). The certificates processor signs the Accepted ones it reads from
  the event and sends CertificateSigned; a Rejected one is recorded and nothing follows. 2.x
  answers carry statusInfo (`NoCA`, `InvalidCSR`, `UnsupportedType`) with the reason.
- GetCertificateStatus asks the `CertificateStatus` port (services/gateway/ocsp.py).
- Get15118EVCertificate asks the `ContractCertificateProvider` (services/gateway/contract_certs.py).

None of these logs a CSR, a certificate or an OCSP body: only the station and the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import services.gateway.actions.operations as ops
from services.common.config import Settings
from services.common.store.port import Store
from services.common.timeutil import Clock
from services.gateway import ocsp
from services.gateway.actions.common import CsrSigning, Handler
from services.gateway.context import CallContext
from services.gateway.contract_certs import (
    ContractCertificateProvider,
    EvCertificateAnswer,
    EvCertificateRequest,
    contract_certificate_provider,
)
from services.gateway.ocsp import CertificateStatus, StatusAnswer

__all__ = ["CertificatePorts", "certificate_ports", "certificate_status", "ev_certificate", "sign_certificate"]

log = logging.getLogger("csms.gateway.actions")


def _status_info(reason: str | None, detail: str | None = None) -> dict[str, Any]:
    if not reason:
        return {}
    info: dict[str, Any] = {"reasonCode": reason[:20]}
    if detail:
        info["additionalInfo"] = detail[:512]
    return {"statusInfo": info}


def sign_certificate(signing: CsrSigning | None) -> Handler:
    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        status, reason, detail = ops.sign_certificate_decision(
            p, ctx.station_id, ca_configured=signing is not None and signing.ca_configured(),
            min_rsa_bits=2048 if signing is None else signing.min_rsa_bits,
        )
        if reason is not None:
            log.info("station=%s SignCertificate rejected: %s (%s)", ctx.station_id, reason, detail)
        await ctx.publish(ops.certificate_signing_request(p, status), None)
        if ctx.ocpp_version.is_16:
            return {"status": status}  # the whitepaper's answer has no statusInfo
        return {"status": status, **_status_info(reason, detail)}

    return handle


def certificate_status(port: CertificateStatus | None) -> Handler:
    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        request = p.get("ocspRequestData") or {}
        if port is None:
            answer = StatusAnswer.failed("NoResponder")
        else:
            try:
                answer = await port.status(request)
            except Exception:  # the port answers every failure itself; this is a bug, not the station's
                log.exception("station=%s GetCertificateStatus failed", ctx.station_id)
                answer = StatusAnswer.failed("InternalError")
        await ctx.publish(ops.certificate_status_request(p, answer.status), None)
        response: dict[str, Any] = {"status": answer.status}
        if answer.ocsp_result is not None:
            response["ocspResult"] = answer.ocsp_result
        return {**response, **_status_info(answer.reason)}

    return handle


def ev_certificate(provider: ContractCertificateProvider | None) -> Handler:
    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        request = EvCertificateRequest(
            station_id=ctx.station_id, iso15118_schema_version=str(p.get("iso15118SchemaVersion", "")),
            action=str(p.get("action", "")), exi_request=str(p.get("exiRequest", "")),
        )
        if provider is None:
            answer = EvCertificateAnswer.failed("NoProvider")
        else:
            try:
                answer = await provider.get(request)
            except Exception:  # as above: the provider answers its failures itself
                log.exception("station=%s Get15118EVCertificate failed", ctx.station_id)
                answer = EvCertificateAnswer.failed("InternalError")
        await ctx.publish(ops.ev_certificate_request(p, answer.status), None)
        return {"status": answer.status, "exiResponse": answer.exi_response, **_status_info(answer.reason)}

    return handle


@dataclass(frozen=True, slots=True)
class CertificatePorts:
    """The three certificate ports of `ActionPorts`, built from the settings (wiring)."""

    signing: CsrSigning
    certificate_status: CertificateStatus
    contract_certs: ContractCertificateProvider


def certificate_ports(settings: Settings, store: Store, clock: Clock) -> CertificatePorts:
    """A CA is configured when CSMS_CA_URL is set or CSMS_CA_DIR holds `ca.pem` (looked at
    per SignCertificate); the CA certificate and the OCSP delegate are read once, here.
    An unknown CSMS_CONTRACT_CERT_PROVIDER is a ConfigError (the gateway does not start)."""
    ca_pem = Path(settings.ca_dir, "ca.pem") if settings.ca_dir else None

    def ca_configured() -> bool:
        return bool(settings.ca_url) or (ca_pem is not None and ca_pem.is_file())

    ca, delegate = ocsp.load_ca_material(settings.ca_dir)
    return CertificatePorts(
        signing=CsrSigning(ca_configured, settings.csr_min_rsa_bits),
        certificate_status=ocsp.CertificateStatusService(
            forward_url=settings.ocsp_responder_url, ca=ca, delegate=delegate, lookup=ocsp.store_lookup(store),
            clock=clock, timeout_s=settings.pki_timeout_s, follow_station_url=settings.ocsp_follow_station_url,
        ),
        contract_certs=contract_certificate_provider(settings.contract_cert_provider, timeout_s=settings.pki_timeout_s),
    )

"""Wiring of the certificates processor (ADR 017), built once from the `Runtime`.

`build_certificates(rt)` is the `certificates` role of `csms` (services/common/cli.py, also
part of `csms run`): one `Processor` of consumer group `csms-certificates` on
csms.events.v1 running `CertificatesHandler.handle_batch` (services/certificates/handlers.py),
with the renewal job (`Renewer.run`) every CSMS_CERT_RENEW_INTERVAL_S.

The CA (`ca.authority_from_settings`): CSMS_CA_URL -> an external CA, else CSMS_CA_DIR
holding ca.pem -> the built-in CA, else none: the processor then signs nothing and says
so once at start (the gateway answers SignCertificate Rejected when neither is set).
Commands (CertificateSigned, TriggerMessage) go through the one `CommandRouter`, issuer
"certificates".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.certificates.ca import authority_from_settings
from services.certificates.documents import Certificates
from services.certificates.handlers import ISSUER, CertificatesHandler, Renewer
from services.common import topics
from services.common.processor import Periodic, Processor
from services.common.routing import CommandRouter
from services.common.runtime import Runtime

__all__ = ["NAME", "GROUP", "CertificatesProcessor", "build_certificates", "wire"]

log = logging.getLogger("csms.certificates")

NAME = "certificates"
GROUP = topics.group("csms-certificates")


@dataclass(frozen=True)
class CertificatesProcessor:
    processor: Processor
    handler: CertificatesHandler
    renewer: Renewer


def wire(rt: Runtime) -> CertificatesProcessor:
    """The handler and the renewal job with their ports, and the processor running them."""
    s = rt.settings
    authority = authority_from_settings(s, rt.clock)
    if authority is None:
        log.warning("certificates: no CA configured (CSMS_CA_DIR with a CA, or CSMS_CA_URL): "
                    "station CSRs will not be signed")
    router = CommandRouter(owners=rt.store, publish=rt.bus.publish, partitions=rt.bus.partitions,
                           clock=rt.clock, issuer=ISSUER)
    certificates = Certificates(rt.store)
    handler = CertificatesHandler(authority=authority, certificates=certificates, sender=router,
                                  clock=rt.clock, min_rsa_bits=s.csr_min_rsa_bits)
    renewer = Renewer(certificates=certificates, sender=router, clock=rt.clock,
                      renew_before_days=s.cert_renew_before_days)

    def store_healthy() -> bool:
        return bool(rt.store.healthy)

    processor = Processor(
        NAME, rt.bus, topics.EVENTS, GROUP, handler.handle_batch,
        max_records=max(int(s.batch_max_records), 1),
        periodic=[Periodic("renewal", float(s.cert_renew_interval_s), renewer.run)],
        healthy=[store_healthy],
    )
    return CertificatesProcessor(processor=processor, handler=handler, renewer=renewer)


def build_certificates(rt: Runtime) -> Processor:
    """The CLI role "certificates": the processor as a service."""
    return wire(rt).processor

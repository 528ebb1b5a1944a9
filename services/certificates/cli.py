"""`csms ca ...`: the built-in certificate authority's operator tool (ADR 017).

    csms ca init [--dir D] [--cn NAME] [--org NAME] [--days N]
    csms ca issue-server-cert --host NAME [--ip ADDR ...] --out-cert F --out-key F [--days N]
    csms ca issue-station-cert ID --out-cert F --out-key F [--days N] [--no-record]
    csms ca show

The directory is `--dir`, else CSMS_CA_DIR. Nothing is ever overwritten: `init` refuses a
directory that already holds a CA, the issue commands refuse existing output files. Keys
are written 0600 and never printed. `ensure_embedded_ca` is what `csms run` calls at start:
it creates the CA of the single-machine mode the first time.

A station certificate is recorded, before its files are written, as a `certificate`
document (status `installed`: it is provisioned by hand, no CertificateSigned follows) in
the store of CSMS_STORE_URL, so `GET /stations/{id}/certificates` lists it and it can be
revoked like one the CSMS signed from a CSR; a SQLite store is migrated first, as
`csms api-key` does. An unreachable store is an error (nothing is written) unless
`--no-record`; without CSMS_STORE_URL the certificate is not recorded and the tool says so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from cryptography.hazmat.primitives import hashes

from services.certificates import ca
from services.certificates.documents import CHARGING_STATION_CERTIFICATE, INSTALLED, Certificate, Certificates
from services.certificates.lifecycle import certificate_of
from services.common import pki
from services.common.config import Settings, env_value, load_settings
from services.common.errors import CsmsError
from services.common.runtime import store_options
from services.common.store import store_from_url
from services.common.timeutil import to_ocpp, utcnow

__all__ = ["ensure_embedded_ca", "main", "provisioned_certificate"]

log = logging.getLogger("csms.certificates")

EMBEDDED_CA_CN = "CSMS embedded CA"
EMBEDDED_CA_DAYS = 3650


def ensure_embedded_ca(ca_dir: Path, settings: Any) -> None:
    """Create a CA in `ca_dir` unless it holds one already (`csms run`'s first start)."""
    ca_dir = Path(ca_dir)
    if ca.has_ca(ca_dir):
        if not (ca_dir / ca.OCSP_CERT).exists():
            # a CA made elsewhere without an OCSP delegate: add one
            ca.ensure_ocsp_delegate(ca_dir, days=EMBEDDED_CA_DAYS)
        return
    cert = ca.init_ca(ca_dir, cn=EMBEDDED_CA_CN, days=EMBEDDED_CA_DAYS)
    log.info("created the embedded CA in %s (%s)", ca_dir, cert.subject.rfc4514_string())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="csms ca", description="the built-in certificate authority (docs/security.md)")
    p.add_argument("--dir", help="CA directory (default CSMS_CA_DIR)")
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create a CA (refuses to overwrite one)")
    init.add_argument("--cn", default="CSMS CA", help="CA subject CN (default 'CSMS CA')")
    init.add_argument("--org", default="", help="CA subject O, copied into the certificates it issues")
    init.add_argument("--days", type=int, default=EMBEDDED_CA_DAYS, help=f"CA lifetime (default {EMBEDDED_CA_DAYS})")
    srv = sub.add_parser("issue-server-cert", help="a TLS server certificate for CSMS_TLS_CERT / CSMS_TLS_KEY")
    srv.add_argument("--host", required=True, help="DNS name (CN and SAN)")
    srv.add_argument("--ip", action="append", default=[], help="an IP address SAN (repeatable)")
    srv.add_argument("--out-cert", required=True)
    srv.add_argument("--out-key", required=True)
    srv.add_argument("--days", type=int, default=365)
    sta = sub.add_parser("issue-station-cert", help="a station client certificate without a CSR (profile 3 provisioning)")
    sta.add_argument("station_id")
    sta.add_argument("--out-cert", required=True)
    sta.add_argument("--out-key", required=True)
    sta.add_argument("--days", type=int, default=None, help="lifetime (default CSMS_CERT_VALIDITY_DAYS)")
    sta.add_argument("--no-record", action="store_true",
                     help="do not record it in the store of CSMS_STORE_URL (it cannot be listed or revoked then)")
    show = sub.add_parser("show", help="the CA's subject, validity and fingerprints")
    for sp in (init, srv, sta, show):
        sp.add_argument("--dir", dest="sub_dir", help=argparse.SUPPRESS)
    return p


def _ca_dir(args: argparse.Namespace) -> Path | None:
    chosen = getattr(args, "sub_dir", None) or args.dir or str(env_value("CSMS_CA_DIR"))
    return Path(chosen) if chosen else None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    ca_dir = _ca_dir(args)
    if ca_dir is None:
        print("csms ca: give --dir or set CSMS_CA_DIR", file=sys.stderr)
        return 2
    try:
        if args.command == "init":
            if args.days < 1:
                print("csms ca init: --days must be at least 1", file=sys.stderr)
                return 2
            cert = ca.init_ca(ca_dir, cn=args.cn, organization=args.org, days=args.days)
            print(f"created CA {cert.subject.rfc4514_string()} in {ca_dir}")
            _show(ca_dir)
            return 0
        if not (ca_dir / ca.CA_CERT).exists():
            print(f"csms ca: no CA in {ca_dir} (csms ca init --dir {ca_dir})", file=sys.stderr)
            return 1
        if args.command == "show":
            _show(ca_dir)
            return 0
        out_cert, out_key = Path(args.out_cert), Path(args.out_key)
        if args.command == "issue-server-cert":
            chain, key = ca.issue_server_certificate(ca_dir, args.host, args.ip, days=max(1, args.days))
            ca.write_pair(out_cert, out_key, chain, key)
        else:
            days = args.days if args.days is not None else int(env_value("CSMS_CERT_VALIDITY_DAYS"))
            record = not args.no_record and bool(os.environ.get("CSMS_STORE_URL"))
            if not args.no_record and not record:
                print("csms ca: CSMS_STORE_URL is not set: the certificate is not recorded (it will not be listed "
                      "under GET /stations/{id}/certificates and cannot be revoked there)", file=sys.stderr)
            for path in (out_cert, out_key):  # before anything is signed or recorded
                if path.exists():
                    raise FileExistsError(f"{path} exists; not overwriting it")
            if record:
                chain = asyncio.run(_issue_recorded(ca_dir, args.station_id, max(1, days), out_cert, out_key,
                                                    load_settings()))
            else:
                chain, key = ca.issue_station_certificate(ca_dir, args.station_id, days=max(1, days))
                ca.write_pair(out_cert, out_key, chain, key)
        leaf = pki.load_certificate(chain)
        print(f"wrote {args.out_cert} (serial {pki.serial_hex(leaf)}, {leaf.subject.rfc4514_string()}, "
              f"until {to_ocpp(leaf.not_valid_after_utc)}) and {args.out_key} (0600)")
        return 0
    except CsmsError as exc:  # the store: unreachable, or refused the write
        print(f"csms ca: the certificate could not be recorded ({exc}); nothing was written "
              "(--no-record issues it untracked)", file=sys.stderr)
        return 1
    except FileExistsError as exc:
        print(f"csms ca: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"csms ca: {exc}", file=sys.stderr)
        return 2
    except (ca.CAError, OSError) as exc:
        print(f"csms ca: {exc}", file=sys.stderr)
        return 1


def provisioned_certificate(issued: ca.Issued, station_id: str, now: datetime) -> Certificate:
    """The `certificate` document of a station certificate issued by `csms ca` (no CSR, no
    CertificateSigned: it is installed by hand, so `installed` with no command)."""
    return certificate_of(issued, station_id=station_id, certificate_type=CHARGING_STATION_CERTIFICATE, status=INSTALLED,
                          now=now)


async def _issue_recorded(ca_dir: Path, station_id: str, days: int, out_cert: Path, out_key: Path,
                          settings: Settings) -> bytes:
    """Issue, record, then write the files; the store is reached before anything is signed,
    so an unreachable store leaves nothing behind. The chain PEM."""
    store = store_from_url(settings.store_url, **store_options(settings))
    await store.start()
    try:
        if settings.store_url.startswith("sqlite://"):
            await store.migrate()
        chain, key = ca.issue_station_certificate(ca_dir, station_id, days=days)
        cert = provisioned_certificate(ca.issued_from_chain(chain.decode()), station_id, utcnow())
        if await Certificates(store).put(cert) is None:
            raise ca.CAError(f"a certificate with serial {cert.serial} is already recorded")  # 2^159 serials: never
        ca.write_pair(out_cert, out_key, chain, key)
        log.info("station certificate issued by the CLI station=%r serial=%s (recorded)", station_id, cert.serial)
        return chain
    finally:
        await store.close()


def _show(ca_dir: Path) -> None:
    for name in (ca.CA_CERT, ca.OCSP_CERT):
        path = ca_dir / name
        if not path.exists():
            print(f"{name}: missing")
            continue
        cert = pki.load_certificate(path.read_bytes())
        print(f"{name}:")
        print(f"  subject     : {cert.subject.rfc4514_string()}")
        print(f"  issuer      : {cert.issuer.rfc4514_string()}")
        print(f"  serial      : {pki.serial_hex(cert)}")
        print(f"  valid       : {to_ocpp(cert.not_valid_before_utc)} .. {to_ocpp(cert.not_valid_after_utc)}")
        print(f"  sha256      : {cert.fingerprint(hashes.SHA256()).hex(':')}")
        print(f"  sha1        : {cert.fingerprint(hashes.SHA1()).hex(':')}")

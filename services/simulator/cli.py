"""`csms simulate`: N simulated stations against a running CSMS, then a report.

    csms simulate --stations 10 --protocol mixed
    csms simulate --stations 1000 --meter-values 2 --interval 0.05 --no-validate --json

With an API key (--api-key, CSMS_API_KEY, or the embedded mode's ./.csms/api_key)
it first registers the stations and the id token through the REST API.

With --hold the stations stay connected and answer station-operations commands like real
ones (reports, firmware updates with a reboot, log uploads, TriggerMessage):

    csms simulate --stations 2 --hold 600 --firmware-step-s 0.5
    csms simulate --stations 1 --prefix BAD --hold 600 --firmware-outcome old_version

Over TLS (security profiles 2 and 3, docs/security.md): a `wss://` URL, the CA that signed
the CSMS's server certificate, and for profile 3 a client certificate (or none: asked for
a CSR, a station gets one from the CSMS's CA and presents it from its next connection):

    csms simulate --url wss://127.0.0.1:9443/ocpp --tls-ca ca.pem --hold 600
    csms simulate --url wss://127.0.0.1:9443/ocpp --tls-ca ca.pem --client-cert cp.pem --client-key cp.key
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

import aiohttp

from services.common.config import env_value
from services.common.ocpp_version import OcppVersion
from services.simulator.operations import FIRMWARE_OUTCOMES
from services.simulator.station import StationSpec, run_station
from services.simulator.stats import Stats

__all__ = ["add_arguments", "run", "station_password", "register", "build_specs", "parse_data_transfer", "check_tls_arguments"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=str(env_value("CSMS_SIM_URL")), help="OCPP endpoint base")
    p.add_argument("--api-url", default=str(env_value("CSMS_SIM_API_URL")), help="REST API base (registration)")
    p.add_argument("--api-key", default=None, help="admin API key (default: CSMS_API_KEY or ./.csms/api_key)")
    p.add_argument("--no-register", action="store_true", help="stations and token already exist")
    p.add_argument("--stations", type=int, default=3)
    p.add_argument("--protocol", choices=[OcppVersion.V16, OcppVersion.V201, "mixed"], default="mixed")
    p.add_argument("--prefix", default="SIM")
    p.add_argument("--password-seed", default="csms-simulator", help="per-station passwords are derived from this")
    p.add_argument("--id-token", default="SIMTOKEN0001")
    p.add_argument("--sessions", type=int, default=1, help="charging sessions per station")
    p.add_argument("--meter-values", type=int, default=3)
    p.add_argument("--interval", type=float, default=0.2, help="seconds between meter values")
    p.add_argument("--sample-minutes", type=float, default=5.0, help="simulated charging minutes per meter value")
    p.add_argument("--power-w", type=float, default=11_000.0)
    p.add_argument("--hold", type=float, default=0.0, help="stay connected this long afterwards (answer commands)")
    p.add_argument("--concurrency", type=int, default=1000, help="stations connecting at once")
    p.add_argument("--no-validate", action="store_true", help="skip the ocpp library's schema validation (load runs)")
    p.add_argument("--json", action="store_true", help="print the report as JSON only")
    p.add_argument("--firmware-step-s", type=float, default=1.0, help="seconds between firmware status notifications (and the reboot)")
    p.add_argument("--firmware-outcome", choices=FIRMWARE_OUTCOMES, default="ok",
                   help="how firmware updates end: ok, download_failed, install_failed, old_version (reboots into the old version)")
    p.add_argument("--firmware-installed-before-reboot", action="store_true",
                   help="report Installed before the reboot (default: after the BootNotification with the new version)")
    p.add_argument("--firmware-version", default=None, help="firmware version at power-up (default 1.0.0 / 2.0.1-sim)")
    p.add_argument("--report-items-per-part", type=int, default=4, help="reportData entries per NotifyReport (2.0.1 reports)")
    p.add_argument("--data-transfer", default=None, metavar="VENDOR[:MESSAGE[:DATA]]", help="send this DataTransfer after boot")
    p.add_argument("--tls-ca", default=None, help="wss://: PEM file of the CA the CSMS's server certificate chains to (default: system CAs)")
    p.add_argument("--client-cert", default=None, help="wss://: client certificate PEM file (security profile 3)")
    p.add_argument("--client-key", default=None, help="wss://: the client certificate's private key PEM file")


def station_password(seed: str, station_id: str) -> str:
    return hashlib.sha256(f"{seed}:{station_id}".encode()).hexdigest()[:32]


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key:
        return str(args.api_key)
    if os.environ.get("CSMS_API_KEY"):
        return os.environ["CSMS_API_KEY"]
    path = Path(str(env_value("CSMS_STATE_DIR"))) / "api_key"
    return path.read_text().strip() if path.exists() else None


async def register(api_url: str, api_key: str, specs: list[StationSpec], id_token: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.put(f"{api_url}/api/v1/tokens/{id_token}", json={"id_token": id_token, "status": "Accepted"}) as r:
            if r.status >= 400:
                async with http.post(f"{api_url}/api/v1/tokens", json={"id_token": id_token, "status": "Accepted"}) as r2:
                    if r2.status not in (200, 201, 409):
                        raise RuntimeError(f"token registration failed: {r2.status} {await r2.text()}")
        sem = asyncio.Semaphore(8)

        async def one(spec: StationSpec) -> None:
            async with sem:
                async with http.post(f"{api_url}/api/v1/stations", json={"id": spec.station_id, "password": spec.password}) as r:
                    if r.status == 409:  # exists: make sure the password is ours
                        async with http.patch(f"{api_url}/api/v1/stations/{spec.station_id}", json={"password": spec.password}) as r2:
                            if r2.status >= 400:
                                raise RuntimeError(f"station update failed: {r2.status} {await r2.text()}")
                    elif r.status >= 400:
                        raise RuntimeError(f"station registration failed: {r.status} {await r.text()}")

        await asyncio.gather(*(one(s) for s in specs))


def parse_data_transfer(text: str | None) -> tuple[str, str | None, str | None] | None:
    """`VENDOR[:MESSAGE[:DATA]]` -> (vendor id, message id, data); the data may hold colons."""
    if not text:
        return None
    vendor, _, rest = text.partition(":")
    message, sep, data = rest.partition(":")
    return vendor, message or None, data if sep else None


def build_specs(args: argparse.Namespace) -> list[StationSpec]:
    specs = []
    for i in range(args.stations):
        protocol = args.protocol if args.protocol != "mixed" else (OcppVersion.V16 if i % 2 == 0 else OcppVersion.V201)
        sid = f"{args.prefix}{i:05d}"
        specs.append(StationSpec(
            station_id=sid,
            password=station_password(args.password_seed, sid),
            protocol=protocol,
            url=args.url,
            id_token=args.id_token,
            sessions=args.sessions,
            meter_values=args.meter_values,
            interval_s=args.interval,
            sample_minutes=args.sample_minutes,
            power_w=args.power_w,
            hold_s=args.hold,
            validate=not args.no_validate,
            firmware_step_s=args.firmware_step_s,
            firmware_outcome=args.firmware_outcome,
            firmware_installed_before_reboot=args.firmware_installed_before_reboot,
            firmware_version=args.firmware_version,
            report_items_per_part=max(1, args.report_items_per_part),
            data_transfer=parse_data_transfer(args.data_transfer),
            tls_ca=args.tls_ca,
            client_cert=args.client_cert,
            client_key=args.client_key or args.client_cert,
        ))
    return specs


def check_tls_arguments(args: argparse.Namespace) -> str | None:
    """Why the TLS options do not fit together, or None."""
    tls_given = bool(args.tls_ca or args.client_cert or args.client_key)
    if tls_given and not str(args.url).startswith("wss://"):
        return "--tls-ca/--client-cert/--client-key need a wss:// --url"
    if args.client_key and not args.client_cert:
        return "--client-key needs --client-cert"
    for name in ("tls_ca", "client_cert", "client_key"):
        path = getattr(args, name)
        if path and not Path(path).is_file():
            return f"--{name.replace('_', '-')}: no such file: {path}"
    return None


async def run(args: argparse.Namespace) -> int:
    if (problem := check_tls_arguments(args)) is not None:
        print(f"csms simulate: {problem}", file=sys.stderr)
        return 2
    specs = build_specs(args)
    if not args.no_register:
        key = _api_key(args)
        if not key:
            print("csms simulate: no API key (use --api-key, CSMS_API_KEY, or --no-register)", file=sys.stderr)
            return 2
        await register(args.api_url, key, specs, args.id_token)
    stats = Stats()
    sem = asyncio.Semaphore(max(1, args.concurrency))

    async def one(spec: StationSpec) -> None:
        async with sem:
            await run_station(spec, stats)

    await asyncio.gather(*(one(s) for s in specs))
    summary: dict[str, Any] = stats.summary()
    summary["simulator_max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"stations: {summary['stations_ok']} ok, {summary['stations_failed']} failed")
        print(f"messages: {summary['messages']} in {summary['elapsed_s']} s ({summary['messages_per_s']}/s)")
        lat = summary["reply_latency_ms"]
        print(f"reply latency: p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
        print(f"boot latency: p50 {summary['boot_latency_ms']['p50']} ms, p99 {summary['boot_latency_ms']['p99']} ms")
        if summary["errors"]:
            print(f"errors: {summary['errors']}")
    return 0 if stats.stations_failed == 0 else 1

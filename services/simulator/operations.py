"""What a simulated station does for firmware updates and log uploads, as small functions a
test can call to know what to expect: the firmware status sequence for each outcome, the
version a firmware location installs, and the exact bytes of the log a station uploads.

Real stations differ in detail; these follow OCPP 1.6 (+ security whitepaper) and 2.0.1:
- 1.6 UpdateFirmware: Downloading, Downloaded, Installing, (reboot), Installed.
- 1.6 SignedUpdateFirmware and 2.0.1 UpdateFirmware: Downloading, Downloaded,
  SignatureVerified (signed only), Installing, InstallRebooting, (reboot), Installed.
By default the station reports Installed after it has rebooted and sent its BootNotification
with the new version (2.0.1 L01: InstallRebooting, reboot, boot, Installed), so whoever reads
"Installed" already knows which version the station runs; `installed_before_reboot` gives
the other order some firmware uses (Installed, then the reboot).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote, urlsplit

import aiohttp

from services.common.timeutil import to_ocpp

__all__ = [
    "FIRMWARE_OUTCOMES", "FirmwarePlan", "firmware_plan", "firmware_version_from_location",
    "log_bytes", "log_filename", "upload_url", "upload",
]

FIRMWARE_OUTCOMES = ("ok", "download_failed", "install_failed", "old_version")

# `2.1.0`, `v3.4`, `1.2.3-rc1`, `1.0.0+build5`: digits and dots (at least two parts), an
# optional pre-release / build tail; then optionally a file extension or two (`.bin`, `.tar.gz`).
_VERSION = re.compile(r"^(?P<version>v?\d+(?:\.\d+)+(?:[-+][0-9A-Za-z][0-9A-Za-z.+-]*?)?)(?:\.[A-Za-z][A-Za-z0-9]*)*$")


def firmware_version_from_location(location: str, old_version: str) -> str:
    """The version a firmware file installs: the location's last path segment without its
    extension when that looks like a version (`http://x/fw/2.1.0.bin` -> "2.1.0"), else the
    old version + "+1"."""
    path = urlsplit(location).path if "://" in location else location
    segment = unquote(path.rstrip("/").rsplit("/", 1)[-1])
    m = _VERSION.match(segment)
    return m.group("version") if m else f"{old_version}+1"


@dataclass(frozen=True)
class FirmwarePlan:
    before_reboot: tuple[str, ...]   # statuses sent one firmware step apart
    reboot: bool                     # then close the socket, reconnect, boot
    boots_new_version: bool          # ... into the new version (else the old one)
    after_boot: tuple[str, ...]      # statuses sent after the BootNotification


def firmware_plan(outcome: str, signed: bool, plain16: bool, installed_before_reboot: bool = False) -> FirmwarePlan:
    """The status sequence of one firmware update. `plain16`: 1.6 UpdateFirmware, whose
    status enum has no SignatureVerified / InstallRebooting twins. `installed_before_reboot`:
    report Installed before going down (some firmware does), not after the new boot."""
    if outcome not in FIRMWARE_OUTCOMES:
        raise ValueError(f"unknown firmware outcome {outcome!r}; one of {', '.join(FIRMWARE_OUTCOMES)}")
    if outcome == "download_failed":
        return FirmwarePlan(("Downloading", "DownloadFailed"), False, False, ())
    verified = ("SignatureVerified",) if signed and not plain16 else ()
    installing = ("Downloading", "Downloaded", *verified, "Installing")
    if outcome == "install_failed":
        return FirmwarePlan((*installing, "InstallationFailed"), False, False, ())
    rebooting = () if plain16 else ("InstallRebooting",)
    if installed_before_reboot:
        return FirmwarePlan((*installing, *rebooting, "Installed"), True, outcome == "ok", ())
    return FirmwarePlan((*installing, *rebooting), True, outcome == "ok", ("Installed",))


_LEVELS = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "INFO", "ERROR")
_EVENTS = (
    "heartbeat sent", "meter sample energy={energy} Wh", "connector 1 status Available",
    "websocket ping rtt={rtt} ms", "rcd self-test passed", "temperature board={temp} C",
    "authorize cache hit", "contactor cycle count={cycles}", "grid voltage L1={volts} V",
    "firmware integrity check ok",
)
_LOG_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


def log_bytes(station_id: str, request_id: int, lines: int = 96) -> bytes:
    """The log a station uploads for a request: `lines` lines (about 7 KiB), each with a UTC
    timestamp, the same bytes for the same (station, request id) on every run and machine.
    A test computes the expected upload with this function."""
    rng = random.Random(f"{station_id}/{request_id}")
    t = _LOG_EPOCH + timedelta(seconds=rng.randrange(0, 300 * 86_400))
    out = [f"# {station_id} log for request {request_id}\n"]
    for i in range(lines):
        t += timedelta(milliseconds=rng.randrange(200, 120_000))
        event = rng.choice(_EVENTS).format(
            energy=rng.randrange(1_000, 900_000), rtt=rng.randrange(5, 400), temp=rng.randrange(15, 70),
            cycles=rng.randrange(100, 20_000), volts=rng.randrange(220, 240),
        )
        out.append(f"{to_ocpp(t)} {rng.choice(_LEVELS):5} [{station_id}] #{i:04d} {event}\n")
    return "".join(out).encode()


def log_filename(station_id: str, log_type: str, request_id: int | None) -> str:
    """`CP-1-DiagnosticsLog-17.log`; 1.6 GetDiagnostics (no request id): `CP-1-diagnostics.log`."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", station_id)
    return f"{safe}-diagnostics.log" if request_id is None else f"{safe}-{log_type}-{request_id}.log"


def upload_url(location: str, filename: str) -> str:
    """`<location>/<filename>`; the location normally ends in "/" already."""
    return (location if location.endswith("/") else location + "/") + filename


async def upload(url: str, body: bytes, timeout_s: float = 30.0) -> tuple[bool, str]:
    """HTTP PUT of the raw bytes: (True on 2xx, what happened). Other schemes (ftp...)
    fail: the simulator speaks HTTP only."""
    if not url.startswith(("http://", "https://")):
        return False, f"unsupported scheme in {url!r}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
            async with http.put(url, data=body, headers={"Content-Type": "text/plain"}) as r:
                await r.read()
                return 200 <= r.status < 300, f"HTTP {r.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return False, repr(exc)

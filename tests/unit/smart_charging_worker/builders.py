"""Builders for the smart-charging worker tests: station events as the gateway publishes
them, SiteUpdated records as the API publishes them on csms.sites.v1 (and the legacy
`site:` notification on csms.events.v1), and command readers."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any

from services.common import codec, sites_codec
from services.common import events as ev
from services.common.ocpp.commands import to_ocpp

UTC = timezone.utc
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def envelope(station_id: str, body: ev.Body, *, version: str = "1.6", at: datetime = T0, action: str = "") -> ev.Envelope:
    return ev.Envelope(
        event_id=str(uuid.uuid4()), station_id=station_id, received_at=at, body=body,
        gateway_id="gateway-0", ocpp_version=version, station_time=at, action=action,
    )


def started(station_id: str, tx: str, connector: int = 1, *, version: str = "1.6") -> ev.Envelope:
    body = ev.TransactionStarted(transaction_id=tx, evse_id=connector, connector_id=connector, id_token="TOKEN1")
    return envelope(station_id, body, version=version, action="StartTransaction" if version == "1.6" else "TransactionEvent")


def ended_16(station_id: str, tx: str) -> ev.Envelope:
    """A 1.6 StopTransaction carries no connector: only the transaction id."""
    return envelope(station_id, ev.TransactionEnded(transaction_id=tx, meter_stop_wh=5000), action="StopTransaction")


def current(station_id: str, tx: str, amps: dict[str, float], *, at: datetime, connector: int = 1) -> ev.Envelope:
    samples = tuple(
        ev.MeterSample(timestamp=at, value=value, unit="A", measurand="Current.Import", phase=phase)
        for phase, value in amps.items()
    )
    body = ev.MeterValues(transaction_id=tx, evse_id=connector, connector_id=connector, samples=samples)
    return envelope(station_id, body, at=at, action="MeterValues")


def booted(station_id: str, *, version: str = "1.6", status: str = "Accepted") -> ev.Envelope:
    body = ev.StationBooted(vendor="V", model="M", registration_status=status)
    return envelope(station_id, body, version=version, action="BootNotification")


def command_result(station_id: str, command_id: str, status: str) -> ev.Envelope:
    body = ev.CommandResult(command_id=command_id, command_type="SetChargingLimit", status=status)
    return envelope(station_id, body, action="SetChargingProfile")


def site_change(site: dict[str, Any], *, version: int = 0, deleted: bool = False) -> sites_codec.SiteChange:
    """What the API publishes on csms.sites.v1 after a site change (key = site id).
    `version` 0 picks a fresh one (T0 in microseconds, raised above any given before)."""
    global _last_version
    if not version:
        version = _last_version = sites_codec.next_site_version(None, T0, _last_version)
    return sites_codec.site_change(site["id"], None if deleted else site, T0, version=version)


_last_version = 0


def site_updated(site: dict[str, Any]) -> ev.Envelope:
    """The legacy notification (before ADR 015) on csms.events.v1: station id and key
    "site:<id>". Still accepted during an upgrade; the API no longer publishes it."""
    body = ev.Notification(payload_json=json.dumps(site))
    return ev.Envelope(
        event_id=str(uuid.uuid4()), station_id=f"site:{site['id']}", received_at=T0, body=body,
        gateway_id="api", action="SiteUpdated",
    )


@dataclass(frozen=True)
class SentProfile:
    """A charging limit as produced on csms.commands.v1 (`SetChargingLimit`, version-neutral).

    `frame(version)` is the OCPP call the gateway builds from it for a station of that
    version (the gateway's own table, services/common/ocpp/commands.py), so a test can
    check that what smart charging sends is a valid profile for the station."""

    command: codec.Command
    partition: int
    params: dict[str, Any]

    @property
    def purpose(self) -> str:
        """"tx" (a transaction's limit, a TxProfile) or "default" (the fail-safe)."""
        return str(self.params["purpose"])

    @property
    def limit(self) -> float:
        """The limit as a station gets it: rounded down to 0.1 A."""
        return float(Decimal(self.params["limit_a"]).quantize(Decimal("0.1"), rounding=ROUND_DOWN))

    @property
    def station_id(self) -> str:
        return self.command.station_id

    def frame(self, version: str = "1.6") -> tuple[str, dict[str, Any]]:
        return to_ocpp(self.command.command_type, self.params, version)

    def profile(self, version: str = "1.6") -> dict[str, Any]:
        """The charging profile inside the frame."""
        _, payload = self.frame(version)
        return payload["csChargingProfiles" if version == "1.6" else "chargingProfile"]  # type: ignore[no-any-return]


def latest_limits(sent: list[SentProfile]) -> dict[str, float]:
    """The last TxProfile limit each station received."""
    limits: dict[str, float] = {}
    for s in sent:
        if s.purpose == "tx":
            limits[s.station_id] = s.limit
    return limits


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)

"""Simulated charging stations (OCPP 1.6J and 2.0.1) on the ocpp library's client side.

One `run_station()` does what a real charger does after power-up: connect with Basic
auth, BootNotification (honouring Pending + interval), StatusNotification per connector,
Heartbeat, Authorize, one charging session with periodic meter values, stop, and then
optionally stays connected to answer commands from the CSMS.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar, cast

import websockets
from websockets.typing import Subprotocol
from ocpp.routing import on as _untyped_on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from services.common.ocpp_version import OcppVersion
from services.common.timeutil import to_ocpp, utcnow
from services.simulator.stats import Stats

__all__ = ["StationSpec", "run_station", "now_z"]

log = logging.getLogger("csms.simulator")


Handler = TypeVar("Handler", bound=Callable[..., Any])


def on(action: str) -> Callable[[Handler], Handler]:
    """The ocpp library's `@on(action)`, typed: it returns the handler it was given (marked
    for the library's router); the library itself ships no type information."""
    return cast(Callable[[Handler], Handler], _untyped_on(action))


def now_z() -> str:
    return to_ocpp(utcnow())


@dataclass
class StationSpec:
    station_id: str
    password: str
    protocol: str = OcppVersion.V16    # OcppVersion.V16 | OcppVersion.V201 (or their strings)
    url: str = "ws://127.0.0.1:9000/ocpp"
    id_token: str = "SIMTOKEN0001"
    sessions: int = 1
    meter_values: int = 3
    interval_s: float = 0.2            # real time between meter values
    sample_minutes: float = 5.0        # simulated charging time per meter value (energy)
    power_w: float = 11_000.0
    hold_s: float = 0.0                # stay connected afterwards (answer commands)
    validate: bool = True              # ocpp library schema validation on both sides
    connectors: int = 1
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # CSMS -> station calls


class _Common:
    spec: StationSpec
    stats: Stats

    def _note(self, action: str, payload: dict[str, Any]) -> None:
        self.spec.received.append((action, payload))
        self.stats.calls_received[action] += 1

    async def timed(self, payload: Any) -> Any:
        t0 = time.perf_counter()
        result = await self.call(payload, suppress=False, skip_schema_validation=not self.spec.validate)  # type: ignore[attr-defined]
        self.stats.record(type(payload).__name__, time.perf_counter() - t0)
        return result


class Station16(_Common, Cp16):  # type: ignore[misc]  # Cp16 is untyped (the ocpp library)
    def __init__(self, spec: StationSpec, ws: Any, stats: Stats) -> None:
        super().__init__(spec.station_id, ws, response_timeout=60)
        self.spec, self.stats = spec, stats
        self.active_tx: int | None = None
        self.remote_start: asyncio.Queue[int] = asyncio.Queue()

    @on("RemoteStartTransaction")
    async def on_remote_start(self, id_tag: str, connector_id: int | None = None, **kw: Any) -> Any:
        self._note("RemoteStartTransaction", {"id_tag": id_tag, "connector_id": connector_id})
        return result16.RemoteStartTransaction(status="Accepted")

    @on("RemoteStopTransaction")
    async def on_remote_stop(self, transaction_id: int) -> Any:
        self._note("RemoteStopTransaction", {"transaction_id": transaction_id})
        return result16.RemoteStopTransaction(status="Accepted" if transaction_id == self.active_tx else "Rejected")

    @on("Reset")
    async def on_reset(self, type: str) -> Any:
        self._note("Reset", {"type": type})
        return result16.Reset(status="Accepted")

    @on("UnlockConnector")
    async def on_unlock(self, connector_id: int) -> Any:
        self._note("UnlockConnector", {"connector_id": connector_id})
        return result16.UnlockConnector(status="Unlocked")

    @on("ChangeAvailability")
    async def on_change_availability(self, connector_id: int, type: str) -> Any:
        self._note("ChangeAvailability", {"connector_id": connector_id, "type": type})
        return result16.ChangeAvailability(status="Accepted")

    @on("TriggerMessage")
    async def on_trigger(self, requested_message: str, connector_id: int | None = None) -> Any:
        self._note("TriggerMessage", {"requested_message": requested_message})
        return result16.TriggerMessage(status="Accepted")

    @on("GetConfiguration")
    async def on_get_configuration(self, key: list[str] | None = None) -> Any:
        self._note("GetConfiguration", {"key": key})
        known = {"HeartbeatInterval": "300", "MeterValueSampleInterval": "60", "NumberOfConnectors": str(self.spec.connectors)}
        keys = key or list(known)
        return result16.GetConfiguration(
            configuration_key=[{"key": k, "readonly": False, "value": known[k]} for k in keys if k in known],
            unknown_key=[k for k in keys if k not in known] or None,
        )

    @on("ChangeConfiguration")
    async def on_change_configuration(self, key: str, value: str) -> Any:
        self._note("ChangeConfiguration", {"key": key, "value": value})
        return result16.ChangeConfiguration(status="Accepted")

    @on("SetChargingProfile")
    async def on_set_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        self._note("SetChargingProfile", {"connector_id": connector_id, "cs_charging_profiles": cs_charging_profiles})
        return result16.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    async def on_clear_profile(self, **kw: Any) -> Any:
        self._note("ClearChargingProfile", kw)
        return result16.ClearChargingProfile(status="Accepted")

    async def boot(self) -> None:
        while True:
            r = await self.timed(call16.BootNotification(charge_point_model="SimCharger-16", charge_point_vendor="CSMS-Sim", firmware_version="1.0.0", charge_point_serial_number=f"SN-{self.spec.station_id}"))
            if r.status == "Accepted":
                return
            if r.status == "Rejected":
                raise RuntimeError("boot rejected")
            await asyncio.sleep(min(max(r.interval, 1), 60) * random.uniform(0.8, 1.2))

    async def status(self, connector: int, status: str) -> None:
        await self.timed(call16.StatusNotification(connector_id=connector, error_code="NoError", status=status, timestamp=now_z()))

    async def charge_once(self, meter_start: int) -> int:
        s = self.spec
        auth = await self.timed(call16.Authorize(id_tag=s.id_token))
        if auth.id_tag_info["status"] != "Accepted":
            self.stats.errors["authorize_" + auth.id_tag_info["status"]] += 1
        await self.status(1, "Preparing")
        start = await self.timed(call16.StartTransaction(connector_id=1, id_tag=s.id_token, meter_start=meter_start, timestamp=now_z()))
        self.active_tx = start.transaction_id
        await self.status(1, "Charging")
        meter = meter_start
        step = int(s.power_w * s.sample_minutes / 60)
        for _ in range(s.meter_values):
            await asyncio.sleep(s.interval_s)
            meter += step
            await self.timed(call16.MeterValues(connector_id=1, transaction_id=self.active_tx, meter_value=[{
                "timestamp": now_z(),
                "sampled_value": [
                    {"value": str(meter), "measurand": "Energy.Active.Import.Register", "unit": "Wh", "context": "Sample.Periodic"},
                    {"value": f"{s.power_w / 1000:.2f}", "measurand": "Power.Active.Import", "unit": "kW", "context": "Sample.Periodic"},
                ],
            }]))
        await self.timed(call16.StopTransaction(meter_stop=meter, timestamp=now_z(), transaction_id=self.active_tx, reason="EVDisconnected", id_tag=s.id_token))
        self.active_tx = None
        await self.status(1, "Finishing")
        await self.status(1, "Available")
        return meter


class Station201(_Common, Cp201):  # type: ignore[misc]  # Cp201 is untyped (the ocpp library)
    def __init__(self, spec: StationSpec, ws: Any, stats: Stats) -> None:
        super().__init__(spec.station_id, ws, response_timeout=60)
        self.spec, self.stats = spec, stats
        self.active_tx: str | None = None
        self.seq = 0

    @on("RequestStartTransaction")
    async def on_request_start(self, id_token: dict[str, Any], remote_start_id: int, **kw: Any) -> Any:
        self._note("RequestStartTransaction", {"id_token": id_token, "remote_start_id": remote_start_id, **kw})
        return result201.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    async def on_request_stop(self, transaction_id: str, **kw: Any) -> Any:
        self._note("RequestStopTransaction", {"transaction_id": transaction_id})
        return result201.RequestStopTransaction(status="Accepted" if transaction_id == self.active_tx else "Rejected")

    @on("Reset")
    async def on_reset(self, type: str, **kw: Any) -> Any:
        self._note("Reset", {"type": type, **kw})
        return result201.Reset(status="Accepted")

    @on("UnlockConnector")
    async def on_unlock(self, evse_id: int, connector_id: int, **kw: Any) -> Any:
        self._note("UnlockConnector", {"evse_id": evse_id, "connector_id": connector_id})
        return result201.UnlockConnector(status="Unlocked")

    @on("ChangeAvailability")
    async def on_change_availability(self, operational_status: str, **kw: Any) -> Any:
        self._note("ChangeAvailability", {"operational_status": operational_status, **kw})
        return result201.ChangeAvailability(status="Accepted")

    @on("TriggerMessage")
    async def on_trigger(self, requested_message: str, **kw: Any) -> Any:
        self._note("TriggerMessage", {"requested_message": requested_message, **kw})
        return result201.TriggerMessage(status="Accepted")

    @on("GetVariables")
    async def on_get_variables(self, get_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self._note("GetVariables", {"get_variable_data": get_variable_data})
        return result201.GetVariables(get_variable_result=[
            {"attribute_status": "Accepted", "attribute_value": "300", "component": d["component"], "variable": d["variable"]}
            for d in get_variable_data
        ])

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self._note("SetVariables", {"set_variable_data": set_variable_data})
        return result201.SetVariables(set_variable_result=[
            {"attribute_status": "Accepted", "component": d["component"], "variable": d["variable"]}
            for d in set_variable_data
        ])

    @on("SetChargingProfile")
    async def on_set_profile(self, evse_id: int, charging_profile: dict[str, Any], **kw: Any) -> Any:
        self._note("SetChargingProfile", {"evse_id": evse_id, "charging_profile": charging_profile})
        return result201.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    async def on_clear_profile(self, **kw: Any) -> Any:
        self._note("ClearChargingProfile", kw)
        return result201.ClearChargingProfile(status="Accepted")

    async def boot(self) -> None:
        while True:
            r = await self.timed(call201.BootNotification(
                charging_station={"model": "SimCharger-201", "vendor_name": "CSMS-Sim", "firmware_version": "2.0.1-sim", "serial_number": f"SN-{self.spec.station_id}"},
                reason="PowerUp",
            ))
            if r.status == "Accepted":
                return
            if r.status == "Rejected":
                raise RuntimeError("boot rejected")
            await asyncio.sleep(min(max(r.interval, 1), 60) * random.uniform(0.8, 1.2))

    async def status(self, connector: int, status: str) -> None:
        await self.timed(call201.StatusNotification(timestamp=now_z(), connector_status=status, evse_id=1, connector_id=connector))

    def _tx_event(self, event_type: str, trigger: str, meter: int | None, charging_state: str | None, stopped_reason: str | None = None, with_token: bool = False) -> Any:
        self.seq += 1
        info: dict[str, Any] = {"transaction_id": self.active_tx}
        if charging_state:
            info["charging_state"] = charging_state
        if stopped_reason:
            info["stopped_reason"] = stopped_reason
        kwargs: dict[str, Any] = {}
        if meter is not None:
            kwargs["meter_value"] = [{"timestamp": now_z(), "sampled_value": [
                {"value": meter, "measurand": "Energy.Active.Import.Register", "unit_of_measure": {"unit": "Wh"}},
                {"value": self.spec.power_w, "measurand": "Power.Active.Import", "unit_of_measure": {"unit": "W"}},
            ]}]
        if with_token:
            kwargs["id_token"] = {"id_token": self.spec.id_token, "type": "ISO14443"}
        if event_type == "Started":
            kwargs["evse"] = {"id": 1, "connector_id": 1}
        return call201.TransactionEvent(event_type=event_type, timestamp=now_z(), trigger_reason=trigger, seq_no=self.seq - 1, transaction_info=info, **kwargs)

    async def charge_once(self, meter_start: int) -> int:
        s = self.spec
        auth = await self.timed(call201.Authorize(id_token={"id_token": s.id_token, "type": "ISO14443"}))
        if auth.id_token_info["status"] != "Accepted":
            self.stats.errors["authorize_" + auth.id_token_info["status"]] += 1
        self.active_tx = f"{s.station_id}-{random.getrandbits(48):012x}"
        self.seq = 0
        await self.timed(self._tx_event("Started", "Authorized", meter_start, "Charging", with_token=True))
        await self.status(1, "Occupied")
        meter = meter_start
        step = int(s.power_w * s.sample_minutes / 60)
        for _ in range(s.meter_values):
            await asyncio.sleep(s.interval_s)
            meter += step
            await self.timed(self._tx_event("Updated", "MeterValuePeriodic", meter, "Charging"))
        await self.timed(self._tx_event("Ended", "EVCommunicationLost", meter, "Idle", stopped_reason="EVDisconnected"))
        self.active_tx = None
        await self.status(1, "Available")
        return meter


def _basic(station_id: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{station_id}:{password}".encode()).decode()


async def run_station(spec: StationSpec, stats: Stats) -> bool:
    """One station's life; True if it completed every step."""
    is_16 = spec.protocol == OcppVersion.V16
    subprotocol = (OcppVersion.V16 if is_16 else OcppVersion.V201).subprotocol
    t0 = time.perf_counter()
    try:
        async with websockets.connect(
            f"{spec.url.rstrip('/')}/{spec.station_id}",
            subprotocols=[Subprotocol(subprotocol)],
            additional_headers={"Authorization": _basic(spec.station_id, spec.password)},
            open_timeout=30,
            ping_interval=None,
            max_size=1 << 20,
        ) as ws:
            cls = Station16 if is_16 else Station201
            cp = cls(spec, ws, stats)
            reader = asyncio.create_task(cp.start())
            try:
                await cp.boot()
                stats.boots.append(time.perf_counter() - t0)
                for c in range(1, spec.connectors + 1):
                    await cp.status(c, "Available")
                await cp.timed((call16 if is_16 else call201).Heartbeat())
                meter = random.randint(1_000, 100_000)
                for _ in range(spec.sessions):
                    meter = await cp.charge_once(meter)
                if spec.hold_s > 0:
                    await asyncio.sleep(spec.hold_s)
            finally:
                reader.cancel()
        stats.stations_done += 1
        return True
    except Exception as exc:  # a failed station is counted, never crashes the run
        stats.stations_failed += 1
        stats.errors[type(exc).__name__] += 1
        log.warning("station %s failed: %r", spec.station_id, exc)
        return False

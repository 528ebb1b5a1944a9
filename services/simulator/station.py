"""Simulated charging stations (OCPP 1.6J and 2.0.1) on the ocpp library's client side.

One `run_station()` does what a real charger does after power-up: connect with Basic
auth, BootNotification (honouring Pending + interval), StatusNotification per connector,
Heartbeat, Authorize, one charging session with periodic meter values, stop, and then
optionally stays connected to answer commands from the CSMS.

It answers the station-operations commands the way a station does (ADR 016), so the
README's tour and the end-to-end tests can show them:
- device model: 2.0.1 GetBaseReport / GetReport (answer, then NotifyReport in parts of
  `report_items_per_part`), GetVariables / SetVariables, SetNetworkProfile; 1.6
  GetConfiguration / ChangeConfiguration, over one `DeviceModel` that survives reboots;
- firmware: 1.6 UpdateFirmware / SignedUpdateFirmware, 2.0.1 UpdateFirmware: the status
  sequence of `operations.firmware_plan`, then a reboot (close, reconnect, BootNotification
  with the new version); `StationSpec.firmware_outcome` makes one station fail;
- logs: 1.6 GetDiagnostics / GetLog, 2.0.1 GetLog: Uploading, an HTTP PUT of
  `operations.log_bytes` to `<location><filename>`, Uploaded or the failure status;
- TriggerMessage (and 1.6 ExtendedTriggerMessage) for every message it can send;
- an optional DataTransfer after boot;
- security (issue 11, services/simulator/security.py): TLS for `wss://` URLs (a CA to
  trust, a client certificate), a new Basic-auth password from the CSMS used from the next
  connection on, and a CSR when asked (SignCertificate), the CertificateSigned that
  follows checked and stored, its certificate then presented on the next `wss://` connect.

Follow-up messages (a report, a status, a triggered message) are sent only after the reply
to the command has gone out: handlers queue them with `_after_reply`, `route_message` starts
them once the library has sent the CALLRESULT.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Coroutine, TypeVar, cast

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidHandshake
from websockets.typing import Subprotocol
from ocpp.routing import on as _untyped_on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from services.common.ocpp_version import OcppVersion
from services.common.timeutil import parse_ocpp, to_ocpp, utcnow
from services.simulator.device_model import DeviceModel, Variable, chunks, default_model, report_data
from services.simulator.operations import (
    FIRMWARE_OUTCOMES, firmware_plan, firmware_version_from_location, log_bytes, log_filename, upload, upload_url,
)
from services.simulator.security import Credentials, check_signed, new_csr, password_acceptable, tls_context
from services.simulator.stats import Stats

__all__ = ["StationSpec", "StationState", "Station16", "Station201", "run_station", "now_z"]

log = logging.getLogger("csms.simulator")


Handler = TypeVar("Handler", bound=Callable[..., Any])


def on(action: str, *, skip_schema_validation: bool = False) -> Callable[[Handler], Handler]:
    """The ocpp library's `@on(action)`, typed: it returns the handler it was given (marked
    for the library's router); the library itself ships no type information."""
    return cast(Callable[[Handler], Handler], _untyped_on(action, skip_schema_validation=skip_schema_validation))


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
    firmware_version: str | None = None   # None: "1.0.0" (1.6) / "2.0.1-sim" (2.0.1)
    firmware_step_s: float = 1.0       # between two firmware status notifications, and the reboot
    firmware_outcome: str = "ok"       # ok | download_failed | install_failed | old_version
    firmware_installed_before_reboot: bool = False  # Installed, reboot (instead of reboot, boot, Installed)
    report_items_per_part: int = 4     # reportData entries per NotifyReport
    data_transfer: tuple[str, str | None, str | None] | None = None  # (vendor id, message id, data) sent after boot
    tls_ca: str | None = None          # wss://: PEM file of the CA the CSMS's certificate chains to (None: system CAs)
    client_cert: str | None = None     # wss://: client certificate (profile 3) and its key, PEM files
    client_key: str | None = None
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # CSMS -> station calls

    def __post_init__(self) -> None:
        if self.firmware_outcome not in FIRMWARE_OUTCOMES:
            raise ValueError(f"firmware_outcome must be one of {', '.join(FIRMWARE_OUTCOMES)}, not {self.firmware_outcome!r}")


PostBoot = Callable[["_Common"], Awaitable[None]]


@dataclass
class StationState:
    """What a station keeps across reboots and reconnects: its device model, its firmware,
    what it is busy with, and what it must say after the next boot."""
    model: DeviceModel
    firmware_version: str
    boot_reason: str = "PowerUp"                       # 2.0.1 BootReason of the next boot
    firmware_status: str = "Idle"                      # last status of a running update
    firmware_request_id: int | None = None
    firmware_signed16: bool = False                    # 1.6: the update came as SignedUpdateFirmware
    log_status: str = "Idle"
    log_request_id: int | None = None
    meter_wh: int = 0
    connector_status: dict[int, str] = field(default_factory=dict)
    reboot: asyncio.Event = field(default_factory=asyncio.Event)
    after_boot: list[PostBoot] = field(default_factory=list)
    boots: int = 0                                     # accepted BootNotifications so far
    data_transfer_status: str | None = None            # the CSMS's answer to our DataTransfer
    credentials: Credentials = field(default_factory=Credentials)  # password, CSR key, certificate

    def power_up_status(self, connector: int) -> str:
        """A connector's status after a boot: availability survives a reboot."""
        return "Unavailable" if self.model.actual("Connector", "AvailabilityState", 1, connector) == "Unavailable" else "Available"

    @classmethod
    def for_spec(cls, spec: StationSpec) -> StationState:
        is_16 = spec.protocol == OcppVersion.V16
        version = spec.firmware_version or ("1.0.0" if is_16 else "2.0.1-sim")
        model = default_model(spec.station_id, spec.connectors, spec.power_w, version, spec.report_items_per_part)
        return cls(model=model, firmware_version=version)


async def _sleep_until(when: datetime | None) -> None:
    if when is not None:
        delay = (when - utcnow()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_ocpp(text)
    except ValueError:
        return None


class _Common:
    """What both versions share: bookkeeping, follow-up jobs, firmware and log jobs. The
    version classes provide the messages (`_firmware_message`, `_log_message`, `_data_transfer`) and `boot`, `status`, `charge_once`."""
    spec: StationSpec
    stats: Stats
    state: StationState
    active_tx: Any

    def _init_common(self, spec: StationSpec, stats: Stats, state: StationState | None) -> None:
        self.spec, self.stats = spec, stats
        self.state = state if state is not None else StationState.for_spec(spec)
        self._queued: list[tuple[Callable[[], Coroutine[Any, Any, None]], str | None]] = []
        self._jobs: set[asyncio.Task[None]] = set()
        self._slots: dict[str, asyncio.Task[None]] = {}   # "firmware", "log": the one running

    def _note(self, action: str, payload: dict[str, Any]) -> None:
        self.spec.received.append((action, payload))
        self.stats.calls_received[action] += 1

    async def timed(self, payload: Any) -> Any:
        t0 = time.perf_counter()
        result = await self.call(payload, suppress=False, skip_schema_validation=not self.spec.validate)  # type: ignore[attr-defined]
        self.stats.record(type(payload).__name__, time.perf_counter() - t0)
        return result

    # --- follow-up work ----------------------------------------------------------------
    def _after_reply(self, job: Callable[[], Coroutine[Any, Any, None]], slot: str | None = None) -> None:
        """Run `job` once the reply to the CALL being handled has been sent; a `slot` job
        replaces (cancels) the one of the same slot still running."""
        self._queued.append((job, slot))

    def _busy(self, slot: str) -> bool:
        task = self._slots.get(slot)
        return task is not None and not task.done()

    async def route_message(self, raw_msg: str) -> None:
        try:
            await super().route_message(raw_msg)  # type: ignore[misc]  # the library's router (untyped)
        finally:
            queued, self._queued = self._queued, []
            for job, slot in queued:
                if slot is not None and self._busy(slot):
                    self._slots[slot].cancel()
                task = self._spawn(job())
                if slot is not None:
                    self._slots[slot] = task

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._jobs.add(task)
        task.add_done_callback(self._job_done)
        return task

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._jobs.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.stats.errors["job_" + type(exc).__name__] += 1
            log.warning("station %s: a follow-up job failed: %r", self.spec.station_id, exc)

    async def stop_jobs(self) -> None:
        """The connection is going away: stop what this connection started."""
        jobs = list(self._jobs)
        for task in jobs:
            task.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def after_boot(self) -> None:
        """What the station says right after an accepted boot: what a firmware update left
        to report, then the DataTransfer of `spec.data_transfer`."""
        pending, self.state.after_boot = self.state.after_boot, []
        for job in pending:
            await job(self)
        if self.spec.data_transfer is not None and self.state.boots == 1:
            vendor, message, data = self.spec.data_transfer
            reply = await self.timed(self._data_transfer(vendor, message, data))
            self.state.data_transfer_status = str(reply.status)

    # --- security ----------------------------------------------------------------------
    def _new_password(self, value: object) -> str:
        """The CSMS sets a new Basic-auth password: used from the next connection on."""
        if not password_acceptable(value):
            return "Rejected"
        assert isinstance(value, str)
        self.state.credentials.next_password = value
        log.info("station %s: new password stored, used from the next connection", self.spec.station_id)
        return "Accepted"

    def _certificate_signed(self, chain: str) -> str:
        creds = self.state.credentials
        why = check_signed(chain, creds.csr_key_pem, self.spec.station_id)
        if why is not None:
            log.info("station %s: CertificateSigned rejected: %s", self.spec.station_id, why)
            creds.signed_status = "Rejected"
            return "Rejected"
        creds.certificate_pem, creds.certificate_key_pem, creds.csr_key_pem = chain, creds.csr_key_pem, None
        creds.signed_status = "Accepted"
        log.info("station %s: certificate installed", self.spec.station_id)
        return "Accepted"

    def _send_csr_job(self) -> Callable[[], Coroutine[Any, Any, None]]:
        async def job() -> None:
            csr, key = new_csr(self.spec.station_id)
            self.state.credentials.csr_key_pem = key
            reply = await self.timed(self._sign_certificate(csr))
            self.state.credentials.sign_status = str(reply.status)
        return job

    def _sign_certificate(self, csr: str) -> Any:
        raise NotImplementedError

    # --- availability ------------------------------------------------------------------
    def _change_availability(self, connectors: list[int], operative: bool, whole: bool) -> str:
        """ChangeAvailability: Scheduled while a transaction runs on one of the connectors
        (the simulator charges on connector 1; it then leaves things as they are), else
        Accepted, the device model updated and a StatusNotification per connector."""
        if self.active_tx is not None and 1 in connectors:
            return "Scheduled"
        state = "Available" if operative else "Unavailable"
        model = self.state.model
        if whole:
            model.set_actual("ChargingStation", "AvailabilityState", state)
        if whole or len(connectors) == self.spec.connectors:
            model.set_actual("EVSE", "AvailabilityState", state, evse=1)
        for c in connectors:
            model.set_actual("Connector", "AvailabilityState", state, evse=1, connector=c)

        async def notify() -> None:
            for c in connectors:
                await self.status(c, state)

        self._after_reply(notify)
        return "Accepted"

    # --- firmware ----------------------------------------------------------------------
    def _start_firmware(self, location: str, retrieve: str | None, install: str | None, request_id: int | None,
                        signed: bool, plain16: bool) -> bool:
        """Start an update; True when it replaced one still running (AcceptedCanceled)."""
        replaced = self._busy("firmware")
        self.state.firmware_request_id = request_id
        self.state.firmware_signed16 = signed and self.spec.protocol == OcppVersion.V16
        self._after_reply(lambda: self._firmware(location, _when(retrieve), _when(install), request_id, signed, plain16), "firmware")
        return replaced

    async def _firmware(self, location: str, retrieve_at: datetime | None, install_at: datetime | None,
                        request_id: int | None, signed: bool, plain16: bool) -> None:
        st, step = self.state, max(0.0, self.spec.firmware_step_s)
        plan = firmware_plan(self.spec.firmware_outcome, signed, plain16, self.spec.firmware_installed_before_reboot)
        if retrieve_at is not None and retrieve_at > utcnow() and not plain16:
            await self._firmware_status("DownloadScheduled", request_id)
        await _sleep_until(retrieve_at)
        for i, status in enumerate(plan.before_reboot):
            if i:
                await asyncio.sleep(step)
            if status == "Installing" and install_at is not None and install_at > utcnow() and not plain16:
                await self._firmware_status("InstallScheduled", request_id)
                await _sleep_until(install_at)
            await self._firmware_status(status, request_id)
        if not plan.reboot:
            st.firmware_status = "Idle"
            return
        new_version = firmware_version_from_location(location, st.firmware_version)
        if plan.boots_new_version:
            st.firmware_version = new_version
            st.model.set_actual("FirmwareCtrlr", "FirmwareVersion", new_version)
        st.boot_reason = "FirmwareUpdate"

        async def report(cp: _Common) -> None:
            for status in plan.after_boot:
                await cp._firmware_status(status, request_id)
            cp.state.firmware_status = "Idle"

        st.after_boot.append(report)
        await asyncio.sleep(step)
        log.info("station %s: rebooting into firmware %s", self.spec.station_id, st.firmware_version)
        st.reboot.set()

    async def _firmware_status(self, status: str, request_id: int | None) -> None:
        self.state.firmware_status = status
        await self.timed(self._firmware_message(status, request_id))

    # --- logs --------------------------------------------------------------------------
    def _start_log(self, kind: str, location: str, log_type: str, request_id: int | None) -> tuple[str, bool]:
        """Start an upload; (the file name, True when it replaced one still running)."""
        replaced = self._busy("log")
        filename = log_filename(self.spec.station_id, log_type, request_id)
        self.state.log_request_id = request_id
        self._after_reply(lambda: self._upload(kind, location, filename, request_id), "log")
        return filename, replaced

    async def _upload(self, kind: str, location: str, filename: str, request_id: int | None) -> None:
        """kind: "diagnostics16" (DiagnosticsStatusNotification) or "log" (LogStatusNotification)."""
        st = self.state
        try:
            st.log_status = "Uploading"
            await self.timed(self._log_message(kind, "Uploading", request_id))
            url = upload_url(location, filename)
            ok, what = await upload(url, log_bytes(self.spec.station_id, request_id or 0))
            log.info("station %s: upload of %s to %s: %s", self.spec.station_id, filename, url, what)
            failed = "UploadFailed" if kind == "diagnostics16" else "UploadFailure"
            await self.timed(self._log_message(kind, "Uploaded" if ok else failed, request_id))
        finally:
            st.log_status = "Idle"

    # --- reports -----------------------------------------------------------------------
    async def _send_report(self, request_id: int, data: list[dict[str, Any]]) -> None:
        parts = list(chunks(data, self.spec.report_items_per_part))
        generated_at = now_z()
        for seq, part in enumerate(parts):
            await self.timed(call201.NotifyReport(
                request_id=request_id, generated_at=generated_at, seq_no=seq, report_data=part, tbc=seq < len(parts) - 1,
            ))

    # --- per version -------------------------------------------------------------------
    def _firmware_message(self, status: str, request_id: int | None) -> Any:
        raise NotImplementedError

    def _log_message(self, kind: str, status: str, request_id: int | None) -> Any:
        raise NotImplementedError

    def _data_transfer(self, vendor: str, message: str | None, data: str | None) -> Any:
        raise NotImplementedError

    async def boot(self) -> None:
        raise NotImplementedError

    async def status(self, connector: int, status: str) -> None:
        raise NotImplementedError

    async def charge_once(self, meter_start: int) -> int:
        raise NotImplementedError


class Station16(_Common, Cp16):  # type: ignore[misc]  # Cp16 is untyped (the ocpp library)
    def __init__(self, spec: StationSpec, ws: Any, stats: Stats, state: StationState | None = None) -> None:
        super().__init__(spec.station_id, ws, response_timeout=60)
        self._init_common(spec, stats, state)
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
        if not 0 <= connector_id <= self.spec.connectors:
            return result16.ChangeAvailability(status="Rejected")
        connectors = list(range(1, self.spec.connectors + 1)) if connector_id == 0 else [connector_id]
        return result16.ChangeAvailability(status=self._change_availability(connectors, type == "Operative", whole=connector_id == 0))

    # --- TriggerMessage ----------------------------------------------------------------
    def _trigger(self, requested: str, connector_id: int | None, extended: bool) -> str:
        """Queue the requested message; the TriggerMessage status."""
        if connector_id is not None and not 0 <= connector_id <= self.spec.connectors:
            return "Rejected"
        connectors = [connector_id] if connector_id else list(range(1, self.spec.connectors + 1))
        st = self.state
        job: Callable[[], Coroutine[Any, Any, None]]
        if requested == "BootNotification":
            async def job() -> None:
                await self.timed(self._boot_message())
        elif requested == "Heartbeat":
            async def job() -> None:
                await self.timed(call16.Heartbeat())
        elif requested == "StatusNotification":
            async def job() -> None:
                for c in connectors:
                    await self.status(c, st.connector_status.get(c, "Available"))
        elif requested == "MeterValues":
            async def job() -> None:
                await self.timed(call16.MeterValues(connector_id=connectors[0], transaction_id=self.active_tx, meter_value=[{
                    "timestamp": now_z(),
                    "sampled_value": [{"value": str(st.meter_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh", "context": "Trigger"}],
                }]))
        elif requested == "FirmwareStatusNotification":
            async def job() -> None:
                status = st.firmware_status
                if extended or st.firmware_signed16:
                    await self.timed(call16.SignedFirmwareStatusNotification(status=status, request_id=None if status == "Idle" else st.firmware_request_id))
                else:
                    await self.timed(call16.FirmwareStatusNotification(status=status))
        elif requested == "DiagnosticsStatusNotification" and not extended:
            async def job() -> None:
                await self.timed(call16.DiagnosticsStatusNotification(status=st.log_status))
        elif requested == "LogStatusNotification" and extended:
            async def job() -> None:
                await self.timed(call16.LogStatusNotification(status=st.log_status, request_id=None if st.log_status == "Idle" else st.log_request_id))
        elif requested == "SignChargePointCertificate" and extended:
            job = self._send_csr_job()
        else:
            return "NotImplemented" if extended else "Rejected"
        self._after_reply(job)
        return "Accepted"

    @on("TriggerMessage")
    async def on_trigger(self, requested_message: str, connector_id: int | None = None) -> Any:
        self._note("TriggerMessage", {"requested_message": requested_message, "connector_id": connector_id})
        return result16.TriggerMessage(status=self._trigger(requested_message, connector_id, extended=False))

    @on("ExtendedTriggerMessage")
    async def on_extended_trigger(self, requested_message: str, connector_id: int | None = None) -> Any:
        self._note("ExtendedTriggerMessage", {"requested_message": requested_message, "connector_id": connector_id})
        return result16.ExtendedTriggerMessage(status=self._trigger(requested_message, connector_id, extended=True))

    # --- configuration -----------------------------------------------------------------
    @on("GetConfiguration")
    async def on_get_configuration(self, key: list[str] | None = None) -> Any:
        self._note("GetConfiguration", {"key": key})
        known, unknown = self.state.model.configuration(key)
        return result16.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on("ChangeConfiguration")
    async def on_change_configuration(self, key: str, value: str) -> Any:
        if key == "AuthorizationKey":   # write-only: never recorded, never in GetConfiguration
            self._note("ChangeConfiguration", {"key": key, "value": "***"})
            # 1.6 security whitepaper: the value is the password, hex-encoded
            try:
                password = bytes.fromhex(value).decode()
            except ValueError:
                return result16.ChangeConfiguration(status="Rejected")
            return result16.ChangeConfiguration(status=self._new_password(password))
        self._note("ChangeConfiguration", {"key": key, "value": value})
        return result16.ChangeConfiguration(status=self.state.model.change_configuration(key, value))

    # --- certificates (security whitepaper) ----------------------------------------------
    @on("CertificateSigned")
    async def on_certificate_signed(self, certificate_chain: str, **kw: Any) -> Any:
        self._note("CertificateSigned", {"certificate_chain": certificate_chain})
        return result16.CertificateSigned(status=self._certificate_signed(certificate_chain))

    def _sign_certificate(self, csr: str) -> Any:
        return call16.SignCertificate(csr=csr)

    @on("SetChargingProfile")
    async def on_set_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        self._note("SetChargingProfile", {"connector_id": connector_id, "cs_charging_profiles": cs_charging_profiles})
        return result16.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    async def on_clear_profile(self, **kw: Any) -> Any:
        self._note("ClearChargingProfile", kw)
        return result16.ClearChargingProfile(status="Accepted")

    # --- firmware ----------------------------------------------------------------------
    @on("UpdateFirmware")
    async def on_update_firmware(self, location: str, retrieve_date: str, **kw: Any) -> Any:
        self._note("UpdateFirmware", {"location": location, "retrieve_date": retrieve_date, **kw})
        self._start_firmware(location, retrieve_date, None, None, signed=False, plain16=True)
        return result16.UpdateFirmware()

    @on("SignedUpdateFirmware")
    async def on_signed_update_firmware(self, request_id: int, firmware: dict[str, Any], **kw: Any) -> Any:
        self._note("SignedUpdateFirmware", {"request_id": request_id, "firmware": firmware, **kw})
        replaced = self._start_firmware(
            firmware["location"], firmware.get("retrieve_date_time"), firmware.get("install_date_time"), request_id,
            signed=True, plain16=False,
        )
        return result16.SignedUpdateFirmware(status="AcceptedCanceled" if replaced else "Accepted")

    def _firmware_message(self, status: str, request_id: int | None) -> Any:
        if self.state.firmware_signed16:
            return call16.SignedFirmwareStatusNotification(status=status, request_id=request_id if request_id is not None else 0)
        return call16.FirmwareStatusNotification(status=status)

    # --- logs --------------------------------------------------------------------------
    @on("GetDiagnostics")
    async def on_get_diagnostics(self, location: str, **kw: Any) -> Any:
        self._note("GetDiagnostics", {"location": location, **kw})
        filename, _ = self._start_log("diagnostics16", location, "diagnostics", None)
        return result16.GetDiagnostics(file_name=filename)

    @on("GetLog")
    async def on_get_log(self, log_type: str, request_id: int, log: dict[str, Any], **kw: Any) -> Any:
        self._note("GetLog", {"log_type": log_type, "request_id": request_id, "log": log, **kw})
        filename, replaced = self._start_log("log", log["remote_location"], log_type, request_id)
        return result16.GetLog(status="AcceptedCanceled" if replaced else "Accepted", filename=filename)

    def _log_message(self, kind: str, status: str, request_id: int | None) -> Any:
        if kind == "diagnostics16":
            return call16.DiagnosticsStatusNotification(status=status)
        return call16.LogStatusNotification(status=status, request_id=request_id if request_id is not None else 0)

    def _data_transfer(self, vendor: str, message: str | None, data: str | None) -> Any:
        return call16.DataTransfer(vendor_id=vendor, message_id=message, data=data)

    # --- the station's own life --------------------------------------------------------
    def _boot_message(self) -> Any:
        return call16.BootNotification(
            charge_point_model="SimCharger-16", charge_point_vendor="CSMS-Sim", firmware_version=self.state.firmware_version,
            charge_point_serial_number=f"SN-{self.spec.station_id}"[:25],
        )

    async def boot(self) -> None:
        while True:
            r = await self.timed(self._boot_message())
            if r.status == "Accepted":
                self.state.boots += 1
                return
            if r.status == "Rejected":
                raise RuntimeError("boot rejected")
            await asyncio.sleep(min(max(r.interval, 1), 60) * random.uniform(0.8, 1.2))

    async def status(self, connector: int, status: str) -> None:
        self.state.connector_status[connector] = status
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
            self.state.meter_wh = meter
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
    def __init__(self, spec: StationSpec, ws: Any, stats: Stats, state: StationState | None = None) -> None:
        super().__init__(spec.station_id, ws, response_timeout=60)
        self._init_common(spec, stats, state)
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
    async def on_change_availability(self, operational_status: str, evse: dict[str, Any] | None = None, **kw: Any) -> Any:
        self._note("ChangeAvailability", {"operational_status": operational_status, **({"evse": evse} if evse else {}), **kw})
        every = list(range(1, self.spec.connectors + 1))
        if evse is not None and (evse.get("id") not in (0, 1) or evse.get("connector_id", 1) not in every):
            return result201.ChangeAvailability(status="Rejected")
        whole = evse is None or evse.get("id") == 0
        connectors = [evse["connector_id"]] if evse is not None and "connector_id" in evse else every
        return result201.ChangeAvailability(status=self._change_availability(connectors, operational_status == "Operative", whole=whole))

    # --- TriggerMessage ----------------------------------------------------------------
    def _trigger(self, requested: str, evse: dict[str, Any] | None) -> str:
        st = self.state
        if evse is not None and (evse.get("id") != 1 or not 1 <= evse.get("connector_id", 1) <= self.spec.connectors):
            return "Rejected"
        connectors = [evse["connector_id"]] if evse is not None and "connector_id" in evse else list(range(1, self.spec.connectors + 1))
        job: Callable[[], Coroutine[Any, Any, None]]
        if requested == "BootNotification":
            # F06.FR.17: a station whose boot was accepted rejects a triggered BootNotification
            if st.boots > 0:
                return "Rejected"
            async def job() -> None:
                await self.timed(self._boot_message("Triggered"))
        elif requested == "Heartbeat":
            async def job() -> None:
                await self.timed(call201.Heartbeat())
        elif requested == "StatusNotification":
            async def job() -> None:
                for c in connectors:
                    await self.status(c, st.connector_status.get(c, "Available"))
        elif requested == "MeterValues":
            async def job() -> None:
                await self.timed(call201.MeterValues(evse_id=1, meter_value=[{"timestamp": now_z(), "sampled_value": [
                    {"value": st.meter_wh, "measurand": "Energy.Active.Import.Register", "context": "Trigger", "unit_of_measure": {"unit": "Wh"}},
                ]}]))
        elif requested == "TransactionEvent":
            if self.active_tx is None:
                return "Rejected"
            async def job() -> None:
                await self.timed(self._tx_event("Updated", "Trigger", st.meter_wh, "Charging"))
        elif requested == "FirmwareStatusNotification":
            async def job() -> None:
                status = st.firmware_status
                await self.timed(call201.FirmwareStatusNotification(status=status, request_id=None if status == "Idle" else st.firmware_request_id))
        elif requested == "LogStatusNotification":
            async def job() -> None:
                status = st.log_status
                await self.timed(call201.LogStatusNotification(status=status, request_id=None if status == "Idle" else st.log_request_id))
        elif requested == "SignChargingStationCertificate":
            job = self._send_csr_job()
        else:  # SignV2GCertificate, SignCombinedCertificate, PublishFirmwareStatusNotification: not simulated
            return "NotImplemented"
        self._after_reply(job)
        return "Accepted"

    @on("TriggerMessage")
    async def on_trigger(self, requested_message: str, evse: dict[str, Any] | None = None, **kw: Any) -> Any:
        self._note("TriggerMessage", {"requested_message": requested_message, **({"evse": evse} if evse else {}), **kw})
        return result201.TriggerMessage(status=self._trigger(requested_message, evse))

    # --- device model ------------------------------------------------------------------
    @on("GetVariables")
    async def on_get_variables(self, get_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self._note("GetVariables", {"get_variable_data": get_variable_data})
        return result201.GetVariables(get_variable_result=[self.state.model.get_variable(d) for d in get_variable_data])

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self._note("SetVariables", {"set_variable_data": [_masked(d) for d in set_variable_data]})
        return result201.SetVariables(set_variable_result=[self._set_variable(d) for d in set_variable_data])

    def _set_variable(self, item: dict[str, Any]) -> dict[str, Any]:
        if not _is_password(item):
            return self.state.model.set_variable(item)
        out: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
        if item.get("attribute_type") is not None:
            out["attribute_type"] = item["attribute_type"]
        return {**out, "attribute_status": self._new_password(item.get("attribute_value"))}

    @on("CertificateSigned")
    async def on_certificate_signed(self, certificate_chain: str, certificate_type: str | None = None, **kw: Any) -> Any:
        self._note("CertificateSigned", {"certificate_chain": certificate_chain, "certificate_type": certificate_type})
        if certificate_type not in (None, "ChargingStationCertificate"):
            return result201.CertificateSigned(status="Rejected")   # no V2G certificates here
        return result201.CertificateSigned(status=self._certificate_signed(certificate_chain))

    def _sign_certificate(self, csr: str) -> Any:
        return call201.SignCertificate(csr=csr, certificate_type="ChargingStationCertificate")

    def _report(self, request_id: int, variables: list[Variable]) -> str:
        if not variables:
            return "EmptyResultSet"
        data = report_data(variables)  # the values as they are now, not when the last part goes
        self._after_reply(lambda: self._send_report(request_id, data))
        return "Accepted"

    # schema validation off so an unknown reportBase gets NotSupported rather than a CALLERROR
    @on("GetBaseReport", skip_schema_validation=True)
    async def on_get_base_report(self, request_id: Any = None, report_base: Any = None, **kw: Any) -> Any:
        self._note("GetBaseReport", {"request_id": request_id, "report_base": report_base})
        if not isinstance(request_id, int) or isinstance(request_id, bool) or not isinstance(report_base, str):
            return result201.GetBaseReport(status="Rejected")
        variables = self.state.model.base_report(report_base)
        if variables is None:
            return result201.GetBaseReport(status="NotSupported")
        return result201.GetBaseReport(status=self._report(request_id, variables))

    @on("GetReport")
    async def on_get_report(self, request_id: int, component_criteria: list[str] | None = None,
                            component_variable: list[dict[str, Any]] | None = None, **kw: Any) -> Any:
        self._note("GetReport", {"request_id": request_id, "component_criteria": component_criteria, "component_variable": component_variable})
        variables = self.state.model.report(component_criteria, component_variable)
        return result201.GetReport(status=self._report(request_id, variables))

    @on("SetNetworkProfile")
    async def on_set_network_profile(self, configuration_slot: int, connection_data: dict[str, Any], **kw: Any) -> Any:
        self._note("SetNetworkProfile", {"configuration_slot": configuration_slot, "connection_data": connection_data})
        current = self.state.model.configuration(["SecurityProfile"])[0]
        if current and int(connection_data.get("security_profile", 0)) < int(current[0]["value"]):
            return result201.SetNetworkProfile(status="Rejected")  # B09.FR.04: no downgrade
        self.state.model.network_profiles[configuration_slot] = connection_data
        return result201.SetNetworkProfile(status="Accepted")

    @on("SetChargingProfile")
    async def on_set_profile(self, evse_id: int, charging_profile: dict[str, Any], **kw: Any) -> Any:
        self._note("SetChargingProfile", {"evse_id": evse_id, "charging_profile": charging_profile})
        return result201.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    async def on_clear_profile(self, **kw: Any) -> Any:
        self._note("ClearChargingProfile", kw)
        return result201.ClearChargingProfile(status="Accepted")

    # --- firmware and logs -------------------------------------------------------------
    @on("UpdateFirmware")
    async def on_update_firmware(self, request_id: int, firmware: dict[str, Any], **kw: Any) -> Any:
        self._note("UpdateFirmware", {"request_id": request_id, "firmware": firmware, **kw})
        signed = bool(firmware.get("signature") or firmware.get("signing_certificate"))
        replaced = self._start_firmware(
            firmware["location"], firmware.get("retrieve_date_time"), firmware.get("install_date_time"), request_id,
            signed=signed, plain16=False,
        )
        return result201.UpdateFirmware(status="AcceptedCanceled" if replaced else "Accepted")

    def _firmware_message(self, status: str, request_id: int | None) -> Any:
        return call201.FirmwareStatusNotification(status=status, request_id=request_id)

    @on("GetLog")
    async def on_get_log(self, log: dict[str, Any], log_type: str, request_id: int, **kw: Any) -> Any:
        self._note("GetLog", {"log_type": log_type, "request_id": request_id, "log": log, **kw})
        filename, replaced = self._start_log("log", log["remote_location"], log_type, request_id)
        return result201.GetLog(status="AcceptedCanceled" if replaced else "Accepted", filename=filename)

    def _log_message(self, kind: str, status: str, request_id: int | None) -> Any:
        return call201.LogStatusNotification(status=status, request_id=request_id)

    def _data_transfer(self, vendor: str, message: str | None, data: str | None) -> Any:
        return call201.DataTransfer(vendor_id=vendor, message_id=message, data=data)

    # --- the station's own life --------------------------------------------------------
    def _boot_message(self, reason: str) -> Any:
        return call201.BootNotification(
            charging_station={"model": "SimCharger-201", "vendor_name": "CSMS-Sim", "firmware_version": self.state.firmware_version, "serial_number": f"SN-{self.spec.station_id}"[:25]},
            reason=reason,
        )

    async def boot(self) -> None:
        while True:
            r = await self.timed(self._boot_message(self.state.boot_reason))
            if r.status == "Accepted":
                self.state.boots += 1
                self.state.boot_reason = "PowerUp"
                return
            if r.status == "Rejected":
                raise RuntimeError("boot rejected")
            await asyncio.sleep(min(max(r.interval, 1), 60) * random.uniform(0.8, 1.2))

    async def status(self, connector: int, status: str) -> None:
        self.state.connector_status[connector] = status
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
            self.state.meter_wh = meter
            await self.timed(self._tx_event("Updated", "MeterValuePeriodic", meter, "Charging"))
        await self.timed(self._tx_event("Ended", "EVCommunicationLost", meter, "Idle", stopped_reason="EVDisconnected"))
        self.active_tx = None
        await self.status(1, "Available")
        return meter


def _is_password(item: dict[str, Any]) -> bool:
    return bool(item.get("component", {}).get("name") == "SecurityCtrlr" and item.get("variable", {}).get("name") == "BasicAuthPassword")


def _masked(item: dict[str, Any]) -> dict[str, Any]:
    """A SetVariables item as recorded: a password never is."""
    return {**item, "attribute_value": "***"} if _is_password(item) else item


def _basic(station_id: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{station_id}:{password}".encode()).decode()


def client_tls(spec: StationSpec, state: StationState) -> ssl.SSLContext | None:
    """The TLS context of a `wss://` connection (None for `ws://`): the certificate the CSMS
    signed last, else the spec's client certificate, else none (profile 2)."""
    if not spec.url.startswith("wss://"):
        return None
    creds = state.credentials
    return tls_context(spec.tls_ca, spec.client_cert, spec.client_key,
                       cert_pem=creds.certificate_pem, key_pem=creds.certificate_key_pem)


async def _connect(spec: StationSpec, subprotocol: str, attempts: int, state: StationState | None = None) -> ClientConnection:
    state = state if state is not None else StationState.for_spec(spec)
    for attempt in range(1, attempts + 1):
        password = state.credentials.password_for_connect(spec.password)
        headers = {"Authorization": _basic(spec.station_id, password)} if password else {}
        try:
            ws = await websockets.connect(
                f"{spec.url.rstrip('/')}/{spec.station_id}",
                subprotocols=[Subprotocol(subprotocol)],
                additional_headers=headers,
                open_timeout=30,
                ping_interval=None,
                max_size=1 << 20,
                ssl=client_tls(spec, state),
            )
            state.credentials.connected_with(password)
            return ws
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            if attempt >= attempts:
                raise
            log.info("station %s: connect failed (%r), retrying", spec.station_id, exc)
            await asyncio.sleep(min(2.0 ** attempt, 10.0))
    raise AssertionError("unreachable")


async def run_station(spec: StationSpec, stats: Stats, state: StationState | None = None) -> bool:
    """One station's life; True if it completed every step. A firmware update reboots it:
    the socket closes, it reconnects, boots again (with the new version), says what the
    update left to say, and holds on until `hold_s` after its sessions ended."""
    is_16 = spec.protocol == OcppVersion.V16
    subprotocol = (OcppVersion.V16 if is_16 else OcppVersion.V201).subprotocol
    state = state if state is not None else StationState.for_spec(spec)
    t0 = time.perf_counter()
    loop = asyncio.get_running_loop()
    hold_until: float | None = None
    try:
        while True:
            state.reboot.clear()
            # after a reboot the station keeps trying, as chargers do; at power-up one try
            # (a load run counts a refused connection as a failed station)
            async with await _connect(spec, subprotocol, attempts=1 if state.boots == 0 else 5, state=state) as ws:
                cls: type[Station16] | type[Station201] = Station16 if is_16 else Station201
                cp = cls(spec, ws, stats, state)
                reader = asyncio.create_task(cp.start())
                try:
                    await cp.boot()
                    if state.boots == 1:
                        stats.boots.append(time.perf_counter() - t0)
                    for c in range(1, spec.connectors + 1):
                        await cp.status(c, state.power_up_status(c))
                    await cp.timed((call16 if is_16 else call201).Heartbeat())
                    await cp.after_boot()
                    if hold_until is None:
                        meter = random.randint(1_000, 100_000)
                        state.meter_wh = meter
                        for _ in range(spec.sessions):
                            meter = await cp.charge_once(meter)
                        hold_until = loop.time() + spec.hold_s
                    remaining = hold_until - loop.time()
                    if remaining > 0 and not state.reboot.is_set():
                        try:
                            await asyncio.wait_for(state.reboot.wait(), remaining)
                        except TimeoutError:
                            pass
                    rebooting = state.reboot.is_set()
                finally:
                    await cp.stop_jobs()
                    reader.cancel()
            if not rebooting:
                break
            await asyncio.sleep(max(0.0, spec.firmware_step_s))  # the reboot itself
        stats.stations_done += 1
        return True
    except Exception as exc:  # a failed station is counted, never crashes the run
        stats.stations_failed += 1
        stats.errors[type(exc).__name__] += 1
        log.warning("station %s failed: %r", spec.station_id, exc)
        return False

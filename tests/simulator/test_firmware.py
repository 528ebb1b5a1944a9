"""Firmware updates: the status sequence, the reboot into the new (or old) version, and each
failure a campaign test can inject."""

from __future__ import annotations

import pytest

from services.common.timeutil import to_ocpp, utcnow
from tests.simulator.conftest import Sim, StartStation
from tests.simulator.fake_csms import FakeCsms, Received
from tests.support.waiting import eventually

LOCATION = "http://files.example/fw/2.1.0.bin"


def statuses(csms: FakeCsms, sim: Sim, action: str) -> list[tuple[int, str]]:
    """(connection index, status) of every firmware status notification."""
    return [(r.connection, r.payload["status"]) for r in csms.calls(sim.id, action)]


def boots(csms: FakeCsms, sim: Sim) -> list[Received]:
    return csms.calls(sim.id, "BootNotification")


async def wait_for_status(csms: FakeCsms, sim: Sim, action: str, last: str) -> list[tuple[int, str]]:
    await eventually(lambda: any(s == last for _, s in statuses(csms, sim, action)), 10, what=f"{action} {last}",
                     detail=lambda: csms.actions(sim.id))
    return statuses(csms, sim, action)


def update_201(request_id: int, signed: bool = False) -> dict[str, object]:
    firmware: dict[str, object] = {"location": LOCATION, "retrieveDateTime": to_ocpp(utcnow())}
    if signed:
        firmware |= {"signingCertificate": "-----BEGIN CERTIFICATE-----x", "signature": "c2lnbmF0dXJl"}
    return {"requestId": request_id, "firmware": firmware}


@pytest.mark.parametrize("signed", [False, True])
async def test_201_update_reports_each_step_reboots_and_boots_the_new_version(csms: FakeCsms, station: StartStation, signed: bool) -> None:
    sim = await station(f"CP-FW201-{signed}", "2.0.1")
    assert await sim.result("UpdateFirmware", update_201(5, signed)) == {"status": "Accepted"}
    seen = await wait_for_status(csms, sim, "FirmwareStatusNotification", "Installed")

    verified = [(0, "SignatureVerified")] if signed else []
    assert seen == [(0, "Downloading"), (0, "Downloaded"), *verified, (0, "Installing"), (0, "InstallRebooting"), (1, "Installed")]
    assert {r.payload["requestId"] for r in csms.calls(sim.id, "FirmwareStatusNotification")} == {5}
    first, second = boots(csms, sim)
    assert first.payload["chargingStation"]["firmwareVersion"] == "2.0.1-sim"
    assert second.connection == 1
    assert second.payload["chargingStation"]["firmwareVersion"] == "2.1.0"
    assert second.payload["reason"] == "FirmwareUpdate"
    # after the reboot: boot, then Installed; the first connection is closed
    assert sim.csms.connections[sim.id][0].closed.is_set()
    after = [r.action for r in csms.received if r.station == sim.id and r.connection == 1]
    assert after.index("BootNotification") < after.index("FirmwareStatusNotification")
    # the device model knows the new version, and a trigger now says Idle
    got = await sim.result("GetVariables", {"getVariableData": [{"component": {"name": "FirmwareCtrlr"}, "variable": {"name": "FirmwareVersion"}}]})
    assert got["getVariableResult"][0]["attributeValue"] == "2.1.0"
    assert await sim.result("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}) == {"status": "Accepted"}
    await eventually(lambda: statuses(csms, sim, "FirmwareStatusNotification")[-1] == (1, "Idle"), what="Idle")


@pytest.mark.parametrize(("outcome", "expected"), [
    ("download_failed", ["Downloading", "DownloadFailed"]),
    ("install_failed", ["Downloading", "Downloaded", "Installing", "InstallationFailed"]),
])
async def test_201_a_failed_update_reports_the_failure_and_stays_up(csms: FakeCsms, station: StartStation, outcome: str, expected: list[str]) -> None:
    sim = await station(f"CP-FW-{outcome}", "2.0.1", firmware_outcome=outcome)
    assert await sim.result("UpdateFirmware", update_201(6)) == {"status": "Accepted"}
    seen = await wait_for_status(csms, sim, "FirmwareStatusNotification", expected[-1])
    assert seen == [(0, s) for s in expected]
    # still the same connection, not updating any more
    assert await sim.result("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}) == {"status": "Accepted"}
    await eventually(lambda: statuses(csms, sim, "FirmwareStatusNotification")[-1] == (0, "Idle"), what="Idle")
    assert len(csms.connections[sim.id]) == 1 and len(boots(csms, sim)) == 1


async def test_201_old_version_outcome_reports_installed_but_boots_the_old_version(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-FW-OLD", "2.0.1", firmware_outcome="old_version")
    assert await sim.result("UpdateFirmware", update_201(7)) == {"status": "Accepted"}
    seen = await wait_for_status(csms, sim, "FirmwareStatusNotification", "Installed")
    assert seen[-2:] == [(0, "InstallRebooting"), (1, "Installed")]
    assert [b.payload["chargingStation"]["firmwareVersion"] for b in boots(csms, sim)] == ["2.0.1-sim", "2.0.1-sim"]


async def test_201_installed_before_reboot_when_configured(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-FW-EARLY", "2.0.1", firmware_installed_before_reboot=True)
    assert await sim.result("UpdateFirmware", update_201(10)) == {"status": "Accepted"}
    await eventually(lambda: len(boots(csms, sim)) == 2, 10, what="the reboot", detail=lambda: csms.actions(sim.id))
    assert statuses(csms, sim, "FirmwareStatusNotification")[-2:] == [(0, "InstallRebooting"), (0, "Installed")]
    assert boots(csms, sim)[1].payload["chargingStation"]["firmwareVersion"] == "2.1.0"


async def test_201_a_second_update_cancels_the_first(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-FW-TWICE", "2.0.1", firmware_step_s=0.5)
    assert await sim.result("UpdateFirmware", update_201(8)) == {"status": "Accepted"}
    assert await sim.result("UpdateFirmware", update_201(9)) == {"status": "AcceptedCanceled"}
    await wait_for_status(csms, sim, "FirmwareStatusNotification", "Installed")
    assert csms.calls(sim.id, "FirmwareStatusNotification")[-1].payload == {"status": "Installed", "requestId": 9}


async def test_16_update_firmware_downloads_installs_reboots_then_reports_installed(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-FW16", "1.6")
    assert await sim.result("UpdateFirmware", {"location": LOCATION, "retrieveDate": to_ocpp(utcnow())}) == {}
    seen = await wait_for_status(csms, sim, "FirmwareStatusNotification", "Installed")
    assert seen == [(0, "Downloading"), (0, "Downloaded"), (0, "Installing"), (1, "Installed")]
    assert [b.payload["firmwareVersion"] for b in boots(csms, sim)] == ["1.0.0", "2.1.0"]
    assert all(set(r.payload) == {"status"} for r in csms.calls(sim.id, "FirmwareStatusNotification"))


async def test_16_signed_update_uses_signed_notifications_with_the_request_id(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-FW16S", "1.6", firmware_version="3.0.0")
    status = await sim.result("SignedUpdateFirmware", {"requestId": 42, "firmware": {
        "location": "http://files.example/fw/latest.bin", "retrieveDateTime": to_ocpp(utcnow()),
        "signingCertificate": "-----BEGIN CERTIFICATE-----x", "signature": "c2ln",
    }})
    assert status == {"status": "Accepted"}
    seen = await wait_for_status(csms, sim, "SignedFirmwareStatusNotification", "Installed")
    assert seen == [(0, "Downloading"), (0, "Downloaded"), (0, "SignatureVerified"), (0, "Installing"), (0, "InstallRebooting"), (1, "Installed")]
    assert {r.payload["requestId"] for r in csms.calls(sim.id, "SignedFirmwareStatusNotification")} == {42}
    # "latest.bin" is no version: the old one + "+1"
    assert [b.payload["firmwareVersion"] for b in boots(csms, sim)] == ["3.0.0", "3.0.0+1"]
    assert not csms.calls(sim.id, "FirmwareStatusNotification")


async def test_16_install_failure(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-FW16-BAD", "1.6", firmware_outcome="install_failed")
    assert await sim.result("UpdateFirmware", {"location": LOCATION, "retrieveDate": to_ocpp(utcnow())}) == {}
    seen = await wait_for_status(csms, sim, "FirmwareStatusNotification", "InstallationFailed")
    assert seen == [(0, "Downloading"), (0, "Downloaded"), (0, "Installing"), (0, "InstallationFailed")]

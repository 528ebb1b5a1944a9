"""Log and diagnostics uploads: the answer, the status notifications, and the file arriving
byte for byte over HTTP PUT (or the failure status when the target refuses it)."""

from __future__ import annotations

from services.simulator.operations import log_bytes
from tests.simulator.conftest import Sim, StartStation
from tests.simulator.fake_csms import FakeCsms
from tests.support.waiting import eventually


def log_statuses(csms: FakeCsms, sim: Sim, action: str) -> list[dict[str, object]]:
    return [r.payload for r in csms.calls(sim.id, action)]


async def settled(csms: FakeCsms, sim: Sim, action: str, count: int = 2) -> list[dict[str, object]]:
    await eventually(lambda: len(log_statuses(csms, sim, action)) >= count, 10, what=f"{count} x {action}",
                     detail=lambda: csms.actions(sim.id))
    return log_statuses(csms, sim, action)


async def test_201_get_log_uploads_the_log_byte_for_byte(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-LOG201", "2.0.1")
    answer = await sim.result("GetLog", {"logType": "DiagnosticsLog", "requestId": 31,
                                         "log": {"remoteLocation": f"{csms.http_url}/upload/tok31/"}})
    assert answer == {"status": "Accepted", "filename": "CP-LOG201-DiagnosticsLog-31.log"}
    assert await settled(csms, sim, "LogStatusNotification") == [
        {"status": "Uploading", "requestId": 31}, {"status": "Uploaded", "requestId": 31},
    ]
    body = csms.uploads["tok31/CP-LOG201-DiagnosticsLog-31.log"]
    assert body == log_bytes("CP-LOG201", 31)
    assert 2048 < len(body) < 16384
    order = csms.order(sim.id)
    assert order.index(("result", "GetLog")) < order.index(("call", "LogStatusNotification"))


async def test_201_a_refused_upload_says_upload_failure(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-LOG413", "2.0.1")
    answer = await sim.result("GetLog", {"logType": "SecurityLog", "requestId": 32,
                                         "log": {"remoteLocation": f"{csms.http_url}/toolarge/tok32/"}})
    assert answer["status"] == "Accepted"
    assert await settled(csms, sim, "LogStatusNotification") == [
        {"status": "Uploading", "requestId": 32}, {"status": "UploadFailure", "requestId": 32},
    ]
    assert not csms.uploads
    # nothing running any more
    assert await sim.result("TriggerMessage", {"requestedMessage": "LogStatusNotification"}) == {"status": "Accepted"}
    assert (await settled(csms, sim, "LogStatusNotification", 3))[-1] == {"status": "Idle"}


async def test_16_get_diagnostics_uploads_with_diagnostics_notifications(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-DIAG16", "1.6")
    answer = await sim.result("GetDiagnostics", {"location": f"{csms.http_url}/upload/d1/"})
    assert answer == {"fileName": "CP-DIAG16-diagnostics.log"}
    assert await settled(csms, sim, "DiagnosticsStatusNotification") == [{"status": "Uploading"}, {"status": "Uploaded"}]
    assert csms.uploads["d1/CP-DIAG16-diagnostics.log"] == log_bytes("CP-DIAG16", 0)


async def test_16_get_diagnostics_refused_says_upload_failed(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-DIAG413", "1.6")
    await sim.result("GetDiagnostics", {"location": f"{csms.http_url}/toolarge/d2/"})
    assert await settled(csms, sim, "DiagnosticsStatusNotification") == [{"status": "Uploading"}, {"status": "UploadFailed"}]


async def test_16_security_get_log_uses_log_status_with_request_id(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-LOG16", "1.6")
    answer = await sim.result("GetLog", {"logType": "SecurityLog", "requestId": 5,
                                         "log": {"remoteLocation": f"{csms.http_url}/upload/s5/"}})
    assert answer == {"status": "Accepted", "filename": "CP-LOG16-SecurityLog-5.log"}
    assert await settled(csms, sim, "LogStatusNotification") == [
        {"status": "Uploading", "requestId": 5}, {"status": "Uploaded", "requestId": 5},
    ]
    assert csms.uploads["s5/CP-LOG16-SecurityLog-5.log"] == log_bytes("CP-LOG16", 5)
    await sim.result("GetLog", {"logType": "SecurityLog", "requestId": 6, "log": {"remoteLocation": f"{csms.http_url}/toolarge/s6/"}})
    assert (await settled(csms, sim, "LogStatusNotification", 4))[-1] == {"status": "UploadFailure", "requestId": 6}

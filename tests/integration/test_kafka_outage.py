"""Kafka stopped for 30 s while a station starts a transaction: no CALLERROR, no loss, one session."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.conftest import Cluster, new_cluster
from tests.support.waiting import eventually
from tests.integration.station_client import CallTimeout, RawStation
from tests.integration.test_distributed import TOKEN, boot, now_z, registered, sessions_of

pytestmark = pytest.mark.infra

INFRA = str(Path(__file__).resolve().parents[2] / "deploy" / "local" / "infra.sh")


@pytest.fixture(scope="module")
def small_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = new_cluster(tmp_path_factory.mktemp("outage"), roles=("gateway-0", "sessions", "api"))
    yield c
    subprocess.run([INFRA, "up", "kafka"], check=False, timeout=180)
    c.stop_all()


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


async def test_a_start_sent_while_kafka_is_down_is_answered_after_it_returns_and_kept_once(small_cluster: Cluster) -> None:
    cluster = small_cluster
    sid = "ITKO" + str(int(time.time()) % 100000)
    password = await registered(cluster, sid)
    st = RawStation(cluster.ocpp_url("gateway-0"), sid, password)
    await st.connect()
    await boot(st)

    down = subprocess.run([INFRA, "down", "kafka"], capture_output=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    t_down = time.monotonic()
    start = {"connectorId": 1, "idTag": TOKEN, "meterStart": 100, "timestamp": now_z()}
    try:
        with pytest.raises(CallTimeout):
            await st.call("StartTransaction", start, timeout=20, unique_id="start-1")
        # the gateway is not ready while it cannot make events durable
        assert readyz(cluster.procs["gateway-0"].port or 0) == 503
        # the station retries (same message, same id): still no answer and no CALLERROR
        with pytest.raises(CallTimeout):
            await st.call("StartTransaction", start, timeout=max(1.0, 30 - (time.monotonic() - t_down)), unique_id="start-1")
    finally:
        up = subprocess.run([INFRA, "up", "kafka"], capture_output=True, timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr

    frame = await st.wait_answer("start-1", timeout=90)
    assert frame[0] == 3, f"expected a CALLRESULT after Kafka returned, got {frame}"
    tx = frame[2]["transactionId"]
    # the station's own retry after reconnecting gets the same id
    again = await st.call("StartTransaction", start, timeout=60)
    assert again["transactionId"] == tx
    await st.call("StopTransaction", {"transactionId": tx, "meterStop": 600, "timestamp": now_z()}, timeout=60)

    async def one_session() -> bool:
        items = await sessions_of(cluster, sid)
        return len(items) == 1 and items[0]["status"] == "completed" and items[0]["energy_wh"] == 500

    await eventually(one_session, 90, interval=0.25, what=f"one completed session of {sid}", detail=lambda: sessions_of(cluster, sid))
    await eventually(lambda: readyz(cluster.procs["gateway-0"].port or 0) == 200, 30, interval=0.25, what="gateway-0 ready")
    await st.close()

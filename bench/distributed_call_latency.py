"""Distributed mode, one station, calls spaced under the per-connection rate limit:
station CALL -> CALLRESULT (after the Kafka acks=all ack) latency without load.
Needs real engines (`make infra-up`). Usage: .venv/bin/python bench/distributed_call_latency.py"""
import asyncio
import sys
import tempfile
import time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.conftest import new_cluster
from tests.integration.station_client import RawStation
from services.simulator.cli import station_password
async def main():
    with tempfile.TemporaryDirectory() as tmp:
        c = new_cluster(Path(tmp))
        try:
            pw = station_password("it", "SEQ1")
            await c.api("POST", "/api/v1/stations", {"id": "SEQ1", "password": pw}, expect=201)
            st = RawStation(c.ocpp_url("gateway-0"), "SEQ1", pw); await st.connect()
            await st.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
            for action, payload in [("Heartbeat", {}), ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})]:
                ts=[]
                for i in range(100):
                    t=time.perf_counter(); await st.call(action, payload); ts.append(time.perf_counter()-t); await asyncio.sleep(0.06)
                ts.sort(); print(action, "p50 %.2f ms p99 %.2f ms" % (ts[50]*1e3, ts[98]*1e3))
            await st.close()
            import urllib.request, re
            txt = urllib.request.urlopen(f"http://127.0.0.1:{c.procs['gateway-0'].port}/metrics").read().decode()
            print([l for l in txt.splitlines() if l.startswith("csms_gateway_message_handling_seconds_sum") or l.startswith("csms_gateway_message_handling_seconds_count")][:6])
        finally:
            c.stop_all()
asyncio.run(main())

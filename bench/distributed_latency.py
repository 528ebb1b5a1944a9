"""End-to-end latency in distributed mode: station CALL -> CALLRESULT after the Kafka ack.

Starts (on real Kafka + Cassandra, `make infra-up` first) two gateways, the processors and
the API as separate processes, then runs `csms simulate` against each gateway and prints
the simulator's report. Usage: .venv/bin/python bench/distributed_latency.py [--stations 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.conftest import CSMS, new_cluster  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stations", type=int, default=200, help="per gateway")
    ap.add_argument("--meter-values", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = new_cluster(Path(tmp))
        try:
            procs = []
            for gw in ("gateway-0", "gateway-1"):
                procs.append(subprocess.Popen([
                    CSMS, "simulate", "--stations", str(args.stations), "--prefix", f"LAT{gw[-1]}-",
                    "--url", cluster.ocpp_url(gw), "--api-url", cluster.api_url, "--api-key", cluster.api_key,
                    "--meter-values", str(args.meter_values), "--interval", "0.05", "--no-validate", "--json",
                ], stdout=subprocess.PIPE, text=True))
            for gw, p in zip(("gateway-0", "gateway-1"), procs):
                out, _ = p.communicate(timeout=600)
                report = json.loads(out.strip().splitlines()[-1])
                print(gw, json.dumps({k: report[k] for k in ("stations_ok", "stations_failed", "messages", "messages_per_s", "reply_latency_ms", "by_action")}))
        finally:
            cluster.stop_all()


if __name__ == "__main__":
    main()

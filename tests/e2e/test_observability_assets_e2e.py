"""The Grafana dashboard and the alert rules only use metrics a running system exposes."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from tests.e2e.conftest import Server

ASSETS = Path(__file__).resolve().parents[2] / "deploy" / "observability"
_SUFFIXES = ("_bucket", "_sum", "_count")


def exposed(csms: Server) -> set[str]:
    # `csms run` is one process: its API port serves every part's metrics (the OCPP port
    # serves none unless CSMS_METRICS_ON_OCPP_PORT, docs/security.md)
    with urllib.request.urlopen(f"{csms.api_url}/metrics", timeout=5) as r:
        return set(re.findall(r"^# TYPE (csms_\w+) ", r.read().decode(), re.M))


def referenced(text: str) -> set[str]:
    out = set()
    for name in re.findall(r"\bcsms_[a-z_]+", text):
        for suffix in _SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        out.add(name)
    return out


def test_every_metric_in_the_dashboard_and_the_alerts_is_exposed(csms: Server) -> None:
    dashboard = json.loads((ASSETS / "grafana-csms-overview.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    alerts = (ASSETS / "alerts.yaml").read_text()
    used = referenced(exprs) | referenced(alerts)
    assert len(used) >= 20
    missing = used - exposed(csms)
    assert not missing, f"referenced but not exposed: {sorted(missing)}"


def test_no_metric_carries_a_station_id_label(csms: Server) -> None:
    with urllib.request.urlopen(f"{csms.api_url}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert not re.search(r'^csms_\w+\{[^}]*(station|station_id|charge_point)=', text, re.M)

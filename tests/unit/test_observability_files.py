"""Static checks of deploy/observability (issue 12): no promtool, no running system needed.

Every alert carries severity, summary, description and a runbook_url whose anchor is a
section of docs/runbooks.md, and has a promtool unit test; every metric the alerts and the
dashboard name is defined in services/; every dashboard query is filtered by the namespace
and pod variables. `make deploy-check` runs the promtool side (check_dashboard.py,
`promtool test rules`); tests/e2e/test_observability_assets_e2e.py checks the metrics
against a running system's /metrics.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "deploy" / "observability"
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def _check_dashboard() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_dashboard", ASSETS / "check_dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHECK = _check_dashboard()


def alerts() -> dict[str, str]:
    """Alert name -> its block of alerts.yaml (the file keeps one `- alert:` per rule)."""
    text = (ASSETS / "alerts.yaml").read_text()
    blocks = re.split(r"^\s*- alert: ", text, flags=re.M)[1:]
    out = {}
    for block in blocks:
        name, _, body = block.partition("\n")
        # a rule ends where the next group starts
        out[name.strip()] = re.split(r"^\s*- name: ", body, flags=re.M)[0]
    return out


def annotation(block: str, key: str) -> str | None:
    m = re.search(rf'^\s+{key}: "(.*)"\s*$', block, re.M)
    return json.loads(f'"{m.group(1)}"') if m else None


def expr(block: str) -> str:
    m = re.search(r"^(\s+)expr: (\|\n)?(.*?)(?=^\1(?:for|labels):)", block, re.M | re.S)
    assert m, block
    return m.group(3)


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of the headings (lowercase, punctuation dropped, spaces -> -)."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_the_parser_sees_every_rule() -> None:
    found = alerts()
    text = (ASSETS / "alerts.yaml").read_text()
    assert len(found) == len(re.findall(r"^\s*- alert: ", text, re.M)) >= 20
    # the defects of issue 12 have their rules
    assert {"CsmsHandlerFailures", "CsmsConsumerLag", "CsmsConsumerStalled", "CsmsSessionSeqGaps",
            "CsmsSiteOverAllocated", "CsmsDependencyDown", "CsmsEventLoopLag", "CsmsStoreSlow",
            "CsmsGatewayCommandTimeouts"} <= set(found)


def test_every_alert_has_severity_summary_description_and_a_runbook_section() -> None:
    anchors = github_anchors(RUNBOOKS.read_text())
    for name, block in alerts().items():
        assert re.search(r"^\s+severity: (page|ticket|warning)\s*$", block, re.M), name
        assert annotation(block, "summary"), name
        description = annotation(block, "description")
        assert description and len(description) > len(annotation(block, "summary") or ""), name
        url = annotation(block, "runbook_url")
        assert url == f"docs/runbooks.md#{name.lower()}", (name, url)
        assert url.split("#", 1)[1] in anchors, f"docs/runbooks.md has no section for {name}"


def test_every_runbook_section_names_an_alert() -> None:
    sections = re.findall(r"^## (Csms\w+)\s*$", RUNBOOKS.read_text(), re.M)
    assert sorted(sections) == sorted(alerts()), "docs/runbooks.md sections and alerts.yaml differ"


def test_every_alert_has_promtool_tests_that_fire_it_and_resolve_it() -> None:
    files = sorted((ASSETS / "tests").glob("*.yaml"))
    assert files
    cases: dict[str, list[bool]] = {}
    for f in files:
        text = f.read_text()
        assert "- ../alerts.yaml" in text, f
        # each eval: `alertname: X` then either `exp_alerts: []` or a list of expected alerts
        for name, rest in re.findall(r"alertname: (\w+)\n\s+exp_alerts:(.*?)(?=\n\s+- eval_time:|\n  [#-]|\Z)", text, re.S):
            cases.setdefault(name, []).append(rest.strip() != "[]")
    for name in alerts():
        outcomes = cases.get(name, [])
        assert True in outcomes, f"no promtool test fires {name}"
        assert False in outcomes, f"no promtool test where {name} resolves or stays silent"


def test_every_metric_of_the_alerts_and_the_dashboard_is_defined_in_the_code() -> None:
    exposed = CHECK.exposed_names(CHECK.metric_definitions())
    # the scan finds the definitions of the kinds the code uses
    assert {"csms_bus_consumer_lag_records", "csms_bus_handler_failures_total", "csms_gateway_message_handling_seconds_bucket",
            "csms_gateway_connections", "csms_gateway_connections_total", "up"} <= exposed
    used: dict[str, set[str]] = {}
    for name, block in alerts().items():
        used[f"alert {name}"] = CHECK.metrics_in(expr(block))
    for where, query in CHECK.dashboard_queries():
        used[where] = CHECK.metrics_in(query)
    assert sum(len(v) for v in used.values()) > 40
    missing = {where: sorted(names - exposed) for where, names in used.items() if names - exposed}
    assert not missing, f"metrics no code defines: {missing}"


def test_counters_are_never_compared_with_a_constant() -> None:
    # `csms_x_total > 0` never resolves once the counter moved: rate()/increase() first
    for name, block in alerts().items():
        for counter in re.findall(r"\bcsms_\w+_total\b", expr(block)):
            around = re.search(rf"(\w+)\(\s*{counter}(\{{[^}}]*\}})?\[", expr(block))
            assert around and around.group(1) in ("rate", "increase"), (name, counter)


def test_the_dashboard_has_namespace_and_pod_variables_and_every_query_uses_them() -> None:
    doc = json.loads((ASSETS / "grafana-csms-overview.json").read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert {"datasource", "namespace", "pod"} <= set(variables)
    assert variables["pod"]["multi"] is True and variables["pod"]["includeAll"] is True
    for name in ("namespace", "pod"):
        assert variables[name]["query"].startswith("label_values(csms_"), name
        assert variables[name]["definition"] == variables[name]["query"], name
        assert CHECK.metrics_in(variables[name]["query"]) <= CHECK.exposed_names(CHECK.metric_definitions()), name
    queries = list(CHECK.dashboard_queries())
    assert len(queries) >= 35
    for where, query in queries:
        for selector in re.findall(r"\b(?:csms_\w+|up)\{[^}]*\}|\b(?:csms_\w+|up)\b(?![{(])", query):
            assert 'namespace=~"$namespace"' in selector and 'pod=~"$pod"' in selector, (where, selector)
        # a 1m window holds one sample at a 1m scrape interval: Prometheus 3 returns nothing
        for window in re.findall(r"\b(?:rate|increase)\([^\[]*\[([^\]]+)\]", query):
            assert window == "$__rate_interval" or re.fullmatch(r"([5-9]|[1-9]\d+)m|\d+h", window), (where, window)
    titles = " ".join(p["title"] for p in doc["panels"]).lower()
    for wanted in ("command outcomes", "connects", "by action", "store latency", "event-loop lag",
                   "availability", "consumer lag", "dead letters"):
        assert wanted in titles, wanted
    # the e2e test reads panels[].targets[].expr: no row panels without targets
    assert all("targets" in p for p in doc["panels"])


def test_the_dashboard_checker_substitutes_every_grafana_variable() -> None:
    for _, query in CHECK.dashboard_queries():
        assert "$" not in CHECK.substitute(query), query
    assert CHECK.substitute('x{pod=~"$pod"}[$__rate_interval]') == 'x{pod=~"(csms-test-0|csms-test-1)"}[5m]'

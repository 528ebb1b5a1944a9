"""Checks every query of the Grafana dashboard with promtool (issue 12, `make deploy-check`).

    python deploy/observability/check_dashboard.py --promtool /path/to/promtool [--dashboard F]

For each panel target's `expr` (Grafana variables substituted: `$namespace`, `$pod` as a
multi-value regex, `$__rate_interval`, `$__interval`, `$__range`, `$datasource`):

1. every metric it names is one the code defines (`metric_definitions()` scans services/
   for the prometheus_client definitions: counters expose `_total`, histograms
   `_bucket`/`_sum`/`_count`), or a Prometheus built-in (`up`);
2. `promtool check rules` accepts it (each query becomes a recording rule of a temporary
   rule file);
3. `promtool test rules` evaluates it over synthetic input series (one per metric, with
   the labels the queries select on, in the namespace and pod the variables select) and
   it returns at least one series: a query that is syntactically fine but selects
   nothing (a wrong label value, a missing filter variable) fails here.

Prints one line per query (`ok` or the reason) and exits 1 on any failure, 2 on usage
errors. Works with promtool 2.42 (Debian) and 3.x. tests/unit/test_observability_files.py
imports `metric_definitions`, `exposed_names` and `metrics_in` from this file.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = Path(__file__).resolve().parent / "grafana-csms-overview.json"
BUILTINS = frozenset({"up"})

# prometheus_client definitions: Counter("csms_x_total", ...), Gauge(\n "csms_y", ...), and
# the custom collectors' metric families (services/gateway/metrics.py)
_DEFINITION = re.compile(
    r"\b(Counter|PromCounter|Gauge|Histogram|Summary|CounterMetricFamily|GaugeMetricFamily|HistogramMetricFamily)"
    r"\(\s*\"(csms_[a-z0-9_]+)\""
)
_KIND = {"PromCounter": "Counter", "CounterMetricFamily": "Counter", "GaugeMetricFamily": "Gauge",
         "HistogramMetricFamily": "Histogram"}
_METRIC = re.compile(r"\b(csms_[a-z0-9_]+|up)\b(?!\s*\()")
_SELECTOR = re.compile(r"\b(csms_[a-z0-9_]+|up)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")

# what the dashboard's variables become (a multi-value pod selection is a regex group)
NAMESPACE, PODS = "csms", ("csms-test-0", "csms-test-1")
VARIABLES = {
    "$__rate_interval": "5m",  # >= 2 samples of the 1m test interval in every promtool version
    "$__interval": "1m",
    "$__range": "1h",
    "${datasource}": "prometheus",
    "$datasource": "prometheus",
    "$namespace": NAMESPACE,
    "$pod": "(" + "|".join(PODS) + ")",
}


def metric_definitions(services: Path = ROOT / "services") -> dict[str, set[str]]:
    """Every `csms_*` metric the code defines: name as written -> its kinds (Counter, Gauge,
    Histogram, Summary; a custom collector may expose a gauge and a counter of one name)."""
    found: dict[str, set[str]] = {}
    for path in sorted(services.rglob("*.py")):
        for kind, name in _DEFINITION.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, set()).add(_KIND.get(kind, kind))
    return found


def exposed_names(definitions: dict[str, set[str]]) -> set[str]:
    """The sample names Prometheus stores for those definitions."""
    out: set[str] = set(BUILTINS)
    for name, kind in ((n, k) for n, kinds in definitions.items() for k in kinds):
        if kind == "Counter":
            base = name.removesuffix("_total")
            out |= {base + "_total", base + "_created"}
        elif kind == "Histogram":
            out |= {name + "_bucket", name + "_sum", name + "_count", name + "_created"}
        elif kind == "Summary":
            out |= {name, name + "_sum", name + "_count", name + "_created"}
        else:
            out.add(name)
    return out


def metrics_in(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (csms_* and the built-ins)."""
    names = set(_METRIC.findall(expr))
    return {n for n in names if n.startswith("csms_") or n in BUILTINS}


def dashboard_queries(dashboard: Path = DASHBOARD) -> Iterator[tuple[str, str]]:
    """(`panel <id> <refId>: <title>`, expr) for every target of every panel (rows included)."""
    doc = json.loads(dashboard.read_text(encoding="utf-8"))

    def panels(items: list[dict[str, object]]) -> Iterator[dict[str, object]]:
        for p in items:
            yield p
            nested = p.get("panels")
            if isinstance(nested, list):
                yield from panels(nested)

    for panel in panels(doc.get("panels", [])):
        targets = panel.get("targets")
        if not isinstance(targets, list):
            continue
        for target in targets:
            expr = target.get("expr")
            if isinstance(expr, str) and expr.strip():
                yield f"panel {panel.get('id')} {target.get('refId', '?')}: {panel.get('title', '')}", expr


def substitute(expr: str) -> str:
    for var in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(var, VARIABLES[var])
    return expr


def _input_series(queries: list[str]) -> list[dict[str, str]]:
    """One synthetic series per metric (per selected label value): every pod label of the
    selection, the labels the queries match on with equality, a non-empty value where they
    ask for one; histograms get two buckets."""
    wanted: dict[str, list[dict[str, str]]] = {}
    for expr in queries:
        for name in metrics_in(expr):
            wanted.setdefault(name, [])
        for name, body in _SELECTOR.findall(expr):
            labels: dict[str, str] = {}
            for label, op, value in _MATCHER.findall(body):
                if op == "=":
                    labels[label] = value
                elif op == "!=" and value == "":
                    labels[label] = "x"
            wanted[name].append(labels)
    out: list[dict[str, str]] = []
    for name, selections in sorted(wanted.items()):
        for extra in selections or [{}]:
            base = {"job": "csms", "group": "csms-test", "topic": "csms.test", **extra, "namespace": NAMESPACE}
            for i, pod in enumerate(PODS):
                labels = {**base, "pod": pod, "instance": f"10.0.0.{i}:9100"}
                if name.endswith("_bucket"):
                    for le, per_minute in (("0.1", 10), ("+Inf", 12)):
                        out.append(_series(name, {**labels, "le": labels.get("le", le)}, f"0+{per_minute}x30"))
                elif name == "up" or name == "csms_dependency_up":
                    out.append(_series(name, labels, "1x30"))
                else:
                    out.append(_series(name, labels, "0+6x30"))
    unique = {s["series"]: s for s in out}
    return list(unique.values())


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    body = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{body}}}", "values": values}


def _run(cmd: list[str]) -> tuple[int, str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--promtool", required=True, help="path of the promtool binary")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    args = parser.parse_args(argv)
    if not Path(args.promtool).exists():
        print(f"promtool not found: {args.promtool}", file=sys.stderr)
        return 2

    exposed = exposed_names(metric_definitions())
    queries = list(dashboard_queries(args.dashboard))
    if not queries:
        print(f"{args.dashboard}: no queries", file=sys.stderr)
        return 1
    failures: dict[str, str] = {}
    record = {where: f"dashboard:q{i}" for i, (where, _) in enumerate(queries)}
    exprs = {where: substitute(expr) for where, expr in queries}
    for where, expr in exprs.items():
        leftover = re.findall(r"\$\w+", expr)
        unknown = sorted(metrics_in(expr) - exposed)
        if leftover:
            failures[where] = f"unsubstituted variable(s) {leftover}"
        elif unknown:
            failures[where] = f"metric(s) no code defines: {unknown}"

    with tempfile.TemporaryDirectory(prefix="csms-dashboard-") as tmp:
        rules = Path(tmp) / "dashboard-rules.yaml"
        # JSON is YAML: no YAML library needed
        rules.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": [
            {"record": record[w], "expr": e} for w, e in exprs.items() if w not in failures]}]}, indent=1))
        rc, out = _run([args.promtool, "check", "rules", str(rules)])
        if rc != 0:
            # find the culprit(s): one rule file per query
            for where, expr in exprs.items():
                if where in failures:
                    continue
                single = Path(tmp) / "single.yaml"
                single.write_text(json.dumps({"groups": [{"name": "q", "rules": [{"record": "dashboard:q", "expr": expr}]}]}))
                rc1, out1 = _run([args.promtool, "check", "rules", str(single)])
                if rc1 != 0:
                    failures[where] = "promtool check rules: " + " ".join(out1.split())[-300:]
        evaluated = [w for w in exprs if w not in failures]
        tests = Path(tmp) / "dashboard-test.yaml"
        tests.write_text(json.dumps({
            "rule_files": [rules.name],
            "evaluation_interval": "1m",
            "tests": [{
                "interval": "1m",
                "input_series": _input_series([exprs[w] for w in evaluated]),
                "promql_expr_test": [
                    {"expr": f"count({record[w]}) > bool 0", "eval_time": "20m", "exp_samples": [{"labels": "{}", "value": 1}]}
                    for w in evaluated
                ],
            }],
        }, indent=1))
        if evaluated:
            if rc != 0:  # rewrite the rule file without the queries that failed the check
                rules.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": [
                    {"record": record[w], "expr": exprs[w]} for w in evaluated]}]}, indent=1))
            rc2, out2 = _run([args.promtool, "test", "rules", str(tests)])
            if rc2 != 0:
                for where in evaluated:
                    if f"count({record[where]}) > bool 0" in out2:
                        failures[where] = "returns no series over input series of the metrics it names"
                if not any(w in failures for w in evaluated):
                    print(out2, file=sys.stderr)
                    failures["promtool test rules"] = "failed (output above)"

    for where, expr in queries:
        print(f"{'FAIL' if where in failures else 'ok  '} {where}: {failures.get(where, expr)}")
    if "promtool test rules" in failures:
        print(f"FAIL promtool test rules: {failures['promtool test rules']}")
    print(f"{len(queries) - len(failures)}/{len(queries)} dashboard queries pass", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

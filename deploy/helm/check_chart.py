"""Semantic checks of the Helm chart (deploy/helm/csms): the defects of issue 12 cannot come back.

    python deploy/helm/check_chart.py --helm /path/to/helm [--render-out DIR] [--sync-alerts]

Runs `helm lint --strict` (default and production values) and `helm template`, then checks
the rendered manifests: two releases in one namespace share no kind/name; gateway replicas x
workers above the command partitions and processor HPAs above the event partitions fail the
render; the gateway Service keeps client IPs (externalTrafficPolicy Local) and carries no
metrics port; every Deployment/StatefulSet has the three probes, a restricted securityContext,
a `metrics` port, a PodDisruptionBudget selecting it and the global and its own extraEnv;
`csms migrate` is a hook Job, never an init container; the gateway's grace period covers the
preStop sleep and the drain window; every CSMS_* variable the chart sets is declared in
services/common/config.py and every container's env passes its load_settings; the PrometheusRule's files/alerts.yaml is
deploy/observability/alerts.yaml byte for byte (--sync-alerts copies it).

`--render-out DIR` writes default.yaml and production.yaml (the rendered manifests) for
kubeconform. Exit 1 with one line per failure; 0 when everything holds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[2]
TOOLS_PYTHON = ROOT / ".tools" / "venv" / "bin" / "python"   # deploy/check/tools.sh: has PyYAML (kubernetes-validate)

try:
    import yaml
except ImportError:  # no PyYAML here: the deploy-check tools' Python has it
    if TOOLS_PYTHON.exists() and Path(sys.executable).resolve() != TOOLS_PYTHON.resolve():
        os.execv(str(TOOLS_PYTHON), [str(TOOLS_PYTHON), *sys.argv])
    print("check_chart: needs PyYAML (pip install pyyaml, or deploy/check/tools.sh python)", file=sys.stderr)
    sys.exit(2)

CHART = ROOT / "deploy" / "helm" / "csms"
PRODUCTION = ROOT / "deploy" / "helm" / "values-production.yaml"
ALERTS = ROOT / "deploy" / "observability" / "alerts.yaml"
CHART_ALERTS = CHART / "files" / "alerts.yaml"
CONFIG = ROOT / "services" / "common" / "config.py"
# CSMS_* variables read outside services/common/config.py, with the module that reads them.
READ_ELSEWHERE = {"CSMS_AUTH_PEPPER": ROOT / "services" / "common" / "passwords.py"}
WORKLOADS = ("Deployment", "StatefulSet")
PROCESSOR_KEYS = ("sessions", "billing", "smartCharging", "stations", "certificates")

Manifest = dict[str, Any]


class Helm:
    def __init__(self, binary: str) -> None:
        self.binary = binary

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=120)

    def template(self, release: str, *args: str) -> tuple[list[Manifest], str]:
        """(manifests, error text): manifests empty when the render failed."""
        done = self.run("template", release, str(CHART), "--namespace", "csms", *args)
        if done.returncode != 0:
            return [], done.stderr.strip() or done.stdout.strip()
        return [d for d in yaml.safe_load_all(done.stdout) if isinstance(d, dict)], ""

    def template_text(self, release: str, *args: str) -> str:
        done = self.run("template", release, str(CHART), "--namespace", "csms", *args)
        return done.stdout if done.returncode == 0 else ""


def declared_variables() -> set[str]:
    """Every CSMS_* name services/common/config.py mentions as a string literal (its table or
    load_settings), plus the few read by another module (READ_ELSEWHERE, verified there)."""
    names = set(re.findall(r"[\"'](CSMS_[A-Z0-9_]+)[\"']", CONFIG.read_text()))
    for name, module in READ_ELSEWHERE.items():
        if name not in names and f'"{name}"' in module.read_text():
            names.add(name)
    return names


def containers(obj: Manifest) -> list[Manifest]:
    spec = obj.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if obj["kind"] != "Pod" else spec
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


def pod_spec(obj: Manifest) -> Manifest:
    return dict(obj["spec"]["template"]["spec"])


def env_names(container: Manifest) -> list[str]:
    return [str(e["name"]) for e in container.get("env", []) or []]


def env_value(container: Manifest, name: str) -> str | None:
    for e in container.get("env", []) or []:
        if e["name"] == name:
            return str(e.get("value")) if "value" in e else None
    return None


def selects(selector: Manifest, labels: Manifest) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


class Checker:
    def __init__(self, helm: Helm) -> None:
        self.helm = helm
        self.failures: list[str] = []

    def fail(self, line: str) -> None:
        self.failures.append(line)

    # -- lint and render -------------------------------------------------------------
    def lint(self) -> None:
        for label, args in (("default", ()), ("production", ("-f", str(PRODUCTION)))):
            done = self.helm.run("lint", "--strict", str(CHART), *args)
            if done.returncode != 0:
                detail = " ".join((done.stdout + done.stderr).split())[-300:]
                self.fail(f"helm lint --strict ({label} values) failed: {detail}")

    def render(self, label: str, release: str, *args: str) -> list[Manifest]:
        docs, error = self.helm.template(release, *args)
        if error:
            self.fail(f"helm template ({label}) failed: {' '.join(error.split())[:300]}")
        return docs

    # -- the checks ------------------------------------------------------------------
    def no_collisions(self) -> None:
        for label, args in (("default", ()), ("production", ("-f", str(PRODUCTION)))):
            seen: dict[tuple[str, str], str] = {}
            for release in ("one", "two"):
                for obj in self.render(f"{label}, release {release}", release, *args):
                    key = (obj["kind"], obj["metadata"]["name"])
                    if key in seen:
                        self.fail(f"two releases collide ({label} values): {key[0]} {key[1]} rendered by {seen[key]} and {release}")
                    seen[key] = release

    def guards(self) -> None:
        cases = [
            (("--set", "gateway.replicas=9", "--set", "gateway.workers=2", "--set", "commandsPartitions=16"),
             "exceeds commandsPartitions", "gateway replicas x workers > commandsPartitions"),
            (("--set", "processors.sessions.autoscaling.enabled=true", "--set", "processors.sessions.autoscaling.maxReplicas=13",
              "--set", "eventsPartitions=12"), "> eventsPartitions", "a processor HPA above eventsPartitions"),
            (("--set", "kafka.replicationFactor=2", "--set", "kafka.minInsyncReplicas=3"), "minInsyncReplicas", "min.insync.replicas above the replication factor"),
            (("--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafka.sasl.username=u"), "passwordSecret", "SASL without a password secret"),
        ]
        for args, message, what in cases:
            docs, error = self.helm.template("guard", *args)
            if docs or message not in error:
                self.fail(f"render did not fail on {what} (expected a message with {message!r}; got {error[:200]!r})")

    def manifests(self, label: str, docs: list[Manifest], values: Manifest) -> None:
        metrics_port = int(values["metricsPort"])
        by_kind: dict[str, list[Manifest]] = {}
        for obj in docs:
            by_kind.setdefault(obj["kind"], []).append(obj)
        known = declared_variables()
        for obj in docs:
            for c in containers(obj):
                for name in env_names(c):
                    if name.startswith("CSMS_") and name not in known:
                        self.fail(f"{label}: {obj['kind']} {obj['metadata']['name']} sets {name}, not declared in services/common/config.py")
        self.settings_load(label, docs)
        workloads = [o for o in docs if o["kind"] in WORKLOADS]
        if not workloads:
            self.fail(f"{label}: no Deployment or StatefulSet rendered")
        pdbs = by_kind.get("PodDisruptionBudget", [])
        for obj in workloads:
            name = f"{obj['kind']} {obj['metadata']['name']}"
            spec = pod_spec(obj)
            labels = obj["spec"]["template"]["metadata"]["labels"]
            psc = spec.get("securityContext") or {}
            if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
                self.fail(f"{label}: {name}: pod securityContext must set runAsNonRoot and runAsUser")
            if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                self.fail(f"{label}: {name}: pod seccompProfile must be RuntimeDefault")
            if spec.get("automountServiceAccountToken") is not False:
                self.fail(f"{label}: {name}: automountServiceAccountToken must be false")
            if not spec.get("topologySpreadConstraints"):
                self.fail(f"{label}: {name}: no topologySpreadConstraints")
            for c in spec.get("initContainers", []) or []:
                if "migrate" in (c.get("args") or []) + (c.get("command") or []):
                    self.fail(f"{label}: {name}: `csms migrate` runs as an init container (use the hook Job)")
            for c in spec.get("containers", []):
                where = f"{label}: {name} container {c['name']}"
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if not c.get(probe):
                        self.fail(f"{where}: no {probe}")
                csc = c.get("securityContext") or {}
                if csc.get("readOnlyRootFilesystem") is not True:
                    self.fail(f"{where}: readOnlyRootFilesystem must be true")
                if csc.get("allowPrivilegeEscalation") is not False:
                    self.fail(f"{where}: allowPrivilegeEscalation must be false")
                if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                    self.fail(f"{where}: capabilities must drop ALL")
                ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
                if ports.get("metrics") != metrics_port:
                    self.fail(f"{where}: no container port named metrics on {metrics_port}")
                if not any(m.get("mountPath") == "/tmp" for m in c.get("volumeMounts", []) or []):
                    self.fail(f"{where}: no writable /tmp (the root filesystem is read-only)")
                if not c.get("resources", {}).get("requests"):
                    self.fail(f"{where}: no resource requests")
            if not any(selects(p["spec"]["selector"], labels) for p in pdbs):
                self.fail(f"{label}: {name}: no PodDisruptionBudget selects its pods")
        self.gateway(label, docs, values)
        self.hook_job(label, docs)
        self.hpas(label, docs, values)

    def settings_load(self, label: str, docs: list[Manifest]) -> None:
        """Every container's env (secrets and the pod name stood in) passes load_settings:
        a value the chart writes that the typed settings refuse fails here, not in a pod."""
        sys.path.insert(0, str(ROOT))
        try:
            from services.common import config
        except Exception as exc:  # the module itself is broken or missing
            self.fail(f"{label}: cannot import services.common.config: {exc}")
            return
        for obj in docs:
            if obj["kind"] not in (*WORKLOADS, "Job"):
                continue
            for c in containers(obj):
                env = {str(e["name"]): str(e["value"]) if "value" in e else ("csms-gateway-0" if "fieldRef" in e.get("valueFrom", {}) else "secret")
                       for e in c.get("env", []) or [] if str(e["name"]).startswith("CSMS_")}
                try:
                    config.load_settings(env)
                except Exception as exc:
                    self.fail(f"{label}: {obj['kind']} {obj['metadata']['name']}: load_settings refuses the chart's env: {exc}")

    def gateway(self, label: str, docs: list[Manifest], values: Manifest) -> None:
        metrics_port = int(values["metricsPort"])
        services = [o for o in docs if o["kind"] == "Service" and o["spec"].get("type") in ("LoadBalancer", "NodePort")]
        gw_services = [s for s in services if s["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"]
        if not gw_services:
            self.fail(f"{label}: no LoadBalancer/NodePort Service for the gateway")
        for svc in gw_services:
            name = svc["metadata"]["name"]
            if svc["spec"].get("externalTrafficPolicy") != "Local":
                self.fail(f"{label}: Service {name}: externalTrafficPolicy must be Local (client IPs)")
            for p in svc["spec"].get("ports", []):
                if p.get("name") == "metrics" or p.get("port") == metrics_port or p.get("targetPort") in ("metrics", metrics_port):
                    self.fail(f"{label}: Service {name} exposes the metrics port {p} on the load balancer")
        sts = [o for o in docs if o["kind"] == "StatefulSet"]
        if len(sts) != 1:
            self.fail(f"{label}: expected one gateway StatefulSet, found {len(sts)}")
            return
        spec = pod_spec(sts[0])
        c = spec["containers"][0]
        if env_value(c, "CSMS_METRICS_ON_OCPP_PORT") != "false":
            self.fail(f"{label}: gateway must set CSMS_METRICS_ON_OCPP_PORT=false")
        window = env_value(c, "CSMS_DRAIN_WINDOW_S")
        if window is None:
            self.fail(f"{label}: gateway does not set CSMS_DRAIN_WINDOW_S")
            window = "0"
        sleep = 0.0
        command = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
        if command[:1] == ["sleep"] and len(command) == 2:
            sleep = float(command[1])
        elif command:
            self.fail(f"{label}: gateway preStop is not `sleep N`: {command}")
        grace = float(spec.get("terminationGracePeriodSeconds", 30))
        if grace < sleep + float(window):
            self.fail(f"{label}: gateway terminationGracePeriodSeconds {grace:g} < preStop {sleep:g} + drain window {window}")
        if float(values["gateway"]["drain"]["preStopSleepSeconds"]) > 0 and sleep == 0:
            self.fail(f"{label}: gateway has no preStop sleep")

    def hook_job(self, label: str, docs: list[Manifest]) -> None:
        jobs = [o for o in docs if o["kind"] == "Job" and "migrate" in (containers(o)[0].get("args") or [])]
        if not jobs:
            self.fail(f"{label}: no `csms migrate` Job")
        for job in jobs:
            hooks = set(str(job["metadata"].get("annotations", {}).get("helm.sh/hook", "")).split(","))
            if not {"pre-install", "pre-upgrade"} <= hooks:
                self.fail(f"{label}: Job {job['metadata']['name']} is not a pre-install,pre-upgrade hook")
            if job["spec"].get("backoffLimit") is None:
                self.fail(f"{label}: Job {job['metadata']['name']} has no backoffLimit")

    def hpas(self, label: str, docs: list[Manifest], values: Manifest) -> None:
        partitions = int(values["eventsPartitions"])
        deployments = {o["metadata"]["name"]: o for o in docs if o["kind"] == "Deployment"}
        for hpa in (o for o in docs if o["kind"] == "HorizontalPodAutoscaler"):
            target = hpa["spec"]["scaleTargetRef"]["name"]
            component = hpa["metadata"]["labels"].get("app.kubernetes.io/component")
            if component != "api" and int(hpa["spec"]["maxReplicas"]) > partitions:
                self.fail(f"{label}: HPA {hpa['metadata']['name']} maxReplicas {hpa['spec']['maxReplicas']} > eventsPartitions {partitions}")
            if target in deployments and "replicas" in deployments[target]["spec"]:
                self.fail(f"{label}: Deployment {target} sets replicas while its HPA is on")

    def extra_env(self) -> None:
        """extraEnv / extraEnvFrom, global and per workload, reach every workload's container."""
        sets = ["--set", "extraEnv[0].name=CHECK_GLOBAL", "--set", "extraEnv[0].value=1",
                "--set", "extraEnvFrom[0].configMapRef.name=check-global", "--set", "ca.secretName=check-ca"]
        keys = {"gateway": "gateway", "api": "api"} | {f"processors.{k}": k for k in PROCESSOR_KEYS}
        for path, short in keys.items():
            sets += ["--set", f"{path}.extraEnv[0].name=CHECK_{short.upper()}", "--set", f"{path}.extraEnv[0].value=1"]
        docs = self.render("extraEnv", "extra", *sets)
        by_component = {o["metadata"]["labels"].get("app.kubernetes.io/component"): o for o in docs if o["kind"] in WORKLOADS}
        components = {"gateway": "gateway", "api": "api", "sessions": "sessions", "billing": "billing",
                      "smartCharging": "smart-charging", "stations": "stations", "certificates": "certificates"}
        for short, component in components.items():
            obj = by_component.get(component)
            if obj is None:
                self.fail(f"extraEnv: no workload {component} rendered")
                continue
            c = pod_spec(obj)["containers"][0]
            names = env_names(c)
            for wanted in ("CHECK_GLOBAL", f"CHECK_{short.upper()}"):
                if wanted not in names:
                    self.fail(f"extraEnv: {component} does not get {wanted}")
            if not any((e.get("configMapRef") or {}).get("name") == "check-global" for e in c.get("envFrom", []) or []):
                self.fail(f"extraEnvFrom: {component} does not get the global envFrom")

    def alerts_copy(self) -> None:
        if not CHART_ALERTS.exists() or CHART_ALERTS.read_bytes() != ALERTS.read_bytes():
            self.fail(f"{CHART_ALERTS} differs from {ALERTS.relative_to(ROOT)}: run `python deploy/helm/check_chart.py --sync-alerts`")


def set_chart(chart: Path) -> None:
    """Check another copy of the chart (the checks' own tests break copies on purpose)."""
    global CHART, CHART_ALERTS
    CHART = chart
    CHART_ALERTS = chart / "files" / "alerts.yaml"


def values_of(*files: Path) -> Manifest:
    """Chart defaults overlaid with the given values files (deep merge of mappings)."""
    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {k: merge(base.get(k), over[k]) if k in base else over[k] for k in over} | {k: v for k, v in base.items() if k not in over}
        return over
    merged: Any = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in files:
        merged = merge(merged, yaml.safe_load(f.read_text()))
    return dict(merged)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--helm", default=shutil.which("helm") or "helm", help="the helm v3 binary")
    parser.add_argument("--render-out", type=Path, help="write default.yaml and production.yaml here (for kubeconform)")
    parser.add_argument("--chart", type=Path, default=CHART, help="the chart directory (default deploy/helm/csms)")
    parser.add_argument("--sync-alerts", action="store_true", help="copy deploy/observability/alerts.yaml into the chart first")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.sync_alerts:
        CHART_ALERTS.parent.mkdir(exist_ok=True)
        shutil.copyfile(ALERTS, CHART_ALERTS)
    set_chart(args.chart.resolve())
    helm = Helm(args.helm)
    check = Checker(helm)
    check.lint()
    default = check.render("default", "csms")
    production = check.render("production", "csms", "-f", str(PRODUCTION))
    if default:
        check.manifests("default", default, values_of())
    if production:
        check.manifests("production", production, values_of(PRODUCTION))
    check.no_collisions()
    check.guards()
    check.extra_env()
    check.alerts_copy()
    if args.render_out:
        args.render_out.mkdir(parents=True, exist_ok=True)
        for name, extra in (("default", ()), ("production", ("-f", str(PRODUCTION)))):
            text = helm.template_text("csms", *extra)
            (args.render_out / f"{name}.yaml").write_text(text)
            if not text:
                check.fail(f"--render-out: rendering {name} failed")
    for line in check.failures:
        print(line)
    if check.failures:
        print(f"check_chart: {len(check.failures)} failure(s)", file=sys.stderr)
        return 1
    print("check_chart: ok (lint, render, collisions, guards, probes, securityContext, metrics ports, PDBs, "
          "migrate hook, grace period, HPA caps, CSMS_* names, extraEnv, alerts copy)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# `make deploy-check` (ADR 019, decision 7): everything a platform engineer checks before a
# deployment, with pinned tools installed into .tools/ by deploy/check/tools.sh.
#
#   helm-lint            helm lint --strict, default values and deploy/helm/values-production.yaml
#   kubeconform-<k8s>    helm template of both (--kube-version <k8s>) validated by kubeconform
#                        -strict against the Kubernetes 1.29, 1.30 and 1.31 schemas (from
#                        kubernetes-validate); only the prometheus-operator kinds
#                        (monitoring.coreos.com) have no schema there and are skipped
#   chart-semantics      deploy/helm/check_chart.py (names, guards, probes, PDBs, ...)
#   promtool-check       promtool check rules deploy/observability/alerts.yaml
#   promtool-test        promtool test rules deploy/observability/tests/*.yaml
#   dashboard-queries    deploy/observability/check_dashboard.py (every panel query, promtool)
#   image                deploy/check/image.sh: hadolint, and the build where a builder works
#   buf-lint             buf lint proto
#   buf-breaking         buf breaking proto against the last v* tag (or, in a clone without
#                        tags, the previous commit; skipped, saying so, in a one-commit clone)
#
# Every check runs even when one before it failed; the summary names each with its result
# and time, and the exit status is 1 when any failed. Runs from any directory; reaches no
# network beyond the package registries (tools, on the first run) and loopback.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
export TOOLS_DIR="$TOOLS"
cd "$ROOT"

K8S_VERSIONS=(1.29.0 1.30.0 1.31.0)
CHART=deploy/helm/csms
PROD_VALUES=deploy/helm/values-production.yaml
RELEASE=csms
NAMESPACE=csms
# prometheus-operator CRDs: no schema in kubernetes-validate (built-in kinds are never skipped)
CRD_KINDS=monitoring.coreos.com/v1/ServiceMonitor,monitoring.coreos.com/v1/PodMonitor,monitoring.coreos.com/v1/PrometheusRule

total_start=$SECONDS
echo "== tools"
"$ROOT/deploy/check/tools.sh"
HELM="$TOOLS/bin/helm"
KUBECONFORM="$TOOLS/bin/kubeconform"
PROMTOOL="$TOOLS/bin/promtool"
BUF="$TOOLS/bin/buf"
PY="$TOOLS/venv/bin/python"
SCHEMAS="$TOOLS/k8s-schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
tools_s=$((SECONDS - total_start))

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

RESULTS=()
FAILED=0
# check NAME COMMAND...: runs it, keeps its output in the log, records the outcome
check() {
  local name="$1" start=$SECONDS rc
  shift
  echo "== $name"
  # a subshell outside any || or && list, so that set -e stops the check at its first error
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    RESULTS+=("$(printf '%-22s ok    %4ss' "$name" $((SECONDS - start)))")
  else
    RESULTS+=("$(printf '%-22s FAIL  %4ss  (exit %s)' "$name" $((SECONDS - start)) "$rc")")
    FAILED=1
  fi
}

helm_lint() {
  "$HELM" lint --strict "$CHART"
  "$HELM" lint --strict "$CHART" -f "$PROD_VALUES"
}

# kubeconform_for K8S: both renders for that Kubernetes version, validated -strict
kubeconform_for() {
  local k8s="$1" name
  for name in default production; do
    local args=()
    [ "$name" = production ] && args=(-f "$PROD_VALUES")
    "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$k8s" \
      "${args[@]}" >"$WORK/$name-$k8s.yaml"
    echo "$name values:"
    "$KUBECONFORM" -strict -summary -kubernetes-version "$k8s" -schema-location "$SCHEMAS" \
      -skip "$CRD_KINDS" "$WORK/$name-$k8s.yaml"
  done
}

promtool_test() {
  local tests=(deploy/observability/tests/*.yaml)
  [ -e "${tests[0]}" ] || { echo "no promtool tests in deploy/observability/tests/" >&2; return 1; }
  "$PROMTOOL" test rules "${tests[@]}"
}

buf_breaking() {
  local tag against
  if tag="$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null)"; then
    against=".git#tag=$tag,subdir=proto"
    echo "buf breaking: proto/ against release $tag"
  elif git rev-parse -q --verify HEAD~1 >/dev/null; then
    against=".git#ref=HEAD~1,subdir=proto"
    echo "buf breaking: no v* tag in this clone: proto/ against the previous commit (HEAD~1)"
  else
    # a shallow clone of one commit: nothing to compare with (buf lint still ran)
    echo "buf breaking: SKIPPED: no v* tag and no previous commit in this clone (shallow)"
    return 0
  fi
  "$BUF" breaking proto --against "$against"
}

image() {
  "$ROOT/deploy/check/image.sh" | tee "$WORK/image.log"
}

check helm-lint helm_lint
for k8s in "${K8S_VERSIONS[@]}"; do
  check "kubeconform-${k8s%.0}" kubeconform_for "$k8s"
done
check chart-semantics "$PY" deploy/helm/check_chart.py --helm "$HELM"
check promtool-check "$PROMTOOL" check rules deploy/observability/alerts.yaml
check promtool-test promtool_test
check dashboard-queries "$PY" deploy/observability/check_dashboard.py --promtool "$PROMTOOL"
check image image
check buf-lint "$BUF" lint proto
check buf-breaking buf_breaking

echo
echo "== deploy-check summary (tools ${tools_s}s, total $((SECONDS - total_start))s)"
printf '  %s\n' "${RESULTS[@]}"
grep -E '^image: (built|not built)' "$WORK/image.log" 2>/dev/null | tail -1 | sed 's/^/  /' || true
if [ $FAILED -ne 0 ]; then
  echo "deploy-check: FAILED"
  exit 1
fi
echo "deploy-check: all passed"

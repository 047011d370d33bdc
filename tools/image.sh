#!/usr/bin/env bash
# The audioclassifier container image, built and run the same way by `make image` and
# tests/test_image.py (`make test-image`).
#
#   tools/image.sh tag [PLATFORM]   the local tag: audioclassifier:<module.json image.tag.version>-PLATFORM
#   tools/image.sh build [PLATFORM] build it from modules/audioclassifier/Dockerfile.PLATFORM (context:
#                                   modules/audioclassifier); prints the build time and the image size
#
# PLATFORM: a module.json platform built here, `amd64` (the default image: onnxruntime) or
# `amd64.openvino` (the OpenVINO image, for Intel GPUs and NPUs).
#   tools/image.sh engine ARGS... the engine the build uses, e.g. `engine run --rm TAG --self-test`
#
# The engine: docker when a Docker engine answers `docker info`; else, as root with
# ../shared/tools/container-base.sh beside the repository, podman through that tool (it installs podman
# and, once, builds a stand-in for python:3.11-slim-bookworm where Docker Hub is out of reach); else
# plain podman. Exit status 77: this machine cannot run containers at all (the reason on stderr).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
MODULE=$REPO/modules/audioclassifier
CONTAINER_BASE=${AUSCULT_CONTAINER_BASE:-$REPO/../shared/tools/container-base.sh}
PLATFORM=amd64
set_platform() {
  case "${1:-amd64}" in
    amd64|amd64.openvino) PLATFORM=${1:-amd64} ;;
    *) echo "image.sh: platform must be amd64 or amd64.openvino, got '$1'" >&2; exit 2 ;;
  esac
}

tag() {
  local version
  version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["image"]["tag"]["version"])' \
    "$MODULE/module.json")
  echo "audioclassifier:$version-$PLATFORM"
}

# ENGINE: the command prefix; BUILD_OPTS: what `build` needs on top of it; BASE: through container-base.sh.
choose_engine() {
  BUILD_OPTS=() BASE=()
  if command -v docker >/dev/null 2>&1 && timeout 60 docker info >/dev/null 2>&1; then
    ENGINE=(docker)
  elif [ -f "$CONTAINER_BASE" ] && [ "$(id -u)" -eq 0 ]; then
    BASE=(bash "$CONTAINER_BASE")
    ENGINE=("${BASE[@]}" podman)
    BUILD_OPTS=(--pull=never --network host)
  elif command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then
    ENGINE=(podman)
  else
    echo "image.sh: this machine cannot run containers: no Docker engine answers 'docker info', no working" \
         "podman, and $CONTAINER_BASE (which installs podman, as root) is not usable here" >&2
    exit 77
  fi
}

build() {
  local image start size
  image=$(tag)
  if ((${#BASE[@]})); then
    "${BASE[@]}" setup >/dev/null    # podman & co. from apt, once; rewrites its runtime wrapper
    "${BASE[@]}" base                # the stand-in base image; kept when it exists
  fi
  start=$SECONDS
  "${ENGINE[@]}" build "${BUILD_OPTS[@]}" -f "$MODULE/Dockerfile.$PLATFORM" -t "$image" "$MODULE"
  size=$("${ENGINE[@]}" image inspect --format '{{.Size}}' "$image")
  echo "image.sh: $image built in $((SECONDS - start)) s, $((size / 1000000)) MB"
}

case "${1:-}" in
  tag) set_platform "${2:-}"; tag ;;
  build) set_platform "${2:-}"; choose_engine; build ;;
  engine) shift; choose_engine; exec "${ENGINE[@]}" "$@" ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac

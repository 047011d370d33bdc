#!/usr/bin/env bash
# Runs once when the dev container is created (devcontainer.json "postCreateCommand").
# The project's own set-up must succeed; the optional tools are each tried once, and a failure
# (a download refused behind a proxy, a registry outage) is reported without stopping the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

# A .env to fill in (git-ignored), first: nothing below may prevent it.
[ -f .env ] || cp .env.template .env

# The project, editable, with the training and development extras, in .venv (as `make test` uses it).
make venv-dev

failed=()
optional() {  # optional NAME COMMAND...: run it; on failure note NAME and go on
  local name=$1; shift
  if ! "$@"; then
    echo "post-create: optional step '$name' failed; the project works without it (retry: $*)" >&2
    failed+=("$name")
  fi
}

# IoT Edge dev tool: builds module images from module.json, generates and validates deployment manifests.
optional iotedgedev pipx install --force iotedgedev==3.3.9
# The Azure CLI's IoT extension (the azure-cli feature adds it; this keeps it current).
optional azure-iot az extension add --name azure-iot --upgrade --only-show-errors
# Azure Functions Core Tools (cloud/notify: `func start`; downloads a binary, which some networks
# refuse) and Azurite (local blob storage), pinned: Azurite at the version .ci/run tests against.
optional func-core-tools npm install --global --no-fund --no-audit azure-functions-core-tools@4.15.1
optional azurite npm install --global --no-fund --no-audit azurite@3.35.0

if ((${#failed[@]})); then
  echo "Ready, without: ${failed[*]}. 'make test', 'make demo' work; see the messages above." >&2
else
  echo "Ready: 'make test', 'make demo'; deployment: fill in .env, then see docs/operator-guide.md."
fi

#!/usr/bin/env bash
# Runs once when the dev container is created (devcontainer.json "postCreateCommand").
set -euo pipefail
cd "$(dirname "$0")/.."

# The project, editable, with the training and development extras, in .venv (as `make test` uses it).
make venv-dev

# IoT Edge dev tool: builds module images from module.json, generates deployment manifests.
pipx install --force iotedgedev==3.3.9

# The Azure CLI's IoT extension (the azure-cli feature adds it; this keeps it current).
az extension add --name azure-iot --upgrade --only-show-errors

# Azure Functions Core Tools (cloud/notify: `func start`) and Azurite (local blob storage).
npm install --global --no-fund --no-audit azure-functions-core-tools@4 azurite

# A .env to fill in (git-ignored).
[ -f .env ] || cp .env.template .env

echo "Ready: 'make test', 'make demo'; deployment: fill in .env, then see the operator guide in README.md."

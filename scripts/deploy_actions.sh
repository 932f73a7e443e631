#!/usr/bin/env bash
# Deploy the actions of a wskdeploy manifest into the namespace of every user of the injection
# traces, with that user's key (REST PUT .../actions/NAME?overwrite=true; packages created as
# needed). Each user gets the actions its traces invoke; --all gives every user every action;
# --user NAME (repeatable) deploys every manifest action for NAME instead.
#
#   scripts/deploy_actions.sh [--config config/loader.yml] [--set KEY=VALUE]... [--manifest actions/manifest.yml] [--all]
#
# The original FaaSLoad had no script for this (wskdeploy deploys into one namespace at a time).
# See docs/injector.md. Exit status: 0 when every action was deployed.
# Relative paths are relative to the current directory; FaaSLoad runs in the environment of
# scripts/setup.sh ($FAASLOAD_VENV, default .venv of the repository).
set -euo pipefail
source "$(dirname "$0")/_env.sh"
require_python
split_config_args "$@"
exec "$PY" -m loader.deploy "${config_args[@]}" actions "${command_args[@]}"

#!/usr/bin/env bash
# Generator mode setup, step 2: deploy every function of the `functions` table into the
# namespace of its user (user-FUNCTION), with that user's key from openwhisk:authkeys:
# REST PUT /api/v1/namespaces/_/actions/NAME?overwrite=true with the code file named by
# the manifest the function came from, its runtime and limits.
#
#   scripts/generator_deploy_actions.sh [--config config/loader.yml] [--set KEY=VALUE]...
#
# Run scripts/generator_create_users.sh first. See docs/generator.md.
# Relative paths are relative to the current directory; FaaSLoad runs in the environment of
# scripts/setup.sh ($FAASLOAD_VENV, default .venv of the repository).
set -euo pipefail
source "$(dirname "$0")/_env.sh"
require_python
split_config_args "$@"
if [ ${#command_args[@]} -gt 0 ]; then
    echo "generator_deploy_actions.sh: unknown argument: ${command_args[0]}" >&2
    exit 2
fi
exec "$PY" -m loader.gendeploy "${config_args[@]}" actions

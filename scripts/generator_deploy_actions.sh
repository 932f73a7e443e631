#!/usr/bin/env bash
# Generator mode setup, step 2: deploy every function of the `functions` table into the
# namespace of its user (user-FUNCTION), with that user's key from openwhisk:authkeys:
# REST PUT /api/v1/namespaces/_/actions/NAME?overwrite=true with the code file named by
# the manifest the function came from, its runtime and limits.
#
#   scripts/generator_deploy_actions.sh [--config config/loader.yml]
#
# Run scripts/generator_create_users.sh first. See docs/generator.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
config=()
while [ $# -gt 0 ]; do
    case "$1" in
        -c|--config) config=(--config "$2"); shift 2 ;;
        --config=*) config=("$1"); shift ;;
        *) echo "generator_deploy_actions.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
exec "$PY" -m loader.gendeploy "${config[@]}" actions

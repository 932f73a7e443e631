#!/usr/bin/env bash
# Generator mode setup, step 1: create user-FUNCTION on the platform for every function of
# the `functions` table, and store each key (uuid:key) in openwhisk:authkeys, in a file
# named after the user. Users whose key file exists are kept.
#
#   scripts/generator_create_users.sh [--config config/loader.yml]                  # localwhisk
#   scripts/generator_create_users.sh --platform openwhisk [--wskadmin PATH] [...]   # wskadmin user create
#   scripts/generator_create_users.sh --localwhisk-arg=--config=my-localwhisk.yml
#
# Fill the functions table first: python -m loader.functions actions/manifest.yml.
# Then deploy the actions: scripts/generator_deploy_actions.sh. See docs/generator.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
config=()
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        -c|--config) config=(--config "$2"); shift 2 ;;
        --config=*) config=("$1"); shift ;;
        *) rest+=("$1"); shift ;;
    esac
done
exec "$PY" -m loader.gendeploy "${config[@]}" users "${rest[@]}"

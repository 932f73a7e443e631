#!/usr/bin/env bash
# Generator mode setup, step 1: create user-FUNCTION on the platform for every function of
# the `functions` table, and store each key (uuid:key) in openwhisk:authkeys, in a file
# named after the user. Users whose key file exists are kept.
#
#   scripts/generator_create_users.sh [--config config/loader.yml] [--set KEY=VALUE]...     # localwhisk
#   scripts/generator_create_users.sh --platform openwhisk [--wskadmin PATH] [...]   # wskadmin user create
#   scripts/generator_create_users.sh --localwhisk-arg=--config=my-localwhisk.yml
#
# Fill the functions table first: python -m loader.functions actions/manifest.yml.
# Then deploy the actions: scripts/generator_deploy_actions.sh. See docs/generator.md.
# Relative paths are relative to the current directory; FaaSLoad runs in the environment of
# scripts/setup.sh ($FAASLOAD_VENV, default .venv of the repository).
set -euo pipefail
source "$(dirname "$0")/_env.sh"
require_python
split_config_args "$@"
exec "$PY" -m loader.gendeploy "${config_args[@]}" users "${command_args[@]}"

#!/usr/bin/env bash
# Create the users that the injection traces name (file USER-ACTION-... in injection:tracedir)
# and store each one's uuid:key in openwhisk:authkeys (file USER).
#
#   scripts/create_users.sh [--config config/loader.yml] [--set KEY=VALUE]... [--localwhisk-arg=--config=FILE]
#       creates the users on localwhisk (python -m localwhisk user create USER); users that
#       already have a key file are kept.
#   scripts/create_users.sh --config FILE --print-wskadmin
#       for a real OpenWhisk: prints the wskadmin commands to run as its administrator, and
#       how to store the keys (python -m loader.deploy store-key USER UUID:KEY).
#   --user NAME (repeatable) replaces the traces' users.
# See docs/injector.md. Exit status: 0 when every user has a key.
# Relative paths are relative to the current directory; FaaSLoad runs in the environment of
# scripts/setup.sh ($FAASLOAD_VENV, default .venv of the repository).
set -euo pipefail
source "$(dirname "$0")/_env.sh"
require_python
split_config_args "$@"
exec "$PY" -m loader.deploy "${config_args[@]}" users "${command_args[@]}"

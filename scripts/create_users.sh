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
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
config_args=()
command_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -c|--config|--set) config_args+=("$1" "$2"); shift 2 ;;
        --config=*|--set=*) config_args+=("$1"); shift ;;
        *) command_args+=("$1"); shift ;;
    esac
done
exec "$PY" -m loader.deploy "${config_args[@]}" users "${command_args[@]}"

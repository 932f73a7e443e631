#!/usr/bin/env bash
# Set up a fresh machine (scripts/setup.sh --tests: system packages, Chromium for the report test, and the virtual
# environment .venv),
# start a Docker daemon if none is reachable (as root, with docker.io), and run the whole test
# suite with the environment's pytest against real services. Arguments go to pytest; test paths
# are relative to the current directory. Exit status is pytest's.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
"$FAASLOAD_ROOT/scripts/setup.sh" --tests "$FAASLOAD_VENV"
require_python

started_dockerd=""
if command -v dockerd >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    read -r docker_url docker_pid < <("$PY" -m faasload.dockerd ensure /tmp/faasload-ci-dockerd) || true
    if [ -n "${docker_url:-}" ]; then
        export DOCKER_HOST=$docker_url
        started_dockerd=${docker_pid:-}
    else
        echo "test: no Docker daemon: the Docker tests will be skipped" >&2
    fi
fi
stop_dockerd() {
    if [ -n "$started_dockerd" ]; then
        kill "$started_dockerd" 2>/dev/null || true
        for _ in $(seq 1 200); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.1; done
    fi
}
trap stop_dockerd EXIT

# pytest runs from the repository (its configuration, tests/); paths given here are made absolute.
args=()
for arg in "$@"; do
    if [ -e "${arg%%::*}" ]; then args+=("$(realpath "${arg%%::*}")${arg#"${arg%%::*}"}"); else args+=("$arg"); fi
done
cd "$FAASLOAD_ROOT"
"$PY" -m pytest "${args[@]}"

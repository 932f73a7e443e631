#!/usr/bin/env bash
# Set up a fresh machine (scripts/setup.sh --tests), start a Docker daemon if none is reachable,
# and run the whole test suite against real services. Exit status is pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
PY=${PYTHON:-python3}

started_dockerd=""
if command -v dockerd >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    if ! DOCKER_HOST=${DOCKER_HOST:-} "$PY" -c 'import sys; from faasload import dockerd; sys.exit(0 if dockerd.ping(dockerd.default_base_url()) else 1)'; then
        root=/tmp/faasload-ci-dockerd
        export DOCKER_HOST=$("$PY" -c "from pathlib import Path; from faasload import dockerd; print(dockerd.start(Path('$root')).base_url)")
        started_dockerd=$root/dockerd.pid
    fi
fi
stop_dockerd() { [ -n "$started_dockerd" ] && [ -f "$started_dockerd" ] && kill "$(cat "$started_dockerd")" 2>/dev/null || true; }
trap stop_dockerd EXIT

"$PY" -m pytest "$@"

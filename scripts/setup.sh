#!/usr/bin/env bash
# Install everything FaaSLoad, its demo and its tests need on a fresh Debian 12 machine.
# Idempotent: what is present is left alone. Needs root for the system packages.
#   scripts/setup.sh           what FaaSLoad and its demo need
#   scripts/setup.sh --tests   also what only the tests need (Chromium, to open the HTML report)
set -euo pipefail
cd "$(dirname "$0")/.."
for_tests=""
[ "${1:-}" = "--tests" ] && for_tests=1

log() { printf 'setup: %s\n' "$*" >&2; }

# System packages: Docker (localwhisk's Docker backend; optional for the rest).
need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
if [ -n "$for_tests" ] && ! command -v chromium >/dev/null 2>&1; then
    need_apt+=(chromium fonts-dejavu-core)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        log "installing ${need_apt[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    else
        log "not root: skipping ${need_apt[*]} (the tests that need them will be skipped)"
    fi
fi

# Python dependencies, only through the Pipfile (lock file pinned versions).
PY=${PYTHON:-python3}
if ! "$PY" -m pipenv --version >/dev/null 2>&1; then
    log "installing pipenv"
    "$PY" -m pip install --quiet pipenv
fi
log "installing Python dependencies from Pipfile.lock"
PIPENV_VERBOSITY=-1 "$PY" -m pipenv install --dev --system --deploy --quiet >&2
log "done"

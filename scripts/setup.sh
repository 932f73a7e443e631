#!/usr/bin/env bash
# Set up FaaSLoad on a Debian 12 or Ubuntu 24.04 machine: the system packages it uses (as root),
# and a virtual environment holding exactly Pipfile.lock's packages and FaaSLoad itself.
#
#   scripts/setup.sh [--no-dev] [--tests] [VENV_DIR]
#
# VENV_DIR: the environment (default $FAASLOAD_VENV, else .venv in the repository; a relative
# path is relative to the current directory). The other scripts find it the same way.
#
# * Interpreter: $PYTHON if set, else the first Python >= 3.11 among /usr/bin/python3, python3,
#   python3.13, python3.12, python3.11 on the PATH. Its own packages are never touched: nothing is
#   installed outside VENV_DIR.
# * System packages, as root, when missing: python3-venv (to create the environment), docker.io
#   (localwhisk's Docker backend) and systemd (systemd-analyze, for the unit checks). Not root:
#   they are skipped with a message (python3-venv is then needed already). With --tests, also
#   what only the tests need: Chromium and a font (to open the HTML report as a person would).
# * Python packages: every version and hash of Pipfile.lock ([packages] and, unless --no-dev,
#   [dev-packages]) with `pip install --require-hashes`, then FaaSLoad itself as an editable
#   install (`python -m loader` from any directory; console scripts faasload-loader,
#   faasload-monitor, localwhisk in VENV_DIR/bin), plus the checkout as a path entry
#   (faasload-checkout.pth, see below).
# * Idempotent: a stamp in VENV_DIR records the interpreter, the lock and pyproject.toml; when
#   they are unchanged a second run changes nothing. A changed lock or interpreter rebuilds the
#   environment from scratch, so it never holds packages the lock dropped.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }
fail() { printf 'setup: %s\n' "$*" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
dev=1
for_tests=0
venv_arg=""
while [ $# -gt 0 ]; do
    case "$1" in
        --no-dev) dev=0; shift ;;
        --tests) for_tests=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) fail "unknown option $1 (usage: scripts/setup.sh [--no-dev] [--tests] [VENV_DIR])" ;;
        *) [ -z "$venv_arg" ] || fail "one VENV_DIR only"; venv_arg=$1; shift ;;
    esac
done
VENV=$(realpath -m "${venv_arg:-${FAASLOAD_VENV:-$ROOT/.venv}}")
is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1

# ------------------------------------------------------------------------------ the interpreter
python_ok() {  # a Python >= 3.11
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}
find_python() {
    if [ -n "${PYTHON:-}" ]; then
        local chosen
        chosen=$(command -v "$PYTHON") || fail "PYTHON=$PYTHON: not found"
        python_ok "$chosen" || fail "PYTHON=$PYTHON: FaaSLoad needs Python >= 3.11"
        printf '%s\n' "$chosen"
        return
    fi
    local candidate path
    for candidate in /usr/bin/python3 python3 python3.13 python3.12 python3.11; do
        path=$(command -v "$candidate" 2>/dev/null) || continue
        if python_ok "$path"; then
            printf '%s\n' "$path"
            return
        fi
    done
    fail "no Python >= 3.11 found (tried /usr/bin/python3, python3, python3.13, python3.12, python3.11); install one or set PYTHON"
}
BASE_PY=$(find_python)
base_version=$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# ------------------------------------------------------------------------------ system packages
need_apt=()
if ! "$BASE_PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$BASE_PY" = /usr/bin/python3 ]; then need_apt+=(python3-venv); else need_apt+=("python$base_version-venv"); fi
fi
# (dockerd is in /usr/sbin, which is not on an unprivileged user's PATH)
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || need_apt+=(docker.io)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
if [ "$for_tests" -eq 1 ] && ! command -v chromium >/dev/null 2>&1; then
    need_apt+=(chromium fonts-dejavu-core)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$is_root" -eq 1 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing ${need_apt[*]} (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    else
        log "not root (or no apt-get): not installing ${need_apt[*]} (the Docker backend and the unit checks are then skipped)"
    fi
fi
"$BASE_PY" -c 'import ensurepip, venv' >/dev/null 2>&1 \
    || fail "$BASE_PY cannot create virtual environments: install python3-venv (apt-get install python3-venv) and run again"

# ------------------------------------------------------------------------------ the environment
requirements=$("$BASE_PY" "$ROOT/scripts/lock_requirements.py" --lock "$ROOT/Pipfile.lock" $([ "$dev" -eq 1 ] || echo --no-dev)) \
    || fail "cannot read Pipfile.lock"
environment_key=$(printf '%s\n%s\n%s\n' "$(realpath "$BASE_PY")" "$("$BASE_PY" -VV)" "$requirements" | sha256sum | cut -d' ' -f1)
project_key=$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)
STAMP=$VENV/faasload-setup.stamp
stamped() { [ -f "$STAMP" ] && grep -qx "$1 $2" "$STAMP"; }

if [ -e "$VENV" ] && ! [ -f "$VENV/pyvenv.cfg" ]; then
    fail "$VENV exists and is not a virtual environment: remove it or pick another VENV_DIR"
fi
if ! stamped environment "$environment_key" || ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    if [ -e "$VENV" ]; then
        log "the lock or the interpreter changed: rebuilding $VENV"
        rm -rf "$VENV"
    fi
    log "creating $VENV with $BASE_PY (Python $base_version)"
    "$BASE_PY" -m venv "$VENV"
    log "installing the locked Python packages from Pipfile.lock (pip --require-hashes)"
    printf '%s\n' "$requirements" >"$VENV/faasload-requirements.txt"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-hashes -r "$VENV/faasload-requirements.txt" >&2
    printf 'environment %s\n' "$environment_key" >"$STAMP"
fi
if ! stamped project "$project_key"; then
    log "installing FaaSLoad into $VENV (editable: the code stays in $ROOT)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps -e "$ROOT" >&2
    problems=$("$VENV/bin/python" -m pip check 2>&1) || fail "the environment's packages do not satisfy each other: $problems"
    grep -v '^project ' "$STAMP" >"$STAMP.new" || true
    printf 'project %s\n' "$project_key" >>"$STAMP.new"
    mv "$STAMP.new" "$STAMP"
fi
# The checkout as a path entry too, besides the editable install's import hook: Python searches
# the path entries first, and there a directory named like a package of ours in the current
# directory (the checkout itself, cloned as ~/faasload, when you are in ~; a systemd unit runs in
# ~) would otherwise be taken for an empty namespace package: "cannot import name ... (unknown
# location)". A path entry holding the real package wins over such a directory.
site_packages=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
[ "$(cat "$site_packages/faasload-checkout.pth" 2>/dev/null)" = "$ROOT" ] \
    || printf '%s\n' "$ROOT" >"$site_packages/faasload-checkout.pth"
log "ready in $SECONDS s: $VENV (run FaaSLoad with $VENV/bin/python -m loader, or put $VENV/bin on the PATH)"

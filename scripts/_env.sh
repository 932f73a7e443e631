# Sourced by the scripts: the repository root and the Python of FaaSLoad's virtual environment.
#
#   FAASLOAD_VENV     the environment made by scripts/setup.sh (default: .venv in the repository)
#   FAASLOAD_PYTHON   the interpreter that runs FaaSLoad (default: $FAASLOAD_VENV/bin/python)
#
# Scripts never change directory: paths on their command lines are relative to the caller's.
FAASLOAD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FAASLOAD_VENV=$(realpath -m "${FAASLOAD_VENV:-$FAASLOAD_ROOT/.venv}")
PY=${FAASLOAD_PYTHON:-$FAASLOAD_VENV/bin/python}

# Exit with a clear message when the environment is missing.
require_python() {
    if ! [ -x "$PY" ]; then
        printf '%s: no Python at %s: run scripts/setup.sh first (or set FAASLOAD_VENV)\n' \
            "$(basename "$0")" "$PY" >&2
        exit 1
    fi
}

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

# Split a command line into the loader's configuration flags (-c/--config/--set, as "--set K=V" or
# "--set=K=V"), kept in config_args, and the rest, in command_args.
split_config_args() {
    config_args=()
    command_args=()
    while [ $# -gt 0 ]; do
        case "$1" in
            -c|--config|--set)
                [ $# -ge 2 ] || { printf '%s: %s needs a value\n' "$(basename "$0")" "$1" >&2; exit 2; }
                config_args+=("$1" "$2"); shift 2 ;;
            --config=*|--set=*) config_args+=("$1"); shift ;;
            *) command_args+=("$1"); shift ;;
        esac
    done
}

#!/usr/bin/env bash
# FaaSLoad demo, one command on a fresh Debian 12 or Ubuntu 24.04 machine (as root):
#   1. scripts/setup.sh (system packages, and the virtual environment .venv);
#   2. scripts/stack.sh up: a Kafka-protocol broker (Tansu), the monitor and localwhisk (user
#      events on, monitor notifications on), each on a free port / in the state directory;
#   3. creates the users of the bundled traces (demo/traces) on localwhisk, stores their keys,
#      deploys the example actions (actions/manifest.yml) into their namespaces, writes the inputs;
#   4. runs `python -m loader` on the traces (about a minute) with the embedded PostgreSQL;
#   5. prints the summary and example queries on the dataset, writes the experiment's HTML report
#      (python -m loader.report) in the state directory's report/; stops everything it started
#      (scripts/stack.sh down: by pid, also on failure or Ctrl-C).
# State (keys, localwhisk, the dataset in pgdata, logs) stays in the state directory: .state/demo
# in the repository (gitignored), or /var/lib/faasload/demo as root when the repository is in a
# directory the embedded PostgreSQL's unprivileged user cannot reach (e.g. /root). The dataset
# accumulates one experiment per demo run. Exit status: 0 when every invocation succeeded.
#
#   scripts/demo.sh            run the demo
#   scripts/demo.sh --docker   localwhisk runs actions in Docker containers instead of processes
#                              (starts a Docker daemon when none answers; needs docker.io)
#   scripts/demo.sh --psql     open psql on the demo's dataset (python -m loader.psql)
# Environment: FAASLOAD_DEMO_SKIP_SETUP=1 skips step 1; FAASLOAD_DEMO_STATE sets the state
# directory; FAASLOAD_VENV the environment (default .venv); PYTHON the interpreter setup.sh uses.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
ROOT=$FAASLOAD_ROOT
backend=()

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

mode=run
case "${1:-}" in
    --psql) mode=psql ;;
    --docker) backend=(--docker) ;;
    "") ;;
    *) fail "unknown option $1 (use --docker or --psql)" ;;
esac

if [ "$mode" = run ] && [ "${FAASLOAD_DEMO_SKIP_SETUP:-0}" != 1 ]; then
    say "setting up the machine (scripts/setup.sh $FAASLOAD_VENV)"
    "$ROOT/scripts/setup.sh" "$FAASLOAD_VENV"
fi
require_python

export FAASLOAD_DEMO_ROOT=$ROOT
export FAASLOAD_DEMO_STATE=${FAASLOAD_DEMO_STATE:-$("$PY" -m demo.tools state-dir "$ROOT/.state/demo")}
STATE=$FAASLOAD_DEMO_STATE
LOGS=$STATE/logs
if [ "$mode" = psql ]; then
    exec "$PY" -m loader.psql --config "$ROOT/demo/loader.yml"
fi

stack() { "$ROOT/scripts/stack.sh" "$@" --state "$STATE"; }
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stack down || true
    if [ "$status" -ne 0 ]; then
        printf 'demo: failed (exit %s); logs in %s\n' "$status" "$LOGS" >&2
    fi
    exit "$status"
}

# The embedded PostgreSQL runs as an unprivileged user when we are root: every directory above
# its data must be traversable.
rm -rf "$STATE/authkeys" "$STATE/storage"
mkdir -p "$STATE"
chmod 755 "$STATE"
[ "$STATE" = "$ROOT/.state/demo" ] && chmod 755 "$ROOT/.state"

say "starting a Kafka-protocol broker (Tansu), the monitor and localwhisk (scripts/stack.sh up)"
trap cleanup EXIT
trap 'exit 130' INT TERM
stack up "${backend[@]}"
# shellcheck source=/dev/null
source "$STATE/stack.env"
monitor_on=false
[ -n "$MEASUREMENT_SOCKET" ] && monitor_on=true

loader_args=(--config "$ROOT/demo/loader.yml" --set "openwhisk:apihost=$APIHOST"
             --set "openwhisk:user_events:bootstrap_servers=[\"$BROKER\"]"
             --set "monitor:enabled=$monitor_on")

say "creating the traces' users and storing their keys (scripts/create_users.sh)"
"$ROOT/scripts/create_users.sh" "${loader_args[@]}" "--localwhisk-arg=--set=state:dir=$LOCALWHISK_STATE"

say "deploying the example actions into each user's namespace (scripts/deploy_actions.sh)"
"$ROOT/scripts/deploy_actions.sh" "${loader_args[@]}" --manifest "$ROOT/actions/manifest.yml"

say "writing the inputs into localwhisk's storage"
"$PY" -m actions.inputs --out "$STORAGE_DIR/faasload-inputs" --image 5 --audio 5 --video 5 >/dev/null
mkdir -p "$STORAGE_DIR/faasload-outputs"
if [ "${backend[0]:-}" = --docker ] && [ "$(id -u)" = 0 ]; then
    # Docker actions run as nobody (65534) when localwhisk runs as root (containers:docker_user)
    chown 65534:65534 "$STORAGE_DIR/faasload-outputs"
fi
ls "$STORAGE_DIR/faasload-inputs" | tr '\n' ' '; echo

say "checking the traces, keys and actions (python -m loader --validate)"
"$PY" -m loader "${loader_args[@]}" --validate

say "injecting demo/traces (python -m loader; progress every 5 s; Ctrl-C stops cleanly)"
"$PY" -m loader "${loader_args[@]}" 2> >(tee "$LOGS/loader.log" >&2) | tee -i "$LOGS/loader.out"
experiment_id=$(sed -n "s/^experiment '.*' (id \([0-9]*\))$/\1/p" "$LOGS/loader.out")

say "the dataset (embedded PostgreSQL in $STATE/pgdata)"
"$PY" -m demo.tools queries "$ROOT/demo/loader.yml"

say "checking that every invocation succeeded"
"$PY" -m demo.tools check-success "$ROOT/demo/loader.yml"

say "the experiment's report (python -m loader.report $experiment_id --out $STATE/report)"
"$PY" -m loader.report "$experiment_id" --config "$ROOT/demo/loader.yml" --out "$STATE/report"

cat <<EOF

More: open $STATE/report/index.html in a browser (docs/report.md); scripts/demo.sh --psql opens
psql on this dataset; docs/dataset.md lists every column, more queries and the pandas API; logs of
this run are in $LOGS.
EOF

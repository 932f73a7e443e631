#!/usr/bin/env bash
# FaaSLoad demo, one command on a fresh Debian 12 machine (as root):
#   1. scripts/setup.sh (system and Python dependencies);
#   2. starts a Kafka-protocol broker (Tansu), localwhisk (user events on, monitor notifications on)
#      and the monitor, each on a free port / in .state/demo/run;
#   3. creates the users of the bundled traces (demo/traces) on localwhisk, stores their keys,
#      deploys the example actions (actions/manifest.yml) into their namespaces, writes the inputs;
#   4. runs `python -m loader` on the traces (about a minute) with the embedded PostgreSQL;
#   5. prints the summary and example queries on the dataset, writes the experiment's HTML report
#      (python -m loader.report) in .state/demo/report; stops everything it started (by pid,
#      also on failure or Ctrl-C).
# State (keys, localwhisk, the dataset in .state/demo/pgdata, logs) stays under .state/demo
# (gitignored); the dataset accumulates one experiment per demo run.
#
#   scripts/demo.sh            run the demo
#   scripts/demo.sh --docker   localwhisk runs actions in Docker containers instead of processes
#   scripts/demo.sh --psql     open psql on the demo's dataset (starts and stops its PostgreSQL)
# Environment: FAASLOAD_DEMO_SKIP_SETUP=1 skips step 1; PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
export FAASLOAD_DEMO_ROOT=$ROOT
export FAASLOAD_DEMO_STATE=${FAASLOAD_DEMO_STATE:-$ROOT/.state/demo}
STATE=$FAASLOAD_DEMO_STATE
LOGS=$STATE/logs
backend=process

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
    --psql) exec "$PY" -m demo.tools psql "$STATE/pgdata" ;;
    --docker) backend=docker ;;
    "") ;;
    *) fail "unknown option $1 (use --docker or --psql)" ;;
esac

if [ "${FAASLOAD_DEMO_SKIP_SETUP:-0}" != 1 ]; then
    say "setting up the machine (scripts/setup.sh)"
    scripts/setup.sh
fi

# ---------------------------------------------------------------- services, stopped by pid on exit
pids=()
names=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        local pid=${pids[i]}
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
            printf 'demo: stopped %s (pid %s)\n' "${names[i]}" "$pid"
        fi
    done
    if [ "$status" -ne 0 ]; then
        printf 'demo: failed (exit %s); logs in %s\n' "$status" "$LOGS" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Each service in its own session: a Ctrl-C reaches the loader (which then finishes recording)
# and not the services it still needs; cleanup stops them afterwards.
start() {  # start NAME LOGFILE COMMAND...
    local name=$1 log=$2
    shift 2
    setsid "$@" >"$log" 2>&1 </dev/null &
    pids+=($!)
    names+=("$name")
    LAST_PID=$!
}

# The embedded PostgreSQL runs as an unprivileged user: every directory above its data must be
# traversable (.state lives in the repository, never under /root).
rm -rf "$STATE/localwhisk" "$STATE/authkeys" "$STATE/run" "$STATE/storage" "$LOGS"
mkdir -p "$STATE" "$LOGS" "$STATE/run"
chmod 755 "$ROOT/.state" "$STATE"

say "starting a Kafka-protocol broker (Tansu)"
broker_port=$("$PY" -m demo.tools free-port)
broker_bin=$("$PY" -c 'from faasload.tansu import broker_binary; print(broker_binary())')
start tansu "$LOGS/tansu.log" "$broker_bin" broker --listener-url "tcp://127.0.0.1:$broker_port" \
    --advertised-listener-url "tcp://127.0.0.1:$broker_port" --storage-engine memory://tansu/
"$PY" -c "import sys; from faasload.procs import wait_until, tcp_accepts; wait_until(lambda: tcp_accepts('127.0.0.1', $broker_port), timeout_s=20, what='broker')" \
    || fail "the broker did not start (log: $LOGS/tansu.log)"
echo "broker on 127.0.0.1:$broker_port"

monitor_on=false
lw_monitor=()
if "$PY" -c 'import monitor.daemon' 2>/dev/null; then
    say "starting the monitor"
    start monitor "$LOGS/monitor.log" "$PY" -m monitor --config demo/monitor.yml
    "$PY" -m demo.tools wait-socket "$STATE/run/meas" 30 "$LAST_PID" \
        && "$PY" -m demo.tools wait-socket "$STATE/run/notif" 10 "$LAST_PID" \
        || fail "the monitor did not start (log: $LOGS/monitor.log)"
    monitor_on=true
    lw_monitor=(--set "monitor:notification_socket=$STATE/run/notif")
    echo "monitor sockets in $STATE/run"
else
    echo "demo: the monitor is not available in this checkout: resources will not be recorded"
fi

say "starting localwhisk ($backend backend, user events on)"
start localwhisk "$LOGS/localwhisk.log" "$PY" -m localwhisk --config demo/localwhisk.yml \
    --set "events:bootstrap_servers=[\"127.0.0.1:$broker_port\"]" --set "containers:backend=$backend" \
    "${lw_monitor[@]}"
"$PY" -m demo.tools wait-file "$STATE/localwhisk/apihost" 60 "$LAST_PID" \
    || fail "localwhisk did not start (log: $LOGS/localwhisk.log)"
apihost=$(cat "$STATE/localwhisk/apihost")
"$PY" -m demo.tools wait-http "$apihost/api/v1" 30 "$LAST_PID" || fail "localwhisk does not answer at $apihost"
echo "localwhisk at $apihost"

loader_args=(--config demo/loader.yml --set "openwhisk:apihost=$apihost"
             --set "openwhisk:user_events:bootstrap_servers=[\"127.0.0.1:$broker_port\"]"
             --set "monitor:enabled=$monitor_on")

say "creating the traces' users and storing their keys (scripts/create_users.sh)"
scripts/create_users.sh "${loader_args[@]}" --localwhisk-arg=--config=demo/localwhisk.yml

say "deploying the example actions into each user's namespace (scripts/deploy_actions.sh)"
scripts/deploy_actions.sh "${loader_args[@]}" --manifest actions/manifest.yml

say "writing the inputs into localwhisk's storage"
"$PY" -m actions.inputs --out "$STATE/storage/faasload-inputs" --image 5 --audio 5 --video 5 >/dev/null
mkdir -p "$STATE/storage/faasload-outputs"
ls "$STATE/storage/faasload-inputs" | tr '\n' ' '; echo

say "checking the traces, keys and actions (python -m loader --validate)"
"$PY" -m loader "${loader_args[@]}" --validate

say "injecting demo/traces (python -m loader; progress every 5 s; Ctrl-C stops cleanly)"
"$PY" -m loader "${loader_args[@]}" 2> >(tee "$LOGS/loader.log" >&2) | tee -i "$LOGS/loader.out"
experiment_id=$(sed -n "s/^experiment '.*' (id \([0-9]*\))$/\1/p" "$LOGS/loader.out")

say "the dataset (embedded PostgreSQL in $STATE/pgdata)"
"$PY" -m demo.tools queries "$STATE/pgdata"

say "the experiment's report (python -m loader.report $experiment_id --out $STATE/report)"
"$PY" -m loader.report "$experiment_id" --config demo/loader.yml --out "$STATE/report"

cat <<EOF

More: open $STATE/report/index.html in a browser (docs/report.md); scripts/demo.sh --psql opens
psql on this dataset; docs/dataset.md lists every column, more queries and the pandas API; logs of
this run are in $LOGS.
EOF

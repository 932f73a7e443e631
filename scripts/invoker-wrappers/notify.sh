# Sourced by the invoker wrappers: faasload_notify ACTION CONTAINER...
# Sends {"action": ACTION, "container": ID} per container to the FaaSLoad monitor, with all
# standard streams on /dev/null so the invoker never reads its output.  Silent and harmless
# when the monitor is absent.  The static sender runs in the foreground, so that the notices
# of successive calls (pause, then resume) reach the monitor in order; it gives up after 50 ms
# and fails at once when nobody listens.  FAASLOAD_NOTIFY_DEBUG=1 lets its failure reason
# through to stderr.  The python3/socat fallbacks start slower (~20 ms),
# so they run in the background and may, rarely, reorder two notices sent within milliseconds.

faasload_wrapper_dir=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)

# The real binary: $FAASLOAD_REAL_<NAME>, else the first one on PATH that is not this wrapper.
faasload_real_binary() {
    _name=$1
    _override=$2
    if [ -n "$_override" ]; then
        printf '%s\n' "$_override"
        return 0
    fi
    _old_ifs=$IFS
    IFS=:
    for _dir in $PATH; do
        [ -n "$_dir" ] || continue
        _dir_abs=$(CDPATH= cd -- "$_dir" 2>/dev/null && pwd) || continue
        [ "$_dir_abs" = "$faasload_wrapper_dir" ] && continue
        if [ -x "$_dir_abs/$_name" ] && [ ! -d "$_dir_abs/$_name" ]; then
            IFS=$_old_ifs
            printf '%s\n' "$_dir_abs/$_name"
            return 0
        fi
    done
    IFS=$_old_ifs
    return 1
}

faasload_notify() {
    _action=$1
    shift
    _sock=${FAASLOAD_MONITOR_SOCKET:-/run/wdm/notif}
    [ -S "$_sock" ] || return 0
    for _id in "$@"; do
        case $_id in
            ''|*[!A-Za-z0-9_.-]*) continue ;;  # not a container id or name: never send it
        esac
        _msg="{\"action\":\"$_action\",\"container\":\"$_id\"}"
        if [ -x "$faasload_wrapper_dir/wdm-notify" ]; then
            if [ -n "${FAASLOAD_NOTIFY_DEBUG:-}" ]; then
                "$faasload_wrapper_dir/wdm-notify" "$_sock" "$_msg" </dev/null >/dev/null
            else
                "$faasload_wrapper_dir/wdm-notify" "$_sock" "$_msg" </dev/null >/dev/null 2>&1
            fi
        elif command -v python3 >/dev/null 2>&1; then
            python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(0.05); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode())' \
                "$_sock" "$_msg" </dev/null >/dev/null 2>&1 &
        elif command -v socat >/dev/null 2>&1; then
            (printf '%s' "$_msg" | socat -t 0.05 - "UNIX-CONNECT:$_sock") </dev/null >/dev/null 2>&1 &
        fi
    done
    return 0
}

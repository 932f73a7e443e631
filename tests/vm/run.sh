#!/usr/bin/env bash
# Run a pytest selection inside the cgroup v2 test guest (Debian 12 under QEMU, software
# emulation), with this checkout shared read-only at the same path, and exit with its status.
#
#   tests/vm/run.sh [--user] [--bare] [--no-docker] [--keep] [-- PYTEST_ARGS...]
#
# Default selection: the tests marked `vm` (pytest -m vm), as root, under systemd with Docker
# (systemd cgroup driver). --user runs pytest as the unprivileged user `faasload` in a service of
# its systemd user manager (lingering); --bare boots without systemd (the job runner is PID 1;
# no Docker); --no-docker masks Docker (faster boot); --keep keeps the job directory (console log).
# Builds the guest first when the cache has none (tests/vm/build.sh). Exit status: pytest's,
# 124 when the guest ran out of time (FAASLOAD_VM_TIMEOUT_S, default 1800), 255 when it gave none.
# Env: FAASLOAD_VM_MEMORY_MB (2048), FAASLOAD_VM_CPUS (2), FAASLOAD_VM_TIME_SCALE (10: how much
# longer the tests' deadlines are in the guest, tests/slowness.py). See tests/vm/README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
checkout=$(cd "$here/../.." && pwd)
# Where build.sh installs the project's Python environment inside the guest.
GUEST_VENV=/opt/faasload-venv
GUEST_USER=faasload
GUEST_UID=1000

user= mode=systemd docker=1 keep=
while [ $# -gt 0 ]; do
    case $1 in
        --user) user=1 ;;
        --bare) mode=bare docker= ;;
        --no-docker) docker= ;;
        --keep) keep=1 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ $# -gt 0 ] || set -- -m vm
if [ -n "$user" ] && [ "$mode" = bare ]; then
    echo "run.sh: --user needs systemd (its user manager); not with --bare" >&2
    exit 2
fi
log() { printf 'vm: %s\n' "$*" >&2; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

t_build=$(date +%s.%N)
guest=$("$here/build.sh")
build_s=$(elapsed "$t_build")

job=$(mktemp -d /tmp/faasload-vm-job.XXXXXX)
printf 'CHECKOUT=%q\n' "$checkout" > "$job/env"
{
    echo 'set -u'
    printf 'export PATH=%q HOME=/root LANG=C.UTF-8 PYTHONPYCACHEPREFIX=/tmp/faasload-pycache\n' \
        "$GUEST_VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    echo 'export FAASLOAD_TEST_START_DOCKERD=0'  # the guest's own dockerd, or Docker tests skip
    echo 'export FAASLOAD_TEST_VM_GUEST=1'  # a throw-away machine: tests may change the user's home (systemd units)
    echo "export FAASLOAD_TEST_TIME_SCALE=${FAASLOAD_VM_TIME_SCALE:-10}"  # deadlines (tests/slowness.py)
    echo 'printf "guest: kernel %s, %s at /sys/fs/cgroup, job started at uptime %s s\n" "$(uname -r)" "$(stat -fc %T /sys/fs/cgroup)" "$(cut -d" " -f1 /proc/uptime)"'
    echo 'started=$(cut -d" " -f1 /proc/uptime)'
    pytest=(python -m pytest -p no:cacheprovider "$@")
    if [ -n "$user" ]; then
        printf 'systemctl start user@%s.service\n' "$GUEST_UID"
        printf 'runuser -u %s -- env XDG_RUNTIME_DIR=/run/user/%s systemd-run --user --wait --pipe --quiet --collect' \
            "$GUEST_USER" "$GUEST_UID"
        printf ' --working-directory=%q -E PATH="$PATH" -E LANG -E PYTHONPYCACHEPREFIX -E FAASLOAD_TEST_START_DOCKERD -E FAASLOAD_TEST_TIME_SCALE -E FAASLOAD_TEST_VM_GUEST' "$checkout"
        printf ' %q' "${pytest[@]}"
        echo
    else
        printf '%q ' "${pytest[@]}"
        echo
    fi
    echo 'rc=$?'
    echo 'awk -v a="$started" -v b="$(cut -d" " -f1 /proc/uptime)" "BEGIN { printf \"guest: job ran %.1f s\\n\", b - a }"'
    echo 'exit $rc'
} > "$job/cmd.sh"
: > "$job/output"

append="console=ttyS0 quiet loglevel=3 panic=-1 apparmor=0 systemd.show_status=0 faasload_ci.init=$mode"
[ -n "$docker" ] || append+=" systemd.mask=docker.service systemd.mask=docker.socket systemd.mask=containerd.service"
t_boot=$(date +%s.%N)
timeout "${FAASLOAD_VM_TIMEOUT_S:-1800}" qemu-system-x86_64 -nodefaults -no-user-config -no-reboot \
    -accel tcg -cpu max -smp "${FAASLOAD_VM_CPUS:-2}" -m "${FAASLOAD_VM_MEMORY_MB:-2048}" \
    -display none -monitor none -serial "file:$job/console.log" \
    -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" -append "$append" \
    -drive "file=$guest/rootfs.img,format=raw,if=virtio,snapshot=on,cache=unsafe" \
    -virtfs "local,path=$job,mount_tag=job,security_model=none" \
    -virtfs "local,path=$checkout,mount_tag=checkout,security_model=none,readonly=on" \
    > "$job/qemu.log" 2>&1 &
qemu=$!
# timeout(1) runs in a process group of its own and passes a TERM on to QEMU
trap 'kill "$qemu" 2>/dev/null || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
tail -n +1 --pid="$qemu" -f "$job/output" 2>/dev/null &
follower=$!
# the guest powers off once its job wrote its status; if it hangs on the way, stop it
status_seen_s=
while kill -0 "$qemu" 2>/dev/null; do
    if [ -z "$status_seen_s" ] && [ -s "$job/rc" ]; then status_seen_s=$(date +%s); fi
    if [ -n "$status_seen_s" ] && [ $(( $(date +%s) - status_seen_s )) -gt 30 ]; then
        log "the guest did not power off 30 s after its job ended: stopping QEMU"
        kill "$qemu" 2>/dev/null || true
    fi
    sleep 1
done
qemu_rc=0
wait "$qemu" || qemu_rc=$?
wait "$follower" 2>/dev/null || true
wall_s=$(elapsed "$t_boot")

if [ -s "$job/rc" ]; then
    rc=$(cat "$job/rc")
else
    rc=255
    [ "$qemu_rc" -eq 124 ] && rc=124
    log "no exit status from the guest (qemu exit $qemu_rc); console and qemu log tails:"
    tail -n 30 "$job/console.log" "$job/qemu.log" >&2 || true
    keep=1
fi
log "$(printf 'guest %s (build or cache lookup %.1f s), qemu wall %.1f s, exit status %s' "$guest" "$build_s" "$wall_s" "$rc")"
if [ -n "$keep" ]; then log "job directory kept: $job"; else rm -rf "$job"; fi
exit "$rc"

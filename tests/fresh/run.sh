#!/usr/bin/env bash
# The fresh-machine check (CI): README's demo command in a clean Debian 12 or Ubuntu 24.04 root
# filesystem.
#
#   tests/fresh/run.sh [--system debian-12|ubuntu-24.04] [--refresh] [--keep]        (as root)
#
# 1. A minimal root filesystem of the system (Debian 12 by default): `mmdebstrap --variant=minbase
#    --include=python3,ca-certificates SUITE` (the system's python3 and nothing else of ours; apt
#    too on Ubuntu, where minbase lacks it):
#    Debian 12 (bookworm) from apt's configured sources; Ubuntu 24.04 (noble, main and universe,
#    with noble-updates and noble-security, as an installed Ubuntu has them) from
#    archive.ubuntu.com, checked with Ubuntu's archive keyring, taken from the ubuntu-keyring
#    package whose SHA-256 is pinned below. Cached as a tarball in $FAASLOAD_CI_CACHE (default
#    /var/cache/faasload-ci/fresh) and rebuilt when older than $FAASLOAD_FRESH_MAX_AGE_DAYS (7)
#    or with --refresh. mmdebstrap is installed with apt-get when missing.
# 2. Unpacks it in a new directory under /var/tmp, copies the host's /etc/resolv.conf in (and the
#    certificates the host trusts that the system's bundle lacks, as local CAs), and a clean clone of this repository's HEAD (`git clone`: committed files only) to /root/faasload,
#    as a user would clone it.
# 3. Bind-mounts /proc, /sys (with /sys/fs/cgroup) and /dev, and runs, with chroot, as root in
#    /root/faasload with a bare environment: `scripts/demo.sh` (README's command: it runs
#    scripts/setup.sh, then the demo, which exits non-zero unless every invocation succeeded).
# 4. Runs scripts/setup.sh a second time and checks that it changed nothing, and that the
#    system interpreter's packages are the same as before the demo.
# Always unmounts and stops what still runs in the root filesystem (trap), then removes it
# (--keep leaves it for inspection). Prints the time of each step. Exit status: 0 only when
# every check passed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${FAASLOAD_CI_CACHE:-/var/cache/faasload-ci/fresh}
MAX_AGE_DAYS=${FAASLOAD_FRESH_MAX_AGE_DAYS:-7}
INCLUDE=python3,ca-certificates
USAGE="usage: tests/fresh/run.sh [--system debian-12|ubuntu-24.04] [--refresh] [--keep]"
system=debian-12
refresh=0
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --system) system=${2:-}; shift ;;
        --refresh) refresh=1 ;;
        --keep) keep=1 ;;
        *) echo "$USAGE" >&2; exit 2 ;;
    esac
    shift
done
# Ubuntu's archive keyring, the trust anchor of the Ubuntu root filesystem: noble's ubuntu-keyring
# package, pinned by its SHA-256 as noble's package index lists it (that index is signed by the
# Ubuntu Archive Automatic Signing Key (2018), F6EC B376 2474 EDA9 D21B 7022 8719 20D1 991B C93C).
UBUNTU_ARCHIVE=http://archive.ubuntu.com/ubuntu
UBUNTU_KEYRING_DEB=pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb
UBUNTU_KEYRING_SHA256=36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8
case "$system" in
    debian-12) suite=bookworm; sources=() ;;
    ubuntu-24.04)
        suite=noble
        INCLUDE=$INCLUDE,apt   # Ubuntu's apt is priority important, not in minbase; every install has it
        sources=("deb $UBUNTU_ARCHIVE noble main universe" "deb $UBUNTU_ARCHIVE noble-updates main universe"
                 "deb $UBUNTU_ARCHIVE noble-security main universe") ;;
    *) echo "$USAGE" >&2; exit 2 ;;
esac
TARBALL=$CACHE/$suite-minbase-${INCLUDE//,/-}.tar

say() { printf '\n== fresh: %s\n' "$*"; }
fail() { printf 'fresh: FAILED: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (mmdebstrap, mounts, chroot)"
started=$SECONDS
timings=()
step_started=$SECONDS
timed() {  # timed LABEL: record the time since the previous step
    timings+=("$(printf '%-44s %4d s' "$1" $((SECONDS - step_started)))")
    step_started=$SECONDS
}

# ------------------------------------------------------------------ 1. the cached root filesystem
if ! command -v mmdebstrap >/dev/null 2>&1; then
    say "installing mmdebstrap (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
mkdir -p "$CACHE"
if [ "$refresh" -eq 1 ] || [ -z "$(find "$TARBALL" -mtime "-$MAX_AGE_DAYS" 2>/dev/null)" ]; then
    keyring=()
    if [ "$suite" = noble ]; then
        keyring_dir=$CACHE/ubuntu-keyring
        if [ "$(sha256sum "$keyring_dir/keyring.deb" 2>/dev/null | cut -d' ' -f1)" != "$UBUNTU_KEYRING_SHA256" ]; then
            mkdir -p "$keyring_dir"
            /usr/bin/python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
                "$UBUNTU_ARCHIVE/$UBUNTU_KEYRING_DEB" "$keyring_dir/keyring.deb.tmp" \
                || fail "cannot download $UBUNTU_ARCHIVE/$UBUNTU_KEYRING_DEB"
            [ "$(sha256sum "$keyring_dir/keyring.deb.tmp" | cut -d' ' -f1)" = "$UBUNTU_KEYRING_SHA256" ] \
                || fail "$UBUNTU_KEYRING_DEB does not have the pinned SHA-256"
            mv "$keyring_dir/keyring.deb.tmp" "$keyring_dir/keyring.deb"
        fi
        rm -rf "$keyring_dir/files"
        dpkg-deb -x "$keyring_dir/keyring.deb" "$keyring_dir/files"
        keyring=(--keyring="$keyring_dir/files/usr/share/keyrings/ubuntu-archive-keyring.gpg")
    fi
    say "building the root filesystem: mmdebstrap --variant=minbase --include=$INCLUDE $suite ${sources[*]}"
    mmdebstrap --quiet --variant=minbase --include="$INCLUDE" "${keyring[@]}" "$suite" "$TARBALL.tmp.tar" "${sources[@]}"
    mv "$TARBALL.tmp.tar" "$TARBALL"
    timed "root filesystem built (mmdebstrap)"
else
    say "root filesystem from the cache: $TARBALL"
    timed "root filesystem from the cache"
fi

# ------------------------------------------------------------------ 2. unpack, clone
DIR=$(mktemp -d /var/tmp/faasload-fresh.XXXXXX)
MOUNTS=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # What the demo left running in the root filesystem (it should have stopped everything).
    local pid
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        if [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$DIR" ]; then
            echo "fresh: stopping pid $pid left in the root filesystem: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount -R "${MOUNTS[i]}" 2>/dev/null || umount -R -l "${MOUNTS[i]}" || echo "fresh: could not unmount ${MOUNTS[i]}" >&2
    done
    if [ "$keep" -eq 1 ] || grep -q " $DIR/" /proc/mounts; then
        echo "fresh: root filesystem kept in $DIR" >&2
    else
        local removing=$SECONDS
        rm -rf --one-file-system "$DIR"
        echo "fresh: removed the root filesystem in $((SECONDS - removing)) s" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
tar -C "$DIR" -xf "$TARBALL"
cp /etc/resolv.conf "$DIR/etc/resolv.conf"
# The host's trust anchors that the system's bundle lacks (e.g. the CA of a TLS-inspecting proxy on
# the way to PyPI) become local CAs of the root filesystem, as its administrator would add them.
/usr/bin/python3 - "$DIR" <<'PYTHON'
import re, sys
from pathlib import Path
root = Path(sys.argv[1])
pem = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
inside = set(pem.findall((root / "etc/ssl/certs/ca-certificates.crt").read_text()))
extra = [c for c in pem.findall(Path("/etc/ssl/certs/ca-certificates.crt").read_text()) if c not in inside]
for i, cert in enumerate(extra):
    (root / f"usr/local/share/ca-certificates/host-{i}.crt").write_text(cert + "\n")
print(f"fresh: {len(extra)} certificate(s) of the host's bundle added as local CAs")
PYTHON
chroot "$DIR" /usr/sbin/update-ca-certificates >/dev/null 2>&1 || fail "update-ca-certificates failed in the root filesystem"
git clone --quiet --depth 1 "file://$ROOT" "$DIR/root/faasload"
commit=$(git -C "$DIR/root/faasload" rev-parse --short HEAD)
timed "unpacked, clean clone of $commit"

mount_into() {  # mount_into TARGET MOUNT-ARGS...
    local target=$DIR$1
    shift
    mount "$@" "$target"
    MOUNTS+=("$target")
}
mount_into /proc -t proc proc
mount_into /sys --rbind /sys
mount --make-rslave "$DIR/sys"
mount_into /dev --rbind /dev
mount --make-rslave "$DIR/dev"

in_root() {  # in_root COMMAND: bash -c COMMAND as root in /root/faasload with a bare environment
    chroot "$DIR" /usr/bin/env -i HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "cd /root/faasload && $1"
}
# What an interpreter has installed, as `pip list` would say (-I: not the current directory's).
packages_of() { printf '%s -I -c "import importlib.metadata as m; print(*sorted({d.metadata[\\"Name\\"] + \\" \\" + d.version for d in m.distributions()}), sep=chr(10))"' "$1"; }
system_packages=$(packages_of /usr/bin/python3)
before=$(in_root "$system_packages")

# ------------------------------------------------------------------ 3. README's demo command
say "running README's demo command in the root filesystem: scripts/demo.sh"
log=$DIR/root/demo.out
set +e
in_root "scripts/demo.sh" 2>&1 | tee "$log"
demo_status=${PIPESTATUS[0]}
set -e
timed "scripts/demo.sh (setup and demo)"
setup_s=$(sed -n 's/^setup: ready in \([0-9]*\) s:.*/\1/p' "$log" | head -1)
timings+=("$(printf '%-44s %4s s' "  of which scripts/setup.sh (first run)" "${setup_s:-?}")")
[ "$demo_status" -eq 0 ] || fail "scripts/demo.sh exited $demo_status"
grep -q '^statuses: success 52$' "$log" || fail "the loader's summary does not say 'statuses: success 52'"
grep -q 'all 52 planned invocations succeeded' "$log" || fail "the demo's own check did not pass"

# ------------------------------------------------------------------ 4. setup again: no change
say "scripts/setup.sh a second time"
freeze=$(packages_of .venv/bin/python)
frozen=$(in_root "$freeze")
again=$(in_root "scripts/setup.sh" 2>&1)
timed "scripts/setup.sh again"
printf '%s\n' "$again"
if printf '%s\n' "$again" | grep -qE 'installing|creating|rebuilding'; then
    fail "the second scripts/setup.sh installed something"
fi
[ "$(in_root "$freeze")" = "$frozen" ] || fail "the second scripts/setup.sh changed the environment's packages"
after=$(in_root "$system_packages")
[ "$after" = "$before" ] || fail "the system interpreter's packages changed: $(diff <(echo "$before") <(echo "$after"))"
echo "fresh: the system interpreter's packages are unchanged ($(echo "$after" | wc -l) distributions)"

say "passed on $system (commit $commit)"
printf '%s\n' "${timings[@]}"
printf '%-44s %4d s\n' "total" $((SECONDS - started))

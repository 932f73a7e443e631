#!/usr/bin/env bash
# Build (or find in the cache) the cgroup v2 test guest: a Debian 12 kernel, a small initramfs
# and an ext4 root filesystem with systemd, Docker and a Python environment holding the
# project's locked dependencies. Prints the guest's directory on stdout (progress on stderr).
#
#   tests/vm/build.sh [--force]
#
# The guest lives in $FAASLOAD_VM_CACHE/<key> (default /var/cache/faasload-ci/vm), where <key>
# is a hash of this script, tests/vm/guest/ and Pipfile.lock: change any of them and the next run
# builds a new guest (older ones are removed). Needs root, apt's Debian 12 sources and PyPI.
# See tests/vm/README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
checkout=$(cd "$here/../.." && pwd)
cache=${FAASLOAD_VM_CACHE:-/var/cache/faasload-ci/vm}
wheels=${FAASLOAD_VM_WHEELS:-$(dirname "$cache")/wheels}
# pip of this Python downloads the wheels, with the host's pip configuration (default: the
# checkout's .venv when scripts/setup.sh made one, else python3)
if [ -x "$checkout/.venv/bin/python" ]; then PY=${PYTHON:-$checkout/.venv/bin/python}; else PY=${PYTHON:-python3}; fi
SUITE=bookworm
# Debian packages of the guest (a minbase system plus these).
GUEST_PACKAGES=systemd-sysv,udev,dbus,dbus-user-session,libpam-systemd,kmod,iproute2,procps,python3,python3-venv,docker.io
# Host tools the build and the runs need.
HOST_PACKAGES=(qemu-system-x86 mmdebstrap busybox-static cpio e2fsprogs kmod)

force=
[ "${1:-}" = --force ] && force=1
log() { printf 'vm-build: %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { log "needs root (mmdebstrap, chroot, loop-free ext4 image)"; exit 2; }

# What the guest is made of: this script, guest/, and what decides the unprivileged user's
# environment made by scripts/setup.sh (the lock, the packaging, setup.sh itself).
KEY_FILES=("$here/build.sh" $(find "$here/guest" -type f | LC_ALL=C sort) "$checkout/Pipfile.lock"
           "$checkout/scripts/setup.sh" "$checkout/scripts/lock_requirements.py" "$checkout/pyproject.toml" "$checkout/setup.py")
key=$(cat "${KEY_FILES[@]}" | sha256sum | cut -c1-16)
guest=$cache/$key
if [ -z "$force" ] && [ -f "$guest/ready" ]; then
    log "cached guest $guest"
    echo "$guest"
    exit 0
fi

mkdir -p "$cache" "$wheels"
exec 9>"$cache/.lock"
flock 9   # one build at a time; a concurrent run waits, then finds the guest ready
if [ -z "$force" ] && [ -f "$guest/ready" ]; then echo "$guest"; exit 0; fi

t_start=$(date +%s)
t0=$t_start
step() { local now; now=$(date +%s); log "$1 ($((now - t0)) s)"; t0=$now; }
# quietly NAME CMD...: run CMD with its output in $work/NAME.log, shown only when it fails
quietly() {
    local name=$1; shift
    if ! "$@" > "$work/$name.log" 2>&1; then
        log "$name failed: $*"; tail -n 40 "$work/$name.log" >&2; return 1
    fi
}

missing=()
for p in "${HOST_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    step "host packages"
fi

work=$(mktemp -d "$cache/build.XXXXXX")
rootfs=$work/rootfs
mounted=()
cleanup() {
    local m
    for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------- kernel (the generic flavour:
# the cloud one has no 9p)
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
kver=${kpkg#linux-image-}
(cd "$work" && apt-get download -qq "$kpkg" >/dev/null 2>&1)
dpkg-deb -x "$work/${kpkg}"_*.deb "$work/kernel"
modules=$work/kernel/lib/modules/$kver
cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"
depmod -b "$work/kernel" "$kver"
step "kernel $kver"

# ---------------------------------------------------------------- initramfs: busybox, the
# modules to reach the disk and the 9p shares, and guest/initramfs-init as /init
initrd=$work/initrd
mkdir -p "$initrd"/{bin,dev,proc,sys,newroot,lib/modules/"$kver"}
cp /bin/busybox "$initrd/bin/busybox"
for m in virtio_pci virtio_blk crc32c_generic ext4 9pnet_virtio 9p; do
    line=$(grep -E "/$m\.ko(\.xz)?:" "$modules/modules.dep")
    for f in ${line%%:*} ${line#*:}; do
        mkdir -p "$initrd/lib/modules/$kver/$(dirname "$f")"
        cp -n "$modules/$f" "$initrd/lib/modules/$kver/$f"
    done
done
cp "$modules"/modules.{order,builtin,builtin.modinfo} "$initrd/lib/modules/$kver/"
depmod -b "$initrd" "$kver"
install -m 0755 "$here/guest/initramfs-init" "$initrd/init"
(cd "$initrd" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.img"
step "initramfs"

# ---------------------------------------------------------------- root filesystem
quietly mmdebstrap mmdebstrap --variant=minbase --include="$GUEST_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    "$SUITE" "$rootfs"
step "mmdebstrap"

# kernel modules (filesystems, networking for Docker, virtio; not the hardware drivers)
dest=$rootfs/lib/modules/$kver
mkdir -p "$dest/kernel/drivers"
cp "$modules"/modules.* "$dest/"
for d in arch block crypto fs kernel lib mm net security virt; do
    [ -d "$modules/kernel/$d" ] && cp -a "$modules/kernel/$d" "$dest/kernel/"
done
for d in virtio block net char; do cp -a "$modules/kernel/drivers/$d" "$dest/kernel/drivers/"; done
rm -rf "$dest"/kernel/drivers/net/{wireless,ethernet,usb,can,wwan,ieee802154,hamradio,wan,ppp,slip,arcnet,fddi,plip} \
       "$dest"/kernel/net/{wireless,mac80211,bluetooth}
chroot "$rootfs" depmod "$kver"

# the project's locked dependencies in a virtual environment of the guest's own python3
# (wheels fetched on the host, through its pip configuration; the guest has no network)
"$PY" - "$checkout/Pipfile.lock" > "$work/requirements.txt" <<'PYEOF'
import json, sys
lock = json.load(open(sys.argv[1]))
seen = set()
for section in ("default", "develop"):
    for name, spec in sorted(lock[section].items()):
        if name in seen or "version" not in spec:
            continue
        seen.add(name)
        line = f"{name}{spec['version']}"
        if spec.get("markers"):
            line += f" ; {spec['markers']}"
        print(line + "".join(f" --hash={h}" for h in spec.get("hashes", [])))
PYEOF
platforms=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64)
for glibc_minor in $(seq 5 36); do platforms+=(--platform "manylinux_2_${glibc_minor}_x86_64"); done  # bookworm: glibc 2.36
quietly pip-download "$PY" -m pip download --require-hashes --only-binary=:all: --python-version 3.11 --implementation cp \
    "${platforms[@]}" -d "$wheels" -r "$work/requirements.txt"
# the build backend of pyproject.toml, for setup.sh's editable install of FaaSLoad (pip builds it
# in an isolated environment, from these wheels too)
build_requires=$("$PY" -c 'import sys, tomllib; print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' "$checkout/pyproject.toml")
quietly pip-download-build "$PY" -m pip download --only-binary=:all: --python-version 3.11 --implementation cp \
    "${platforms[@]}" -d "$wheels" $build_requires
step "wheels"
for fs in proc sys dev; do mount --bind "/$fs" "$rootfs/$fs"; mounted=("$rootfs/$fs" "${mounted[@]}"); done
mkdir -p "$rootfs/tmp/wheels"
mount --bind "$wheels" "$rootfs/tmp/wheels"; mounted=("$rootfs/tmp/wheels" "${mounted[@]}")
cp "$work/requirements.txt" "$rootfs/tmp/requirements.txt"
chroot "$rootfs" /usr/bin/python3 -m venv /opt/faasload-venv
quietly pip-install chroot "$rootfs" env -i PATH=/usr/bin:/bin PIP_CONFIG_FILE=/dev/null /opt/faasload-venv/bin/pip install --no-index \
    --disable-pip-version-check --find-links /tmp/wheels --require-hashes -r /tmp/requirements.txt
step "python environment"

# the unprivileged user `faasload` (lingering: its systemd user manager runs from boot), and in
# its home what a user of FaaSLoad has: a copy of the checkout at ~/faasload (the files git
# tracks; the test that uses it first copies the current checkout over it) and its environment
# ~/faasload/.venv made by scripts/setup.sh as that user, offline from the same wheels.
chroot "$rootfs" useradd --create-home --uid 1000 --shell /bin/bash faasload
mkdir -p "$rootfs/var/lib/systemd/linger"
touch "$rootfs/var/lib/systemd/linger/faasload"
user_checkout=$rootfs/home/faasload/faasload
mkdir -p "$user_checkout"
git -C "$checkout" ls-files -z | tar -C "$checkout" --null --no-recursion --ignore-failed-read -T - -cf - 2>/dev/null \
    | tar -C "$user_checkout" -xf -
chroot "$rootfs" chown -R faasload:faasload /home/faasload/faasload
quietly user-setup chroot --userspec=faasload:faasload "$rootfs" env -i HOME=/home/faasload PATH=/usr/bin:/bin LANG=C.UTF-8 \
    PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/wheels PIP_NO_CACHE_DIR=1 \
    /home/faasload/faasload/scripts/setup.sh --no-dev
for m in "${mounted[@]}"; do umount "$m"; done
mounted=()
rm -rf "$rootfs/tmp/wheels" "$rootfs/tmp/requirements.txt"
step "the user's environment (scripts/setup.sh --no-dev as faasload)"

# guest configuration: the job runner, Docker's settings
install -m 0755 "$here/guest/job-runner" "$rootfs/usr/local/sbin/faasload-ci-job"
install -m 0644 "$here/guest/faasload-ci-job.service" "$rootfs/etc/systemd/system/"
mkdir -p "$rootfs/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/faasload-ci-job.service "$rootfs/etc/systemd/system/multi-user.target.wants/"
mkdir -p "$rootfs/etc/docker"
install -m 0644 "$here/guest/docker-daemon.json" "$rootfs/etc/docker/daemon.json"
echo faasload-ci > "$rootfs/etc/hostname"
: > "$rootfs/etc/fstab"
: > "$rootfs/etc/machine-id"
chroot "$rootfs" passwd --delete root >/dev/null
chroot "$rootfs" systemctl mask --quiet apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer systemd-timesyncd.service 2>/dev/null || true
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

used_mib=$(du -sm "$rootfs" | cut -f1)
quietly mke2fs mke2fs -q -t ext4 -L faasload-ci -E root_owner=0:0 -d "$rootfs" "$work/rootfs.img" "$((used_mib * 3 / 2 + 1024))M"
step "ext4 image (${used_mib} MiB used)"

mkdir -p "$guest.new"
mv "$work/vmlinuz" "$work/initrd.img" "$work/rootfs.img" "$guest.new/"
printf 'kernel %s\nbuilt %s\nbuild_s %s\n' "$kver" "$(date -u +%FT%TZ)" "$(( $(date +%s) - t_start ))" > "$guest.new/ready"
rm -rf "$guest"
mv "$guest.new" "$guest"
for old in "$cache"/*/ready; do
    old=$(dirname "$old")
    [ "$old" = "$guest" ] || { log "removing the outdated guest $old"; rm -rf "$old"; }
done
log "guest $guest built in $(( $(date +%s) - t_start )) s"
echo "$guest"

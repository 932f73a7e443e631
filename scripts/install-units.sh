#!/usr/bin/env bash
# Install the loader and the monitor as systemd *user* units of the calling user.
#
#   scripts/install-units.sh [--venv DIR] [--config-dir DIR] [--unit-dir DIR] [--no-reload]
#
# 1. Writes UNIT_DIR/faasload-loader.service and faasload-monitor.service from systemd/*.service,
#    with ExecStart = the environment's Python (--venv, default $FAASLOAD_VENV or .venv of this
#    checkout, made by scripts/setup.sh) and absolute configuration paths in CONFIG_DIR.
# 2. Copies config/loader.yml and config/monitor.yml to CONFIG_DIR when absent (mode 0600; an
#    existing file is kept); the loader's copy points monitor:measurement_socket at the monitor
#    unit's socket, $XDG_RUNTIME_DIR/wdm/meas.
# 3. Runs `systemctl --user daemon-reload` (without a user manager, e.g. over su or in a
#    container, it says so and exits 0: reload from your login session, or enable lingering).
#
# Defaults: CONFIG_DIR ${XDG_CONFIG_HOME:-~/.config}/faasload, UNIT_DIR ${XDG_CONFIG_HOME:-~/.config}/systemd/user.
# Then: systemctl --user enable --now faasload-monitor; systemctl --user start faasload-loader.
# To run them without a login session: loginctl enable-linger "$USER" (as root or with polkit).
set -euo pipefail
source "$(dirname "$0")/_env.sh"

fail() { printf 'install-units: %s\n' "$*" >&2; exit 1; }
say() { printf 'install-units: %s\n' "$*"; }

config_home=${XDG_CONFIG_HOME:-$HOME/.config}
config_dir=$config_home/faasload
unit_dir=$config_home/systemd/user
reload=1
while [ $# -gt 0 ]; do
    case "$1" in
        --venv) FAASLOAD_VENV=$(realpath -m "$2"); shift 2 ;;
        --config-dir) config_dir=$2; shift 2 ;;
        --unit-dir) unit_dir=$2; shift 2 ;;
        --no-reload) reload=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) fail "unknown argument $1 (see --help)" ;;
    esac
done
config_dir=$(realpath -m "$config_dir")
unit_dir=$(realpath -m "$unit_dir")
python=$FAASLOAD_VENV/bin/python
[ -x "$python" ] || fail "no environment at $FAASLOAD_VENV: run scripts/setup.sh first (or pass --venv DIR)"
# from another directory, as the units run it (FaaSLoad must be installed in it, not found in the
# current directory)
import_error=$(cd / && "$python" -c 'import loader.__main__, monitor.__main__' 2>&1) \
    || fail "$python cannot import FaaSLoad (${import_error##*$'\n'}): run scripts/setup.sh $FAASLOAD_VENV"

# Paths go into unit files as they are: no whitespace (unquoted ExecStart arguments), '%' doubled.
unit_path() {
    case "$1" in *[[:space:]]*) fail "path with whitespace not supported in a unit: $1" ;; esac
    printf '%s' "${1//%/%%}"
}
sed_escape() { printf '%s' "$1" | sed 's/[\\|&]/\\&/g'; }

install_unit() {  # install_unit NAME
    local name=$1 template=$FAASLOAD_ROOT/systemd/$1.service target=$unit_dir/$1.service
    local venv root configs
    venv=$(sed_escape "$(unit_path "$FAASLOAD_VENV")")
    root=$(sed_escape "$(unit_path "$FAASLOAD_ROOT")")
    configs=$(sed_escape "$(unit_path "$config_dir")")
    # The template's conventional paths (checkout at ~/faasload, .venv in it, ~/.config/faasload)
    # become this installation's.
    sed -e "s|%h/faasload/\.venv/|$venv/|g" \
        -e "s|%h/\.config/faasload/|$configs/|g" \
        -e "s|file://%h/faasload/|file://$root/|g" \
        -e "/^# Install:/,/^# Run:/{/^# Run:/!d}" \
        "$template" >"$target.tmp"
    sed -i "1a # Written by scripts/install-units.sh from $(sed_escape "$template"); run it again after moving the checkout." "$target.tmp"
    mv "$target.tmp" "$target"
    say "wrote $target"
}

copy_config() {  # copy_config FILE [SED_SCRIPT]
    local source=$FAASLOAD_ROOT/config/$1 target=$config_dir/$1
    if [ -e "$target" ]; then
        say "kept $target (already there)"
        return
    fi
    install -m 600 /dev/null "$target"
    sed -e "${2:-}" "$source" >"$target"
    say "copied $source to $target (edit it before starting the unit)"
}

mkdir -p "$unit_dir"
install -d -m 700 "$config_dir"
install_unit faasload-monitor
install_unit faasload-loader
copy_config monitor.yml
copy_config loader.yml 's|^\(  measurement_socket:\) /run/wdm/meas  # path$|\1 $XDG_RUNTIME_DIR/wdm/meas  # path (the faasload-monitor unit'"'"'s socket)|'

if [ "$reload" -eq 1 ]; then
    if command -v systemctl >/dev/null 2>&1 && reload_error=$(systemctl --user daemon-reload 2>&1); then
        say "systemctl --user daemon-reload: done"
    else
        printf 'install-units: no systemd user manager answers (%s): the units are written; run\n' \
            "${reload_error:-systemctl not installed}" >&2
        printf '  systemctl --user daemon-reload\nin your login session, or enable lingering first: loginctl enable-linger %s\n' \
            "$(id -un)" >&2
    fi
fi
cat <<EOF
next: edit $config_dir/loader.yml (openwhisk:apihost, injection:tracedir, ...), then
  systemctl --user enable --now faasload-monitor
  systemctl --user start faasload-loader
  journalctl --user -u faasload-loader -f
EOF

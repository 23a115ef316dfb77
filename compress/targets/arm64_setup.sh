#!/usr/bin/env bash
# Build the emulated aarch64 environment (QEMU user-mode: https://www.qemu.org/docs/master/user/main.html):
# no root, no chroot, no binfmt; the host's apt state stays untouched.
#
#   1. QEMU: the static qemu-user from Debian bookworm-backports (QEMU 10.x), unpacked with
#      dpkg-deb -x (bookworm's stock 7.2 segfaults in onnxruntime's import and gets int8 wrong).
#   2. Sysroot: arm64 .debs of python3.11-minimal, libpython3.11-stdlib, libstdc++6, libgcc-s1,
#      zlib1g and their dependencies, fetched with `apt-get download` through a private apt
#      configuration pointing at this machine's Debian mirror, unpacked with dpkg-deb -x.
#   3. Wheels: aarch64 onnxruntime, numpy, tokenizers into SYSROOT/opt/site (pip --platform --target).
#
# Usage: compress/targets/arm64_setup.sh [CACHE_DIR]   (edgedistill.compress.targets.arm64.setup runs it)
#   CACHE_DIR defaults to $EDGEDISTILL_ARM64_CACHE, else $EDGEDISTILL_CACHE/arm64, else
#   ~/.cache/edgedistill/arm64. Idempotent: each step is skipped when its stamp file exists,
#   so a second run takes well under a second. Prints the environment file's path
#   (CACHE_DIR/env.sh, which sets QEMU, SYSROOT and SITE) on its last line.
#
# Pins: ORT_VERSION (default: the host's onnxruntime version, so both sides run the same kernels),
# PYTHON=python3 to run pip (default: the project's .venv python when present).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"  # compress/targets/ -> the checkout (its .venv, when PYTHON is not given)
cache="${1:-${EDGEDISTILL_ARM64_CACHE:-${EDGEDISTILL_CACHE:-$HOME/.cache/edgedistill}/arm64}}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
sysroot="$cache/sysroot"
site="$sysroot/opt/site"
qemu_dir="$cache/qemu"
aptdir="$cache/apt"
debs="$cache/debs"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then py="$repo/.venv/bin/python"; else py="python3"; fi
fi
# the host's versions, so that both sides run the same kernels and tokenizer (unpinned where absent)
host_pins="$("$py" - <<'PY' 2>/dev/null || true
from importlib import metadata
for name in ("onnxruntime", "numpy", "tokenizers", "protobuf", "flatbuffers", "packaging"):
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(name)
PY
)"
[[ -n "$host_pins" ]] || host_pins=$'onnxruntime\nnumpy\ntokenizers\nprotobuf\nflatbuffers\npackaging'
if [[ -n "${ORT_VERSION:-}" ]]; then host_pins="$(sed -E "s/^onnxruntime(==.*)?$/onnxruntime==$ORT_VERSION/" <<<"$host_pins")"; fi
mapfile -t wheels <<<"$host_pins"

log() { printf '[arm64-setup] %s\n' "$*" >&2; }
die() { printf '[arm64-setup] error: %s\n' "$*" >&2; exit 1; }

for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool is needed (a Debian or Ubuntu host)"
done

# ---------------------------------------------------------------- 1. the private apt configuration
mirror() {
    # The Debian mirror this machine's apt already uses (deb822 .sources or one-line sources.list).
    local f uri=""
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        uri="$(grep -hE '^(URIs:|deb )' "$f" | grep -E '/debian/?( |$)' | grep -v security | head -1 |
               sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//; s/[[:space:]].*$//')"
        [[ -n "$uri" ]] && break
    done
    echo "${uri:-http://deb.debian.org/debian}"
}

if [[ ! -f "$aptdir/.updated" ]]; then
    uri="$(mirror)"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -f "$keyring" ]] || die "$keyring is missing (apt-get install debian-archive-keyring)"
    log "private apt configuration in $aptdir (mirror $uri)"
    rm -rf "$aptdir"
    mkdir -p "$aptdir/etc/preferences.d" "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/state"
    cat > "$aptdir/etc/sources.list" <<EOF
deb [arch=amd64,arm64 signed-by=$keyring] $uri bookworm main
deb [arch=amd64,arm64 signed-by=$keyring] $uri bookworm-updates main
deb [arch=amd64 signed-by=$keyring] $uri bookworm-backports main
EOF
    : > "$aptdir/state/status"
    cat > "$aptdir/apt.conf" <<EOF
Dir::Etc::SourceList "$aptdir/etc/sources.list";
Dir::Etc::SourceParts "$aptdir/etc/sources.list.d";
Dir::Etc::Preferences "$aptdir/etc/preferences";
Dir::Etc::PreferencesParts "$aptdir/etc/preferences.d";
Dir::State "$aptdir/state";
Dir::State::Lists "$aptdir/lists";
Dir::State::status "$aptdir/state/status";
Dir::Cache "$aptdir/cache";
APT::Architecture "arm64";
APT::Architectures { "arm64"; "amd64"; };
APT::Install-Recommends "false";
Acquire::Languages "none";
Debug::NoLocking "true";
EOF
    mkdir -p "$aptdir/etc/sources.list.d"
    APT_CONFIG="$aptdir/apt.conf" apt-get -q -o APT::Sandbox::User=root update >&2
    touch "$aptdir/.updated"
fi
apt_() { APT_CONFIG="$aptdir/apt.conf" "$@"; }

# ---------------------------------------------------------------- 2. QEMU user mode (static, 10.x)
if [[ ! -f "$qemu_dir/.done" ]]; then
    log "qemu-user from bookworm-backports"
    rm -rf "$qemu_dir" && mkdir -p "$qemu_dir/deb"
    # qemu 10 in backports ships the static binaries in qemu-user (qemu-user-static is transitional)
    (cd "$qemu_dir/deb" && apt_ apt-get -q -o APT::Sandbox::User=root download -t bookworm-backports "qemu-user:amd64" >&2)
    dpkg-deb -x "$qemu_dir"/deb/qemu-user_*.deb "$qemu_dir/root"
    qemu_bin="$(find "$qemu_dir/root" -name 'qemu-aarch64' -type f | head -1)"
    [[ -n "$qemu_bin" ]] || die "no qemu-aarch64 in the qemu-user package"
    mv "$qemu_bin" "$qemu_dir/qemu-aarch64"
    rm -rf "$qemu_dir/root"  # the other 30 emulators: 300 MB we never run
    "$qemu_dir/qemu-aarch64" --version | head -1 >&2
    file_out="$(file -L "$qemu_dir/qemu-aarch64" 2>/dev/null || true)"
    [[ "$file_out" != *dynamically* ]] || log "warning: qemu-aarch64 is dynamically linked ($file_out)"
    rm -rf "$qemu_dir/deb"
    touch "$qemu_dir/.done"
fi

# ---------------------------------------------------------------- 3. the arm64 sysroot
if [[ ! -f "$sysroot/.done" ]]; then
    log "arm64 sysroot in $sysroot"
    rm -rf "$sysroot" "$debs" && mkdir -p "$sysroot" "$debs"
    roots=(python3.11-minimal libpython3.11-stdlib libstdc++6 libgcc-s1 zlib1g)
    # every dependency, recursively (Depends and Pre-Depends only), as concrete arm64 packages
    mapfile -t pkgs < <(apt_ apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances "${roots[@]/%/:arm64}" |
        grep -E '^[a-z0-9]' | grep -v ':amd64$' | sed -E 's/:arm64$//' | sort -u)
    # what python3.11 never loads: perl and dpkg's tools (pulled in by mailcap and Pre-Depends), MIME tables
    skip='^(perl|perl-base|perl-modules-.*|libperl.*|libgdbm-compat4|dpkg|tar|install-info|mailcap|mime-support|media-types)$'
    available=()
    for p in "${pkgs[@]}"; do  # drop virtual packages (they have no candidate) and the skipped ones
        [[ "$p" =~ $skip ]] && continue
        if apt_ apt-cache show "$p:arm64" >/dev/null 2>&1; then available+=("$p:arm64"); fi
    done
    log "${#available[@]} arm64 packages"
    (cd "$debs" && apt_ apt-get -q -o APT::Sandbox::User=root download "${available[@]}" >&2)
    for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$sysroot"; done
    # merged /usr: python and the loader look in /lib and /lib64
    for l in lib lib64 bin sbin; do
        if [[ -d "$sysroot/usr/$l" && ! -e "$sysroot/$l" ]]; then ln -s "usr/$l" "$sysroot/$l"; fi
    done
    [[ -x "$sysroot/usr/bin/python3.11" ]] || die "no usr/bin/python3.11 in the sysroot"
    rm -rf "$debs"
    touch "$sysroot/.done"
fi

# ---------------------------------------------------------------- 4. aarch64 wheels
if [[ ! -f "$site/.done" ]]; then
    log "aarch64 wheels (${wheels[*]}) into $site"
    rm -rf "$site" && mkdir -p "$site"
    # --no-deps with the runtime's closure named explicitly: tokenizers' huggingface-hub (and its
    # dozen dependencies) is only needed for from_pretrained, which the runtime never calls
    "$py" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: --implementation cp \
        --python-version 3.11 --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
        --platform manylinux_2_28_aarch64 --target "$site" "${wheels[@]}" 2>&1 | grep -v "^WARNING: Location" >&2 || true
    [[ -d "$site/onnxruntime" && -d "$site/numpy" && -d "$site/tokenizers" ]] || die "pip did not install the wheels"
    touch "$site/.done"
fi

# ---------------------------------------------------------------- the environment file
cat > "$cache/env.sh" <<EOF
# source me: the emulated aarch64 environment built by compress/targets/arm64_setup.sh
export QEMU="$qemu_dir/qemu-aarch64"
export SYSROOT="$sysroot"
export SITE="$site"
export ARM64_PYTHON="$sysroot/usr/bin/python3.11"
EOF
if [[ ! -f "$cache/.smoke" ]]; then
    QEMU_CPU=neoverse-n1 PYTHONPATH="$site" "$qemu_dir/qemu-aarch64" -L "$sysroot" "$sysroot/usr/bin/python3.11" -c \
        'import platform, numpy, onnxruntime, tokenizers; print("aarch64 ok:", platform.machine(), "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__, "tokenizers", tokenizers.__version__)' >&2
    touch "$cache/.smoke"
fi
echo "$cache/env.sh"

#!/usr/bin/env bash
# arm64 proof: install edgecifar's `device` extra in an emulated Raspberry Pi OS base (Debian
# bookworm arm64: Python 3.11, glibc 2.36) and check that it classifies exactly like x86-64.
#
#   sudo device/check_arm64.sh --export runs/<run>/export [--images 200] [--fresh]
#
# What it does (each step is timed in the log; the times are the cost of this check, never
# device performance: emulated timings say nothing about a real Pi):
#   1. host tools: qemu-user-static, binfmt-support, debootstrap (apt-get), binfmt_misc enabled
#   2. x86-64 reference: a venv with `pip install '.[device]'`, 200 CIFAR-10 test PNGs, and every
#      artifact's raw outputs (LiteRT / onnxruntime), plus tflite-runtime 2.14 in its own venv
#   3. arm64 root: debootstrap bookworm (cached as a tarball in ~/.cache/edgecifar/arm64/), chroot
#      through qemu-user; a fresh copy each run
#   4. inside: device/install_pi.sh --no-picamera2 --service (the Pi guide's installer: apt packages,
#      venv, `pip install '/src[device]'` from PyPI's aarch64 wheels pinned to the x86-64 versions,
#      systemd unit; its ExecStart is then run on the images); tflite-runtime 2.14 in its own venv
#      (numpy<2, opencv-python-headless<4.12)
#   5. for Pi 4 (QEMU_CPU=cortex-a72) and Pi 5 (cortex-a76), each with a matching /proc/cpuinfo:
#      the same outputs, compared (device/arm64/compare.py). Every TFLite artifact runs with each
#      kernel set of `edgecifar run --kernels`. Defined arithmetic (float artifacts everywhere, int8
#      on the TFLite reference kernels): floats within 1e-5 * (1 + |x|), integers identical.
#      Arithmetic each architecture rounds its own way (int8 on the fast kernels xnnpack and
#      builtin, ONNX int8, dynamic-range): the same top-1 class on every image (a tied top matches
#      any of its classes), the difference reported (compare.py's docstring says why no step bound);
#      `edgecifar run --json` follows its artifact's rule.
#      A runtime/format pair the runner itself warns about (tflite-runtime with a dynamic-range
#      model: its kernels round differently on ARM and x86) is printed as KNOWN with its measured
#      difference instead of FAIL, as long as both machines load it and carry the same warning.
# Prints PASS or FAIL per artifact and overall; exit 0 only on PASS. Mounts are always undone.
#
# Options: --export DIR (artifacts: *.tflite with sidecars, *.onnx), --images N, --fresh (rebuild the
# cached root), --log FILE (default device/logs/check_arm64.log), --keep (leave the root for inspection),
# --tol T (float rule, default 1e-5), --int-lsb N (int8 on reference kernels: integers may differ by N steps;
# default 0 = identical).
# Env: EDGECIFAR_ARM64_CACHE (default ~/.cache/edgecifar/arm64), EDGECIFAR_ARM64_WORK (/var/tmp/edgecifar-arm64),
#      EDGECIFAR_DATA (CIFAR-10), DEBIAN_MIRROR (http://deb.debian.org/debian).
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${EDGECIFAR_ARM64_CACHE:-$HOME/.cache/edgecifar/arm64}
WORK=${EDGECIFAR_ARM64_WORK:-/var/tmp/edgecifar-arm64}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOT=$WORK/root
SHARE=$WORK/share
TARBALL=$CACHE/bookworm-arm64-root.tar.gz
PIP_CACHE=$CACHE/pip-aarch64
X86_VENV=$CACHE/x86-device-venv
X86_TFL=$CACHE/x86-tflite214-venv
TFLITE_RUNTIME=2.14.0
BASE_PACKAGES=python3,python3-venv,python3-pip,ca-certificates,sudo,systemd
PROFILES=("pi4 cortex-a72 cpuinfo-pi4.txt" "pi5 cortex-a76 cpuinfo-pi5.txt")

EXPORT="" IMAGES=200 FRESH=0 KEEP=0 LOG=$REPO/device/logs/check_arm64.log TOL=1e-5 INT_LSB=0
while (($#)); do
    case $1 in
        --export) EXPORT=$2; shift 2 ;;
        --images) IMAGES=$2; shift 2 ;;
        --fresh) FRESH=1; shift ;;
        --keep) KEEP=1; shift ;;
        --log) LOG=$2; shift 2 ;;
        --tol) TOL=$2; shift 2 ;;
        --int-lsb) INT_LSB=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -E/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "check_arm64: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

MOUNTS=()          # every mount we made, undone in reverse order
STEP_TIMES=()
RESULTS=()

quiet_pip() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; return "${PIPESTATUS[0]}"; }

log() { echo "[$(date -u +%H:%M:%S)] $*"; }
die() { log "FAIL: $*"; exit 1; }

step() {
    local name=$1 t0=$SECONDS
    shift
    log "=== $name"
    "$@"
    STEP_TIMES+=("$(printf '%5d s  %s' $((SECONDS - t0)) "$name")")
    log "--- $name: $((SECONDS - t0)) s"
}

mounted_under() { findmnt -rn -o TARGET | awk -v r="$1" 'index($0, r) == 1'; }

do_mount() {  # do_mount TARGET mount-args...
    local target=$1
    shift
    [[ -L $target ]] && die "$target is a symlink; refusing to mount onto it"
    mount "$@" "$target"
    MOUNTS+=("$target")
}

undo_mount() {  # unmount TARGET if we mounted it
    local target=$1 i
    for i in "${!MOUNTS[@]}"; do
        if [[ ${MOUNTS[$i]} == "$target" ]]; then
            umount "$target" || umount -l "$target"
            unset 'MOUNTS[i]'
            MOUNTS=("${MOUNTS[@]}")
            return
        fi
    done
}

cleanup() {
    local rc=$? i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" || log "WARNING: cannot unmount ${MOUNTS[$i]}"
    done
    MOUNTS=()
    local left
    left=$(mounted_under "$ROOT")
    if [[ -n $left ]]; then
        log "WARNING: still mounted under $ROOT:"$'\n'"$left"
    elif ((KEEP == 0)) && [[ -d $ROOT ]]; then
        rm -rf --one-file-system "$ROOT"
    fi
    return $rc
}

# --- 1. host ---------------------------------------------------------------------------------

host_tools() {
    [[ $(id -u) == 0 ]] || die "run as root (chroot, mount and debootstrap need it): sudo $0"
    [[ $(uname -m) == x86_64 ]] || die "this check compares arm64 against x86-64; run it on an x86-64 Linux host"
    local need=()
    command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
    command -v update-binfmts >/dev/null || need+=(binfmt-support)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    if ((${#need[@]})); then
        log "apt-get install ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
        log "mounting binfmt_misc"
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
    grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null || die "qemu-aarch64 is not registered in binfmt_misc"
    # F (fix binary) lets a chroot run arm64 programs without a copy of qemu inside it.
    grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "qemu-aarch64 binfmt lacks the F flag; reinstall qemu-user-static"
    log "$(qemu-aarch64-static --version | head -1); binfmt: $(grep -E '^(interpreter|flags)' /proc/sys/fs/binfmt_misc/qemu-aarch64 | tr '\n' ' ')"
    log "repo $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git -C "$REPO" status --porcelain 2>/dev/null) ]] && echo ' (working tree has changes)')"
}

find_artifacts() {
    [[ -n $EXPORT ]] || die "pass --export DIR: the export folder of a run (edgecifar export RUN writes RUN/export/)"
    [[ -d $EXPORT ]] || die "--export $EXPORT is not a folder"
    EXPORT=$(cd "$EXPORT" && pwd)
    local kind missing=()
    for kind in int8.tflite float32.tflite int8.onnx float32.onnx; do
        compgen -G "$EXPORT/*_$kind" >/dev/null || missing+=("*_$kind")
    done
    ((${#missing[@]} == 0)) || die "$EXPORT lacks ${missing[*]}; run: edgecifar export RUN --int8"
    rm -rf "$SHARE" && mkdir -p "$SHARE/artifacts"
    cp "$EXPORT"/*.tflite "$EXPORT"/*.onnx "$SHARE/artifacts/"
    compgen -G "$EXPORT/*.tflite.json" >/dev/null && cp "$EXPORT"/*.tflite.json "$SHARE/artifacts/"
    (cd "$SHARE/artifacts" && for f in *.tflite *.onnx; do log "  $(sha256sum "$f" | cut -c1-16)  $(stat -c %s "$f") B  $f"; done)
}

copy_source() {  # the working tree's files (tracked + untracked, not ignored): what `pip install .` sees
    local dest=$1
    rm -rf "$dest" && mkdir -p "$dest"
    (cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null --ignore-failed-read -cf - -T - 2>/dev/null) | tar -xf - -C "$dest"
}

x86_reference() {
    copy_source "$SHARE/src"
    if [[ ! -x $X86_VENV/bin/python ]]; then
        python3 -m venv "$X86_VENV"
    fi
    # `[device]` exactly as a user gets it; its versions pin the arm64 install so only the CPU differs.
    quiet_pip nice -n 10 "$X86_VENV/bin/pip" install -q --upgrade "$SHARE/src[device]"
    "$X86_VENV/bin/pip" freeze --exclude edgecifar > "$SHARE/constraints.txt"
    log "x86-64 [device]: $(grep -iE '^(ai-edge-litert|onnxruntime|opencv-python-headless|numpy)==' "$SHARE/constraints.txt" | tr '\n' ' ')"
    EDGECIFAR_DATA=${EDGECIFAR_DATA:-} "$X86_VENV/bin/python" "$HERE/arm64/make_images.py" "$SHARE/images" --count "$IMAGES"
    cp -r "$HERE/arm64" "$SHARE/tools"
    "$X86_VENV/bin/python" "$SHARE/tools/dump_outputs.py" "$SHARE/artifacts" "$SHARE/images" "$SHARE/x86-64/device"
    run_json "$X86_VENV/bin/edgecifar" "$SHARE" x86-64/device

    if [[ ! -x $X86_TFL/bin/python ]]; then
        python3 -m venv "$X86_TFL"
    fi
    quiet_pip nice -n 10 "$X86_TFL/bin/pip" install -q "tflite-runtime==$TFLITE_RUNTIME" "numpy<2" "opencv-python-headless<4.12" "$SHARE/src"
    "$X86_TFL/bin/python" "$SHARE/tools/dump_outputs.py" "$SHARE/artifacts" "$SHARE/images" "$SHARE/x86-64/tflite214" \
        --tflite-backend tflite_runtime --no-onnx
}

# `edgecifar run MODEL --source IMAGES --json` for every artifact, as a user runs it.
run_json() {  # run_json EDGECIFAR SHARE_AS_SEEN OUT_SUBDIR [command prefix, e.g. in_root]
    local exe=$1 share=$2 out=$3 f
    shift 3
    if ! "$@" "$exe" run --help 2>/dev/null | grep -q -- '--json'; then
        log "NOTE: this edgecifar has no 'run --json' yet; compared through the runtime only"
        return 0
    fi
    for f in $(cd "$SHARE/artifacts" && ls *.tflite *.onnx); do
        # stderr carries the runner's FPS/latency summary: kept out of the log (emulated speed is meaningless).
        "$@" "$exe" run "$share/artifacts/$f" --source "$share/images" --json \
            > "$SHARE/$out/$f.run.jsonl" 2> "$SHARE/$out/$f.run.stderr" \
            || { grep -i error "$SHARE/$out/$f.run.stderr" | tail -5; die "edgecifar run $f failed"; }
    done
    log "edgecifar run --json: $(ls "$SHARE/$out"/*.run.jsonl | wc -l) artifacts, $(cat "$SHARE/$out"/*.run.jsonl | wc -l) results"
}

# --- 2. the arm64 root -----------------------------------------------------------------------

fresh_root_dir() {
    [[ -n $(mounted_under "$ROOT") ]] && die "something is still mounted under $ROOT (findmnt); unmount it first"
    rm -rf --one-file-system "$ROOT"
    mkdir -p "$ROOT"
}

build_or_reuse_root() {
    mkdir -p "$CACHE" "$PIP_CACHE"
    fresh_root_dir
    if ((FRESH == 0)) && [[ -s $TARBALL ]]; then
        log "reusing $TARBALL ($(du -h "$TARBALL" | cut -f1))"
        tar -xzf "$TARBALL" -C "$ROOT"
        return
    fi
    log "debootstrap bookworm arm64 from $MIRROR (no cached root, or --fresh)"
    nice -n 10 debootstrap --arch=arm64 --variant=minbase --include="$BASE_PACKAGES" bookworm "$ROOT" "$MIRROR" \
        > "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
    [[ -n $(mounted_under "$ROOT") ]] && die "debootstrap left mounts under $ROOT"
    # Under a /.dockerenv debootstrap makes proc (and sometimes sys) a symlink to the host's: make real dirs.
    local d
    for d in proc sys dev; do
        if [[ -L $ROOT/$d ]]; then rm -f "$ROOT/$d"; mkdir -p "$ROOT/$d"; fi
    done
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb
    tar -czf "$TARBALL.tmp" -C "$ROOT" . && mv "$TARBALL.tmp" "$TARBALL"
    log "cached the root as $TARBALL ($(du -h "$TARBALL" | cut -f1))"
}

mount_root() {
    local d
    for d in proc sys dev share src root/.cache/pip; do mkdir -p "$ROOT/$d"; done
    do_mount "$ROOT/proc" -t proc proc
    do_mount "$ROOT/sys" --bind /sys
    mount -o remount,bind,ro "$ROOT/sys"
    do_mount "$ROOT/dev" --bind /dev
    do_mount "$ROOT/share" --bind "$SHARE"
    do_mount "$ROOT/root/.cache/pip" --bind "$PIP_CACHE"
    # DNS and the host's CA bundle, so pip can reach and verify PyPI from inside.
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca-certificates.crt"
    copy_source "$ROOT/src"
}

# The guest must see an arm64 /proc/cpuinfo: onnxruntime's cpuinfo segfaults on the host's x86 one.
use_profile() {  # use_profile CPUINFO_FILE
    undo_mount "$ROOT/proc/cpuinfo"
    cp "$HERE/arm64/$1" "$WORK/cpuinfo"
    do_mount "$ROOT/proc/cpuinfo" --bind "$WORK/cpuinfo"
}

QEMU_CPU=cortex-a72
# A clean environment: none of the host's pip settings (local x86-only mirrors) leak in.
in_root() {
    env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        QEMU_CPU="$QEMU_CPU" PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_DEFAULT_TIMEOUT=180 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1 \
        nice -n 10 chroot "$ROOT" "$@"
}

root_facts() {
    use_profile cpuinfo-pi4.txt
    log "inside: $(in_root uname -m), $(in_root python3 --version), $(in_root ldd --version | head -1), $(in_root sh -c '. /etc/os-release; echo $PRETTY_NAME')"
}

# What Raspberry Pi OS has and a minbase root lacks (roots cached before they were in BASE_PACKAGES).
pi_os_basics() {
    if in_root dpkg -s sudo systemd >/dev/null 2>&1; then
        log "sudo and systemd already in the root"
        return 0
    fi
    in_root sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sudo systemd >/dev/null'
    log "installed sudo and systemd in the root"
}

# The Pi guide's install script, as a user runs it, with what a chroot cannot have left out:
# --no-picamera2 (picamera2/rpicam are Raspberry Pi OS packages, not Debian's; there is no camera).
# It creates the device venv and runs pip install '/src[device]' from PyPI's aarch64 wheels;
# PIP_CONSTRAINT pins the x86-64 reference's versions so the comparison differs only in the CPU.
# --service installs the systemd unit with the image folder as its source, checked afterwards.
install_script() {
    local int8 rc=0
    int8=$(cd "$SHARE/artifacts" && ls *_int8.tflite | head -1)
    if [[ -f $ROOT/src/device/install_pi.sh ]]; then
        in_root env PIP_CONSTRAINT=/share/constraints.txt PIP_COMPILE=0 DEBIAN_FRONTEND=noninteractive \
            bash /src/device/install_pi.sh --no-picamera2 --venv /opt/edgecifar \
            --service "/share/artifacts/$int8" /share/images --args "--max-frames 20 --json" \
            > "$SHARE/install_pi.log" 2>&1 || rc=$?
        grep -v -E '^(Get|Hit|Ign):|^Reading |^Building |^Selecting |^Preparing |^Unpacking |^Setting up |^Processing |^Collecting |^  (Downloading|Using cached) |^Requirement already' \
            "$SHARE/install_pi.log" | sed 's/^/    | /' || true
        if ((rc == 0)); then
            RESULTS+=("PASS device/install_pi.sh --no-picamera2 --service ... (exit 0)")
        elif [[ -f $ROOT/etc/systemd/system/edgecifar.service ]] && tail -3 "$SHARE/install_pi.log" | grep -q -E \
                "System has not been booted with systemd|Failed to connect to bus"; then
            # Its last commands (systemctl daemon-reload, enable --now) need systemd as PID 1: a chroot has none.
            RESULTS+=("PASS device/install_pi.sh: every step up to 'systemctl daemon-reload' (needs a running systemd; exit $rc in a chroot)")
            in_root systemctl --root=/ enable edgecifar.service 2>&1 | sed 's/^/    | /' || true
        else
            RESULTS+=("FAIL device/install_pi.sh exited $rc (full output: $SHARE/install_pi.log)")
        fi
    else
        RESULTS+=("FAIL device/install_pi.sh missing from the repo")
    fi
    if ! in_root /opt/edgecifar/bin/python -c "import edgecifar.device.runtime" 2>/dev/null; then
        log "no working venv from install_pi.sh; installing the device extra directly so the comparison still runs"
        in_root python3 -m venv /opt/edgecifar
        in_root /opt/edgecifar/bin/pip install -q --no-compile "/src[device]" -c /share/constraints.txt
    fi
    log "arm64 [device]: $(in_root /opt/edgecifar/bin/pip freeze | grep -iE '^(ai-edge-litert|onnxruntime|opencv-python-headless|numpy|edgecifar)[= @]' | tr '\n' ' ')"
}

# The unit install_pi.sh wrote: enabled, and its ExecStart (with /etc/default/edgecifar) classifies.
# systemd itself cannot run in a chroot, so the command line is run the way systemd would expand it.
check_service() {
    local unit=/etc/systemd/system/edgecifar.service lines state
    if [[ ! -f $ROOT$unit ]]; then
        RESULTS+=("FAIL service: $unit was not installed")
        return 0
    fi
    state=$(in_root systemctl --root=/ is-enabled edgecifar.service 2>&1 || true)
    log "unit $unit: is-enabled = $state; /etc/default/edgecifar:"
    sed 's/^/    | /' "$ROOT/etc/default/edgecifar"
    in_root bash -c 'while IFS="=" read -r k v; do export "$k=$v"; done < /etc/default/edgecifar
                     cmd=$(sed -n "s/^ExecStart=//p" '"$unit"'); echo "ExecStart: $cmd" >&2; eval "$cmd"' \
        > "$SHARE/service.jsonl" 2> "$SHARE/service.stderr" || true
    grep '^ExecStart' "$SHARE/service.stderr" | sed 's/^/    | /' || true
    lines=$(grep -c '"top"' "$SHARE/service.jsonl" || true)
    if [[ $state == enabled && $lines == 20 ]]; then
        RESULTS+=("PASS service: unit enabled; its ExecStart classified 20 frames (--max-frames 20 --json)")
    else
        grep -i error "$SHARE/service.stderr" | tail -5 | sed 's/^/    | /' || true
        RESULTS+=("FAIL service: is-enabled '$state', ExecStart produced $lines JSON results (expected 20)")
    fi
}

install_tflite214() {
    in_root python3 -m venv /opt/tflite214
    in_root /opt/tflite214/bin/pip install -q --no-compile "tflite-runtime==$TFLITE_RUNTIME" "numpy<2" "opencv-python-headless<4.12" /src
    log "arm64 tflite-runtime venv: $(in_root /opt/tflite214/bin/pip freeze | grep -iE '^(tflite-runtime|numpy|opencv-python-headless)==' | tr '\n' ' ')"
}

# --- 3. compare ------------------------------------------------------------------------------

check_profile() {  # check_profile NAME QEMU_CPU CPUINFO
    local name=$1 out=/share/arm64-$1 rc
    QEMU_CPU=$2
    use_profile "$3"
    in_root /opt/edgecifar/bin/python /share/tools/dump_outputs.py /share/artifacts /share/images "$out/device"
    run_json /opt/edgecifar/bin/edgecifar /share "arm64-$name/device" in_root
    in_root /opt/tflite214/bin/python /share/tools/dump_outputs.py /share/artifacts /share/images "$out/tflite214" \
        --tflite-backend tflite_runtime --no-onnx
    for venv in device tflite214; do
        rc=0
        "$X86_VENV/bin/python" "$HERE/arm64/compare.py" "$SHARE/x86-64/$venv" "$SHARE/arm64-$name/$venv" \
            --label "$name ($2) $venv" --tol "$TOL" --int-lsb "$INT_LSB" || rc=$?
        RESULTS+=("$( ((rc == 0)) && echo 'PASS' || echo 'FAIL') $name ($2), $venv venv vs x86-64")
    done
}

main() {
    local t0=$SECONDS
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    log "edgecifar arm64 check: Debian bookworm arm64 under qemu-user vs this x86-64 host"
    log "(step times below are the cost of the check itself; emulated speed says nothing about a Pi)"
    mkdir -p "$WORK" "$CACHE"
    step "host tools and binfmt_misc" host_tools
    step "artifacts from $EXPORT" find_artifacts
    step "x86-64 reference outputs" x86_reference
    step "arm64 root (debootstrap or cached tarball)" build_or_reuse_root
    step "mount proc/sys/dev, copy the project in" mount_root
    step "root facts" root_facts
    step "sudo and systemd in the root (as on Raspberry Pi OS)" pi_os_basics
    step "device/install_pi.sh: venv + pip install '/src[device]' (aarch64 wheels) + service" install_script
    step "systemd unit written by install_pi.sh" check_service
    step "pip install tflite-runtime $TFLITE_RUNTIME venv" install_tflite214
    local p
    for p in "${PROFILES[@]}"; do
        read -r name cpu info <<< "$p"
        step "classify and compare: $name, QEMU_CPU=$cpu" check_profile "$name" "$cpu" "$info"
    done
    log "=== step times"
    printf '    %s\n' "${STEP_TIMES[@]}"
    log "    total $((SECONDS - t0)) s"
    log "=== results"
    printf '    %s\n' "${RESULTS[@]}"
    if printf '%s\n' "${RESULTS[@]}" | grep -q '^FAIL'; then
        log "FAIL"
        return 1
    fi
    log "PASS"
}

mkdir -p "$(dirname "$LOG")"
TMP_LOG=$(mktemp "$(dirname "$LOG")/.check_arm64.XXXXXX")
set +e
(main) 2>&1 | tee "$TMP_LOG"
rc=${PIPESTATUS[0]}
mv "$TMP_LOG" "$LOG"
exit "$rc"

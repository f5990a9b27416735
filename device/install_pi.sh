#!/usr/bin/env bash
# Install the edgecifar device runtime on Raspberry Pi OS (bookworm, 64-bit): no TensorFlow.
#
#   device/install_pi.sh                        # camera packages + venv + pip install 'edgecifar[device]'
#   device/install_pi.sh --service MODEL [SRC]  # ... and run `edgecifar run MODEL --source SRC` at boot
#
# Options:
#   --venv DIR        where the virtual environment goes (default: <repo>/venv)
#   --no-picamera2    USB (V4L2) cameras only: skip python3-picamera2
#   --service MODEL [SOURCE]  install device/edgecifar.service (SOURCE defaults to picamera2:lores)
#   --args "..."      extra `edgecifar run` options for the service, e.g. "--threads 4 --serve 0.0.0.0:8080"
#   --token-file F    the live view's access token for the service, read from file F (never on a command line, where
#                     `ps` shows it); stored as EDGECIFAR_TOKEN in /etc/default/edgecifar, mode 0600
#   --spec SPEC       what pip installs (default: this checkout with the [device] extra)
#
# The venv is created with --system-site-packages because picamera2 and libcamera come from apt
# (they are not usable from PyPI). pip may then put numpy 2 in the venv (recent OpenCV wheels need it),
# which breaks apt's simplejpeg, built for Debian's numpy 1.24 ("numpy.dtype size changed" when importing
# picamera2). The script checks the import and, when that happens, installs a numpy-2 build of simplejpeg
# into the venv (the fix picamera2's maintainers suggest, raspberrypi/picamera2#1211).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/venv"
PICAMERA2=1
SERVICE_MODEL=""
SERVICE_SOURCE="picamera2:lores"
SERVICE_ARGS=""
TOKEN_FILE=""
SPEC="$REPO[device]"

die() { echo "install_pi.sh: error: $*" >&2; exit 2; }
step() { echo; echo "==> $*"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --venv) VENV="$(realpath -m "${2:?--venv needs a directory}")"; shift 2 ;;
        --no-picamera2) PICAMERA2=0; shift ;;
        --service)
            SERVICE_MODEL="$(realpath -m "${2:?--service needs a model file}")"; shift 2
            if [[ $# -gt 0 && "$1" != --* ]]; then SERVICE_SOURCE="$1"; shift; fi ;;
        --args) SERVICE_ARGS="${2?--args needs a string}"; shift 2 ;;
        --token-file) TOKEN_FILE="${2:?--token-file needs a file}"; [[ -r "$TOKEN_FILE" ]] || die "cannot read $TOKEN_FILE"; shift 2 ;;
        --spec) SPEC="${2:?--spec needs a pip requirement}"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

[[ -n "$SERVICE_MODEL" && ! -f "$SERVICE_MODEL" ]] && die "model $SERVICE_MODEL does not exist; copy the .tflite (and its .json sidecar) here first"

step "system"
ARCH="$(uname -m)"
CODENAME="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-unknown}")"
echo "architecture $ARCH, OS $CODENAME, $(python3 --version)"
[[ "$ARCH" == "aarch64" ]] || echo "warning: not 64-bit ARM; ai-edge-litert publishes aarch64 and x86-64 wheels only, a 32-bit OS will not work"
[[ "$CODENAME" == "bookworm" ]] || echo "warning: written for Raspberry Pi OS bookworm; $CODENAME may differ"

step "apt packages (needs sudo)"
PKGS=(python3-venv python3-pip v4l-utils)
if [[ $PICAMERA2 == 1 ]]; then
    # picamera2 + libcamera bindings; rpicam-apps-lite gives rpicam-hello to test the camera.
    PKGS+=(python3-picamera2 rpicam-apps-lite)
fi
sudo apt-get update
sudo apt-get install -y --no-install-recommends "${PKGS[@]}"

step "virtual environment $VENV (--system-site-packages, for picamera2)"
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install "$SPEC"

if [[ $PICAMERA2 == 1 ]]; then
    step "picamera2 import check"
    if ! "$VENV/bin/python" -c "import picamera2" 2>/tmp/edgecifar-picamera2.err; then
        if grep -q "size changed" /tmp/edgecifar-picamera2.err; then
            echo "apt's simplejpeg does not match the venv's numpy; installing a matching simplejpeg into the venv"
            "$VENV/bin/python" -m pip install --force-reinstall simplejpeg
            "$VENV/bin/python" -c "import picamera2" || die "picamera2 still does not import; see above"
        else
            cat /tmp/edgecifar-picamera2.err >&2
            die "picamera2 does not import in the venv (is python3-picamera2 installed?)"
        fi
    fi
    echo "picamera2 imports"
fi

step "check: no TensorFlow, runtimes present"
"$VENV/bin/python" - <<'EOF'
import importlib.util, importlib.metadata as md
for dist in ("ai-edge-litert", "onnxruntime", "opencv-python-headless", "numpy"):
    try:
        print(f"  {dist} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"  {dist} not installed")
print("  tensorflow", "INSTALLED (not needed on the device)" if importlib.util.find_spec("tensorflow") else "absent (good)")
EOF
"$VENV/bin/edgecifar" run --help >/dev/null
echo "  edgecifar run: OK"

step "cameras"
v4l2-ctl --list-devices 2>/dev/null || echo "  no V4L2 device (USB webcam) found"
if [[ $PICAMERA2 == 1 ]]; then
    rpicam-hello --list-cameras 2>/dev/null || echo "  rpicam-hello found no CSI camera"
fi

if [[ -n "$SERVICE_MODEL" ]]; then
    step "systemd service"
    USER_NAME="$(id -un)"
    sed -e "s#^User=pi#User=$USER_NAME#" \
        -e "s#/home/pi/edgecifar/venv#$VENV#g" \
        -e "s#/home/pi/edgecifar#$REPO#g" \
        "$REPO/device/edgecifar.service" | sudo tee /etc/systemd/system/edgecifar.service >/dev/null
    TOKEN_LINE=""
    if [[ -n "$TOKEN_FILE" ]]; then
        TOKEN_LINE="EDGECIFAR_TOKEN=$(tr -d '[:space:]' < "$TOKEN_FILE")"
    fi
    # 0600, root-owned: the file may hold the live view's token (systemd reads it as root).
    printf 'EDGECIFAR_MODEL=%s\nEDGECIFAR_SOURCE=%s\nEDGECIFAR_ARGS=%s\n%s\n' "$SERVICE_MODEL" "$SERVICE_SOURCE" \
        "$SERVICE_ARGS" "$TOKEN_LINE" | sudo install -m 600 -o root -g root /dev/stdin /etc/default/edgecifar
    sudo usermod -aG video "$USER_NAME"
    if [[ -d /run/systemd/system ]]; then
        sudo systemctl daemon-reload
        sudo systemctl enable --now edgecifar.service
    else
        # chroot or SD-image build: no running systemd, so enable only; it starts at boot.
        sudo systemctl enable edgecifar.service
        echo "  systemd not running (chroot/image build): enabled, starts at boot"
    fi
    echo "  installed; follow it with: journalctl -u edgecifar -f"
fi

step "done"
echo "try: $VENV/bin/edgecifar run MODEL_int8.tflite --source picamera2:lores   (or --source 0 for a USB webcam)"

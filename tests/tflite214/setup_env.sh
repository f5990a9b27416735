#!/usr/bin/env bash
# Create, once, the separate environment with tflite-runtime 2.14 (the runtime many Raspberry Pis
# still have) that tests/test_tflite_runtime_compat.py runs exported models in.
# tflite-runtime 2.14 was built against numpy 1.x, so it cannot share the main numpy-2 environment.
# Reused while it works; rebuilt when missing or broken. Needs PyPI and a Python 3.8-3.11 (the
# versions tflite-runtime 2.14 ships wheels for).
#
#   bash tests/tflite214/setup_env.sh          # env at ${EDGECIFAR_TFLITE214_ENV:-~/.cache/edgecifar/tflite214-venv}
#   PYTHON=/path/to/python3.11 bash tests/tflite214/setup_env.sh
set -euo pipefail
ENV_DIR="${EDGECIFAR_TFLITE214_ENV:-$HOME/.cache/edgecifar/tflite214-venv}"
PY="${PYTHON:-python3}"
CHECK='import numpy, tflite_runtime; assert tflite_runtime.__version__.startswith("2.14."), tflite_runtime.__version__'

if [ -x "$ENV_DIR/bin/python" ] && "$ENV_DIR/bin/python" -c "$CHECK" 2>/dev/null; then
  exit 0
fi
if ! "$PY" -c 'import sys; sys.exit(not ((3, 8) <= sys.version_info[:2] <= (3, 11)))'; then
  echo "tflite-runtime 2.14 needs Python 3.8-3.11; $PY is $("$PY" -V 2>&1). Set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
echo "creating $ENV_DIR (tflite-runtime 2.14, numpy<2)"
rm -rf "$ENV_DIR"
mkdir -p "$(dirname "$ENV_DIR")"
"$PY" -m venv "$ENV_DIR"
"$ENV_DIR/bin/python" -m pip install -q --disable-pip-version-check "tflite-runtime==2.14.*" "numpy<2"
"$ENV_DIR/bin/python" -c "$CHECK"

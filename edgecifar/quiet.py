"""Keep native library noise off the user's terminal, so an error stays one line on every CPU.

TensorFlow prints, on CPUs where it turns oneDNN on (Intel Xeon; ``TF_ENABLE_ONEDNN_OPTS=1``
elsewhere), two lines per shared library at import time::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. You may see slightly different ...

They come from C++ before absl logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence
them. ``import_tensorflow()`` imports Keras/TensorFlow with file descriptor 2 diverted to a
temporary file and replays every line that is not known start-up noise: nothing real is hidden.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

# Native start-up lines that carry no information for the user (matched line by line).
STARTUP_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^I\d{4} [\d:.]+\s+\d+ port\.cc:\d+\] oneDNN custom operations are on\."),
    re.compile(r"^I\d{4} [\d:.]+\s+\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"),
    re.compile(r"^To enable the following instructions: .* in other operations, rebuild TensorFlow"),
    # LiteRT / tflite-runtime, on every interpreter that gets the default XNNPACK delegate.
    re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"),
)


def is_startup_noise(line: str) -> bool:
    return any(p.search(line) for p in STARTUP_NOISE)


def replay(text: str) -> None:
    """Print what a diverted stderr received, minus the known start-up noise."""
    kept = [line for line in text.splitlines() if line.strip() and not is_startup_noise(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


class LogReader:
    """Read back what a diverted file descriptor received."""

    def __init__(self, f):
        self.f = f

    def read(self) -> str:
        try:
            self.f.flush()
            self.f.seek(0)
            return self.f.read()
        except (OSError, ValueError):
            return ""


@contextlib.contextmanager
def native_stderr():
    """Divert fd 2 (C/C++ log lines) and Python warnings into a temporary file; yield a LogReader.

    stdout is left alone so progress still reaches the user. Callers decide what to replay.
    """
    log = tempfile.TemporaryFile(mode="w+")
    saved_err = None
    try:
        sys.stderr.flush()
        saved_err = os.dup(2)
        os.dup2(log.fileno(), 2)
    except OSError:  # no real fd 2 (some embedded interpreters): just run unquietened
        saved_err = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield LogReader(log)
    finally:
        if saved_err is not None:
            sys.stderr.flush()
            os.dup2(saved_err, 2)
            os.close(saved_err)
        log.close()


@contextlib.contextmanager
def python_logs(level=logging.ERROR):
    """tf2onnx and the ONNX quantizer log every rewrite at INFO/WARNING; keep only `level` and above."""
    loggers = [logging.getLogger(n) for n in ("tf2onnx", "root", "")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, levels):
            lg.setLevel(old)


def import_tensorflow() -> None:
    """Import Keras (and with it TensorFlow) once, dropping only the known start-up noise lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" in sys.modules:
        return
    with native_stderr() as log:
        try:
            import keras  # noqa: F401  (imports tensorflow when it is installed, whatever the backend)
        finally:
            text = log.read()
    replay(text)

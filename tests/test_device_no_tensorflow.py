"""The device side runs where TensorFlow cannot be imported: what a Raspberry Pi with `edgecifar[device]` has.

Each check runs in a fresh interpreter whose first act is to install a sys.meta_path finder that refuses
tensorflow, keras, tf2onnx and tf_keras (and their submodules), as if they were not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from .test_device_runner import export_artifacts

BLOCKED = ("tensorflow", "keras", "tf2onnx", "tf_keras")

PRELUDE = textwrap.dedent(f"""
    import importlib.abc, sys
    BLOCKED = {BLOCKED!r}

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked: the device must not need it", name=name)
            return None

    sys.meta_path.insert(0, NoTensorFlow())
""")


def _python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def test_the_blocker_really_blocks():
    res = _python("""
        for name in BLOCKED:
            try:
                __import__(name)
            except ImportError:
                continue
            raise SystemExit(f"{name} was importable")
        print("blocked")
    """)
    assert res.returncode == 0 and res.stdout.strip() == "blocked", res.stdout + res.stderr


def test_every_device_module_imports_without_tensorflow():
    res = _python("""
        import importlib, json, pkgutil
        import edgecifar.device as device
        names = sorted(m.name for m in pkgutil.iter_modules(device.__path__, "edgecifar.device."))
        for name in names:
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(json.dumps({"modules": names, "loaded": loaded}))
    """)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    expected = {"edgecifar.device." + m for m in ("cli", "metadata", "overlay", "preprocess", "frame_loop", "runtime",
                                                   "sources", "stats", "serve", "tflite_metadata")}
    assert expected <= set(out["modules"]), out["modules"]
    assert out["loaded"] == []


@pytest.mark.parametrize("fmt, runtime", [("tflite_int8", "litert"), ("onnx_int8", "onnxruntime")])
def test_edgecifar_run_works_without_tensorflow(fmt, runtime, tiny_run, cifar, tmp_path):
    import cv2

    model = export_artifacts(tiny_run)[fmt]
    for i, img in enumerate(cifar.test.images[:8]):
        cv2.imwrite(str(tmp_path / f"img_{i}.png"), img[..., ::-1])
    res = _python(f"""
        import sys
        from edgecifar.cli import main
        sys.argv = ["edgecifar", "run", {str(model)!r}, "--source", {str(tmp_path)!r}, "--json", "--top-k", "2"]
        try:
            main(sys.argv[1:])
        finally:
            leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
            print("LEAKED", leaked, file=sys.stderr)
    """)
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    assert [r["file"] for r in records] == [f"img_{i}.png" for i in range(8)]
    assert all(len(r["top"]) == 2 for r in records)
    assert f"model: {model.name}: {runtime} " in res.stderr  # the backend and its version are printed at start
    assert "LEAKED []" in res.stderr

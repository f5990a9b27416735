"""Every TFLite artifact the exporter writes loads and runs in tflite-runtime 2.14 (the Pi's
runtime, numpy<2, in its own environment) and in ai-edge-litert, with the same answers.

The 2.14 environment is created once by tests/tflite214/setup_env.sh (PyPI needed the first
time) and reused; its interpreter runs tests/tflite214/run_models.py in a subprocess.

Agreement, kernel by kernel:
  * built-in reference kernels (XNNPACK off): float32, float16 and int8 outputs are bit-identical
    between the two runtimes; dynamic-range differs slightly (see DYNAMIC_TOL);
  * default kernels (XNNPACK, what the device runs): XNNPACK versions differ, so int8 may differ
    by one quantization step and floats by float rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
SETUP = HERE / "tflite214" / "setup_env.sh"
RUNNER = HERE / "tflite214" / "run_models.py"
ENV_DIR = Path(os.environ.get("EDGECIFAR_TFLITE214_ENV") or Path.home() / ".cache" / "edgecifar" / "tflite214-venv")
TFLITE_FORMATS = ("tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8", "tflite_int8_full")
N_IMAGES = 200
FLOAT_TOL = 1e-5  # float rounding order between kernel builds, on probabilities in 0..1
# Dynamic-range ops quantize activations on the fly; 2.14's hybrid kernels round them slightly
# differently from LiteRT 2.x: measured max 3e-4 on this tiny model's probabilities, 9e-3 on the
# trained seed002_m1_cnn (sharper softmax), with identical top-1 on both.
DYNAMIC_TOL = 2e-2

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tflite214_python() -> Path:
    python = ENV_DIR / "bin" / "python"
    proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "EDGECIFAR_TFLITE214_ENV": str(ENV_DIR), "PYTHON": sys.executable})
    if proc.returncode != 0:
        pytest.fail(f"could not create the tflite-runtime 2.14 env at {ENV_DIR} (run {SETUP}):\n{proc.stderr[-2000:]}")
    return python


@pytest.fixture(scope="module")
def exported(tiny_run, data_dir, tmp_path_factory) -> dict[str, Path]:
    """The real exporter's TFLite artifacts for the tiny run, written once for this module."""
    from edgecifar.export import export_run

    out = tmp_path_factory.mktemp("compat_export")
    report = export_run(tiny_run, formats=",".join(TFLITE_FORMATS), calib_samples=100, check_samples=50,
                        data_dir=data_dir, out_dir=out, echo=lambda *_: None)
    paths = {a["format"]: Path(a["path"]) for a in report["artifacts"] if a.get("path")}
    missing = [f for f in TFLITE_FORMATS if f not in paths]
    assert not missing, f"exporter failed {missing}: {[a.get('reason') for a in report['artifacts']]}"
    return paths


@pytest.fixture(scope="module")
def images(cifar) -> np.ndarray:
    return cifar.test.images[:N_IMAGES]


def run_214(python: Path, models: list[Path], images: np.ndarray, tmp_path: Path, reference_kernels: bool) -> dict:
    npy, out = tmp_path / "images.npy", tmp_path / "out.npz"
    np.save(npy, images)
    args = [str(python), str(RUNNER), *(["--reference-kernels"] if reference_kernels else []), str(npy), str(out),
            *map(str, models)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(out) as z:
        assert str(z["tflite_runtime_version"]).startswith("2.14."), str(z["tflite_runtime_version"])
        return {k: z[k] for k in z.files}


def run_litert(model: Path, images: np.ndarray, reference_kernels: bool) -> np.ndarray:
    """Same feeding as run_models.py, in ai-edge-litert (the main environment's runtime)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if reference_kernels else OpResolverType.AUTO
    interp = Interpreter(model_path=str(model), num_threads=1, experimental_op_resolver_type=resolver)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(images.shape))
    interp.allocate_tensors()
    dtype = np.dtype(inp["dtype"])
    if dtype.kind == "f":
        x = images.astype(dtype)
    else:
        scale, zero = inp["quantization"]
        info = np.iinfo(dtype)
        x = np.clip(np.round(images.astype(np.float32) / scale + zero), info.min, info.max).astype(dtype)
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).copy()


@pytest.mark.parametrize("reference_kernels", [True, False], ids=["reference-kernels", "default-xnnpack"])
def test_every_tflite_artifact_runs_the_same_in_tflite_runtime_214_and_litert(
        exported, images, tflite214_python, tmp_path, reference_kernels):
    formats = list(TFLITE_FORMATS)
    results = run_214(tflite214_python, [exported[f] for f in formats], images, tmp_path, reference_kernels)
    errors = {formats[int(k.split("_")[1])]: str(v) for k, v in results.items() if k.startswith("error_")}
    assert not errors, f"tflite-runtime 2.14 cannot run: {errors}"
    for i, fmt in enumerate(formats):
        old, new = results[str(i)], run_litert(exported[fmt], images, reference_kernels)
        assert old.shape == new.shape == (len(images), 10) and old.dtype == new.dtype, fmt
        if fmt == "tflite_int8":  # int8 body, float head: float logits out
            assert old.dtype == np.float32
            rel = float((np.abs(old - new) / (1 + np.abs(new))).max())
            if reference_kernels:  # same integer body, same float head kernel: float rounding at most
                assert rel <= FLOAT_TOL, f"float-head logits differ by {rel:.3g} (relative) between runtimes"
            else:  # one int8 step inside the body moves the float logits a little; top-1 must still agree
                agree = float(np.mean(old.argmax(1) == new.argmax(1)))
                assert agree >= 0.99, f"{fmt}: top-1 agreement {agree:.3f} between runtimes"
                continue
        elif fmt == "tflite_int8_full":
            assert old.dtype == np.uint8
            step = np.abs(old.astype(int) - new.astype(int))
            if reference_kernels:
                assert step.max() == 0, f"int8 outputs differ on {int((step > 0).sum())} values"
            else:
                # XNNPACK builds round differently; one step can still swap near-tied classes, so
                # top-1 is only compared where the kernels are the same (reference kernels).
                assert step.max() <= 1, f"int8 outputs differ by up to {step.max()} quantization steps"
                continue
        else:
            diff = float(np.abs(old - new).max())
            tol = DYNAMIC_TOL if fmt == "tflite_dynamic" else FLOAT_TOL
            assert diff <= tol, f"{fmt}: max |diff| {diff:.3g} between runtimes (tolerance {tol:g})"
        agree = float(np.mean(old.argmax(1) == new.argmax(1)))
        assert agree >= 0.99, f"{fmt}: top-1 agreement {agree:.3f} between runtimes"


def test_dynamic_range_needs_the_compat_setting(tiny_run, tflite214_python, tmp_path, images):
    """Negative control: TF's default dynamic-range conversion emits FULLY_CONNECTED v12, which 2.14
    refuses; compat.tflite214_converter_settings gives v9, which it runs. If a TF upgrade changes
    either side, this test says so."""
    import keras
    import tensorflow as tf

    from edgecifar.export.compat import tflite214_converter_settings, tflite_op_versions

    model = keras.models.load_model(tiny_run / "model.keras", compile=False)
    saved = tmp_path / "saved_model"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    paths = {}
    for name, compat in (("default", False), ("compat", True)):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if compat:
            assert tflite214_converter_settings(conv, "dynamic")
        paths[name] = tmp_path / f"dynamic_{name}.tflite"
        paths[name].write_bytes(conv.convert())
    assert tflite_op_versions(paths["default"])["FULLY_CONNECTED"] == 12
    assert tflite_op_versions(paths["compat"])["FULLY_CONNECTED"] < 12
    results = run_214(tflite214_python, [paths["default"], paths["compat"]], images[:8], tmp_path, False)
    assert "FULLY_CONNECTED" in str(results.get("error_0")) and "version '12'" in str(results.get("error_0"))
    assert "1" in results and np.isfinite(results["1"]).all()


def test_runner_warns_about_dynamic_range_on_tflite_runtime_only(exported, monkeypatch):
    """tflite-runtime's dynamic-range kernels give different results on ARM and x86 (device/check_arm64.sh):
    the Classifier says so (the runner prints it) for that pair alone, judging by the model's own tensors."""
    from ai_edge_litert.interpreter import Interpreter

    from edgecifar.device import runtime

    for fmt in TFLITE_FORMATS:
        clf = runtime.Classifier(exported[fmt], backend="litert")
        assert clf._is_dynamic_range() == (fmt == "tflite_dynamic"), fmt
        assert clf.caveat is None, fmt
    # The same models opened as tflite_runtime would be (its Interpreter has LiteRT's interface).
    monkeypatch.setattr(runtime, "tflite_interpreter_class", lambda backend: (Interpreter, "tflite_runtime", "2.14.0"))
    for fmt in TFLITE_FORMATS:
        clf = runtime.Classifier(exported[fmt], backend="tflite_runtime")
        assert clf.caveat == (runtime.DYNAMIC_RANGE_ON_TFLITE_RUNTIME if fmt == "tflite_dynamic" else None), fmt

"""`edgecifar export` on the tiny run: every format, integer-only int8, metadata, bad inputs, latest run, --max-drop.

Each test works on its own copy of the tiny run (model.keras + manifest.json) so exports of
other tests never mix with these. Checks use 500 stratified test images, calibration 200.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cli_argv, run_cli

CHECK = ["--check-samples", "500", "--calib-samples", "200"]
TFLITE = ("tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8", "tflite_int8_full")
ONNX = ("onnx_float32", "onnx_int8")
NAMES = {
    "tflite_float32": "seed002_m1_cnn_float32.tflite",
    "tflite_float16": "seed002_m1_cnn_float16.tflite",
    "tflite_dynamic": "seed002_m1_cnn_dynamic.tflite",
    "tflite_int8": "seed002_m1_cnn_int8.tflite",
    "tflite_int8_full": "seed002_m1_cnn_int8_full.tflite",
    "onnx_float32": "seed002_m1_cnn_float32.onnx",
    "onnx_int8": "seed002_m1_cnn_int8.onnx",
}


def copy_run(src: Path, runs_dir: Path, name: str | None = None) -> Path:
    dst = runs_dir / (name or src.name)
    dst.mkdir(parents=True)
    for f in ("model.keras", "manifest.json"):
        shutil.copy2(src / f, dst / f)
    return dst


@pytest.fixture(scope="module")
def full_export(tiny_run, tmp_path_factory):
    """One export of every format (the default ones and the fully integer TFLite); (run dir, completed process, report)."""
    run = copy_run(tiny_run, tmp_path_factory.mktemp("full"))
    proc = run_cli("export", run, *CHECK, "--formats", ",".join(NAMES))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((run / "export" / "export_report.json").read_text())
    return run, proc, report


def interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    return interp


def assert_integer_only(path, io_dtype):
    """Every tensor integer; int32 only as bias or shape arithmetic; no DEQUANTIZE; QUANTIZE only at the I/O boundary."""
    interp = interpreter(path)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert np.dtype(inp["dtype"]) == np.dtype(io_dtype) and np.dtype(out["dtype"]) == np.dtype(io_dtype)

    floats = [t["name"] for t in tensors.values() if np.dtype(t["dtype"]).kind == "f"]
    assert not floats, f"float tensors in the int8 model: {floats}"
    names = [op["op_name"] for op in ops]
    assert "DEQUANTIZE" not in names, names
    allowed_int32 = set()
    for op in ops:
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op["inputs"]) > 2:
            allowed_int32.add(op["inputs"][2])  # bias
        if op["op_name"] in ("SHAPE", "STRIDED_SLICE", "PACK"):
            allowed_int32.update(i for i in (*op["inputs"], *op["outputs"]) if i >= 0)
        if op["op_name"] == "RESHAPE" and len(op["inputs"]) > 1:
            allowed_int32.add(op["inputs"][1])  # target shape
        if op["op_name"] == "QUANTIZE":
            # uint8 <-> int8 requantization of the model input or output, nothing else.
            touches_io = inp["index"] in op["inputs"] or out["index"] in op["outputs"]
            assert touches_io, f"QUANTIZE inside the graph: {op}"
            for i in (*op["inputs"], *op["outputs"]):
                assert np.dtype(tensors[i]["dtype"]).kind in "iu"
    stray = [t["name"] for i, t in tensors.items() if np.dtype(t["dtype"]) == np.int32 and i not in allowed_int32]
    assert not stray, f"int32 tensors that are neither bias nor shape: {stray}"
    other = {np.dtype(t["dtype"]).name for t in tensors.values()} - {"int8", "uint8", "int32"}
    assert not other, other
    return interp


# --- the happy path -----------------------------------------------------------------------


def test_export_writes_every_format_and_the_report(full_export):
    run, proc, report = full_export
    out = run / "export"
    for fmt, name in NAMES.items():
        assert (out / name).is_file(), f"{fmt}: {name} missing"
    for fmt in TFLITE:
        assert (out / (NAMES[fmt] + ".json")).is_file()
    assert "```\nedgecifar export " in (out / "export_report.md").read_text()[:200]  # the exact command, at the top
    assert [a["format"] for a in report["artifacts"]] == [*TFLITE, *ONNX]
    by_fmt = {a["format"]: a for a in report["artifacts"]}
    for fmt, a in by_fmt.items():
        assert a["status"] in ("passed", "accuracy drop above budget"), (fmt, a)
        assert a["samples"] == 500 and 0 <= a["accuracy"] <= 1 and a["size_bytes"] == (out / NAMES[fmt]).stat().st_size
    # Float32 artifacts are the Keras model: same top-1 decisions.
    assert by_fmt["tflite_float32"]["agreement"] == 1.0 and by_fmt["onnx_float32"]["agreement"] == 1.0
    # Quantized artifacts are smaller.
    assert by_fmt["tflite_int8"]["size_bytes"] < by_fmt["tflite_float32"]["size_bytes"] / 3
    assert by_fmt["onnx_int8"]["size_bytes"] < by_fmt["onnx_float32"]["size_bytes"] / 3
    for fmt in ("tflite_int8", "tflite_int8_full", "onnx_int8"):  # int8 is converted from the copy with centred logits
        assert "mean over classes" in by_fmt[fmt]["conversion"]["logits"]
    assert report["check"]["samples"] == 500 and "stratified" in report["check"]["selection"]
    assert report["budgets_pp"]["tflite_int8"] == 1.0 and report["budgets_pp"]["tflite_float16"] == 0.1
    cal = report["calibration"]
    assert cal["split"] == "train" and cal["samples"] == 200 and cal["per_class_counts"] == [20] * 10
    # Progress and the next steps are printed; the converter's own chatter is not.
    for text in ("calibrating: 200/200", "checking tflite_int8: 500/500", "next:", "edgecifar run", "edgecifar benchmark"):
        assert text in proc.stdout
    assert "Saved artifact" not in proc.stdout and not list(out.glob(".*"))


def test_int8_full_tflite_is_integer_only_with_uint8_io(full_export):
    run, _, _ = full_export
    interp = assert_integer_only(run / "export" / NAMES["tflite_int8_full"], "uint8")
    scale, zero = interp.get_input_details()[0]["quantization"]
    assert (scale, zero) == (1.0, 0), "calibration spans 0..255, so uint8 pixels should pass through unchanged"


def test_default_int8_tflite_has_an_int8_body_and_a_float_head_without_ties(full_export):
    """uint8 pixels in (scale 1), every op integer except DEQUANTIZE → FULLY_CONNECTED at the end, float logits out."""
    run, _, report = full_export
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(run / "export" / NAMES["tflite_int8"]))  # not allocated: ops before delegation
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert np.dtype(inp["dtype"]) == np.uint8 and inp["quantization"] == (1.0, 0)
    assert np.dtype(out["dtype"]) == np.float32
    ops = [op["op_name"] for op in interp._get_ops_details()]
    assert ops[-2:] == ["DEQUANTIZE", "FULLY_CONNECTED"], ops
    body = interp._get_ops_details()[:-2]
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    assert all(dtypes[i].kind in "iu" for op in body for i in op["outputs"] if i >= 0), "a float op inside the int8 body"
    by_fmt = {a["format"]: a for a in report["artifacts"]}
    assert by_fmt["tflite_int8"]["top1_ties"] == 0  # float logits cannot tie on a grid
    assert by_fmt["tflite_int8"]["size_bytes"] < 1.1 * by_fmt["tflite_int8_full"]["size_bytes"]


def test_int8_io_option(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    proc = run_cli("export", run, "--formats", "tflite_int8_full", "--io", "int8", "--check-samples", "200", "--calib-samples", "100")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (run / "export").iterdir()) == sorted(
        [NAMES["tflite_int8_full"], NAMES["tflite_int8_full"] + ".json", "export_report.json", "export_report.md"])
    interp = assert_integer_only(run / "export" / NAMES["tflite_int8_full"], "int8")
    assert interp.get_input_details()[0]["quantization"] == (1.0, -128)


def test_metadata_round_trips(full_export):
    from edgecifar.device import metadata
    from edgecifar.files import sha256_file

    run, _, report = full_export
    model_sha = sha256_file(run / "model.keras")
    manifest = json.loads((run / "manifest.json").read_text())
    for fmt, name in NAMES.items():
        path = run / "export" / name
        meta = metadata.read(path)
        assert meta["format"] == fmt and meta["model"] == "seed002_m1_cnn"
        assert meta["class_names"] == manifest["class_names"]
        assert meta["source_model"]["sha256"] == model_sha
        assert (meta["input"]["height"], meta["input"]["width"], meta["input"]["channels"]) == (32, 32, 3)
        assert meta["input"]["layout"] == "NHWC" and meta["input"]["color_order"] == "RGB"
        assert meta["tool"]["tensorflow-cpu"] and meta["tool"]["edgecifar"]
        if "int8" in fmt:
            assert meta["calibration"] == report["calibration"]
        else:
            assert meta["calibration"] is None
        assert meta["output"]["kind"] == ("logits" if "int8" in fmt else "probabilities")
        if fmt.startswith("tflite_"):
            interp = interpreter(path)
            for side, detail in (("input", interp.get_input_details()[0]), ("output", interp.get_output_details()[0])):
                assert meta[side]["dtype"] == np.dtype(detail["dtype"]).name
                q = meta[side]["quantization"]
                if np.dtype(detail["dtype"]).kind in "iu":
                    assert (q["scale"], q["zero_point"]) == pytest.approx(detail["quantization"])
                else:
                    assert q is None and detail["dtype"] == np.float32


def test_int8_artifacts_output_logits_and_the_classifier_returns_probabilities(full_export, cifar, tmp_path):
    """int8 artifacts end at the final Dense (no quantized softmax); Classifier applies the softmax in float."""
    from edgecifar.device import metadata
    from edgecifar.device.runtime import Classifier

    run, _, _ = full_export
    ops = [op["op_name"] for op in interpreter(run / "export" / NAMES["tflite_int8"])._get_ops_details()]
    assert ops[-1] != "SOFTMAX" and "SOFTMAX" not in ops, ops
    assert metadata.read(run / "export" / NAMES["onnx_int8"])["quantization"]["float_logits"] is True
    images = cifar.test.images[:200]
    for fmt in ("tflite_int8", "tflite_int8_full", "onnx_int8"):
        clf = Classifier(run / "export" / NAMES[fmt])
        assert clf.output_kind == "logits"
        logits = clf.infer(clf.quantize_input(images)).astype(np.float32)
        probs = clf.predict(images)
        assert probs.dtype == np.float32 and probs.min() >= 0
        np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
        assert np.array_equal(probs.argmax(1), logits.argmax(1))  # softmax keeps the order of the raw output
    assert Classifier(run / "export" / NAMES["tflite_float32"]).output_kind == "probabilities"



def test_tflite_carries_its_metadata_so_the_sidecar_is_optional(full_export, cifar, tmp_path):
    """A .tflite copied without its .json classifies exactly like the original (metadata inside the file)."""
    from edgecifar.device import metadata
    from edgecifar.device.runtime import Classifier
    from edgecifar.device.tflite_metadata import read_entry

    run, _, _ = full_export
    images = cifar.test.images[:300]
    for fmt in TFLITE:
        original = run / "export" / NAMES[fmt]
        assert json.loads(read_entry(original)) == json.loads(metadata.sidecar_path(original).read_text())
        bare = tmp_path / original.name
        shutil.copy2(original, bare)
        assert not metadata.sidecar_path(bare).exists()
        with_sidecar, without = Classifier(original), Classifier(bare)
        assert without.meta == with_sidecar.meta and without.class_names == with_sidecar.class_names
        assert without.output_kind == with_sidecar.output_kind
        np.testing.assert_array_equal(without.predict(images), with_sidecar.predict(images))


def test_a_foreign_tflite_without_metadata_is_refused_in_one_line(full_export, tmp_path):
    """No edgecifar metadata and a quantized output: its numbers are not probabilities, so refuse (exit 2)."""
    from edgecifar.quiet import import_tensorflow

    import_tensorflow()
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    run, _, _ = full_export
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray((run / "export" / NAMES["tflite_int8_full"]).read_bytes()))
    model.metadata = [m for m in model.metadata if m.name not in (b"edgecifar", "edgecifar")]
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    assert isinstance(model, schema.ModelT)
    import cv2

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "cat.png"), np.full((32, 32, 3), 120, np.uint8))
    proc = run_cli("run", foreign, "--source", photos)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "no edgecifar metadata" in err[0] and "Traceback" not in proc.stderr
    # The user may still state the contract: then it runs.
    names = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck"
    ok = run_cli("run", foreign, "--source", photos, "--classes", names, "--output-kind", "logits")
    assert ok.returncode == 0 and "cat.png: " in ok.stdout, ok.stderr


# --- a failed re-export keeps what was there -------------------------------------------------


def test_failed_reexport_keeps_the_earlier_artifact_and_says_so(tiny_run, tmp_path):
    """The new file is built and checked under a staged name; a failure leaves the old bytes and sidecar untouched."""
    from edgecifar.export import staged_path
    from edgecifar.files import sha256_file

    run = copy_run(tiny_run, tmp_path)
    args = ("export", run, "--formats", "tflite_float32", "--check-samples", "100")
    assert run_cli(*args).returncode == 0
    good = run / "export" / NAMES["tflite_float32"]
    sidecar = good.with_name(good.name + ".json")
    before = (sha256_file(good), sidecar.read_text())
    report = json.loads((run / "export" / "export_report.json").read_text())
    assert report["artifacts"][0]["sha256"] == before[0]  # the report names the bytes it checked
    staged_path(good).mkdir()  # the staged file cannot be written: this re-export fails
    proc = run_cli(*args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "1 format(s) failed: tflite_float32" in proc.stderr
    assert (sha256_file(good), sidecar.read_text()) == before
    row = json.loads((run / "export" / "export_report.json").read_text())["artifacts"][0]
    assert row["status"] == "failed" and row["path"] is None and row["previous_artifact_kept"] == str(good)
    leftovers = [p.name for p in (run / "export").iterdir() if p.name.startswith(".") and p != staged_path(good)]
    assert not leftovers, leftovers


def test_a_terminated_export_removes_its_staged_file_and_keeps_the_earlier_artifact(tiny_run, tmp_path):
    """SIGTERM (kill, a session ending) while a new artifact is checked under its staged name: the staged file and
    sidecar go, the earlier artifact stays byte for byte, one line, exit status 128 + 15."""
    import signal
    import subprocess
    import time

    from edgecifar.export import staged_path
    from edgecifar.files import sha256_file

    run = copy_run(tiny_run, tmp_path)
    args = ("export", run, "--formats", "tflite_float32")  # checked on all 10,000 images: seconds under a staged name
    assert run_cli(*args, "--check-samples", "100").returncode == 0
    good = run / "export" / NAMES["tflite_float32"]
    before = (sha256_file(good), good.with_name(good.name + ".json").read_text())
    proc = subprocess.Popen(cli_argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not staged_path(good).with_name(staged_path(good).name + ".json").exists():  # written with the file
        assert proc.poll() is None and time.monotonic() < deadline, "the export ended before its staged file appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.strip() == "edgecifar: interrupted" and "Traceback" not in err
    assert (sha256_file(good), good.with_name(good.name + ".json").read_text()) == before
    assert not [p.name for p in (run / "export").iterdir() if p.name.startswith(".")]


def test_disk_full_export_is_one_line_and_leaves_no_partial_file(tiny_run, tmp_path, small_tmpfs):
    """A float32 TFLite (~700 KiB) cannot fit in 256 KiB: the format fails cleanly, no half-written file remains."""
    run = copy_run(tiny_run, tmp_path / "runs")
    proc = run_cli("export", run, "--formats", "tflite_float32", "--samples", "100", "--out", small_tmpfs)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode in (1, 2) and len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "failed" in err[0] or "cannot write" in err[0]
    leftovers = [p.name for p in small_tmpfs.iterdir() if p.suffix in (".tflite", ".tmp") or p.name.startswith(".")]
    assert not leftovers, leftovers


# --- bad input: one line, exit 2, nothing left behind --------------------------------------


def _dense_model(path: Path):
    import keras

    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(10, activation="softmax")])
    model.save(path)


BAD = {  # case -> what the one-line error must say
    "missing run": "does not exist",
    "not a keras model": "not a loadable Keras model",
    "not an image model": "not an image tensor",
    "calibration set empty": "--calib-samples 0",
    "calibration set too big": "more than the 50000 training images",
    "unwritable output": "cannot write",
    "unknown format": "unknown format(s) tflite_int4",
}


def _bad_case(case: str, run: Path) -> tuple[Path, list[str]]:
    """Prepare `case` in the copied run; return (RUN argument, extra options)."""
    if case == "missing run":
        return run.parent / "no-such-run", []
    if case == "not a keras model":
        (run / "model.keras").write_text("not a model")
    elif case == "not an image model":
        _dense_model(run / "model.keras")
    elif case == "calibration set empty":
        return run, ["--calib-samples", "0"]
    elif case == "calibration set too big":
        return run, ["--calib-samples", "50001"]
    elif case == "unknown format":
        return run, ["--formats", "tflite_int8,tflite_int4"]
    elif case == "unwritable output":
        (run / "export").write_text("a file where the output folder should be")
    return run, []


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "runs")
    expected = BAD[case]
    target, extra = _bad_case(case, run)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = run_cli("export", target, *extra, "--check-samples", "100")
    assert proc.returncode == 2, (proc.stdout[-1000:], proc.stderr[-1000:])
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgecifar: error: ") and expected in err[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no artifact, no temp file


# --- latest run, --max-drop ----------------------------------------------------------------


def test_no_run_argument_exports_the_latest_run(tiny_run, tmp_path):
    runs_dir = tmp_path / "runs"
    older = copy_run(tiny_run, runs_dir, "seed002_m1_cnn-20990101-000000")
    newer = copy_run(tiny_run, runs_dir, "seed002_m1_cnn-20990101-000001")
    t = (older / "manifest.json").stat().st_mtime
    os.utime(older / "manifest.json", (t - 100, t - 100))
    proc = run_cli("export", "--int8", "--check-samples", "200", "--calib-samples", "100", env={"EDGECIFAR_RUNS": str(runs_dir)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (older / "export").exists()
    written = sorted(p.name for p in (newer / "export").glob("seed002_m1_cnn_*") if not p.name.endswith(".json"))
    assert written == sorted([NAMES["tflite_int8"], NAMES["onnx_int8"]])


def test_max_drop_fails_the_command_when_int8_loses_more(full_export, tiny_run, tmp_path):
    """Thresholds set around the int8 drop this very export measures, so both outcomes are real."""
    _, _, report = full_export
    drop = -next(a for a in report["artifacts"] if a["format"] == "tflite_int8")["delta_pp"]
    run = copy_run(tiny_run, tmp_path)
    args = ("export", run, "--formats", "tflite_int8", *CHECK)
    strict = run_cli(*args, "--max-drop", f"{drop - 0.5:.2f}")
    assert strict.returncode == 1, strict.stdout[-1500:]
    assert "--max-drop" in strict.stdout and "exceeded by: tflite_int8" in strict.stdout
    result = json.loads((run / "export" / "export_report.json").read_text())
    assert result["max_drop"]["exceeded"] == ["tflite_int8"]
    lenient = run_cli(*args, "--max-drop", f"{drop + 0.5:.2f}")
    assert lenient.returncode == 0, lenient.stdout[-1500:]


# --- calibration set (no TensorFlow) -------------------------------------------------------


def test_calibration_set_is_stratified_reproducible_and_described():
    from edgecifar.data import Split
    from edgecifar.errors import UserError
    from edgecifar.export.calibration import CalibrationSet, onnx_reader, validate_count

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 30)
    split = Split(rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8), labels)
    a = CalibrationSet.from_training_split(split, 55, seed=3)
    b = CalibrationSet.from_training_split(split, 55, seed=3)
    assert np.array_equal(a.indices, b.indices) and len(a) == 55
    d = a.describe()
    assert d["split"] == "train" and d["per_class_counts"] == [6] * 5 + [5] * 5 and d["indices_sha256"] == b.describe()["indices_sha256"]
    batches = list(a.tflite_representative_dataset())
    assert len(batches) == 55 and batches[0][0].dtype == np.float32 and batches[0][0].shape == (1, 32, 32, 3)
    assert np.array_equal(batches[7][0][0], split.images[a.indices[7]].astype(np.float32))  # raw 0..255, unscaled
    reader = onnx_reader(a.images, "pixels", batch_size=10)
    fed = []
    while (item := reader.get_next()) is not None:
        fed.append(item["pixels"])
    assert np.array_equal(np.concatenate(fed), np.concatenate([x[0] for x in batches]))
    warnings = []
    validate_count(50, 300, warnings.append)
    assert warnings and "50" in warnings[0]
    for n in (0, 9, 301):
        with pytest.raises(UserError):
            validate_count(n, 300)


# --- report formatting (no TensorFlow) ----------------------------------------------------


def test_committed_export_reports_rerender_identically():
    """export_report.md is rendered from export_report.json alone: the committed pairs agree byte for byte."""
    from edgecifar.export import report

    found = sorted((Path(__file__).resolve().parents[1] / "export" / "reports").glob("*/export_report.json"))
    assert found
    for path in found:
        assert report.markdown(json.loads(path.read_text())) == path.with_suffix(".md").read_text(), path


def test_one_size_formatter_and_one_json_sanitiser(tmp_path):
    from edgecifar.files import dumps, human_size, write_json

    assert [human_size(n) for n in (None, 201728, (1 << 20) - 1, 2453000)] == ["-", "197 KiB", "1024 KiB", "2.34 MiB"]
    assert human_size(2485624, "KiB") == "2427 KiB" and human_size(-1536, "KiB", "+.1f") == "-1.5 KiB"
    value = {"a": float("nan"), "b": np.float32("inf"), "c": np.array([1.0, np.nan]), "d": (1, float("-inf")), "p": tmp_path}
    expected = {"a": None, "b": None, "c": [1.0, None], "d": [1, None], "p": str(tmp_path)}
    assert json.loads(dumps(value)) == expected
    write_json(tmp_path / "x.json", value)
    assert json.loads((tmp_path / "x.json").read_text()) == expected and "NaN" not in (tmp_path / "x.json").read_text()


# --- logits for int8 (in process, tiny Keras models) ---------------------------------------


def _softmax_model(style: str):
    """The zoo's three head styles on a 6-feature input, with every logit far below zero (as training leaves them)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    if style == "activation":
        outputs = keras.layers.Activation("softmax", name="probs")(keras.layers.Dense(10, name="head")(inputs))
    elif style == "dense":
        outputs = keras.layers.Dense(10, activation="softmax", name="head")(inputs)
    else:  # transfer: the head is a nested Model ending in Dense softmax
        feats = keras.Input((4,))
        head = keras.Model(feats, keras.layers.Dense(10, activation="softmax", name="probs")(feats), name="head")
        outputs = head(keras.layers.Dense(4, activation="relu", name="features")(inputs))
    model = keras.Model(inputs, outputs)
    dense = model.get_layer("head") if style != "nested" else model.get_layer("head").get_layer("probs")
    w, b = dense.get_weights()
    dense.set_weights([w - 3.0, b - 40.0])
    return model, dense


@pytest.mark.parametrize("style", ["activation", "dense", "nested"])
def test_logits_copy_outputs_centred_logits_of_the_same_probabilities(style):
    from edgecifar.device.runtime import softmax
    from edgecifar.export.logits import logits_copy

    model, dense = _softmax_model(style)
    bias_before = dense.get_weights()[1].copy()
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    copy, how = logits_copy(model)
    assert copy is not None and "softmax removed" in how and "head" in how
    logits = copy.predict(x, verbose=0)
    assert logits.shape == (64, 10)
    assert (logits < 0).any() and (logits > 0).any()  # not probabilities: the softmax is gone
    np.testing.assert_allclose(logits.mean(axis=1), 0, atol=1e-4)  # centred: no common offset for int8 to cover
    np.testing.assert_allclose(softmax(logits), model.predict(x, verbose=0), atol=1e-5)
    assert np.array_equal(dense.get_weights()[1], bias_before)  # the original is untouched


def test_logits_are_skipped_for_models_without_a_softmax_head():
    import keras

    from edgecifar.export.logits import logits_copy

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")])
    copy, how = logits_copy(model)
    assert copy is None and how.startswith("not applied")


def test_tflite_kernels_script_runs_every_kernel_set(full_export, tmp_path):
    """benchmarks/tflite_kernels.py on the exported tiny run: one row per kernel set, measured against Keras;
    a folder that is not a run gets a one-line error and exit 2."""
    import subprocess
    import sys

    from edgecifar.device.runtime import KERNELS

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "tflite_kernels.py"
    run, _, report = full_export
    out = tmp_path / "kernels.md"
    res = subprocess.run([sys.executable, str(script), str(run), "--out", str(out), "--samples", "300"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["kernels"] for r in rows] == list(KERNELS)
    assert rows[0]["differs_from_xnnpack"] == 0
    assert all(0.0 < r["agreement"] <= 1.0 and 0.0 < r["top1"] < 1.0 for r in rows)
    assert "--samples 300" in out.read_text() and "300 test images" in out.read_text()
    bad = subprocess.run([sys.executable, str(script), str(tmp_path), "--out", str(tmp_path / "x.md")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "not a run directory" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.md").exists()


def test_opencv_weight_bits_script_refuses_a_folder_without_a_model(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "opencv_weight_bits.py"
    bad = subprocess.run([sys.executable, str(script), str(tmp_path), "--out", str(tmp_path / "x.md")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "has no model.keras" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.md").exists()


def test_opencv_weight_bits_script_compares_both_weight_widths(tiny_run, tmp_path):
    """On the tiny run: one row per weight width, OpenCV (SIMD off) agreeing with the graph's own arithmetic."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "opencv_weight_bits.py"
    out = tmp_path / "bits.md"
    res = subprocess.run([sys.executable, str(script), str(tiny_run), "--out", str(out), "--samples", "200",
                          "--calib", "100"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["weight_bits"] for r in rows] == [8, 7] and "--samples 200 --calib 100" in out.read_text()
    assert all(198 <= r["opencv_simd_off"] <= 200 and 0 <= r["opencv_optimized"] <= 200 for r in rows), rows


def test_onnx_readers_script_refuses_a_missing_file(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "onnx_readers.py"
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "gone.onnx"), "--out", str(tmp_path / "x.md")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.md").exists()

"""export_run: one trained run to every chosen format, calibrated, metadata-tagged and checked.

Order of work: validate every input first (nothing is written for a bad one), then per format
convert → write at a staged name with metadata → check in the device runtime against Keras →
rename over the old artifact. One format failing is recorded in the report and does not stop the
others, and never removes an earlier good artifact.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .. import defaults
from ..device import metadata as meta_io
from ..errors import UserError
from ..files import ensure_writable_dir, fsync, scratch_dir, sha256_file
from ..quiet import import_tensorflow
from . import fallback
from .formats import INT8_FORMATS, artifact_name, select_formats


def export_run(run_dir=None, formats=None, calib_samples: int = defaults.CALIB_SAMPLES, check_samples: int | None = None,
               data_dir=None, io_dtype: str = "uint8", opset: int = defaults.ONNX_OPSET, per_channel: bool = True, calib_method: str = "minmax",
               max_drop: float | None = None, debug_quant: bool = False, echo=print, *, runs_dir=None, out_dir=None,
               command: str | None = None, accuracy_aware: bool = True, qat_epochs: int | str = "auto",
               calib_augment: str = "auto", bias_correction: bool = False) -> dict:
    """Export RUN (default: the latest finished run) and return the report (also saved beside the artifacts).

    report["max_drop"]["exceeded"] lists int8 formats that lost more than `max_drop` pp (or failed).
    accuracy_aware: an int8 artifact that misses the int8 target keeps its most sensitive layers in
    float (export/fallback.py; needs a check set of at least 1,000 images).
    qat_epochs: before the int8 conversions, fine-tune the int8 source model that many epochs with int8
    simulated (edgecifar/qat.py); every artifact is still checked against the original model. "auto" (the
    default): only when an int8 artifact still misses its target after the accuracy-aware search, and then
    defaults.QAT_AUTO_EPOCHS epochs for the formats that missed, keeping whichever artifact is better (`_auto_qat`).
    0: never.
    bias_correction: before that, put back the per-channel mean output shift that int8 weight rounding
    causes, measured on the calibration images (edgecifar/export/bias_correction.py).
    calib_augment: "auto" calibrates on the images as the run was trained (camera-degraded at the
    run's rate for `--augment camera` runs, else as stored); "camera" always degrades them (at the
    run's rate, else 1); "none" never does (edgecifar.export.calibration.CalibrationSet.camera_augmented).
    """
    from .. import runs
    from . import report as reporting

    t_start = time.perf_counter()
    fmts = select_formats(formats)
    auto_qat = qat_epochs == "auto"
    if auto_qat:
        qat_epochs = 0
    elif isinstance(qat_epochs, bool) or not isinstance(qat_epochs, int) or qat_epochs < 0:
        raise UserError(f"--qat {qat_epochs!r}: pass a number of epochs (0 = never) or auto")
    needs_calib = _check_options(fmts, io_dtype, calib_method, check_samples, opset, calib_samples, qat_epochs, per_channel,
                                 bias_correction)
    if calib_augment not in CALIB_AUGMENT:
        raise UserError(f"unknown calibration augmentation {calib_augment!r}; choose from {', '.join(CALIB_AUGMENT)}")

    # 1. The source model.
    src = load_source(run_dir, runs_dir)
    echo(f"model: {src.name} from {src.model_path} (input {src.input_shape}, {len(fmts)} format(s): {', '.join(fmts)})")
    if qat_epochs:  # before any data loads or any old report goes
        _check_qat(src.keras_model)

    # 2. Data: the test split judges, the training split calibrates.
    ds, calib = _load_data(data_dir, needs_calib, calib_samples, echo, calibration_camera_rate(calib_augment, src.manifest))

    # 3. Output directory, proven writable before any conversion.
    out = Path(out_dir) if out_dir else src.run / "export"
    ensure_writable_dir(out, "--out")
    # An old report must never describe bytes this run may replace: it goes first and comes back last.
    for old in reporting.report_paths(out):
        old.unlink(missing_ok=True)

    # 4. What every artifact is judged against: Keras on the test images, and on held-back validation images.
    ref, val_ref, no_val, held = _references(src, ds, calib, check_samples, echo)
    source_model = {"sha256": sha256_file(src.model_path), "run": str(src.run),
                    "keras_test_accuracy": (src.manifest.get("metrics") or {}).get("test_accuracy")}
    versions = runs.library_versions()
    metadata = _metadata_builder(src, ds, calib, source_model, versions)

    # 5. Convert, write, check — format by format; then optional quantization debugging.
    options = {"io_dtype": io_dtype, "per_channel": per_channel, "opset": opset, "calib_method": calib_method}
    tune = _qat_tuner(ds.train, held, calib.images, qat_epochs, echo) if qat_epochs else None
    # Automatic QAT follows the accuracy-aware search, so it needs the search (and int8 formats to tune).
    auto_tune = _qat_tuner(ds.train, held, calib.images, defaults.QAT_AUTO_EPOCHS, echo) \
        if (auto_qat and accuracy_aware and needs_calib and per_channel) else None  # QAT simulates per-channel weights
    correct = _bias_corrector(calib.images, echo) if bias_correction else None
    artifacts, debug_paths, prepared = _convert_all(fmts, out, src, ref, val_ref, calib, metadata, options, accuracy_aware,
                                                    debug_quant, echo, tune, correct, auto_tune)

    # 6. The report, written last.
    settings = {"io_dtype": io_dtype, "per_channel": per_channel, "onnx_opset": opset, "onnx_calib_method": calib_method,
                "tflite_quantizer": "TFLiteConverter (TF 2.x MLIR quantizer)"}
    report = _report(command or f"edgecifar.export.export_run({str(src.run)!r}, formats={fmts})", src, source_model, ref, ds,
                     calib, val_ref, no_val, fmts, settings, artifacts, debug_paths, _max_drop(artifacts, max_drop), versions,
                     time.perf_counter() - t_start)
    report["qat"] = prepared["qat"]
    report["bias_correction"] = prepared["bias_correction"]
    json_path, md_path = reporting.save(report, out)
    echo("")
    echo(reporting.table(report))
    echo(f"\nwrote {json_path} and {md_path.name}")
    if report["max_drop"] and report["max_drop"]["exceeded"]:
        echo(f"--max-drop {max_drop:g} pp exceeded by: {', '.join(report['max_drop']['exceeded'])}")
    _next_steps(artifacts, src.run, echo)
    return report


def _check_options(fmts, io_dtype, calib_method, check_samples, opset, calib_samples, qat_epochs, per_channel,
                   bias_correction=False) -> bool:
    """Every option checked before anything slow or written (UserError); returns whether int8 needs calibration."""
    from .calibration import validate_count

    _validate_options(fmts, io_dtype, calib_method, check_samples, opset)
    needs_calib = any(f in INT8_FORMATS for f in fmts)
    if bias_correction and not needs_calib:
        raise UserError(f"--bias-correction prepares the int8 formats, and none was asked for: add --int8 "
                        f"(formats: {', '.join(fmts)})")
    if qat_epochs and not needs_calib:
        raise UserError(f"--qat tunes the int8 formats, and none was asked for: add --int8 (formats: {', '.join(fmts)})")
    if bias_correction and not per_channel:
        raise UserError("--bias-correction models per-channel weights, as the default export: drop --per-tensor, or "
                        "--bias-correction")
    if qat_epochs and not per_channel:
        raise UserError("--qat simulates per-channel weights, as the default export: drop --per-tensor, or --qat")
    if needs_calib:
        validate_count(calib_samples)  # the lower bound now, before anything slow; the upper once data is loaded
    return needs_calib


CALIB_AUGMENT = ("auto", "camera", "none")


def calibration_camera_rate(choice: str, manifest: dict) -> float | None:
    """The camera-augmentation rate the calibration images get under `choice` (see export_run), or None."""
    trained = (manifest.get("recipe") or {}).get("camera_rate") if manifest.get("augment") == "camera" else None
    if choice == "none":
        return None
    if choice == "camera":
        return float(trained or 1.0)
    return float(trained) if trained else None


def _load_data(data_dir, needs_calib: bool, calib_samples: int, echo, camera_rate: float | None = None):
    """(CIFAR-10 splits, the calibration set or None): the training split is read only when int8 calibrates."""
    from .. import data as cifar
    from .calibration import CalibrationSet

    ds = cifar.load(data_dir, splits=("train", "test") if needs_calib else ("test",))
    if not needs_calib:
        return ds, None
    calib = CalibrationSet.from_training_split(ds.train, calib_samples, seed=0, fingerprint=ds.fingerprint, echo=echo)
    echo(f"calibration: {len(calib)} training images, stratified by class (seed 0); TFLite and ONNX use the same ones")
    if camera_rate:
        calib = calib.camera_augmented(camera_rate)
        echo(f"calibration images degraded as in training: {calib.augmentation}")
    return ds, calib


def _references(src, ds, calib, check_samples, echo):
    """(test reference, validation reference or None, why there is none, the run's held-back validation
    images as positions in ds.train or None)."""
    from . import check as checking

    ref = checking.reference(src.keras_model, ds.test, check_samples, echo)
    if calib is None:
        return ref, None, "no int8 format", None
    # int8's Δ also on held-back validation images: calibration must not fit the test set by luck.
    held, no_val = checking.held_out_indices(ds.train, src.manifest.get("data") or {}, fingerprint=ds.fingerprint)
    if held is None:
        return ref, None, no_val, None
    val_ref, no_val = checking.validation_reference(src.keras_model, ds.train, held, src.manifest.get("data") or {},
                                                    calib.indices, echo)
    return ref, val_ref, no_val, held


def _metadata_builder(src, ds, calib, source_model: dict, versions: dict):
    """metadata(fmt, io, conversion, output_kind) -> the artifact's edgecifar metadata (device/metadata.py)."""
    class_names = src.manifest.get("class_names") or ds.class_names
    preprocessing = src.manifest.get("preprocessing") or {}

    def metadata(fmt, io, conversion, output_kind="probabilities"):
        return meta_io.build(model=src.name, fmt=fmt, class_names=class_names, input_shape=src.input_shape,
                             preprocessing=preprocessing, input_dtype=io["input_dtype"], input_quant=io["input_quant"],
                             output_dtype=io["output_dtype"], output_quant=io["output_quant"], source_model=source_model,
                             calibration=calib.describe() if (calib is not None and fmt in INT8_FORMATS) else None,
                             tool=versions, conversion=conversion, output_kind=output_kind)

    return metadata


def _report(command, src, source_model, ref, ds, calib, val_ref, no_val, fmts, settings, artifacts, debug_paths, max_drop,
            versions, seconds) -> dict:
    """export_report.json: what was exported from what, checked how, with which result (report.py renders it)."""
    from . import check as checking
    from . import report as reporting

    return {
        "schema": reporting.SCHEMA,
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run": str(src.run),
        "model": src.name,
        "zoo_model": src.manifest.get("zoo_model") or src.name,  # the registry entry behind a variant (`_camera`)
        "source_model": {**source_model, "path": str(src.model_path)},
        "check": {**ref.subset, "keras_accuracy": ref.keras_correct / len(ref.labels),
                  "runtime": "edgecifar.device.runtime.Classifier (LiteRT for .tflite, onnxruntime for .onnx)"},
        "data": {"source": ds.source, **ds.fingerprint},
        "calibration": calib.describe() if calib is not None else None,
        "validation_check": val_ref.subset if val_ref is not None else {"samples": 0, "reason": no_val},
        "budgets_pp": {f: checking.BUDGETS_PP[f] for f in fmts},
        "settings": settings,
        "artifacts": artifacts,
        "debug_quant": debug_paths,
        "max_drop": max_drop,
        "host": _host(),
        "versions": versions,
        "seconds": round(seconds, 1),
    }


def _convert_all(fmts, out: Path, src, ref, val_ref, calib, metadata, options: dict, accuracy_aware: bool, debug_quant: bool,
                 echo, tune=None, correct=None, auto_tune=None) -> tuple[list[dict], list[str] | None, dict]:
    """Every format: convert at a staged name, check, install (then the accuracy-aware search for int8, then
    automatic QAT for what still misses when `auto_tune` is given); TFLite first, then ONNX. Returns (report rows,
    debug report paths, {"qat": its report or None, "bias_correction": its report or None})."""
    artifacts = []
    ordered = [f for f in fmts if f.startswith("tflite_")] + [f for f in fmts if f.startswith("onnx_")]
    with scratch_dir("export") as tmp:
        sources = _Sources(src.keras_model, src.model_path, Path(tmp), echo, tune, correct,
                           int8_target=fallback.target_for(src.manifest.get("zoo_model") or src.name))
        for step, fmt in enumerate(ordered, 1):
            echo(f"[{step}/{len(fmts)}] {fmt}: converting")
            path = out / artifact_name(src.name, fmt)
            produce = _producer(fmt, sources, calib, options, metadata, echo)
            row = _one(fmt, path, ref, echo, produce, val_ref)
            if accuracy_aware:
                row = _accuracy_aware(fmt, path, row, produce, ref, val_ref, sources, calib, echo, auto_tune is not None)
            if sources.qat is not None and fmt in INT8_FORMATS and row.get("path"):
                row["qat_epochs"] = sources.qat["epochs"]
            artifacts.append(row)
        qat_report, tuned = sources.qat, None
        if auto_tune is not None:
            qat_report, tuned = _auto_qat(artifacts, src, sources, auto_tune, ref, val_ref, calib, options, metadata, echo)
        # Each against the model it was converted from: the fine-tuned one where automatic QAT's artifact was kept.
        kept_tuned = {f for f, k in ((qat_report or {}).get("kept") or {}).items() if k}
        debug_paths = _debug_quant(artifacts, lambda fmt: tuned if fmt in kept_tuned else sources, calib, out, echo) \
            if debug_quant else None
    return artifacts, debug_paths, {"qat": qat_report, "bias_correction": sources.bias_correction}


def _producer(fmt, sources, calib, options: dict, metadata, echo):
    """produce(staged, keep_float=()) -> conversion settings: `fmt` converted from `sources`, written at `staged`."""
    o = options
    if fmt.startswith("tflite_"):
        return lambda staged, keep=(): _tflite(fmt, staged, sources, calib, o["io_dtype"], o["per_channel"], metadata, keep)
    return lambda staged, keep=(): _onnx(fmt, staged, sources, calib, o["opset"], o["per_channel"], o["calib_method"],
                                         metadata, echo, keep)


def _auto_qat(artifacts, src, sources, tune, ref, val_ref, calib, options, metadata, echo):
    """Post-training int8 that still misses its target after the float-layer search: fine-tune the int8 source
    model with int8 simulated (edgecifar/qat.py, `tune`), convert those formats again from it, check them like
    any artifact, and keep whichever of the two is better (fallback.better: target met, then agreement).
    The rows in `artifacts` are replaced in place. Returns (the QAT report, with "auto": True, or None when no
    artifact needed it; the fine-tuned sources or None)."""
    from .. import qat

    missed = [i for i, a in enumerate(artifacts) if a.get("path") and (a.get("accuracy_aware") or {}).get("met") is False
              and "skipped" not in a["accuracy_aware"]]
    if not missed:
        return None, None
    names = [artifacts[i]["format"] for i in missed]
    try:  # on the trained model, as _check_qat for --qat N: its int8 copy has the same layers less a softmax
        qat.check_supported(src.keras_model)
    except ValueError as e:
        echo(f"    automatic quantization-aware fine-tuning is not possible here: {e}")
        return {"auto": True, "formats": names, "skipped": str(e)}, None
    echo(f"post-training int8 misses the target for {', '.join(names)} after the float-layer search: "
         f"quantization-aware fine-tuning (`--qat auto`; `--qat 0` turns it off)")
    tuned = sources.tuned(tune)
    target_pp, target_agreement = sources.int8_target
    kept, results = {}, {}
    for i in missed:
        ptq = artifacts[i]
        fmt, path = ptq["format"], Path(ptq["path"])
        echo(f"    {fmt}: converting again from the fine-tuned model")
        with fallback.kept_aside(path) as put_back:
            row = _one(fmt, path, ref, echo, _producer(fmt, tuned, calib, options, metadata, echo), val_ref)
            take = "accuracy" in row and fallback.better(row, ptq, sources.int8_target)
            if not take and row.get("path"):
                put_back()  # the post-training artifact, byte for byte, with its sidecar
        if take:
            row["qat_epochs"] = tuned.qat["epochs"]
            row["accuracy_aware"] = {"met": fallback.miss(row, target_pp, target_agreement) is None, "kept_float": [],
                                     "target_pp": target_pp, "target_agreement": target_agreement,
                                     "post_training": ptq["accuracy_aware"]}
            row["auto_qat"] = {"epochs": tuned.qat["epochs"], "kept": True, "post_training": fallback.summary(ptq)}
            artifacts[i] = row
        else:
            ptq["auto_qat"] = {"epochs": tuned.qat["epochs"], "kept": False, "tuned": fallback.summary(row)}
        kept[fmt] = bool(take)
        results[fmt] = {"post_training": fallback.summary(ptq), "tuned": fallback.summary(row),
                        "kept": "fine-tuned" if take else "post-training"}
        verdict = "kept" if take else "not kept (the post-training artifact stays)"
        if "accuracy" in row:
            echo(f"    {fmt} after QAT: Δ {row['delta_pp']:+.2f} pp, agreement {100 * row['agreement']:.2f} % — {verdict}")
    still = [artifacts[i]["format"] for i in missed if artifacts[i]["accuracy_aware"].get("met") is False]
    if still and sources.bias_correction is None:
        echo(f"    {', '.join(still)} still miss the target; `--bias-correction` removes the mean shift of int8 weight "
             "rounding (edgecifar/export/bias_correction.py; depthwise nets gain most)")
    return {**tuned.qat, "auto": True, "formats": names, "kept": kept, "results": results}, tuned


@dataclass
class Source:
    """The trained model an export starts from, and the run's manifest (the contract with train)."""

    run: Path
    model_path: Path
    manifest: dict
    keras_model: object
    input_shape: tuple
    name: str


def load_source(run_dir=None, runs_dir=None) -> Source:
    """RUN (a run directory or a .keras file; default: the latest finished run) loaded, with its manifest."""
    from .. import runs

    run = runs.resolve_run(run_dir, runs_dir)
    model_path = run if run.is_file() else run / "model.keras"
    run = run.parent if run.is_file() else run
    manifest = runs.read_manifest(run)
    import_tensorflow()
    keras_model = runs.load_model(model_path)
    return Source(run, model_path, manifest, keras_model, _image_input_shape(keras_model, model_path),
                  manifest.get("model") or keras_model.name)


# --- one format -------------------------------------------------------------------------


def _accuracy_aware(fmt, path, row, produce, ref, val_ref, sources, calib, echo, auto_qat=False) -> dict:
    """An int8 artifact that misses the target (export/fallback.py) gets its most sensitive layers kept in float.
    auto_qat: automatic QAT follows for what still misses (`_auto_qat`), so no hint to run it by hand."""
    row = fallback.improve(
        fmt, path, row, len(ref.labels),
        produce=lambda keep: _one(fmt, path, ref, lambda *_: None, lambda staged: produce(staged, keep), val_ref),
        rank=lambda: fallback.ranked_layers(fmt, sources.keras_path(logits=True), path, calib, echo),
        echo=echo, target=sources.int8_target)
    block = row.get("accuracy_aware") or {}
    if block.get("met") is False and "skipped" not in block and sources.qat is None and not auto_qat:
        first = "" if sources.bias_correction else "`--bias-correction` removes the mean shift of int8 weight rounding " \
                                                   "(edgecifar/export/bias_correction.py; depthwise nets gain most), and "
        echo(f"    post-training quantization cannot meet the target here; {first}`--qat 2` fine-tunes the model with "
             "int8 simulated first (edgecifar/qat.py)")
    return row


def staged_path(path: Path) -> Path:
    """Where a new artifact is built and checked before it replaces `path` (hidden, same folder: the rename is atomic)."""
    return path.with_name(f".{path.stem}.staged{path.suffix}")


def _one(fmt, path: Path, ref, echo, produce, val_ref=None) -> dict:
    """Produce one artifact at a staged name, check it there, and only then rename it over `path`.

    An int8 artifact is also checked on `val_ref` (held-back validation images), as row["validation"].

    Any exception marks this format failed and removes the staged files: an earlier good artifact
    at `path` (and its sidecar) is left exactly as it was, and the report says so.
    """
    from . import check as checking

    staged = staged_path(path)
    row = {"format": fmt, "path": str(path), "budget_pp": checking.BUDGETS_PP[fmt]}
    t0 = time.perf_counter()
    stage = "conversion"
    try:
        row["conversion"] = produce(staged)
        row["convert_seconds"] = round(time.perf_counter() - t0, 2)
        echo(f"    wrote {path.name} ({staged.stat().st_size / 1024:.0f} KiB)")
        stage = "check"
        row.update(checking.check(staged, fmt, ref, echo))
        if val_ref is not None and fmt in INT8_FORMATS:
            try:  # a second opinion: its failure is reported, it never fails an artifact that passed on test
                row["validation"] = checking.brief(checking.check(staged, fmt, val_ref, echo=lambda *_: None))
            except Exception as e:
                row["validation"] = {"error": _reason(e)}
        stage = "install"
        for src, dst in ((staged, path), (meta_io.sidecar_path(staged), meta_io.sidecar_path(path))):
            if src.exists():
                os.replace(src, dst)
        fsync(path.parent)
        row["sidecar"] = str(meta_io.sidecar_path(path)) if path.suffix == ".tflite" else None
    except BaseException as e:
        for p in (staged, meta_io.sidecar_path(staged)):
            if p.is_file():
                p.unlink()
        if not isinstance(e, Exception):
            raise  # Ctrl-C, or SIGTERM (the CLI raises it as an interrupt): staged files gone, earlier artifact kept
        kept = path.is_file()
        row.update(status=checking.FAILED, reason=f"{stage}: {_reason(e)}", path=None, sidecar=None,
                   previous_artifact_kept=str(path) if kept else None)
        echo(f"    {fmt} FAILED during {stage}: {_reason(e)}" + (f" (the earlier {path.name} is kept)" if kept else ""))
        return row
    echo(f"    {fmt}: top-1 {100 * row['accuracy']:.2f}% ({row['delta_pp']:+.2f} pp vs Keras, budget "
         f"{row['budget_pp']:g}), agreement {100 * row['agreement']:.2f}% — {row['status']}")
    return row


def _tflite(fmt, path, sources, calib, io_dtype, per_channel, metadata, keep_float=()) -> dict:
    from . import tflite_export

    kind = fmt.split("_", 1)[1]
    logits = kind.startswith("int8")
    model_bytes = tflite_export.convert(sources.saved_model(logits), kind, calib, io_dtype, per_channel, keep_float)
    if kind == "int8_full" and (left := tflite_export.float_leftovers(model_bytes)):
        raise RuntimeError(f"the int8 model is not integer end to end: {', '.join(left[:3])}")
    floats = tflite_export.float_ops(model_bytes) if kind == "int8" else []
    if kind == "int8" and not keep_float and floats != ["DEQUANTIZE", "FULLY_CONNECTED"]:
        raise RuntimeError(f"the int8 model should compute only its head in float, but has float ops {floats[:6]}")
    if kind == "int8" and keep_float and len([op for op in floats if op != "DEQUANTIZE"]) < 2:
        # The converter ignores denylisted names it does not know: a try that changed nothing is an error.
        raise RuntimeError(f"none of the layers {', '.join(keep_float)} was kept in float (unknown tensor names?)")
    io = tflite_export.io_details(model_bytes)
    conversion = tflite_export.settings(kind, io_dtype, per_channel)
    if keep_float:
        conversion["float_layers"] = list(keep_float)  # accuracy-aware fallback (export/fallback.py)
        conversion["float_ops"] = floats
    if logits:
        conversion["logits"] = sources.logits_how
    meta = metadata(fmt, io, conversion, sources.output_kind(logits))
    model_bytes = tflite_export.embed_metadata(model_bytes, meta)  # self-describing: the sidecar is a readable copy
    tflite_export.write(model_bytes, path)
    meta_io.write_sidecar(path, meta)
    return conversion


def _onnx(fmt, path, sources, calib, opset, per_channel, calib_method, metadata, echo, keep_float=()) -> dict:
    from .onnx_export import export_onnx

    quantize = fmt == "onnx_int8"
    io = {"input_dtype": "float32", "input_quant": None, "output_dtype": "float32", "output_quant": None}
    conversion = {"converter": f"tf2onnx (opset {opset})"}
    if quantize:
        conversion.update(quantizer="onnxruntime.quantization.quantize_static, QDQ int8", per_channel=bool(per_channel),
                          calib_method=calib_method, io="float32 (quantization inside the graph)")
        source = sources.keras_path(logits=True)
        conversion["logits"] = sources.logits_how
    else:
        source = sources.model_path
    images = calib.images if (quantize and calib is not None) else None
    output_kind = sources.output_kind(quantize)
    if keep_float:
        conversion["float_layers"] = list(keep_float)  # accuracy-aware fallback (export/fallback.py)
    export_onnx(source, path, images, quantize=quantize, opset=opset, per_channel=per_channel, calib_method=calib_method,
                float_logits=output_kind == "logits", metadata=metadata(fmt, io, conversion, output_kind), echo=echo,
                keep_float=list(keep_float))
    if not path.is_file():
        raise RuntimeError(f"the ONNX exporter returned without writing {path.name}")
    if quantize:  # the exporter records its exact quantizer settings in the file: report those
        conversion["quantization"] = meta_io.read(path).get("quantization")
    return conversion


def _debug_quant(artifacts, sources_for, calib, out: Path, echo) -> list[str]:
    """Per-layer error reports of the int8 artifacts, each against `sources_for(fmt)`'s int8 model."""
    from . import debug_quant

    paths = []
    written = {a["format"]: Path(a["path"]) for a in artifacts if a.get("path")}
    for fmt in INT8_FORMATS:
        if fmt not in written:
            continue
        echo(f"quantization debug: {fmt}")
        fn = debug_quant.debug_tflite if fmt.startswith("tflite_") else debug_quant.debug_onnx
        try:
            result = fn(sources_for(fmt).keras_path(logits=True), written[fmt], calib, out, echo=echo)
        except Exception as e:
            echo(f"    debug of {fmt} failed: {_reason(e)}")
            continue
        paths += [str(p) for p in (result if isinstance(result, (list, tuple)) else [result]) if p]
    for p in paths:
        echo(f"    {p}")
    return paths


def _after_qat(how: str, qat: dict) -> str:
    """How an int8 source was made, once QAT (`qat`: fine_tune's report) has tuned it."""
    return f"{how}; then quantization-aware fine-tuning ({qat['epochs']} epochs)"


class _Sources:
    """What the converters read, prepared once and only when a format needs it.

    TFLite converts from a SavedModel, ONNX from a .keras file; int8 formats use the copy that
    outputs centred logits (edgecifar.export.logits) with any post-ReLU BatchNormalization folded
    (edgecifar.export.bn_fold) and any offset input scaling folded into the first convolution
    (edgecifar.export.input_fold), then bias-corrected and QAT-tuned when asked; float formats the model as trained.
    """

    def __init__(self, keras_model, model_path: Path, tmp: Path, echo, tune=None, correct=None, int8_target=None):
        self.keras_model, self.model_path, self.tmp, self.echo = keras_model, model_path, tmp, echo
        self.int8_target = int8_target  # (Δ pp, agreement) the accuracy-aware step aims at (fallback.target_for)
        self._cache = {}
        self.logits_how = None
        self.tune, self.qat = tune, None  # tune(model, teacher) -> (QAT-tuned copy, report), applied to the int8 source
        self.correct, self.bias_correction = correct, None  # correct(model) -> (bias-corrected copy, report), before QAT
        self.logits_output = False
        self.teacher = None  # set with the int8 model: the trained model's logits copy (QAT's teacher)
        if tune is not None:  # now, not inside a format's conversion: a model QAT cannot rewrite is a usage error
            self._model(True)

    def _model(self, logits: bool):
        if not logits:
            return self.keras_model
        if "logits" not in self._cache:
            from .logits import int8_source

            source = int8_source(self.keras_model)
            self.logits_output = source.logits_output
            self.logits_how = "; ".join(source.steps)
            self.echo(f"    logits: {source.steps[0]}")
            for step in source.steps[1:]:
                self.echo(f"    {step}")
            self.teacher = teacher = source.teacher  # the trained model's own logits, before any correction
            copy = source.model
            if self.correct is not None:
                copy, self.bias_correction = self.correct(copy)
                self.logits_how = (f"{self.logits_how}; then int8 weight-rounding bias correction "
                                   f"({self.bias_correction['layers_corrected']} layers)")
            if self.tune is not None:
                copy, self.qat = self.tune(copy, teacher)
                self.logits_how = _after_qat(self.logits_how, self.qat)
            self._cache["logits"] = copy
        return self._cache["logits"]

    def tuned(self, tune) -> "_Sources":
        """Sources whose int8 model is this one's fine-tuned by `tune` (automatic QAT); float formats unchanged.
        The fold and bias correction already made here are reused, and the teacher is the same trained model."""
        base = self._model(True)
        tmp = self.tmp / "qat"
        tmp.mkdir(exist_ok=True)
        other = _Sources(self.keras_model, self.model_path, tmp, self.echo, int8_target=self.int8_target)
        copy, other.qat = tune(base, self.teacher)
        other.bias_correction, other.logits_output = self.bias_correction, self.logits_output
        other.logits_how = _after_qat(self.logits_how, other.qat)
        other._cache["logits"] = copy
        return other

    def output_kind(self, logits: bool) -> str:
        """The metadata's output kind of an artifact converted from _model(logits)."""
        if not logits:
            return "probabilities"
        self._model(True)  # sets logits_output: whether the softmax came off (a tuned copy is a new object either way)
        return "logits" if self.logits_output else "probabilities"

    def saved_model(self, logits: bool = False) -> Path:
        key = ("saved", logits)
        if key not in self._cache:
            from . import tflite_export

            self.echo("    preparing a SavedModel for the TFLite converter")
            self._cache[key] = tflite_export.saved_model(self._model(logits), self.tmp / ("logits" if logits else "float"))
        return self._cache[key]

    def keras_path(self, logits: bool = False) -> Path:
        model = self._model(logits)
        if model is self.keras_model:
            return self.model_path
        if "keras" not in self._cache:
            from ..runs import save_model

            self._cache["keras"] = self.tmp / "logits.keras"
            save_model(model, self._cache["keras"])
        return self._cache["keras"]


# --- helpers ----------------------------------------------------------------------------


def _check_qat(model) -> None:
    # The trained model itself: the logits copy QAT later tunes has the same layers less a softmax, so what
    # this refuses (bare ops, reused layers, depth multipliers above 1) is the same, without cloning the model twice.
    from .. import qat

    try:
        qat.check_supported(model)
    except ValueError as e:
        raise UserError(f"--qat: {e}; export without --qat") from None


def _tuning_images(train, held):
    """The training images QAT may learn from: all but the run's held-back validation images (`held`, or
    None when they are not known), which the report's validation Δ must still measure unseen (QAT
    optimises agreement, exactly what it reports)."""
    import numpy as np

    return train.images if held is None else np.delete(train.images, held, axis=0)


def _bias_corrector(calibration, echo):
    """correct(model) -> (bias-corrected copy, report): edgecifar/export/bias_correction.py on the calibration images."""
    def correct(model):
        from .bias_correction import correct as run

        echo(f"    bias correction of int8 weight rounding on the {len(calibration)} calibration images")
        return run(model, calibration, echo)

    return correct


def _qat_tuner(train, held, calibration, epochs: int, echo):
    """tune(model, teacher) -> (QAT-tuned copy, report): edgecifar/qat.py on the training images less the held-back
    ones (_tuning_images, copied only when tune runs: automatic QAT mostly never does), ranges from the
    calibration images, as the converter sets them, its final Dense left float; it learns to agree with
    `teacher`, the trained model's logits copy before bias correction changed it."""
    def tune(model, teacher):
        from .. import qat

        images = _tuning_images(train, held)
        echo(f"    quantization-aware fine-tuning: {epochs} epoch(s) on {len(images):,} training images (edgecifar/qat.py)")
        return qat.fine_tune(model, images, calibration, head=qat.float_head(model), epochs=epochs, echo=echo,
                             teacher_model=teacher, held_out=None if held is None else train.images[held])

    return tune


def _validate_options(fmts, io_dtype, calib_method, check_samples, opset):
    from . import onnx_export

    if io_dtype not in ("uint8", "int8"):
        raise UserError(f"--io {io_dtype!r}: choose uint8 (default) or int8")
    if check_samples is not None and check_samples < 1:
        raise UserError(f"--check-samples {check_samples}: must be at least 1 (leave it out for the full 10,000-image test set)")
    # The ONNX exporter's own rules, checked up front so a bad option fails before any conversion.
    if calib_method not in onnx_export.CALIB_METHODS:
        raise UserError(f"--calib-method {calib_method!r}: choose one of {', '.join(onnx_export.CALIB_METHODS)}")
    if any(f.startswith("onnx_") for f in fmts):
        allowed = onnx_export.INT8_OPSETS if "onnx_int8" in fmts else onnx_export.FLOAT_OPSETS
        if opset not in allowed:
            raise UserError(f"--opset {opset}: ONNX export supports opsets {allowed.start}..{allowed.stop - 1}"
                            f"{' for int8 QDQ' if 'onnx_int8' in fmts else ''}; use the default 17")


def _image_input_shape(model, path) -> tuple[int, int, int]:
    """(H, W, 3) of a model taking one NHWC RGB image tensor, else a UserError."""
    try:
        inputs = model.inputs
        shape = tuple(inputs[0].shape)
        out_shape = tuple(model.outputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        raise UserError(f"{path}: the model has no defined input; export needs a functional or Sequential model built "
                        "on a 32x32x3 image input") from None
    if len(inputs) != 1 or len(shape) != 4 or shape[-1] != 3 or not all(isinstance(d, int) for d in shape[1:]):
        raise UserError(f"{path}: input shape {shape} is not an image tensor (N, H, W, 3); export needs a CIFAR-style "
                        "image classifier (e.g. one from `edgecifar train`)")
    if len(out_shape) != 2:
        raise UserError(f"{path}: output shape {out_shape} is not (N, classes); export needs a classifier with a softmax output")
    return int(shape[1]), int(shape[2]), int(shape[3])


def _max_drop(artifacts, max_drop):
    if max_drop is None:
        return None
    exceeded = [a["format"] for a in artifacts if a["format"] in INT8_FORMATS
                and (a["status"] == "failed" or -a["delta_pp"] > max_drop + 1e-9)]
    return {"pp": float(max_drop), "applies_to": list(INT8_FORMATS), "exceeded": exceeded}


def _next_steps(artifacts, run: Path, echo) -> None:
    ok = [a for a in artifacts if a.get("path")]
    if not ok:
        return
    pick = next((a for a in ok if a["format"] == "tflite_int8"), ok[0])
    echo("next:")
    echo(f"  edgecifar run {pick['path']} --source 0   # classify camera frames on the device")
    echo(f"  edgecifar benchmark {run}   # accuracy vs latency of every artifact")


def _host() -> dict:
    """Where the checks ran: int8 kernels differ by CPU (e.g. onnxruntime's U8S8 path on x86 without VNNI)."""
    import platform

    from ..machine import int8_features

    return {"machine": platform.machine(), "system": platform.system(), "cpu_count": os.cpu_count(),
            "cpu_features": int8_features()}


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:300] if not isinstance(e, UserError) else text[:300]


"""Stage 5 — export a trained run to device formats, calibrated, metadata-tagged and checked.

    export_run(run_dir)  →  RUN/export/<model>_{float32,float16,dynamic,int8}.tflite (+ .json sidecars)
                            RUN/export/<model>_{float32,int8}.onnx
                            RUN/export/export_report.{json,md}

Order of work: validate every input first (nothing is written for a bad one), then per format
convert → write atomically with metadata → check in the device runtime against Keras. One
format failing is recorded in the report and does not stop the others.

This file is the stage's face only. Where each part lives:
    formats.py      the format names, artifact file names, --formats/--int8/--fp16
    pipeline.py     export_run: validate → calibrate → convert → check → report, format by format
    calibration.py  the one calibration set both quantizers read (CalibrationDataReader-style)
    tflite_export.py, onnx_export.py   the converters; logits.py the softmax-less int8 source
    check.py        every artifact in its device runtime against Keras; report.py the report
    debug_quant.py  per-layer quantization error (--debug-quant)

TensorFlow is imported only inside the functions that need it, so `edgecifar --help` and the
device side stay light.
"""

from .formats import DEFAULT_FORMATS, FORMATS, FP16_FORMATS, INT8_FORMATS, artifact_name, select_formats
from .pipeline import export_run, staged_path

__all__ = ["DEFAULT_FORMATS", "FORMATS", "FP16_FORMATS", "INT8_FORMATS", "artifact_name", "export_run", "select_formats",
           "staged_path"]

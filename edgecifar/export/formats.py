"""The export formats, their artifact file names and the --formats/--int8/--fp16 choice: what every stage agrees on."""

from __future__ import annotations

from ..device import metadata as meta_io
from ..errors import UserError

FORMATS = meta_io.FORMATS
# The fully integer TFLite (int8 output too) is for accelerators that need it: asked for by name only.
DEFAULT_FORMATS = tuple(f for f in FORMATS if f != "tflite_int8_full")
INT8_FORMATS = ("tflite_int8", "tflite_int8_full", "onnx_int8")
FP16_FORMATS = ("tflite_float16",)


def artifact_name(model: str, fmt: str) -> str:
    """seed002_m1_cnn + tflite_int8 → seed002_m1_cnn_int8.tflite (tflite_int8_full → ..._int8_full.tflite)"""
    kind, precision = fmt.split("_", 1)
    return f"{model}_{precision}.{kind}"


def select_formats(formats=None, int8: bool = False, fp16: bool = False) -> list[str]:
    """--formats a,b (free choice), --int8, --fp16, combinable; none of them → every default format."""
    chosen = []
    if formats:
        names = [f.strip() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
        unknown = [f for f in names if f not in FORMATS]
        if unknown or not names:
            raise UserError(f"unknown format(s) {', '.join(unknown) or '(empty list)'} in --formats; choose from {','.join(FORMATS)}")
        chosen += names
    if int8:
        chosen += [f for f in INT8_FORMATS if f in DEFAULT_FORMATS]
    if fp16:
        chosen += FP16_FORMATS
    if not chosen:
        chosen = list(DEFAULT_FORMATS)
    return [f for f in FORMATS if f in chosen]  # canonical order, no duplicates



"""The artifact contract: everything a device needs to use an exported model, and nothing else.

Stored as JSON
    * inside a .tflite file as its ``edgecifar`` metadata entry (edgecifar.device.tflite_metadata),
      with a readable copy beside it as ``<file>.json`` (sidecar; used only for files exported
      before the metadata went inside),
    * inside a .onnx file as the ``edgecifar`` entry of ``metadata_props``.

Schema ``edgecifar.artifact/1``::

    {
      "schema": "edgecifar.artifact/1",
      "model": "seed002_m1_cnn",            # zoo name
      "format": "tflite_int8",              # see FORMATS
      "class_names": [... 10 names ...],
      "input": {
        "height": 32, "width": 32, "channels": 3,
        "layout": "NHWC",                   # the only layout the runtime feeds
        "color_order": "RGB",               # "RGB" | "BGR": Classifier.quantize_input orders the channels so
        "range": [0, 255],                  # pixel values the float model expects
        "scale": 1.0, "offset": 0.0,        # float input = pixels * scale + offset (normalisation is inside the model)
        "dtype": "uint8",                   # tensor dtype: float32 | uint8 | int8
        "quantization": {"scale": 1.0, "zero_point": 0} | null
      },
      "output": {"kind": "logits", "dtype": "uint8", "quantization": {...} | null},
                                            # kind "probabilities": softmax inside the model (float formats);
                                            # "logits": int8 formats, the runtime applies the softmax in float.
                                            # Absent: "probabilities".
      "source_model": {"sha256": "...", "run": "...", "keras_test_accuracy": 0.65},
      "calibration": {...} | null,
      "tool": {"edgecifar": "0.1.0", ...}
    }

Every input/output field is checked by runtime.Classifier against the model's own tensors (class count,
height/width, channels, layout, color order, dtypes, quantization, range/scale/offset): a stale or foreign
description is refused in one line. Artifacts written before this schema was tightened also carry
``input.resize`` (a fixed description of the runner's crop and resize, which no reader uses); readers
accept and ignore it, and build() no longer writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError

SCHEMA = "edgecifar.artifact/1"
ONNX_KEY = "edgecifar"
OUTPUT_KINDS = ("probabilities", "logits")
FORMATS = ("tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8", "tflite_int8_full", "onnx_float32", "onnx_int8")


def sidecar_path(model_path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def read(model_path) -> dict:
    """Metadata of an artifact: inside the file (.tflite entry, .onnx metadata_props), else a .tflite's sidecar.

    {} when there is none.
    """
    model_path = Path(model_path)
    if model_path.suffix == ".onnx":
        return _read_onnx(model_path)
    from .tflite_metadata import TFLiteFormatError, read_entry

    try:
        inside = read_entry(model_path)
    except TFLiteFormatError as e:
        raise UserError(f"{model_path}: not a valid .tflite file ({e}); re-export it") from None
    except OSError as e:
        raise UserError(f"{model_path}: cannot read it ({e.strerror})") from None
    if inside is not None:
        try:
            return _checked(json.loads(inside.decode("utf-8")), model_path)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{model_path}: corrupt edgecifar metadata inside the file ({e}); re-export it") from None
    side = sidecar_path(model_path)
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{side}: not valid JSON ({e}); re-export the model or delete the sidecar") from None
    return _checked(meta, side)


def _read_onnx(path: Path) -> dict:
    # onnxruntime exposes custom metadata without needing the onnx package on the device.
    try:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except ImportError:
        return {}
    except Exception as e:
        raise UserError(f"{path}: not a loadable ONNX model ({type(e).__name__}); re-export it") from None
    return from_onnx_session(sess, path)


def from_onnx_session(sess, path) -> dict:
    """Metadata of an ONNX model from an onnxruntime session already open (the Classifier's own)."""
    props = sess.get_modelmeta().custom_metadata_map
    if ONNX_KEY not in props:
        return {}
    try:
        return _checked(json.loads(props[ONNX_KEY]), path)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: corrupt edgecifar metadata ({e}); re-export it") from None


def output_kind(meta: dict, where) -> str:
    """What the model outputs. No metadata (a bare .tflite/.onnx): "probabilities", the zoo's contract."""
    kind = (meta.get("output") or {}).get("kind", "probabilities")
    if kind not in OUTPUT_KINDS:
        raise UserError(f"{where}: output kind {kind!r} in the metadata is not one of {', '.join(OUTPUT_KINDS)}; "
                        "re-export the model with this edgecifar")
    return kind


def _checked(meta: dict, where) -> dict:
    if meta.get("schema") != SCHEMA:
        raise UserError(f"{where}: metadata schema {meta.get('schema')!r}, expected {SCHEMA!r}; re-export with this edgecifar")
    return meta


# --- writing (export side) ------------------------------------------------------------


def build(*, model: str, fmt: str, class_names: list[str], input_shape, preprocessing: dict, input_dtype: str,
          input_quant, output_dtype: str, output_quant, source_model: dict, calibration: dict | None,
          tool: dict, conversion: dict | None = None, output_kind: str = "probabilities") -> dict:
    """A schema-conformant metadata dict. Quantization pairs are (scale, zero_point) or None."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    if output_kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {output_kind!r}")
    height, width, channels = (int(d) for d in input_shape)
    layout, color_order = preprocessing.get("layout", "NHWC"), preprocessing.get("color_order", "RGB")
    if layout != "NHWC" or color_order not in ("RGB", "BGR") or channels != 3:
        # What runtime.Classifier would refuse on the device: fail at export instead.
        raise ValueError(f"the device runtime feeds NHWC images with 3 channels in RGB or BGR order, not "
                         f"{layout} with {channels} channels in {color_order!r} order")

    def quant(q):
        return None if q is None else {"scale": float(q[0]), "zero_point": int(q[1])}

    meta = {
        "schema": SCHEMA,
        "model": model,
        "format": fmt,
        "class_names": list(class_names),
        "input": {
            "height": height, "width": width, "channels": channels,
            "layout": layout,
            "color_order": color_order,
            "range": [0, 255],
            "scale": float(preprocessing.get("scale", 1.0)),
            "offset": float(preprocessing.get("offset", 0.0)),
            "dtype": input_dtype,
            "quantization": quant(input_quant),
        },
        "output": {"kind": output_kind, "dtype": output_dtype, "quantization": quant(output_quant)},
        "source_model": dict(source_model),
        "calibration": calibration,
        "tool": dict(tool),
    }
    if conversion is not None:
        meta["conversion"] = dict(conversion)
    return meta


def write_sidecar(model_path, meta: dict) -> Path:
    """Write `<file>.json` beside a .tflite, atomically."""
    from ..files import write_json

    _checked(meta, model_path)
    path = sidecar_path(model_path)
    write_json(path, meta)
    return path

"""Keras model → TFLite (float32, float16, dynamic-range, full-integer int8) with TF's converter.

Path: Keras 3 ``model.export(..., format="tf_saved_model")`` once, then
``tf.lite.TFLiteConverter.from_saved_model`` per format. Never ``from_concrete_functions`` on a
live Keras 3 model: it silently produces NaN models.

Settings chosen for the device, not for the newest runtime:
    * every format goes through compat.tflite214_converter_settings, which keeps the op
      versions loadable by tflite-runtime 2.14 (dynamic-range: per-tensor dense weights,
      FULLY_CONNECTED v9 instead of v12; conv stays per-channel).
    * int8 (the default int8 artifact): an int8 body fed uint8 camera pixels (scale 1, zero point
      0: lossless) and a **float head**: the final Dense runs in float32 and outputs float logits.
      An int8 output grid ties the two top classes on 2-8 % of images (argmax then takes the
      lower index); float logits never tie. Made with the converter's own selective
      quantization: calibrate, then quantize with the head's node denylisted (what
      tf.lite.experimental.QuantizationDebugger's denylist does), then set the input to uint8.
    * int8_full: TFLITE_BUILTINS_INT8 only, so conversion *fails* rather than leaving a float op
      behind, uint8 (default) or int8 input *and* output: for accelerators and microcontrollers
      that need integer end to end. Its report shows its ties.
"""

from __future__ import annotations

import contextlib

from pathlib import Path

import numpy as np

from ..files import atomic_path
from ..quiet import native_stderr
from .compat import tflite214_converter_settings

KINDS = ("float32", "float16", "dynamic", "int8", "int8_full")
IO_DTYPES = ("uint8", "int8")


def saved_model(keras_model, directory: Path) -> Path:
    """Keras 3 → SavedModel (the converter's most faithful input), quietly."""
    path = Path(directory) / "saved_model"
    with native_stderr():
        keras_model.export(str(path), format="tf_saved_model", verbose=False)
    return path


def settings(kind: str, io_dtype: str = "uint8", per_channel: bool = True) -> dict:
    """The converter settings of one format, as recorded in the artifact metadata."""
    s = {"converter": "tf.lite.TFLiteConverter.from_saved_model (TF 2.x MLIR converter)", "optimizations": []}
    if kind == "float16":
        s.update(optimizations=["DEFAULT"], supported_types=["float16"])
    elif kind == "dynamic":
        s.update(optimizations=["DEFAULT"], dense_layers="per-tensor weights (FULLY_CONNECTED v9: loads in tflite-runtime 2.14)",
                 conv_layers="per-channel weights")
    elif kind == "int8_full":
        s.update(optimizations=["DEFAULT"], supported_ops=["TFLITE_BUILTINS_INT8"], inference_input_type=io_dtype,
                 inference_output_type=io_dtype, representative_dataset="calibration set (see calibration)",
                 per_channel=bool(per_channel))
    elif kind == "int8":
        s.update(optimizations=["DEFAULT"], representative_dataset="calibration set (see calibration)",
                 per_channel=bool(per_channel), inference_input_type=io_dtype, inference_output_type="float32",
                 quantizer="calibrate only, then tensorflow.lite.python.convert.mlir_quantize with the final "
                           "FULLY_CONNECTED denylisted, then util.modify_model_io_type",
                 head="final Dense in float32 (DEQUANTIZE -> FULLY_CONNECTED): float logits, no ties")
    return s


def convert(saved_model_dir: Path, kind: str, calib=None, io_dtype: str = "uint8", per_channel: bool = True,
            keep_float=()) -> bytes:
    """A .tflite of `kind`; for "int8", `keep_float` names more layers (output tensors) to leave in float
    besides the head (accuracy-aware fallback, export/fallback.py)."""
    import tensorflow as tf

    if kind not in KINDS:
        raise ValueError(f"unknown TFLite kind {kind!r}")
    if kind.startswith("int8") and calib is None:
        raise ValueError("int8 conversion needs a calibration set")
    if kind in ("int8", "int8_full"):
        conv = int8_converter(saved_model_dir, calib.tflite_representative_dataset, kind, per_channel, io_dtype)
        if kind == "int8":
            return _float_head_int8(conv, {"uint8": tf.uint8, "int8": tf.int8}[io_dtype], per_channel, keep_float)
    else:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
        if kind == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif kind == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
    tflite214_converter_settings(conv, kind)
    with _conversion_errors():
        return conv.convert()


def int8_converter(saved_model_dir: Path, representative_dataset, kind: str = "int8", per_channel: bool = True,
                   io_dtype: str = "uint8"):
    """The converter an int8 artifact starts from, configured once for every user: the exporter
    (`kind` "int8": then _float_head_int8 finishes it; "int8_full": convert() as is) and the
    quantization debugger of `--debug-quant`, so the debugger measures the model that ships."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset
    if not per_channel:
        conv._experimental_disable_per_channel = True
    if kind == "int8_full":
        io = {"uint8": tf.uint8, "int8": tf.int8}[io_dtype]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = io
        conv.inference_output_type = io
    tflite214_converter_settings(conv, kind)
    return conv


@contextlib.contextmanager
def _conversion_errors():
    """The converter's native log lines diverted; a failure becomes one RuntimeError ending with its last log lines."""
    with native_stderr() as log:
        try:
            yield
        except Exception as e:
            tail = " | ".join(line for line in log.read().splitlines()[-3:] if line.strip())
            raise RuntimeError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} {tail}".strip()[:400]) from None


def _float_head_int8(conv, input_type, per_channel: bool, keep_float=()) -> bytes:
    """int8 body, float32 final Dense: calibrate, quantize with the head denylisted, uint8 input.

    These are the steps TFLiteConverter.convert() itself runs for full-integer models (calibrate,
    mlir_quantize, modify_model_io_type), with the one argument its public API does not expose:
    the denylisted node. Both LiteRT and tflite-runtime 2.14 load the result
    (tests/test_tflite_runtime_compat.py).
    """
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert
    from tensorflow.lite.python import util as tfl_util

    conv._experimental_calibrate_only = True
    with _conversion_errors():
        calibrated = conv.convert()
        quantized = tfl_convert.mlir_quantize(calibrated, disable_per_channel=not per_channel, fully_quantize=False,
                                              denylisted_nodes=[head_node(calibrated), *keep_float])
        return bytes(tfl_util.modify_model_io_type(quantized, input_type, tf.float32))


def head_node(model_bytes: bytes) -> str:
    """Output tensor name of the model's last FULLY_CONNECTED op: the classifier head to keep in float."""
    from ..device.runtime import tflite_interpreter_class

    Interpreter, _, _ = tflite_interpreter_class(None)
    interp = Interpreter(model_content=model_bytes)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    heads = [op for op in interp._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    if not heads:
        raise RuntimeError("no FULLY_CONNECTED op to keep in float: the model has no Dense classifier head")
    return names[heads[-1]["outputs"][0]]


def float_ops(model_bytes: bytes) -> list[str]:
    """Ops of a model that compute in float (their output tensor is float), in graph order."""
    from ..device.runtime import tflite_interpreter_class

    Interpreter, _, _ = tflite_interpreter_class(None)
    interp = Interpreter(model_content=model_bytes)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    return [op["op_name"] for op in interp._get_ops_details()
            if any(dtypes[i].kind == "f" for i in op["outputs"] if i >= 0)]


def io_details(model_bytes: bytes) -> dict:
    """Input/output dtype and (scale, zero_point) as the runtime itself reports them."""
    from ..device.runtime import tensor_quant, tflite_interpreter_class

    Interpreter, _, _ = tflite_interpreter_class(None)
    interp = Interpreter(model_content=model_bytes)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    return {
        "input_shape": [int(d) for d in inp["shape"][1:]],
        "input_dtype": np.dtype(inp["dtype"]).name,
        "input_quant": tensor_quant(inp),
        "output_dtype": np.dtype(out["dtype"]).name,
        "output_quant": tensor_quant(out),
    }


def float_leftovers(model_bytes: bytes) -> list[str]:
    """Float tensors and DEQUANTIZE ops of a model that should be integer end to end ([] when it is)."""
    from ..device.runtime import tflite_interpreter_class

    Interpreter, _, _ = tflite_interpreter_class(None)
    interp = Interpreter(model_content=model_bytes)
    found = [f"tensor {t['name']} ({np.dtype(t['dtype']).name})" for t in interp.get_tensor_details()
             if np.dtype(t["dtype"]).kind == "f"]
    found += [f"op {op['op_name']} #{op['index']}" for op in interp._get_ops_details() if op["op_name"] == "DEQUANTIZE"]
    return found


def embed_metadata(model_bytes: bytes, meta: dict) -> bytes:
    """The model with `meta` (edgecifar.device.metadata) as its "edgecifar" metadata entry, replacing an older one.

    Tensors and ops are untouched; the device reads it back without TensorFlow
    (edgecifar.device.tflite_metadata).
    """
    import json

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    from ..device.tflite_metadata import METADATA_NAME

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def write(model_bytes: bytes, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(model_bytes)
    return path

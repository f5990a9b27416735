"""Keep TFLite artifacts loadable by tflite-runtime 2.14, the newest build many Raspberry Pis have.

TF 2.21's converter quantizes dense layers per channel. For dynamic-range models that makes
FULLY_CONNECTED a hybrid op with per-channel int8 weights, which the op-version table marks as
version 12; tflite-runtime 2.14 knows FULLY_CONNECTED only up to version 11 and refuses the
whole model ("Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'"). With dense
weights quantized per tensor the same op is version 9, which 2.14 runs. Measured with TF 2.21
on seed002_m1_cnn (tests/test_tflite_runtime_compat.py proves it on every export):

    format    default TF 2.21                     with tflite214_converter_settings
    float32   CONV_2D v1, FULLY_CONNECTED v1      unchanged
    float16   + DEQUANTIZE v3                      unchanged
    dynamic   CONV_2D v5, FULLY_CONNECTED v12 ✗   CONV_2D v5, FULLY_CONNECTED v9 ✓
    int8      CONV_2D v3, FULLY_CONNECTED v4      unchanged (per-channel int8 FC is still v4,
              (per-channel dense weights)         and 2.14 computes it bit-identically)

So only dynamic-range conversion needs a change; full-integer int8 keeps per-channel dense
weights (better accuracy) because 2.14 already runs them.
"""

from __future__ import annotations

from pathlib import Path

# Oldest TFLite runtime the exported artifacts must load in (tests/test_tflite_runtime_compat.py).
OLDEST_RUNTIME = "tflite-runtime 2.14"
MODES = ("float32", "float16", "dynamic", "int8", "int8_full")


def tflite214_converter_settings(converter, mode: str) -> dict:
    """Set what keeps a `mode` conversion loadable in tflite-runtime 2.14; return what was set.

    Call it on a configured tf.lite.TFLiteConverter right before convert(). The returned dict
    (attribute → value) is for the artifact's metadata.
    """
    if mode not in MODES:
        raise ValueError(f"unknown TFLite mode {mode!r}; expected one of {MODES}")
    settings = {}
    if mode == "dynamic":
        # Per-tensor dense weights: hybrid FULLY_CONNECTED v9 instead of v12 (see module doc).
        settings["_experimental_disable_per_channel_quantization_for_dense_layers"] = True
    for name, value in settings.items():
        if not hasattr(converter, name):
            raise RuntimeError(f"this TensorFlow's TFLiteConverter has no {name}; the {OLDEST_RUNTIME} "
                               "compatibility setting must be revisited for this TensorFlow version")
        setattr(converter, name, value)
    return settings


def tflite_op_versions(model) -> dict[str, int]:
    """{builtin op name: highest version used} of a .tflite file or its bytes (needs TensorFlow)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    versions: dict[str, int] = {}
    for code in flatbuffer_utils.convert_bytearray_to_object(bytearray(data)).operatorCodes:
        # Codes >= 127 live in builtinCode; older ones in deprecatedBuiltinCode (the schema keeps both).
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"op{code.builtinCode}")
        versions[name] = max(versions.get(name, 0), int(code.version))
    return versions

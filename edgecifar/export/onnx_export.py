"""Keras model → ONNX: float32 with tf2onnx, then optionally static int8 QDQ with onnxruntime.

Route (measured on Keras 3.15 / TF 2.21 / tf2onnx 1.17): ``tf2onnx.convert.from_keras`` with an
explicit input signature. For Keras 3 models tf2onnx 1.17 traces ``model(x, training=False)``
in a tf.function (its own fallback since TF 2.16); going through ``model.export()`` to a
SavedModel and tf2onnx's SavedModel loader gives the identical graph and numbers, only slower
and through a private tf2onnx function, so we use the public one. Because tracing a live Keras
3 model is exactly what has produced silent NaN models in the TFLite converter, every export is
checked numerically against Keras before it is written (MAX_FLOAT_DIFF).

The int8 model is QDQ (QuantizeLinear/DequantizeLinear pairs around float ops) with signed
int8 weights and activations, float32 input and output: onnxruntime fuses the pairs into
integer kernels on ARM and x86, and the device feeds it the same float pixels as the float
model. Steps: ``quant_pre_process`` (symbolic shape inference + graph optimisation, so every
tensor has a shape and BN/bias are folded before ranges are measured) → ``quantize_static``
with the calibration images. The exporter quantizes the softmax-less copy (export.logits) with
``float_logits``: the final Dense stays float, so the output is float logits without int8 ties.

Weights use the full 8-bit range. On x86 CPUs without VNNI (AVX2), onnxruntime's fused int8 kernels
add pairs of 8-bit products in int16 and saturate: measured on seed002_m1_cnn (per-channel), the
fused model disagreed with the same QDQ graph run unfused on 21% of test images and lost 7 pp top-1.
ARM (the Pi) and x86 with VNNI accumulate in int32 and do not. So the exporter records
``reduce_range: false`` in the metadata, and the device runtime (edgecifar.device.runtime.Classifier)
runs such a model unfused, in float on the quantized values, on a CPU whose kernels would saturate
(edgecifar.machine.int8_products_exact): correct everywhere, integer-fast where the kernels are exact.
Until session 10 the exporter used 7-bit weights (``reduce_range=True``) instead, which no CPU
saturates; that cost the depthwise MobileNetV2 transfer model 10.35 pp
(benchmarks/results/onnx_weight_bits_seed004_mobilenetv2_transfer.md) and kept resnet8_edge's ONNX
int8 at 98.25 % agreement with Keras (99.12 % with 8-bit weights). ``reduce_range=True`` stays
available to the Python API.

Metadata (edgecifar.device.metadata) goes into ``metadata_props["edgecifar"]`` as JSON.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

from .. import defaults
from ..device.metadata import ONNX_KEY
from ..quiet import python_logs
from ..errors import UserError
from ..files import atomic_path, scratch_dir

INPUT_NAME = "pixels"
OUTPUT_NAMES = {"probabilities": "probs", "logits": "logits"}  # by the metadata's output kind
CALIB_METHODS = ("minmax", "entropy", "percentile")
# tf2onnx 1.17 writes opsets up to 18; per-channel QuantizeLinear needs the `axis` attribute (opset 13).
FLOAT_OPSETS = range(11, 19)
INT8_OPSETS = range(13, 19)
# Float ONNX must reproduce Keras: |onnx - keras| <= MAX_FLOAT_DIFF * (1 + |keras|). Measured ~1e-7 on
# softmax outputs (float rounding order); anything near the bound means a broken conversion, not
# rounding. The relative part is for logits (int8 exports), whose rounding error grows with their
# size: MobileNetV2's logits (up to ~20) differed by 1.1e-4 in absolute terms, 6e-6 relative.
MAX_FLOAT_DIFF = 1e-4
# The int8 QDQ file is stamped with this opset after quantization (onnx.version_converter): onnx.reference
# implements DequantizeLinear only from opset 19 on, and onnxruntime and OpenCV DNN read opset 21 too, so
# every reader runs the same file
# (tests/test_onnx_export.py::test_int8_with_quantized_dense_layers_runs_in_every_reader_with_identical_top1).
READER_OPSET = 21
VERIFY_IMAGES = 64


def export_onnx(keras_model_path, out_path, calib_images, *, quantize: bool, opset: int = defaults.ONNX_OPSET, per_channel: bool = True,
                calib_method: str = "minmax", keep_float=(), float_logits: bool = False, metadata: dict,
                echo=print, reduce_range: bool = False) -> Path:
    """Write `out_path` (.onnx): float32, or int8 QDQ when `quantize`; return the path.

    keras_model_path: a .keras file whose model takes (N, H, W, 3) float32 RGB pixels 0..255.
    calib_images:     uint8 RGB NHWC training images used for calibration (int8 only; may be
                      None for float32). They are fed as float32 0..255: scaling is in the model.
    per_channel:      int8 weights per output channel (default) or per tensor (--per-tensor).
    calib_method:     "minmax" | "entropy" | "percentile" (onnxruntime CalibrationMethod).
    keep_float:       node names to leave unquantized (quantize_static nodes_to_exclude), as
                      named by the quantization debug report (debug_quant.debug_onnx).
    float_logits:     the model outputs logits (edgecifar.export.logits): leave the final layer
                      (the Gemm/MatMul producing the output) in float, see quantize_qdq.
    metadata:         the artifact metadata; "onnx_opset" and "quantization" are added to a copy.
    reduce_range:     7-bit weights instead of 8 (int8 only): fused kernels never saturate them, on
                      any CPU, at an accuracy cost (module docstring). `edgecifar export` keeps 8 bits.

    The file is written atomically (temp name, then rename). Raises UserError for bad options,
    RuntimeError if the converted model fails the ONNX checker or disagrees with Keras.
    """
    _validate(calib_images, quantize, opset, calib_method)
    from ..runs import load_model

    opset = int(opset)
    model = load_model(Path(keras_model_path))
    with python_logs():
        echo(f"    tf2onnx: Keras → ONNX opset {opset}")
        proto = keras_to_onnx(model, opset, OUTPUT_NAMES[(metadata.get("output") or {}).get("kind", "probabilities")])
        verify = calib_images[:VERIFY_IMAGES] if calib_images is not None else _probe_images(model)
        diff = _max_scaled_diff(proto, model, verify)
        echo(f"    float32 ONNX vs Keras on {len(verify)} images: max |diff| / (1 + |keras|) {diff:.2e}")
        if not diff <= MAX_FLOAT_DIFF:  # also catches NaN
            raise RuntimeError(f"the ONNX model disagrees with Keras (max |diff| / (1 + |keras|) {diff:.3g} > {MAX_FLOAT_DIFF:g}); "
                               "the conversion is broken, do not deploy it")
        quant = None
        if quantize:
            echo(f"    onnxruntime: static int8 QDQ ({'per-channel' if per_channel else 'per-tensor'} weights, "
                 f"{calib_method} calibration on {len(calib_images)} images)")
            proto, float_nodes = quantize_qdq(proto, calib_images, per_channel=per_channel, calib_method=calib_method,
                                              keep_float=keep_float, float_logits=float_logits, reduce_range=reduce_range)
            if float_logits:
                echo(f"    final layer kept in float (float logits, no int8 ties): {', '.join(float_nodes[len(keep_float):])}")
            proto = for_every_reader(proto)
            quant = {"format": "QDQ", "weights": "int8", "activations": "int8", "per_channel": bool(per_channel),
                     "reduce_range": bool(reduce_range), "calibration_method": calib_method,
                     "calibration_samples": int(len(calib_images)), "float_nodes": sorted(float_nodes),
                     "float_logits": bool(float_logits)}
    proto = _checked(proto)
    meta = {**metadata, "onnx_opset": READER_OPSET if quantize else opset, "tf2onnx_opset": opset, "quantization": quant}
    _set_metadata(proto, meta)
    import onnx

    with atomic_path(out_path) as tmp:
        onnx.save(proto, str(tmp))
    return Path(out_path)


def keras_to_onnx(model, opset: int = defaults.ONNX_OPSET, output_name: str = "probs"):
    """Float32 ONNX ModelProto of a Keras 3 model: input "pixels" (N, H, W, 3), output `output_name`
    (N, classes): "probs", or "logits" for the int8 exports' softmax-less source (export.logits)."""
    import tensorflow as tf
    import tf2onnx

    shape = [None, *(int(d) for d in model.inputs[0].shape[1:])]
    signature = [tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        raise RuntimeError(f"expected one input and one output, tf2onnx produced {len(proto.graph.input)} and "
                           f"{len(proto.graph.output)}")
    # The output is named after the last Keras layer ("probs", or "head" for transfer models).
    _rename_value(proto.graph, proto.graph.output[0].name, output_name)
    _canonical_names(proto.graph)
    return proto


def quantize_qdq(float_proto, calib_images: np.ndarray, *, per_channel: bool = True, calib_method: str = "minmax",
                 keep_float=(), float_logits: bool = False, reduce_range: bool = False):
    """(static int8 QDQ ModelProto of a float ModelProto calibrated on uint8 images, names of the nodes left in float).

    float_logits: also leave the final layer (output Gemm/MatMul, and an Add of its bias) in float.
    Quantized, the logits fall on a grid of (calibrated range)/255 (0.27 on the trained
    seed002_m1 model), and 11.5 % of the test images had their two top classes on the same step,
    so argmax took the lower class index. Computed in float from the int8 features, the logits
    have no such ties (measured: 0 ties, top-1 agreement with Keras 93.6 % → 97.3 %) for one
    small float matrix product (features x classes) per image.
    reduce_range: 7-bit weights, which no CPU's fused kernels saturate (see the module docstring); the
    exporter uses 8-bit weights and the runtime runs them unfused where they would saturate.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calib_method]
    with scratch_dir("onnx") as tmp:
        pre, out = Path(tmp) / "preprocessed.onnx", Path(tmp) / "int8.onnx"
        pre_proto = preprocessed_float(float_proto)
        keep_float = list(keep_float)
        if float_logits:
            keep_float += [n for n in final_layer_nodes(pre_proto) if n not in keep_float]
        # The model's input rescale (pixels * 1/255, a scalar constant) stays float: quantized per channel it
        # becomes a DequantizeLinear with axis=1 on a scalar, which OpenCV DNN's default engine refuses.
        keep_float += [n for n in input_rescale_nodes(pre_proto) if n not in keep_float]
        unknown = sorted(set(keep_float) - {n.name for n in pre_proto.graph.node})
        if unknown:
            raise UserError(f"no node named {', '.join(map(repr, unknown))} to keep in float; use a node name from the "
                            "quantization debug report (edgecifar export --debug-quant)")
        onnx.save(pre_proto, str(pre))
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print() their progress
            quantize_static(str(pre), str(out), calibration_data_reader=calibration_reader(calib_images),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, per_channel=bool(per_channel), reduce_range=bool(reduce_range),
                            nodes_to_exclude=keep_float or None, calibrate_method=method)
        return onnx.load(str(out)), keep_float


def input_rescale_nodes(proto) -> list[str]:
    """Elementwise Mul/Div/Add/Sub nodes that take the graph input and a constant: the model's own input scaling."""
    consts = {t.name for t in proto.graph.initializer}
    consts |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    first = proto.graph.input[0].name
    return [n.name for n in proto.graph.node
            if n.op_type in ("Mul", "Div", "Add", "Sub") and first in n.input and any(i in consts for i in n.input)]


def for_every_reader(proto):
    """The int8 model as onnxruntime, OpenCV DNN and onnx.reference all run it: converted to READER_OPSET, every
    Dense bias a float constant (float_dense_biases), every zero point shaped like its scale (zero_points_like_scales)."""
    from onnx import version_converter

    return zero_points_like_scales(float_dense_biases(version_converter.convert_version(proto, READER_OPSET)))


def zero_points_like_scales(proto):
    """`proto` with each (De)QuantizeLinear's constant zero point reshaped to its scale's shape (same values).

    Why. Per tensor, quantize_static writes a Conv bias's scale as shape (1,) and its zero point as a scalar; the
    ONNX spec and onnxruntime accept that, OpenCV DNN's default engine does not ('zpshape == scshape')."""
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        scale, zero = inits.get(node.input[1]), inits.get(node.input[2])
        if scale is None or zero is None or list(scale.dims) == list(zero.dims):
            continue
        values = numpy_helper.to_array(zero)
        if values.size != int(np.prod(scale.dims, dtype=np.int64)):
            continue  # not a shape-only difference: leave it to the checker
        name = f"{zero.name}_as_{'x'.join(map(str, scale.dims)) or 'scalar'}"
        if name not in inits:
            inits[name] = numpy_helper.from_array(values.reshape(tuple(scale.dims)), name)
            graph.initializer.append(inits[name])
        node.input[2] = name
    drop_unused(graph)
    return proto


def float_dense_biases(proto):
    """`proto` with each Gemm's bias, quantize_static's DequantizeLinear of an int32 constant, replaced by the float
    constant that DequantizeLinear computes: (q - zero point) * scale in float32, the same values.

    Why. OpenCV DNN's default engine (5.0) cannot take a Gemm bias from a DequantizeLinear ('bufidx >= 0 in
    argTensor'), so no int8 file with a quantized hidden Dense layer (every seed model but the edge models) loaded
    there; Conv biases are fine. onnxruntime fuses the rewritten Gemm into the same QGemm: measured on a trained
    seed002_m1_cnn, outputs bit-identical with fused and with unfused kernels (tests/test_onnx_export.py)."""
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    for node in [n for n in graph.node if n.op_type == "Gemm" and len(n.input) > 2]:
        dq = producers.get(node.input[2])
        if dq is None or dq.op_type != "DequantizeLinear" or not all(i in inits for i in dq.input[:2]):
            continue
        q = numpy_helper.to_array(inits[dq.input[0]])
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
        zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] in inits else 0
        bias = ((q.astype(np.int64) - zero).astype(np.float32) * scale).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(bias, f"{dq.output[0]}_float"))
        node.input[2] = f"{dq.output[0]}_float"
    drop_unused(graph)
    return proto


def drop_unused(graph) -> None:
    """Remove the nodes whose outputs nothing reads (and that are not graph outputs), then the constants nothing
    reads: what a rewrite above leaves behind (a bias's DequantizeLinear, a zero point of the old shape)."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if not any(o in read for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(init)


def final_layer_nodes(proto) -> list[str]:
    """Names of the nodes computing the final Dense: the graph output's producer (Gemm, or Add of a
    bias after MatMul: then both). A UserError if the output is not made by such a layer."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    node = producers.get(proto.graph.output[0].name)
    names = []
    if node is not None and node.op_type == "Add":
        names.append(node.name)
        node = next((producers[i] for i in node.input if i in producers and producers[i].op_type == "MatMul"), None)
    if node is None or node.op_type not in ("Gemm", "MatMul"):
        raise UserError("float logits need a model whose output is its final Dense layer (no softmax); "
                        "this graph ends differently")
    return [*names, node.name][::-1]


def preprocessed_float(float_proto):
    """The float model as quantize_static sees it: after quant_pre_process (symbolic shape
    inference, constant folding, BN/bias fusion). Its tensor names match the QDQ model's, which
    is what per-layer comparisons need."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with scratch_dir("onnx") as tmp:
        src, pre = Path(tmp) / "float.onnx", Path(tmp) / "preprocessed.onnx"
        onnx.save(float_proto, str(src))
        with python_logs(), contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(src), str(pre))
        return onnx.load(str(pre))


def calibration_reader(images: np.ndarray, batch: int = defaults.CALIB_BATCH):
    """The calibration set's reader (edgecifar.export.calibration.onnx_reader) under this exporter's input name."""
    from .calibration import onnx_reader

    return onnx_reader(images, INPUT_NAME, batch)


# --- helpers ----------------------------------------------------------------------------


def _validate(calib_images, quantize: bool, opset, calib_method: str) -> None:
    if calib_method not in CALIB_METHODS:
        raise UserError(f"--calib-method {calib_method!r}: choose one of {', '.join(CALIB_METHODS)}")
    allowed = INT8_OPSETS if quantize else FLOAT_OPSETS
    try:
        ok = int(opset) in allowed
    except (TypeError, ValueError):
        ok = False
    if not ok:
        why = " for int8 QDQ" if quantize else ""
        raise UserError(f"--opset {opset}: ONNX export supports opsets {allowed.start}..{allowed.stop - 1}{why}; "
                        f"use the default {defaults.ONNX_OPSET}")
    if not quantize:
        return
    if calib_images is None or len(calib_images) == 0:
        raise UserError("int8 ONNX export needs calibration images; pass --calib-samples of a few hundred")
    images = np.asarray(calib_images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise UserError(f"calibration images must be uint8 RGB (N, H, W, 3), got {images.dtype} {images.shape}")


def _probe_images(model, n: int = 16) -> np.ndarray:
    """Fixed pseudo-random pixels for the float check when no calibration images were given."""
    h, w, c = (int(d) for d in model.inputs[0].shape[1:])
    return np.random.default_rng(0).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _max_scaled_diff(proto, model, images: np.ndarray) -> float:
    """max |onnx - keras| / (1 + |keras|): absolute for probabilities, relative for large logits."""
    x = np.asarray(images).astype(np.float32)
    ref = np.asarray(model.predict(x, verbose=0, batch_size=len(x))).astype(np.float64)
    got = _session(proto).run(None, {INPUT_NAME: x})[0]
    return float(np.max(np.abs(got - ref) / (1 + np.abs(ref)))) if np.isfinite(got).all() else float("nan")


def _session(proto):
    import onnxruntime as ort

    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _checked(proto):
    """Full ONNX checker plus strict shape inference; returns the model with inferred shapes."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise RuntimeError(f"the ONNX model is invalid: {str(e).strip().splitlines()[0][:200]}") from None
    return proto


def _set_metadata(proto, meta: dict) -> None:
    from ..files import dumps

    for prop in list(proto.metadata_props):
        if prop.key == ONNX_KEY:
            proto.metadata_props.remove(prop)
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_KEY, dumps(meta)


_AUTO_SUFFIX = re.compile(r"__(\d+)")


def _canonical_names(graph) -> None:
    """Renumber the names tf2onnx invents ("Conv__483") in graph order.

    tf2onnx numbers them from a process-wide counter, so converting the same model twice (the
    float and the int8 artifact) gives different names. Renumbered, the two share tensor names,
    which the per-layer debug report matches on, and a conversion is reproducible.
    """
    numbers: dict[str, str] = {}

    def visit(name: str) -> None:
        for n in _AUTO_SUFFIX.findall(name):
            numbers.setdefault(n, str(len(numbers) + 1))

    for node in graph.node:
        for name in (node.name, *node.input, *node.output):
            visit(name)
    for init in graph.initializer:
        visit(init.name)

    def fix(name: str) -> str:
        return _AUTO_SUFFIX.sub(lambda m: f"__{numbers[m.group(1)]}", name)

    for node in graph.node:
        node.name = fix(node.name)
        node.input[:] = [fix(n) for n in node.input]
        node.output[:] = [fix(n) for n in node.output]
    for value in [*graph.initializer, *graph.input, *graph.output, *graph.value_info]:
        value.name = fix(value.name)
    # The dynamic batch dimension (tf2onnx: "unk__1335") is one and the same for input and output.
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = "batch"


def _rename_value(graph, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.name == old:
            value.name = new

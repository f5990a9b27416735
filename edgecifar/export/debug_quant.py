"""Per-layer quantization error of the int8 artifacts: which layers lose the most, what to keep in float.

    debug_tflite(model.keras, model_int8.tflite, calib, out_dir)  → [<name>_tflite_quant_debug.md, .json]
    debug_onnx(model.keras | model_float32.onnx, model_int8.onnx, calib, out_dir) → [... _onnx_quant_debug.md, .json]

TFLite: tf.lite.experimental.QuantizationDebugger re-quantizes the model in debug mode (each
quantized op followed by a NumericVerify against the float op on the same input), so every
number is the error *this* layer adds. Per layer: MSE, max |error|, the quantization scale, the
TF guide's rmse/scale (≈0.29 = pure rounding noise; well above means clipping or a poor range)
and SQNR in dB. Settings follow the artifact's metadata (per-channel or not).

ONNX: onnxruntime.quantization.qdq_loss_debug runs the float model (as quantize_static saw it,
after quant_pre_process) and the QDQ model with every activation exposed; tensors are paired by
graph position. Per activation: local SQNR (the float value quantized with this tensor's scale
and zero point: rounding + clipping this step adds alone) and SQNR against the float model at
that point (accumulated); per weight: SQNR of the dequantized weight. The report also runs the
artifact itself (fused integer kernels) against the float model.

Flagged, with the exact setting that keeps it in float:
    * a tensor whose local SQNR is below SUSPECT_SQNR_DB (TFLite: or rmse/scale above
      SUSPECT_RMSE_SCALE): its range/rounding is the problem;
    * ONNX: a weighted node across which the accumulated SQNR falls by SUSPECT_DROP_DB or more
      (int8 weights x int8 inputs lose precision there even though each tensor rounds fine).
When nothing is flagged the report says so and still lists the worst layers.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from .. import defaults
from ..errors import UserError
from ..files import scratch_dir, write_json, write_text
from ..quiet import python_logs

DEBUG_SAMPLES = 100
SUSPECT_SQNR_DB = 20.0  # noise power above 1% of signal power
SUSPECT_RMSE_SCALE = 0.7  # TF's debugger guide: ~0.29 is ideal rounding error
SUSPECT_DROP_DB = 10.0  # accumulated error power grows 10x inside one layer
WORST = 5


# --- TFLite -------------------------------------------------------------------------------


def debug_tflite(keras_model_path, int8_tflite_path, calib, out_dir, echo=print, samples: int = DEBUG_SAMPLES) -> list[Path]:
    """Per-layer report for a TFLite int8 artifact; returns [markdown path, JSON path].

    keras_model_path: the source .keras (the debugger needs a converter, so not a .tflite).
    calib: a CalibrationSet or uint8 RGB images (N, H, W, 3); the first `samples` are used.
    """
    import tensorflow as tf

    from ..device import metadata as meta_io
    from ..runs import load_model

    keras_model_path, int8_tflite_path = Path(keras_model_path), Path(int8_tflite_path)
    if keras_model_path.suffix != ".keras":
        raise UserError(f"{keras_model_path}: TFLite quantization debugging needs the source .keras model")
    images = _images(calib, samples)
    meta = meta_io.read(int8_tflite_path) if int8_tflite_path.is_file() else {}
    conversion = meta.get("conversion") or {}
    per_channel = bool(conversion.get("per_channel", True))
    kind = "int8_full" if meta.get("format") == "tflite_int8_full" else "int8"
    echo(f"    TFLite QuantizationDebugger on {len(images)} calibration images ({'per-channel' if per_channel else 'per-tensor'})")

    def dataset():
        for i in range(len(images)):
            yield [images[i : i + 1].astype(np.float32)]

    model = load_model(keras_model_path)
    with scratch_dir("debug") as tmp:
        from ..quiet import native_stderr
        from .tflite_export import head_node, int8_converter, saved_model  # the exporter's own steps

        saved = saved_model(model, Path(tmp))
        with native_stderr():
            # The artifact's converter; for the float-head int8 its head is denylisted as the exporter does,
            # so the layers debugged are the layers shipped.
            converter = int8_converter(saved, dataset, kind, per_channel, conversion.get("inference_input_type", "uint8"))
            keep_float = []
            if kind == "int8":
                # The head's name as the debugger's calibrated model has it (the exporter's way: head_node of the
                # calibrated model; names in the finished artifact can differ).
                converter._experimental_calibrate_only = True
                keep_float.append(head_node(converter.convert()))
            keep_float += conversion.get("float_layers") or []  # layers the accuracy-aware export kept in float
            float_model = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
            # Built from the converter, the debug interpreter may reuse float tensors' memory, so
            # the direct float-vs-quantized metrics (for SQNR) run in a second debugger over the
            # same debug model, which preserves every tensor.
            first = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep_float or None)
            debug_model = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset,
                                                                    debug_options=first).quant_model
            options = tf.lite.experimental.QuantizationDebugOptions(
                layer_direct_compare_metrics={"float_mean_square": _float_mean_square, "direct_mse": _direct_mse},
                model_debug_metrics={"max_abs_output_diff": _max_abs_output_diff, "top1_agreement": _top1_agreement})
            debugger = tf.lite.experimental.QuantizationDebugger(
                quant_debug_model_content=debug_model, float_model_content=float_model, debug_dataset=dataset,
                debug_options=options)
            debugger.run()
            dump = io.StringIO()
            debugger.layer_statistics_dump(dump)
    layers = _tflite_layers(dump.getvalue())
    model_stats = {k: float(v) for k, v in (debugger.model_statistics or {}).items()}
    artifact = _artifact_agreement(int8_tflite_path, model, images)
    result = {
        "artifact": str(int8_tflite_path),
        "tool": "tf.lite.experimental.QuantizationDebugger (NumericVerify: error each layer adds, on its own input)",
        "samples": len(images),
        "per_channel": per_channel,
        "model": {**model_stats, **artifact},
        "layers": layers,
    }
    flagged = [l for l in layers if _tflite_suspect(l)]
    result["worst"] = [l["tensor"] for l in worst_first(layers)[:WORST]]
    result["suggestions"] = [
        {"layer": l["tensor"], "op": l["op"],
         "why": f"SQNR {_db(l['sqnr_db'])}, rmse/scale {l['rmse_per_scale']:.2f}",
         "how": f"tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=[{l['tensor']!r}]) and "
                "debugger.get_nondebug_quantized_model() (selective quantization: this op stays float)"}
        for l in flagged]
    return _save(result, out_dir, int8_tflite_path, _tflite_markdown(result), echo)


def _float_mean_square(f, q, scale, zero_point):
    return float(np.mean(np.square(f.astype(np.float64))))


def _direct_mse(f, q, scale, zero_point):
    deq = (q.astype(np.float64) - zero_point) * scale
    return float(np.mean(np.square(f.astype(np.float64) - deq)))


def _max_abs_output_diff(float_outputs, quant_outputs):
    return float(np.max(np.abs(float_outputs[0] - quant_outputs[0])))


def _top1_agreement(float_outputs, quant_outputs):
    return float(np.mean(np.argmax(float_outputs[0], -1) == np.argmax(quant_outputs[0], -1)))


def _tflite_layers(csv_text: str) -> list[dict]:
    import csv

    layers = []
    for row in csv.DictReader(io.StringIO(csv_text)):
        mse, scale = float(row["mean_squared_error"]), float(row["scale"])
        power = float(row["float_mean_square"])
        layers.append({
            "tensor": row["tensor_name"],
            "op": row["op_name"],
            "elements": int(float(row["num_elements"])),
            "mse": mse,
            "max_abs_error": float(row["max_abs_error"]),
            "scale": scale,
            "zero_point": int(float(row["zero_point"])),
            "range": 255.0 * scale,
            "rmse_per_scale": math.sqrt(mse) / scale if scale > 0 else float("nan"),
            "sqnr_db": _sqnr_db(power, mse),
        })
    return layers


def _tflite_suspect(layer) -> bool:
    sqnr = layer["sqnr_db"]
    return (sqnr is not None and sqnr < SUSPECT_SQNR_DB) or layer["rmse_per_scale"] > SUSPECT_RMSE_SCALE


def _artifact_agreement(path: Path, keras_model, images) -> dict:
    """Top-1 agreement of the written int8 artifact itself with Keras on the debug images."""
    if not path.is_file():
        return {}
    from ..device.runtime import Classifier

    clf = Classifier(path)
    probs = clf.predict(images)
    ref = _as_probs(np.asarray(keras_model.predict(images.astype(np.float32), verbose=0)), clf)
    return {"artifact_top1_agreement_with_keras": float(np.mean(probs.argmax(1) == ref.argmax(1))),
            "artifact_max_abs_prob_diff": float(np.max(np.abs(probs - ref)))}


def _as_probs(outputs: np.ndarray, clf) -> np.ndarray:
    """Source-model outputs as probabilities, the way the device turns the artifact's into them."""
    from ..device.runtime import softmax

    return softmax(outputs) if getattr(clf, "output_kind", "probabilities") == "logits" else outputs


# --- ONNX ---------------------------------------------------------------------------------


def debug_onnx(float_source, int8_onnx_path, calib, out_dir, echo=print, samples: int = DEBUG_SAMPLES) -> list[Path]:
    """Per-layer report for an ONNX int8 QDQ artifact; returns [markdown path, JSON path].

    float_source: the float32 .onnx artifact, or the source .keras (converted again, same opset).
    calib: a CalibrationSet or uint8 RGB images (N, H, W, 3); the first `samples` are used.
    """
    import onnx

    from ..device import metadata as meta_io

    float_source, int8_onnx_path = Path(float_source), Path(int8_onnx_path)
    if not int8_onnx_path.is_file():
        raise UserError(f"{int8_onnx_path} does not exist; export the int8 ONNX model first")
    images = _images(calib, samples)
    meta = meta_io.read(int8_onnx_path)
    echo(f"    onnxruntime qdq_loss_debug on {len(images)} calibration images")
    qdq_proto = onnx.load(str(int8_onnx_path))
    float_proto = _float_twin(float_source, meta, qdq_proto.graph.output[0].name)
    float_acts, qdq_acts = _activations(float_proto, int8_onnx_path, images)

    # Pair each QDQ tensor with its float twin by graph position (names can differ between two
    # tf2onnx conversions of one model), falling back to equal names.
    pairs = _pair_tensors(float_proto, qdq_proto)
    layers, unmatched = _onnx_layers(float_proto, qdq_proto, pairs, float_acts, qdq_acts)
    weight_rows = _onnx_weight_errors(float_proto, qdq_proto, pairs)
    result = {
        "artifact": str(int8_onnx_path),
        "tool": "onnxruntime.quantization.qdq_loss_debug (float model after quant_pre_process vs QDQ model)",
        "samples": len(images),
        "quantization": meta.get("quantization"),
        "model": _onnx_model_stats(float_proto, qdq_proto, float_acts, qdq_acts, int8_onnx_path, images),
        "layers": layers,
        "weights": weight_rows,
        # Quantized tensors with no same-named float tensor: the two models were converted differently.
        "unmatched_activations": unmatched,
    }
    if unmatched:
        echo(f"    warning: {len(unmatched)} quantized activation(s) have no float counterpart (e.g. {unmatched[0]}); "
             "pass the float32 .onnx exported alongside this int8 model")
    ranked = worst_first(layers, "local_sqnr_db")
    result["worst"] = [l["tensor"] for l in ranked[:WORST]]
    result["suggestions"] = _onnx_suggestions(layers, ranked, weight_rows)
    return _save(result, out_dir, int8_onnx_path, _onnx_markdown(result), echo)


def _float_twin(float_source: Path, meta: dict, qdq_output: str):
    """The float model the QDQ one is compared with, pre-processed as the quantizer saw it."""
    import onnx

    from . import onnx_export

    if float_source.suffix == ".keras":
        from ..runs import load_model

        with python_logs():
            opset = int(meta.get("tf2onnx_opset", meta.get("onnx_opset", defaults.ONNX_OPSET)))
            float_proto = onnx_export.keras_to_onnx(load_model(float_source), opset, qdq_output)
    elif float_source.suffix == ".onnx":
        float_proto = onnx.load(str(float_source))
    else:
        raise UserError(f"{float_source}: pass the float32 .onnx or the source .keras model")
    return onnx_export.preprocessed_float(float_proto)


def _activations(float_proto, int8_onnx_path: Path, images: np.ndarray):
    """Every intermediate tensor of the float and of the QDQ model on `images` (onnxruntime's qdq_loss_debug)."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import collect_activations, modify_model_output_intermediate_tensors

    from . import onnx_export

    with scratch_dir("debug") as tmp:
        float_path, float_aug, qdq_aug = tmp / "float.onnx", tmp / "float_aug.onnx", tmp / "qdq_aug.onnx"
        onnx.save(float_proto, str(float_path))
        with python_logs():
            modify_model_output_intermediate_tensors(str(float_path), str(float_aug))
            modify_model_output_intermediate_tensors(str(int8_onnx_path), str(qdq_aug))
            float_acts = collect_activations(str(float_aug), onnx_export.calibration_reader(images))
            qdq_acts = collect_activations(str(qdq_aug), onnx_export.calibration_reader(images))
    return float_acts, qdq_acts


def _onnx_layers(float_proto, qdq_proto, pairs, float_acts, qdq_acts) -> tuple[list[dict], list[str]]:
    """One row per quantized activation (in graph order), and the activations with no float twin."""
    from onnxruntime.quantization.qdq_loss_debug import create_activation_matching

    float_by_qdq_name = {q: float_acts[f] for q, f in pairs.items() if f in float_acts}
    matching = create_activation_matching(qdq_acts, {**float_acts, **float_by_qdq_name})
    qparams = _onnx_activation_qparams(qdq_proto)
    producers = {out: node for node in float_proto.graph.node for out in node.output}
    constants = {i.name for i in qdq_proto.graph.initializer}
    layers, unmatched = [], []
    for name, match in matching.items():
        flt = match.get("float")
        if name in constants or name not in qparams:
            continue  # constants are reported as weights
        if not flt:
            unmatched.append(name)
            continue
        node = producers.get(pairs.get(name, name))
        layers.append({
            "tensor": name,
            "node": node.name if node is not None else None,
            "op": node.op_type if node is not None else "graph input",
            "scale": qparams[name][0],
            "zero_point": qparams[name][1],
            # Quantizing the float model's own value with this tensor's scale: the error this step
            # adds by itself (rounding + clipping to the calibrated range), free of upstream error.
            "local_sqnr_db": _sqnr_lists(flt, [_fake_quant(f, *qparams[name]) for f in flt]),
            "vs_float_sqnr_db": _sqnr_lists(flt, match["post_qdq"]),
        })
    order = {out.removesuffix("_QuantizeLinear_Input"): i for i, node in enumerate(qdq_proto.graph.node)
             for out in node.output}
    layers.sort(key=lambda l: order.get(l["tensor"], -1))
    # Error can also grow inside a layer (int8 weights times int8 inputs): the SQNR drop per weighted node.
    _add_drops(layers, float_proto, pairs)
    return layers, unmatched


def _onnx_model_stats(float_proto, qdq_proto, float_acts, qdq_acts, int8_onnx_path: Path, images) -> dict:
    """Output agreement of the instrumented (unfused) graphs, and of the artifact as the device runs it."""
    float_out = float_acts.get(float_proto.graph.output[0].name)
    qdq_out = qdq_acts.get(qdq_proto.graph.output[0].name)
    if not (float_out and qdq_out):
        return {}
    # The instrumented models save every tensor flattened: one row per image again.
    f = np.concatenate(float_out).reshape(len(images), -1)
    q = np.concatenate(qdq_out).reshape(len(images), -1)
    model = {"max_abs_output_diff": float(np.max(np.abs(f - q))),
             "top1_agreement": float(np.mean(f.argmax(-1) == q.argmax(-1))),
             "output_sqnr_db": _sqnr_lists(float_out, qdq_out)}
    # The instrumented graphs run unfused (every tensor is an output); the artifact as the device
    # runs it uses fused integer kernels, which must tell the same story.
    from ..device.runtime import Classifier

    clf = Classifier(int8_onnx_path)
    probs = clf.predict(images)
    float_probs = _as_probs(f, clf)
    model.update(artifact_top1_agreement_with_float=float(np.mean(probs.argmax(1) == float_probs.argmax(1))),
                 artifact_max_abs_prob_diff=float(np.max(np.abs(probs - float_probs))))
    return model


def _onnx_suggestions(layers: list[dict], ranked: list[dict], weight_rows: list[dict]) -> list[dict]:
    """Layers worth keeping in float: poor output SQNR, poor weight SQNR, or a large SQNR drop across them."""
    flagged = [l for l in ranked if l["node"] and l["local_sqnr_db"] is not None and l["local_sqnr_db"] < SUSPECT_SQNR_DB]
    flagged_weights = [w for w in weight_rows if w["sqnr_db"] is not None and w["sqnr_db"] < SUSPECT_SQNR_DB]
    suggestions = [
        {"layer": l["node"], "op": l["op"], "why": f"its output quantization alone gives SQNR {_db(l['local_sqnr_db'])}",
         "how": f"export_onnx(..., keep_float=[{l['node']!r}]) (quantize_static nodes_to_exclude)"}
        for l in flagged]
    suggestions += [
        {"layer": w["weight"], "op": "weight", "why": f"weight SQNR {_db(w['sqnr_db'])}",
         "how": "keep per-channel weights (the default; --per-tensor loses precision here)" if w["per_tensor"]
                else f"export_onnx(..., keep_float=[{w['node']!r}])"}
        for w in flagged_weights]
    for l in sorted((l for l in layers if l.get("drop_db") is not None), key=lambda l: -l["drop_db"]):
        if l["drop_db"] < SUSPECT_DROP_DB or any(s["layer"] == l["compute_node"] for s in suggestions):
            continue
        suggestions.append(
            {"layer": l["compute_node"], "op": l["compute_op"],
             "why": f"accumulated SQNR falls {l['drop_db']:.1f} dB across it (to {_db(l['vs_float_sqnr_db'])})",
             "how": f"export_onnx(..., keep_float=[{l['compute_node']!r}]) (quantize_static nodes_to_exclude)"})
    return suggestions


def _add_drops(layers: list[dict], float_proto, pairs: dict[str, str]) -> None:
    """Set layer["drop_db"]: accumulated SQNR of the nearest quantized inputs minus this tensor's,
    and layer["compute_node"/"compute_op"]: the weighted node (Conv/Gemm/MatMul) in between."""
    producers = {o: n for n in float_proto.graph.node for o in n.output}
    graph_inputs = {i.name for i in float_proto.graph.input}
    sqnr = {pairs.get(l["tensor"], l["tensor"]): l["vs_float_sqnr_db"] for l in layers}
    for layer in layers:
        here = pairs.get(layer["tensor"], layer["tensor"])
        inputs, compute, stack, seen = [], None, [here], set()
        while stack:  # walk up through unquantized tensors to the quantized (or graph) inputs
            node = producers.get(stack.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if compute is None and node.op_type in ("Conv", "Gemm", "MatMul", "ConvTranspose"):
                compute = node
            for name in node.input:
                if name in sqnr and name != here:
                    inputs.append(math.inf if sqnr[name] is None else sqnr[name])
                elif name in graph_inputs:
                    inputs.append(math.inf)
                elif name in producers:
                    stack.append(name)
        own = layer["vs_float_sqnr_db"]
        if compute is None or not inputs or own is None:
            continue
        layer["drop_db"] = (min(inputs) - own) if math.isfinite(min(inputs)) else None
        layer["compute_node"], layer["compute_op"] = compute.name, compute.op_type


def _onnx_activation_qparams(qdq_proto) -> dict:
    """{activation name: (scale, zero_point, dtype)} from the QuantizeLinear nodes of a QDQ model."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in qdq_proto.graph.initializer}
    out = {}
    for node in qdq_proto.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[1] in inits and inits[node.input[1]].size == 1:
            zp = inits[node.input[2]] if len(node.input) > 2 and node.input[2] in inits else np.array(0, np.uint8)
            # A graph output's producer is renamed "<name>_QuantizeLinear_Input" so the DQ keeps the name.
            name = node.input[0].removesuffix("_QuantizeLinear_Input")
            out[name] = (float(inits[node.input[1]]), int(zp), zp.dtype)
    return out


def _fake_quant(x, scale: float, zero_point: int, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.clip(np.round(np.asarray(x, np.float64) / scale) + zero_point, info.min, info.max)
    return (q - zero_point) * scale


_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_REMOVABLE = ("Relu", "Clip")  # folded into the quantizer's range by quantize_static


def _pair_tensors(float_proto, qdq_proto) -> dict[str, str]:
    """{QDQ-model tensor name: float-model tensor name}, aligned by graph position.

    The QDQ model is the float model plus Quantize/DequantizeLinear nodes, minus the ReLU/Clip
    nodes the quantizer folded into ranges; walking both node lists in order pairs outputs (and,
    through the DequantizeLinear nodes, quantized weights with their float originals). Returns {}
    when the two graphs do not line up.
    """
    producers = {o: n for n in qdq_proto.graph.node for o in n.output}

    def source(name: str) -> str:
        """What a QDQ-model input stands for: the activation before Q/DQ, or the quantized weight."""
        dq = producers.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return name
        q = producers.get(dq.input[0])
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else dq.input[0]

    qnodes = [n for n in qdq_proto.graph.node if n.op_type not in _QDQ_OPS]
    pairs: dict[str, str] = {}
    j = 0
    for fnode in float_proto.graph.node:
        if j < len(qnodes) and qnodes[j].op_type == fnode.op_type:
            qnode = qnodes[j]
            for qi, fi in zip(qnode.input, fnode.input):
                pairs.setdefault(source(qi), fi)
            for qo, fo in zip(qnode.output, fnode.output):
                pairs[qo.removesuffix("_QuantizeLinear_Input")] = fo
            j += 1
        elif fnode.op_type in _REMOVABLE and j > 0:
            for qo in qnodes[j - 1].output:  # the folded activation's output now comes from the node before
                pairs[qo.removesuffix("_QuantizeLinear_Input")] = fnode.output[0]
        else:
            return {}
    return pairs if j == len(qnodes) else {}


def _onnx_weight_errors(float_proto, qdq_proto, pairs: dict[str, str]) -> list[dict]:
    """SQNR of every quantized initializer against its float original.

    Dequantized here in int32: onnxruntime's create_weight_matching subtracts the zero point in
    the weight's own int8 type, which overflows for asymmetric constants (e.g. 127 - (-128)).
    """
    from onnx import numpy_helper

    floats = {i.name: numpy_helper.to_array(i) for i in float_proto.graph.initializer}
    inits = {i.name: numpy_helper.to_array(i) for i in qdq_proto.graph.initializer}
    rows = []
    for node in qdq_proto.graph.node:
        q_name = node.input[0] if node.op_type == "DequantizeLinear" else None
        if not q_name or q_name not in inits or not q_name.endswith("_quantized"):
            continue
        original = floats.get(pairs.get(q_name, q_name[: -len("_quantized")]))
        if original is None or original.size != inits[q_name].size:
            # No float twin, or a wrong one: two tf2onnx conversions of one model (a .keras source) can
            # name and order constants differently; a mismatched pair says nothing, so it is left out.
            continue
        q, scale = inits[q_name].astype(np.int64), inits[node.input[1]].astype(np.float64)
        zp = inits[node.input[2]].astype(np.int64) if len(node.input) > 2 else np.zeros_like(scale, np.int64)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.size > 1:  # per-channel: broadcast along `axis`
            shape = [1] * q.ndim
            shape[axis] = scale.size
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        consumer = next((n.name for n in qdq_proto.graph.node if node.output[0] in n.input), None)
        rows.append({"weight": q_name[: -len("_quantized")], "node": consumer, "per_tensor": scale.size == 1,
                     "channels": int(scale.size), "sqnr_db": _sqnr_lists([original], [(q - zp) * scale])})
    return rows


# --- shared -------------------------------------------------------------------------------


def _images(calib, samples: int) -> np.ndarray:
    images = getattr(calib, "images", calib)
    if images is None or len(images) == 0:
        raise UserError("quantization debugging needs calibration images; pass --calib-samples of a few hundred")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"calibration images must be (N, H, W, 3) RGB, got {images.shape}")
    return images[: max(1, int(samples))]


def _sqnr_db(signal_power: float, noise_power: float):
    """10·log10(signal/noise); None when the noise is exactly zero (lossless, e.g. a pass-through)."""
    if noise_power <= 0:
        return None
    if signal_power <= 0:
        return float("-inf")
    return 10.0 * math.log10(signal_power / noise_power)


def _sqnr_lists(xs, ys):
    x = np.concatenate([np.asarray(a, np.float64).ravel() for a in xs])
    y = np.concatenate([np.asarray(a, np.float64).ravel() for a in ys])
    return _sqnr_db(float(np.mean(x * x)), float(np.mean((x - y) ** 2)))


def _key(sqnr):
    return math.inf if sqnr is None else sqnr


def worst_first(layers: list[dict], sqnr: str = "sqnr_db") -> list[dict]:
    """Layers ranked worst first: lowest SQNR (None = lossless, last), then highest rmse/scale where reported.
    The debug reports and the accuracy-aware export (export/fallback.py) rank layers with this one order."""
    return sorted(layers, key=lambda l: (_key(l[sqnr]), -(l.get("rmse_per_scale") or 0.0)))


def _db(v) -> str:
    return "lossless" if v is None else f"{v:.1f} dB"


def _save(result: dict, out_dir, artifact: Path, markdown: str, echo) -> list[Path]:
    out_dir = Path(out_dir)
    stem = f"{artifact.stem}_{artifact.suffix.lstrip('.')}_quant_debug"
    md_path, json_path = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    write_json(json_path, result)  # NaN and infinities as null (files.json_finite)
    write_text(md_path, markdown)
    if result["suggestions"]:
        echo(f"    {len(result['suggestions'])} layer(s) worth keeping in float: "
             + ", ".join(str(s["layer"]) for s in result["suggestions"][:3]))
    else:
        echo(f"    no layer below {SUSPECT_SQNR_DB:g} dB SQNR; worst: {result['worst'][0] if result['worst'] else '-'}")
    return [md_path, json_path]


def _short(name: str, width: int = 60) -> str:
    first = name.split(";")[0]
    return first if len(first) <= width else "…" + first[-(width - 1):]


def _suggestion_lines(result) -> list[str]:
    if not result["suggestions"]:
        return [f"No layer is below {SUSPECT_SQNR_DB:g} dB SQNR, so quantization error is spread thin: nothing needs "
                "to stay in float. If accuracy still drops, try more calibration samples or another calibration method."]
    lines = ["Keep these in float (worst first):", ""]
    for s in result["suggestions"]:
        lines.append(f"- `{s['layer']}` ({s['op']}): {s['why']}. How: `{s['how']}`")
    return lines


def _model_lines(model: dict) -> list[str]:
    return [f"- {k.replace('_', ' ')}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in model.items()]


def _tflite_markdown(r) -> str:
    lines = [f"# Quantization debug: {Path(r['artifact']).name}", "",
             f"{r['tool']}; {r['samples']} calibration images; {'per-channel' if r['per_channel'] else 'per-tensor'} weights.",
             "rmse/scale ≈ 0.29 is pure rounding noise; SQNR is the float output's power over the error's.", "",
             "## Whole model", "", *_model_lines(r["model"]), "", "## Suggestions", "", *_suggestion_lines(r), "",
             "## Layers (graph order)", "",
             "| op | tensor | SQNR | rmse/scale | MSE | max abs err | scale |", "|---|---|---:|---:|---:|---:|---:|"]
    for l in r["layers"]:
        lines.append(f"| {l['op']} | `{_short(l['tensor'])}` | {_db(l['sqnr_db'])} | {l['rmse_per_scale']:.3f} | "
                     f"{l['mse']:.3g} | {l['max_abs_error']:.3g} | {l['scale']:.4g} |")
    return "\n".join(lines) + "\n"


def _onnx_markdown(r) -> str:
    q = r.get("quantization") or {}
    lines = [f"# Quantization debug: {Path(r['artifact']).name}", "",
             f"{r['tool']}; {r['samples']} calibration images; "
             f"{'per-channel' if q.get('per_channel') else 'per-tensor'} weights, {q.get('calibration_method', '?')} calibration.",
             "Local SQNR: the float value quantized with this tensor's scale (rounding + clipping it adds alone). "
             "vs float: the QDQ model against the float model at this point (accumulated).", "",
             "## Whole model", "", *_model_lines(r["model"]), "", "## Suggestions", "", *_suggestion_lines(r), "",
             "## Activations (graph order)", ""]
    if r["unmatched_activations"]:
        lines += [f"Not compared (no same-named float tensor): {len(r['unmatched_activations'])} activation(s).", ""]
    lines += ["| node | op | tensor | local SQNR | vs float SQNR |", "|---|---|---|---:|---:|"]
    for l in r["layers"]:
        lines.append(f"| {l['node'] or '-'} | {l['op']} | `{_short(l['tensor'])}` | {_db(l['local_sqnr_db'])} | "
                     f"{_db(l['vs_float_sqnr_db'])} |")
    lines += ["", "## Weights", "", "| weight | used by | scales | SQNR |", "|---|---|---:|---:|"]
    lines += [f"| `{_short(w['weight'])}` | {w['node'] or '-'} | {w['channels']} | {_db(w['sqnr_db'])} |"
              for w in r["weights"]]
    return "\n".join(lines) + "\n"

"""ONNX export (float32 via tf2onnx, int8 QDQ via onnxruntime.quantization) and the per-layer
quantization debug reports, on the tiny trained run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecifar.device import metadata as meta_io
from edgecifar.errors import UserError

from .conftest import load_benchmark

pytestmark = pytest.mark.slow

N_TEST = 500
N_CALIB = 200
# Softmax outputs of the same float graph in two runtimes: differences are float rounding (~1e-7).
FLOAT_TOL = 1e-5
# A 2-epoch model is unsure between classes, so int8 rounding flips more argmaxes than on a
# trained model (measured ~94%); the bar still catches a broken quantization (~10% = chance).
MIN_INT8_AGREEMENT = 0.85


def _meta(fmt: str) -> dict:
    return {"schema": meta_io.SCHEMA, "model": "seed002_m1_cnn", "format": fmt, "class_names": [str(i) for i in range(10)]}


@pytest.fixture(scope="module")
def calib_images(cifar) -> np.ndarray:
    from edgecifar.data import stratified_indices

    return cifar.train.images[stratified_indices(cifar.train.labels, N_CALIB, 0)]


@pytest.fixture(scope="module")
def onnx_models(tiny_run, calib_images, tmp_path_factory) -> dict[str, Path]:
    from edgecifar.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("onnx")
    keras_path = tiny_run / "model.keras"
    paths = {
        "float32": export_onnx(keras_path, out / "m_float32.onnx", None, quantize=False, metadata=_meta("onnx_float32")),
        "int8": export_onnx(keras_path, out / "m_int8.onnx", calib_images, quantize=True,
                            metadata=_meta("onnx_int8")),
        "int8_per_tensor": export_onnx(keras_path, out / "m_int8_pt.onnx", calib_images, quantize=True, per_channel=False,
                                       calib_method="entropy", metadata=_meta("onnx_int8")),
    }
    return paths


@pytest.fixture(scope="module")
def keras_probs(tiny_run, cifar) -> np.ndarray:
    import keras

    model = keras.models.load_model(tiny_run / "model.keras", compile=False)
    return model.predict(cifar.test.images[:N_TEST].astype(np.float32), verbose=0)


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(path, images: np.ndarray) -> np.ndarray:
    return _session(path).run(None, {"pixels": images.astype(np.float32)})[0]


# --- float32 ------------------------------------------------------------------------------


def test_float_onnx_is_valid_has_dynamic_batch_and_matches_keras(onnx_models, keras_probs, cifar):
    import onnx

    model = onnx.load(str(onnx_models["float32"]))
    onnx.checker.check_model(model, full_check=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "pixels" and out.name == "probs"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value, "batch dimension must be dynamic"
    assert [d.dim_value for d in dims[1:]] == [32, 32, 3]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT

    images = cifar.test.images[:N_TEST]
    probs = _run(onnx_models["float32"], images)
    assert np.abs(probs - keras_probs).max() <= FLOAT_TOL
    for batch in (1, 7):  # any batch size runs
        assert np.abs(_run(onnx_models["float32"], images[:batch]) - keras_probs[:batch]).max() <= FLOAT_TOL


def test_two_conversions_name_nodes_identically(tiny_run):
    """The float and int8 artifacts come from separate conversions; keep_float names from a debug
    report must stay valid in the next export."""
    import keras

    from edgecifar.export.onnx_export import keras_to_onnx

    model = keras.models.load_model(tiny_run / "model.keras", compile=False)
    first, second = keras_to_onnx(model), keras_to_onnx(model)
    assert [n.name for n in first.graph.node] == [n.name for n in second.graph.node]
    assert any("__" in n.name for n in first.graph.node)  # tf2onnx-invented names are among them


# --- int8 QDQ -----------------------------------------------------------------------------


def _weight_scales(path) -> list[tuple[str, int, int]]:
    """(consumer op, number of scales, consumer's output channels) for every quantized weight."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consumers = {name: n for n in model.graph.node for name in n.input}
    rows = []
    for node in model.graph.node:
        weight = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if weight is None or weight.ndim < 2:
            continue
        consumer = consumers[node.output[0]]
        if consumer.op_type == "Conv":
            channels = weight.shape[0]
        else:
            assert consumer.op_type in ("Gemm", "MatMul"), consumer.op_type
            trans_b = next((a.i for a in consumer.attribute if a.name == "transB"), 0)
            channels = weight.shape[0] if trans_b else weight.shape[-1]
        rows.append((consumer.op_type, int(inits[node.input[1]].size), int(channels)))
    return rows


def test_int8_is_valid_qdq_with_int8_weights_and_activations_and_float_io(onnx_models):
    import onnx

    model = onnx.load(str(onnx_models["int8"]))
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: i for i in model.graph.initializer}
    # Every activation quantizer's zero point, and every quantized weight, is signed int8.
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.data_type == onnx.TensorProto.INT8 for z in zero_points)
    weights = [inits[n.input[0]] for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(inits[n.input[0]].dims) >= 2]
    assert weights and all(w.data_type == onnx.TensorProto.INT8 for w in weights)
    assert {op for op, _, _ in _weight_scales(onnx_models["int8"])} >= {"Conv"}
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_per_channel_has_one_scale_per_output_channel_per_tensor_has_one(onnx_models):
    per_channel, per_tensor = _weight_scales(onnx_models["int8"]), _weight_scales(onnx_models["int8_per_tensor"])
    assert len(per_channel) == len(per_tensor) >= 4  # 2 conv + 2 dense weights in seed002_m1_cnn
    assert all(n == channels > 1 for _, n, channels in per_channel), per_channel
    assert all(n == 1 for _, n, _ in per_tensor), per_tensor


@pytest.mark.parametrize("variant", ["int8", "int8_per_tensor"])
def test_int8_agrees_with_keras(onnx_models, keras_probs, cifar, variant):
    probs = _run(onnx_models[variant], cifar.test.images[:N_TEST])
    assert np.isfinite(probs).all()
    agreement = float(np.mean(probs.argmax(1) == keras_probs.argmax(1)))
    assert agreement >= MIN_INT8_AGREEMENT, f"{variant}: top-1 agreement with Keras {agreement:.3f}"


def _qdq_step_and_outputs(path, x, levels):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    output_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == "probs")
    outs = []
    for level in levels:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        outs.append(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"pixels": x})[0])
    return float(inits[output_dq.input[1]]), outs


@pytest.mark.parametrize("variant", ["int8", "int8_per_tensor"])
def test_the_device_runtime_computes_what_the_qdq_graph_says(onnx_models, cifar, variant):
    """Run unfused (ORT_ENABLE_BASIC) a QDQ graph is plain float arithmetic on quantized values, which is what
    ARM's int32 kernels compute. The device runtime may differ from it by rounding — one step of the output
    quantizer — but not more: on an x86 CPU without VNNI its fused kernels would saturate the exporter's 8-bit
    weights (up to the whole probability range), so there it runs the graph unfused itself."""
    from edgecifar.device.runtime import Classifier, UNFUSED_QDQ
    from edgecifar.machine import int8_products_exact

    x = cifar.test.images[:N_TEST].astype(np.float32)
    step, (unfused,) = _qdq_step_and_outputs(onnx_models[variant], x, ["ORT_ENABLE_BASIC"])
    clf = Classifier(onnx_models[variant])
    got = clf.infer(x)
    assert np.abs(got - unfused).max() <= step * 1.01
    assert (clf.kernels == UNFUSED_QDQ) is (not int8_products_exact())


def test_where_fused_kernels_would_saturate_the_runtime_runs_8_bit_weights_unfused(onnx_models, cifar, monkeypatch):
    # Any CPU can check the AVX2 path: pretend the kernels are not exact, and the runtime must run the
    # graph exactly as ORT_ENABLE_BASIC does, and say so in its runtime string (which every report prints).
    from edgecifar.device import runtime

    monkeypatch.setattr(runtime, "int8_products_exact", lambda: False)
    x = cifar.test.images[:200].astype(np.float32)
    _, (unfused,) = _qdq_step_and_outputs(onnx_models["int8"], x, ["ORT_ENABLE_BASIC"])
    clf = runtime.Classifier(onnx_models["int8"], threads=1)
    assert clf.kernels == runtime.UNFUSED_QDQ and clf.runtime.endswith(f"({runtime.UNFUSED_QDQ})")
    assert np.array_equal(clf.infer(x), unfused)
    float_clf = runtime.Classifier(onnx_models["float32"])  # float models never need it
    assert float_clf.kernels is None and "unfused" not in float_clf.runtime


@pytest.mark.parametrize("meta, needs", [
    ({"quantization": {"format": "QDQ", "weights": "int8", "reduce_range": False}}, True),
    ({"quantization": {"format": "QDQ", "weights": "int8", "reduce_range": True}}, False),  # 7-bit: never saturates
    ({"quantization": None}, False), ({}, False)])
def test_only_8_bit_qdq_weights_need_exact_int8_kernels(meta, needs):
    from edgecifar.device.runtime import needs_exact_int8

    assert needs_exact_int8(meta) is needs


@pytest.mark.parametrize("flags, arch, exact", [
    ({"avx2"}, "x86_64", False), ({"avx2", "avx512f", "avx512bw"}, "x86_64", False),
    ({"avx2", "avx512_vnni"}, "x86_64", True), ({"avx2", "avx_vnni"}, "x86_64", True),
    (set(), "aarch64", True), ({"neon"}, "armv7l", False)])
def test_int8_products_exact_by_cpu(flags, arch, exact):
    from edgecifar.machine import int8_products_exact

    assert int8_products_exact(flags, arch) is exact


def test_float_onnx_runs_in_every_reader_with_identical_top1(onnx_models, cifar):
    """onnxruntime, OpenCV DNN (its default engine) and onnx.reference all load the float32 file and agree on top-1."""
    top1 = _every_reader_top1(onnx_models["float32"], cifar.test.images[:1000].astype(np.float32))
    assert np.array_equal(top1["OpenCV DNN"], top1["onnxruntime"])
    assert np.array_equal(top1["onnx.reference"], top1["onnxruntime"])


@pytest.fixture(scope="module")
def shipped_int8(tiny_run, calib_images, tmp_path_factory) -> Path:
    """The onnx_int8 the exporter ships: the softmax-less copy, its final Dense in float."""
    import keras

    from edgecifar.export.logits import logits_copy
    from edgecifar.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("shipped")
    copy, how = logits_copy(keras.models.load_model(tiny_run / "model.keras", compile=False))
    assert copy is not None, how
    copy.save(out / "logits.keras")
    return export_onnx(out / "logits.keras", out / "m_int8.onnx", calib_images, quantize=True, float_logits=True,
                       metadata={**_meta("onnx_int8"), "output": {"kind": "logits"}}, echo=lambda *_: None)


def _every_reader_top1(path, images: np.ndarray) -> dict:
    """{reader: top-1 per image}, with the readers of benchmarks/onnx_readers.py (the committed tables use the same):
    onnxruntime running the graph unfused, OpenCV DNN, onnx.reference: the graph's own arithmetic, the same on every
    CPU. (The device runtime's fused int8 kernels, where the CPU has exact int8 products, round one output step apart
    from it on some values: test_the_device_runtime_computes_what_the_qdq_graph_says bounds that.)"""
    readers = load_benchmark("onnx_readers")
    return {name: run(path, images).argmax(1) for name, run in readers.READERS.items()}


@pytest.mark.parametrize("variant", ["int8", "int8_per_tensor", "shipped"])
def test_int8_with_quantized_dense_layers_runs_in_every_reader_with_identical_top1(onnx_models, shipped_int8, cifar,
                                                                                 variant):
    """seed002_m1_cnn has two Dense layers (Gemm), quantized except the shipped file's final one: onnxruntime, OpenCV
    DNN (default engine) and onnx.reference all run the file and agree on the top-1 of 1,000 test images."""
    path = shipped_int8 if variant == "shipped" else onnx_models[variant]
    top1 = _every_reader_top1(path, cifar.test.images[:1000].astype(np.float32))
    assert np.array_equal(top1["OpenCV DNN"], top1["onnxruntime"])
    assert np.array_equal(top1["onnx.reference"], top1["onnxruntime"])


def test_float_dense_biases_change_no_output_of_onnxruntime(tiny_run, calib_images, cifar):
    """The Gemm bias rewrite that lets OpenCV load the file is a change of representation only: onnxruntime's
    outputs are bit-identical before and after, with fused (QGemm) and with unfused kernels."""
    import copy

    import onnx
    import onnxruntime as ort
    from onnx import version_converter

    from edgecifar.export.onnx_export import READER_OPSET, float_dense_biases, keras_to_onnx, quantize_qdq
    from edgecifar.runs import load_model

    proto, _ = quantize_qdq(keras_to_onnx(load_model(tiny_run / "model.keras")), calib_images)
    before = version_converter.convert_version(proto, READER_OPSET)
    after = float_dense_biases(copy.deepcopy(before))

    def dq_biases(model):
        producers = {o: n for n in model.graph.node for o in n.output}
        return sum(1 for n in model.graph.node if n.op_type == "Gemm" and len(n.input) > 2
                   and getattr(producers.get(n.input[2]), "op_type", None) == "DequantizeLinear")

    assert dq_biases(before) == 2 and dq_biases(after) == 0
    onnx.checker.check_model(after, full_check=True)
    x = cifar.test.images[:200].astype(np.float32)
    for level in ("ORT_ENABLE_ALL", "ORT_ENABLE_BASIC"):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        outs = [ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, {"pixels": x})[0]
                for m in (before, after)]
        assert np.array_equal(*outs), level


def test_conv_body_with_float_head_int8_runs_in_every_reader(calib_images, cifar, tmp_path):
    """The edge-model shape (convolutions, global pooling, a float final Dense): identical top-1 in all three readers."""
    import keras

    from edgecifar.export.onnx_export import export_onnx

    keras.utils.set_random_seed(0)
    x = keras.Input((32, 32, 3), name="pixels")
    y = keras.layers.Rescaling(1 / 255, name="scale_0_1")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(y)
    y = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = keras.Model(x, keras.layers.Dense(10, name="logits")(y))
    model.save(tmp_path / "conv.keras")
    meta = {**_meta("onnx_int8"), "output": {"kind": "logits"}}
    path = export_onnx(tmp_path / "conv.keras", tmp_path / "conv_int8.onnx", calib_images, quantize=True, float_logits=True,
                       metadata=meta)
    top1 = _every_reader_top1(path, cifar.test.images[:1000].astype(np.float32))
    assert np.array_equal(top1["OpenCV DNN"], top1["onnxruntime"])
    assert np.array_equal(top1["onnx.reference"], top1["onnxruntime"])


def test_metadata_round_trips_through_the_device_reader(onnx_models):
    from edgecifar.device.runtime import Classifier

    meta = meta_io.read(onnx_models["int8"])
    assert {k: meta[k] for k in _meta("onnx_int8")} == _meta("onnx_int8")
    assert meta["onnx_opset"] == 21 and meta["tf2onnx_opset"] == 17  # stamped for every reader after quantization
    meta = {**meta, "quantization": dict(meta["quantization"])}  # a copy: the original is compared below
    float_nodes = meta["quantization"].pop("float_nodes")
    assert len(float_nodes) == 1 and "scale_0_1" in float_nodes[0], float_nodes  # the input rescale stays float
    assert meta["quantization"] == {"format": "QDQ", "weights": "int8", "activations": "int8", "per_channel": True,
                                    "reduce_range": False, "calibration_method": "minmax",
                                    "calibration_samples": N_CALIB, "float_logits": False}
    assert meta_io.read(onnx_models["int8_per_tensor"])["quantization"]["per_channel"] is False
    assert meta_io.read(onnx_models["int8_per_tensor"])["quantization"]["calibration_method"] == "entropy"
    assert meta_io.read(onnx_models["float32"])["quantization"] is None
    assert Classifier(onnx_models["int8"]).meta == meta_io.read(onnx_models["int8"])


@pytest.mark.parametrize("kwargs, message", [
    ({"quantize": True, "calib_method": "kl"}, "--calib-method"),
    ({"quantize": True, "opset": 12}, "--opset"),
    ({"quantize": False, "opset": 30}, "--opset"),
    ({"quantize": True, "calib": None}, "calibration images"),
])
def test_bad_options_are_user_errors_and_write_nothing(tiny_run, calib_images, tmp_path, kwargs, message):
    from edgecifar.export.onnx_export import export_onnx

    calib = kwargs.pop("calib", calib_images)
    out = tmp_path / "m.onnx"
    with pytest.raises(UserError, match=message):
        export_onnx(tiny_run / "model.keras", out, calib, metadata=_meta("onnx_int8"), **kwargs)
    assert list(tmp_path.iterdir()) == []


# --- quantization debugging ---------------------------------------------------------------


def test_debug_onnx_reports_every_layer_and_flags_nothing_on_a_healthy_model(onnx_models, calib_images, tmp_path):
    from edgecifar.export.debug_quant import debug_onnx

    md, js = debug_onnx(onnx_models["float32"], onnx_models["int8"], calib_images, tmp_path, echo=lambda *_: None)
    report = json.loads(js.read_text())
    assert report["unmatched_activations"] == []  # every quantized tensor was compared with its float twin
    ops = {layer["op"] for layer in report["layers"]}
    assert {"Relu", "Softmax"} <= ops
    assert all(layer["local_sqnr_db"] is None or layer["local_sqnr_db"] > 0 for layer in report["layers"])
    # Per-channel scales: 32 per conv kernel, 512 and 10 per dense kernel (seed002_m1_cnn).
    assert {w["channels"] for w in report["weights"]} >= {32, 512, 10}
    assert report["model"]["top1_agreement"] >= MIN_INT8_AGREEMENT
    assert report["model"]["artifact_top1_agreement_with_float"] >= MIN_INT8_AGREEMENT
    assert report["suggestions"] == []
    assert "Keep these in float" not in md.read_text() and "| Relu |" in md.read_text()


def test_debug_onnx_finds_a_layer_with_a_broken_range(onnx_models, calib_images, tmp_path):
    """Shrink one activation's quantization scale 30x (heavy clipping): the report must rank it
    worst and say how to keep its node in float."""
    import onnx
    from onnx import numpy_helper

    from edgecifar.export.debug_quant import debug_onnx

    model = onnx.load(str(onnx_models["int8"]))
    # QDQ folds Relu into the quantizer's range, so find a ReLU activation by its quantizer's input.
    quantizer = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0].endswith("Relu:0"))
    relu_out = quantizer.input[0]
    scale = next(i for i in model.graph.initializer if i.name == quantizer.input[1])
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) / 30, scale.name))
    broken = tmp_path / "broken_int8.onnx"
    onnx.save(model, str(broken))

    _, js = debug_onnx(onnx_models["float32"], broken, calib_images, tmp_path, echo=lambda *_: None)
    report = json.loads(js.read_text())
    assert report["worst"][0] == relu_out
    first = report["suggestions"][0]
    assert first["op"] == "Relu" and "keep_float" in first["how"] and first["layer"] in first["how"]


def test_keep_float_leaves_the_named_node_unquantized(tiny_run, calib_images, tmp_path):
    """The debug report's advice is actionable: the node it names can be kept in float."""
    import keras
    import onnx

    from edgecifar.export.onnx_export import export_onnx, input_rescale_nodes, keras_to_onnx, preprocessed_float

    # The node names come from the Keras layer names, which depend on what the process built before: read them.
    graph = preprocessed_float(keras_to_onnx(keras.models.load_model(tiny_run / "model.keras", compile=False)))
    hidden = next(n.name for n in graph.graph.node if n.op_type == "Gemm")  # the first Dense, not the output one
    path = export_onnx(tiny_run / "model.keras", tmp_path / "m.onnx", calib_images, quantize=True,
                       keep_float=[hidden], metadata=_meta("onnx_int8"))
    model = onnx.load(str(path))
    producers = {o: n for n in model.graph.node for o in n.output}
    gemms = {n.name: n for n in model.graph.node if n.op_type == "Gemm"}
    assert len(gemms) == 2
    kept = gemms.pop(hidden)
    float_weights = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert kept.input[1] in float_weights  # its weights stay float32 (its input may still be QDQ'd upstream)
    assert all(producers[n.input[1]].op_type == "DequantizeLinear" for n in gemms.values())  # the other stays int8
    rescale = input_rescale_nodes(graph)
    assert len(rescale) == 1  # the named node, and the input rescale (always float)
    assert meta_io.read(path)["quantization"]["float_nodes"] == [hidden, *rescale]
    with pytest.raises(UserError, match="no node named 'nope'"):
        export_onnx(tiny_run / "model.keras", tmp_path / "n.onnx", calib_images, quantize=True, keep_float=["nope"],
                    metadata=_meta("onnx_int8"))
    assert not (tmp_path / "n.onnx").exists()


def test_debug_tflite_reports_per_layer_error_of_the_exported_int8_model(tiny_run, data_dir, calib_images, tmp_path):
    from edgecifar.export import export_run
    from edgecifar.export.debug_quant import SUSPECT_RMSE_SCALE, debug_tflite

    report = export_run(tiny_run, formats="tflite_int8", calib_samples=100, check_samples=50, data_dir=data_dir,
                        out_dir=tmp_path, echo=lambda *_: None)
    int8 = Path(report["artifacts"][0]["path"])
    md, js = debug_tflite(tiny_run / "model.keras", int8, calib_images[:50], tmp_path, echo=lambda *_: None)
    result = json.loads(js.read_text())
    compute = [layer for layer in result["layers"] if layer["op"] in ("CONV_2D", "FULLY_CONNECTED")]
    # 2 conv + the hidden Dense: the classifier head stays float in the shipped artifact, and the debugger
    # quantizes exactly that model (tflite_export.int8_converter + the same denylisted head).
    assert len(compute) == 3, compute
    # A healthy model's compute layers show rounding-level error: 0 < rmse/scale < the suspect bar.
    assert all(0 < layer["rmse_per_scale"] < SUSPECT_RMSE_SCALE for layer in compute), compute
    assert all(isinstance(layer["sqnr_db"], float) and layer["sqnr_db"] > 0 for layer in compute)
    # The artifact line is about the written file itself, as the device runs it.
    import keras

    from edgecifar.device.runtime import Classifier

    images = calib_images[:50]
    keras_top1 = keras.models.load_model(tiny_run / "model.keras").predict(images.astype(np.float32), verbose=0).argmax(1)
    expected = float(np.mean(Classifier(int8).predict(images).argmax(1) == keras_top1))
    assert result["model"]["artifact_top1_agreement_with_keras"] == pytest.approx(expected)
    assert "CONV_2D" in md.read_text() and str(int8.name) in md.read_text()


def test_debug_needs_calibration_images(onnx_models, tmp_path):
    from edgecifar.export.debug_quant import debug_onnx

    with pytest.raises(UserError, match="calibration images"):
        debug_onnx(onnx_models["float32"], onnx_models["int8"], np.zeros((0, 32, 32, 3), np.uint8), tmp_path)


def test_int8_from_the_logits_source_outputs_logits_the_device_turns_into_probabilities(
        tiny_run, calib_images, keras_probs, cifar, tmp_path):
    """The exporter quantizes a softmax-less copy (edgecifar.export.logits); the ONNX output is then
    named "logits", and Classifier applies the softmax from the metadata's output kind."""
    import keras
    import onnx

    from edgecifar.device.runtime import Classifier
    from edgecifar.export.debug_quant import debug_onnx
    from edgecifar.export.logits import logits_copy
    from edgecifar.export.onnx_export import export_onnx

    copy, how = logits_copy(keras.models.load_model(tiny_run / "model.keras", compile=False))
    assert copy is not None, how
    source = tmp_path / "logits.keras"
    copy.save(source)
    meta = {**_meta("onnx_int8"), "output": {"kind": "logits"}}
    path = export_onnx(source, tmp_path / "m_int8.onnx", calib_images, quantize=True, metadata=meta, echo=lambda *_: None)
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["logits"]
    probs = Classifier(path).predict(cifar.test.images[:N_TEST])
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert float(np.mean(probs.argmax(1) == keras_probs.argmax(1))) >= MIN_INT8_AGREEMENT

    _, js = debug_onnx(source, path, calib_images, tmp_path, echo=lambda *_: None)
    report = json.loads(js.read_text())
    assert report["unmatched_activations"] == []
    assert report["model"]["artifact_top1_agreement_with_float"] >= MIN_INT8_AGREEMENT


def _top1_ties(probs: np.ndarray) -> int:
    top2 = np.sort(probs, axis=1)[:, -2:]
    return int((top2[:, 0] == top2[:, 1]).sum())


def test_float_logits_remove_the_top1_ties_of_a_quantized_output(tiny_run, calib_images, keras_probs, onnx_models, cifar,
                                                                 tmp_path):
    """What the exporter ships for onnx_int8: the softmax-less copy with its final layer in float. The
    same model quantized to the end (onnx_models["int8"]: int8 logits, then an int8 softmax) puts
    the two top classes of some images on one output step; float logits never do."""
    import keras

    from edgecifar.device.runtime import Classifier
    from edgecifar.export.logits import logits_copy
    from edgecifar.export.onnx_export import export_onnx

    copy, how = logits_copy(keras.models.load_model(tiny_run / "model.keras", compile=False))
    assert copy is not None, how
    source = tmp_path / "logits.keras"
    copy.save(source)
    meta = {**_meta("onnx_int8"), "output": {"kind": "logits"}}
    path = export_onnx(source, tmp_path / "m_int8_float_logits.onnx", calib_images, quantize=True, float_logits=True,
                       metadata=meta, echo=lambda *_: None)
    assert meta_io.read(path)["quantization"]["float_logits"] is True
    images = cifar.test.images[:N_TEST]
    clf = Classifier(path)
    assert clf.output_kind == "logits"
    probs = clf.predict(images)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    quantized_to_the_end = Classifier(onnx_models["int8"]).predict(images)
    ties, ties_before = _top1_ties(probs), _top1_ties(quantized_to_the_end)
    assert ties_before > 0, "the comparison model shows no ties: this test no longer tells anything"
    assert ties == 0, (ties, ties_before)
    agree = float(np.mean(probs.argmax(1) == keras_probs.argmax(1)))
    agree_before = float(np.mean(quantized_to_the_end.argmax(1) == keras_probs.argmax(1)))
    assert agree >= agree_before, (agree, agree_before)

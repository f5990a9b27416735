"""The offset input scaling folded into the first convolution of the int8 source model (edgecifar/export/input_fold.py)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
L = keras.layers


def _transfer_like(seed=0, padding="same", use_bias=False, nested=True, offset=-1.0):
    """Pixels → Rescaling(1/127.5, offset) → [backbone: Conv1 → BN → ReLU6 → GAP] → logits, as zoo._transfer builds
    (`nested`=False: the same layers in one flat graph)."""
    keras.utils.set_random_seed(seed)
    b_in = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, strides=2, padding=padding, use_bias=use_bias, name="Conv1")(b_in)
    if not use_bias:
        x = L.BatchNormalization(name="bn_Conv1")(x)
    x = L.GlobalAveragePooling2D(name="gap")(L.ReLU(6.0, name="relu")(x))
    inputs = keras.Input((8, 8, 3), name="pixels")
    scaled = L.Rescaling(1 / 127.5, offset=offset, name="backbone_scaling")(inputs)
    backbone = keras.Model(b_in, x, name="backbone")
    if not use_bias:  # statistics far from identity, so a wrong mean shift shows
        rng = np.random.default_rng(seed)
        bn = backbone.get_layer("bn_Conv1")
        bn.moving_mean.assign(rng.normal(0, 0.5, 4).astype("float32"))
        bn.moving_variance.assign(rng.uniform(0.5, 2, 4).astype("float32"))
    feats = backbone(scaled) if nested else _replayed(backbone, scaled)
    return keras.Model(inputs, L.Dense(3, name="logits")(feats), name="tiny")


def _replayed(backbone, x):
    for layer in backbone.layers[1:]:
        x = layer(x)
    return x


def _images(n=32, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize("padding,use_bias,nested", [("valid", False, True), ("valid", True, True), ("same", False, True),
                                                     ("valid", False, False)])
def test_fold_keeps_the_float_output_and_leaves_whole_pixel_values(padding, use_bias, nested):
    from edgecifar.export.input_fold import fold_copy

    model = _transfer_like(padding=padding, use_bias=use_bias, nested=nested)
    before = [w.copy() for w in model.get_weights()]
    folded, how = fold_copy(model)
    assert folded is not model and f"folded into {'backbone/' if nested else ''}Conv1" in how and "x - 128" in how
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))  # model.keras is never touched
    scaling = folded.get_layer("backbone_scaling")
    assert (float(scaling.scale), float(scaling.offset)) == (1.0, -128.0)
    x = _images()
    ref, out = model.predict(x, verbose=0), folded.predict(x, verbose=0)
    scale = 1 + np.abs(ref).max()
    if padding == "valid":  # no padded taps: exact up to float32 rounding
        assert np.max(np.abs(out - ref)) <= 1e-5 * scale
    else:  # padded border taps stand for 128 instead of 127.5: small, but not zero
        assert 0 < np.max(np.abs(out - ref)) <= 1e-2 * scale
    # What the int8 tensor after the scaling holds: whole numbers in [-128, 127].
    stem = keras.Model(folded.inputs, scaling.output)
    values = stem.predict(x, verbose=0)
    assert np.array_equal(values, np.round(values)) and values.min() >= -128 and values.max() <= 127


def test_fold_does_not_apply_without_an_offset_or_a_conv_to_take_it():
    from edgecifar.export.input_fold import fold_copy

    no_offset = _transfer_like(offset=0.0)
    assert fold_copy(no_offset) == (no_offset, None)  # x/255 keeps the 256 camera levels on one grid already
    inputs = keras.Input((8, 8, 3))
    dense_first = keras.Model(inputs, L.Dense(3)(L.Flatten()(L.Rescaling(1 / 127.5, offset=-1.0)(inputs))))
    assert fold_copy(dense_first) == (dense_first, None)


def test_export_folds_the_input_scaling_of_the_int8_source_only(tmp_path):
    """Converted: the int8 TFLite's first ops are QUANTIZE, ADD (x - 128, scale 1), CONV_2D, with no MUL; the float
    TFLite keeps the model as trained."""
    from edgecifar.export import tflite_export
    from edgecifar.export.calibration import CalibrationSet
    from edgecifar.export.input_fold import fold_copy

    model = _transfer_like()
    folded, _ = fold_copy(model)
    calib = CalibrationSet(_images(16).astype(np.uint8), np.zeros(16, int), np.arange(16), 0)
    int8 = tflite_export.convert(tflite_export.saved_model(folded, tmp_path / "int8"), "int8", calib)
    from edgecifar.device.runtime import tflite_interpreter_class

    Interpreter, _, _ = tflite_interpreter_class(None)
    it = Interpreter(model_content=int8)
    ops = it._get_ops_details()
    names = [op["op_name"] for op in ops]
    assert names[:3] == ["QUANTIZE", "ADD", "CONV_2D"] and "MUL" not in names
    add_out = it.get_tensor_details()[ops[1]["outputs"][0]]
    scale, zero_point = add_out["quantization"]
    assert scale == pytest.approx(1.0, abs=1e-5) and zero_point == 0


# The copies list their one input (logits_copy rebuilds the graph); a bare batch is what predict() feeds them too.
@pytest.mark.filterwarnings("ignore:The structure of `inputs` doesn't match")
def test_int8_source_takes_the_exporters_steps_in_order():
    """edgecifar.export.logits.int8_source: softmax removed, then the BatchNorm fold, then the input fold; the teacher
    computes the trained model's logits, and the source the teacher's (to float rounding)."""
    from edgecifar.export.logits import int8_source

    base = _transfer_like()
    model = keras.Model(base.input, L.Activation("softmax", name="probs")(base.output), name="tiny_softmax")
    x = _images()
    made = int8_source(model)
    assert made.logits_output and "softmax removed" in made.steps[0]
    assert "Conv1" in made.steps[-1] and len(made.steps) >= 2  # the input scaling went into Conv1, last
    probs = model.predict(x, verbose=0)
    logits = made.teacher.predict(x, verbose=0)
    soft = np.exp(logits - logits.max(1, keepdims=True))
    assert np.allclose(soft / soft.sum(1, keepdims=True), probs, atol=1e-5)
    assert np.allclose(made.model.predict(x, verbose=0), logits, atol=1e-3)
    assert made.model is not made.teacher
    plain = int8_source(base)  # no softmax head: the model's own output is kept, and still folded
    assert not plain.logits_output and len(plain.steps) >= 2

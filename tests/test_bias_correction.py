"""Empirical bias correction of int8 weight rounding (edgecifar/export/bias_correction.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.test_export import copy_run

keras = pytest.importorskip("keras")
L = keras.layers


def _backbone(seed):
    """Conv → BN → ReLU6 → DepthwiseConv → BN → ReLU6 → Conv → BN (linear): a MobileNetV2 block, nested."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", use_bias=False, name="expand")(inputs)
    x = L.BatchNormalization(name="expand_bn")(x)
    x = L.ReLU(6.0, name="expand_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(6.0, name="dw_relu")(x)
    x = L.Conv2D(4, 1, use_bias=False, name="project")(x)
    x = L.BatchNormalization(name="project_bn")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="backbone")


def _model(seed=0):
    keras.utils.set_random_seed(seed)  # kernels and statistics: a test that passes must pass every time
    rng = np.random.default_rng(seed)
    backbone = _backbone(seed)
    for layer in backbone.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.5, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
    inputs = keras.Input((8, 8, 3))
    x = L.Rescaling(1 / 127.5, -1.0, name="scaling")(inputs)
    x = backbone(x)
    x = L.Dense(5, name="d1")(x)  # linear, with a bias: corrected in its own bias
    x = L.Dense(3, name="head")(x)  # the final Dense: the float head, never rounded or corrected
    return keras.Model(inputs, x, name="tiny")


def _images(n=64, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def _rounded(model):
    from edgecifar.export import bias_correction as bc

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for path, layer in bc.walk(copy):
        if bc.rounds(path, layer, copy):
            w = layer.get_weights()
            layer.set_weights([bc.round_kernel(w[0], type(layer).__name__), *w[1:]])
    return copy


def test_round_kernel_is_the_converters_per_channel_int8_grid():
    from edgecifar.export.bias_correction import round_kernel

    rng = np.random.default_rng(0)
    conv = rng.normal(0, 1, (3, 3, 4, 6)).astype("float32") * rng.uniform(0.01, 10, 6).astype("float32")
    q = round_kernel(conv, "Conv2D")
    scale = np.abs(conv).max(axis=(0, 1, 2)) / 127
    steps = q / scale
    assert np.allclose(steps, np.round(steps), atol=1e-3) and np.allclose(np.abs(steps).max(axis=(0, 1, 2)), 127)
    assert np.abs(q - conv).max(axis=(0, 1, 2)).max() <= scale.max() / 2 + 1e-6
    dw = rng.normal(0, 1, (3, 3, 5, 1)).astype("float32") * rng.uniform(0.01, 10, (1, 1, 5, 1)).astype("float32")
    steps = round_kernel(dw, "DepthwiseConv2D") / (np.abs(dw).max(axis=(0, 1, 3), keepdims=True) / 127)
    assert np.allclose(steps, np.round(steps), atol=1e-3)  # per channel on axis 2, the depthwise channel axis


def test_plan_walks_nested_models_and_leaves_the_float_head():
    from edgecifar.export.bias_correction import plan

    steps, skipped = plan(_model())
    assert [(s["layer"], s["target"], s["kind"]) for s in steps] == [
        (("backbone", "expand"), ("backbone", "expand_bn"), "beta"),
        (("backbone", "dw"), ("backbone", "dw_bn"), "beta"),
        (("backbone", "project"), ("backbone", "project_bn"), "beta"),
        (("d1",), ("d1",), "bias"),
    ]
    assert skipped == []


def test_correction_restores_every_channel_mean_and_keeps_the_kernels():
    from edgecifar.export import bias_correction as bc
    from edgecifar.layer_graph import layer_at

    model, images = _model(), _images()
    before = [w.copy() for w in model.get_weights()]
    fixed, info = bc.correct(model, images, echo=lambda *_: None)
    assert info["layers_corrected"] == 4 and info["largest_shift"] > 0
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))  # the trained model never changes
    for path, layer in bc.walk(fixed):  # kernels as trained: the converters round them themselves
        if type(layer).__name__ in bc.WEIGHT_LAYERS:
            assert np.array_equal(layer.get_weights()[0], layer_at(model, path).get_weights()[0])
    plain_rounded, fixed_rounded = _rounded(model), _rounded(fixed)
    for step in bc.plan(model)[0]:
        want = bc.channel_means(model, step["target"], images)
        err_before = np.abs(bc.channel_means(plain_rounded, step["target"], images) - want).max()
        err_after = np.abs(bc.channel_means(fixed_rounded, step["target"], images) - want).max()
        assert err_after < 1e-4 + 0.02 * err_before, (step, err_before, err_after)
    # And the whole rounded model tracks the float one more closely on unseen images.
    test = _images(256, seed=2).astype("float32")
    ref = np.asarray(model(test))
    assert np.abs(np.asarray(fixed_rounded(test)) - ref).mean() < np.abs(np.asarray(plain_rounded(test)) - ref).mean()


def test_layers_with_their_own_activation_are_skipped_but_still_rounded():
    from edgecifar.export import bias_correction as bc

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = L.Flatten()(x)
    model = keras.Model(inputs, L.Dense(3, name="head")(x))
    steps, skipped = bc.plan(model)
    assert steps == [] and skipped == ["c1 (own activation)"]
    assert bc.rounds(("c1",), model.get_layer("c1"), model) and not bc.rounds(("head",), model.get_layer("head"), model)


def test_export_bias_correction_is_reported_and_checked_against_the_original(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    res = run_cli("export", run, "--formats", "tflite_int8", "--bias-correction", "--samples", "500",
                  "--calib-samples", "100", "--plain-int8")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((run / "export" / "export_report.json").read_text())
    bc = report["bias_correction"]
    assert bc["images"] == 100 and bc["layers_corrected"] >= 1
    (row,) = report["artifacts"]
    assert row["status"] == "passed" and "bias correction" in row["conversion"]["logits"]
    assert "## Bias correction" in (run / "export" / "export_report.md").read_text()


@pytest.mark.parametrize("args,message", [
    (["--fp16", "--bias-correction"], "--bias-correction prepares the int8 formats"),
    (["--int8", "--per-tensor", "--bias-correction"], "--bias-correction models per-channel weights"),
])
def test_bad_bias_correction_use_is_one_line(tiny_run, tmp_path, args, message):
    run = copy_run(tiny_run, tmp_path)
    res = run_cli("export", run, *args)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert message in res.stderr
    assert not (run / "export").exists() or not any((run / "export").iterdir())

"""The post-ReLU BatchNormalization fold of the int8 source model (edgecifar/export/bn_fold.py)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
L = keras.layers


def _set_bn(bn, rng, scale_span=(0.5, 30.0), negative=0):
    """Moving statistics and affine terms far from identity, so a wrong fold shows."""
    n = bn.moving_mean.shape[0]
    a = rng.uniform(*scale_span, n)  # the per-channel multiplier gamma/sqrt(var+eps) this BN should apply
    a[:negative] *= -1
    var = rng.uniform(0.2, 4.0, n)
    if bn.gamma is not None:
        bn.gamma.assign((a * np.sqrt(var + bn.epsilon)).astype("float32"))
    else:  # without gamma the multiplier is 1/sqrt(var+eps): choose var to give |a|
        var = 1.0 / np.abs(a) ** 2 - bn.epsilon
        var = np.maximum(var, 1e-3)
    if bn.beta is not None:
        bn.beta.assign(rng.normal(0, 1, n).astype("float32"))
    bn.moving_mean.assign(rng.normal(0, 2, n).astype("float32"))
    bn.moving_variance.assign(var.astype("float32"))


def _model(seed=0, **bn_kw):
    """Conv(relu) → BN → Conv → Activation(relu) → BN → Dense(relu) → BN → Dense: three foldable BNs."""
    keras.utils.set_random_seed(seed)  # the kernels too: a test that passes must pass every time
    inputs = keras.Input((8, 8, 3))
    x = L.Rescaling(1 / 255)(inputs)
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    x = L.BatchNormalization(name="bn1", **bn_kw)(x)
    x = L.Conv2D(5, 3, padding="same", name="c2")(x)
    x = L.Activation("relu", name="r2")(x)
    x = L.BatchNormalization(name="bn2", **bn_kw)(x)
    x = L.Flatten()(x)
    x = L.Dense(6, activation="relu", name="d3")(x)
    x = L.BatchNormalization(name="bn3", **bn_kw)(x)
    outputs = L.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    for i, name in enumerate(("bn1", "bn2", "bn3")):
        _set_bn(model.get_layer(name), rng, negative=i if bn_kw.get("scale", True) else 0)
    return model


def _images(n=16, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize("bn_kw", [{}, {"scale": False}, {"center": False}], ids=["affine", "no-gamma", "no-beta"])
def test_fold_is_exact_in_float_and_leaves_the_model_alone(bn_kw):
    from edgecifar.export.bn_fold import fold_copy

    model = _model(**bn_kw)
    before = [w.copy() for w in model.get_weights()]
    folded, how = fold_copy(model)
    assert folded is not model and "3 layer(s): bn1, bn2, bn3" in how
    x = _images()
    ref = keras.ops.convert_to_numpy(model(x))
    out = keras.ops.convert_to_numpy(folded(x))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the original is untouched
    for name in ("bn1", "bn2", "bn3"):  # what each BN has left is sign·y + shift: multiplier magnitude exactly 1
        bn = folded.get_layer(name)
        var = keras.ops.convert_to_numpy(bn.moving_variance)
        assert np.all(np.float32(var + np.float32(bn.epsilon)) == np.float32(1))
        if bn.gamma is not None:
            assert set(np.abs(keras.ops.convert_to_numpy(bn.gamma)).tolist()) == {1.0}


@pytest.mark.parametrize("seed", range(3))
def test_fold_balances_the_relu_output_the_int8_graph_quantizes(seed):
    # What the fold is for. As in trained seed003, the conv's channels come out at very different
    # scales and the BN after the ReLU normalizes them; unfolded, int8 quantizes the ReLU output with
    # one scale for all channels, so the small channels get a few levels. Folded, that tensor has
    # the BN's balanced ranges.
    from edgecifar.export.bn_fold import fold_copy

    model = _model(seed)
    x = _images(64, seed)
    c1 = model.get_layer("c1")
    kernel, bias = c1.get_weights()
    # Every channel active on some pixels (a dead ReLU channel has no range to compare).
    kernel = np.abs(kernel) * np.array([1, 0.3, 0.1, 0.03], "float32")
    c1.set_weights([kernel, bias])
    relu_out = keras.ops.convert_to_numpy(keras.Model(model.inputs[0], c1.output)(x))
    bn = model.get_layer("bn1")
    bn.moving_mean.assign(relu_out.mean(axis=(0, 1, 2)))
    bn.moving_variance.assign(relu_out.var(axis=(0, 1, 2)) + 1e-6)
    bn.gamma.assign(np.array([1.0, -0.7, 1.3, 0.9], "float32"))
    folded, _ = fold_copy(model)

    def spread(m):
        ranges = keras.ops.convert_to_numpy(keras.Model(m.inputs[0], m.get_layer("c1").output)(x)).max(axis=(0, 1, 2))
        return ranges.max() / ranges.min()

    assert spread(folded) < spread(model) / 4


def _unfoldable(kind):
    inputs = keras.Input((8, 8, 3))
    if kind == "bn-before-relu":  # the converter folds this one itself
        x = L.BatchNormalization(name="bn")(L.Conv2D(4, 3)(inputs))
        x = L.Activation("relu")(x)
    elif kind == "relu6":  # not positively homogeneous: relu6(a·z) != a·relu6(z)
        x = L.BatchNormalization(name="bn")(L.Conv2D(4, 3, activation="relu6")(inputs))
    elif kind == "two-readers":  # the conv output also feeds another branch
        c = L.Conv2D(4, 3, activation="relu")(inputs)
        x = L.Add()([L.BatchNormalization(name="bn")(c), c])
    elif kind == "channels-first-bn":
        x = L.BatchNormalization(axis=1, name="bn")(L.Conv2D(4, 3, activation="relu")(inputs))
    else:  # a BN right after the input
        x = L.Conv2D(4, 3)(L.BatchNormalization(name="bn")(inputs))
    return keras.Model(inputs, L.Flatten()(x))


@pytest.mark.parametrize("kind", ["bn-before-relu", "relu6", "two-readers", "channels-first-bn", "bn-on-input"])
def test_fold_leaves_what_it_cannot_fold_exactly(kind):
    from edgecifar.export.bn_fold import fold_copy, foldable_pairs

    model = _unfoldable(kind)
    assert foldable_pairs(model) == []
    folded, how = fold_copy(model)
    assert folded is model and how is None


def test_which_zoo_models_are_folded():
    from edgecifar import zoo
    from edgecifar.export.bn_fold import foldable_pairs

    model = zoo.create_model("seed003_bn_cnn")
    assert len(foldable_pairs(model)) == 6
    for name in ("seed002_m1_cnn", "resnet8_edge"):  # BN before the activation (or none): nothing to fold
        assert foldable_pairs(zoo.create_model(name)) == []

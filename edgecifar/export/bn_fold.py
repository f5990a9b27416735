"""The int8 source model, step two: a BatchNormalization that follows a ReLU gets its scale folded backwards.

Why. seed003 (and any "Conv → ReLU → BN" model) normalizes *after* the activation. The converter
cannot fold such a BN into the convolution, so the int8 graph quantizes the ReLU output with one
scale for all channels and only then multiplies each channel by a = gamma / sqrt(var + eps). On
the trained seed003 those multipliers span 0.81..31.5 in the first block: the channels that BN
amplifies 30x were quantized with the step meant for the widest channel. Measured on the full
test set (the same export otherwise): agreement with Keras 96.13 % → 98.59 %, Δ −0.47 → +0.15 pp.

How. ReLU is positively homogeneous: a · relu(z) = relu(|a| · z) · sign(a). So

    BN(relu(W x + c)) = sign(a) · relu(|a| W x + |a| c) + (beta - mean · a)

The layer before the ReLU takes |a| into its kernel and bias (per output channel); the BN is
left computing sign(a) · x + b exactly (moving variance set so that var + eps == 1 in float32).
The int8 ReLU output now has the BN's balanced per-channel ranges. The float result is the same
up to rounding (fold_copy checks that on seeded random images before the copy is used).

Applies to: Conv2D / Dense with activation "relu", or followed by Activation("relu") / a plain
ReLU layer, whose output feeds only that BN over the last axis. Top-level layers only. Only
in-memory copies change; model.keras is never touched.
"""

from __future__ import annotations

import numpy as np

FOLDABLE = ("Conv2D", "Dense")  # kernels whose last axis is the output channel


def fold_copy(model, probe_images: int = 8, seed: int = 0):
    """(model to convert, description). The copy has every post-ReLU BatchNormalization's scale folded
    backwards; it is checked against `model` on `probe_images` seeded random images of the model's
    input shape, and `model` itself is returned (with the reason) when nothing applies or the check fails."""
    import keras

    pairs = foldable_pairs(model)
    if not pairs:
        return model, None
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for producer_name, bn_name in pairs:
        _fold(copy.get_layer(producer_name), copy.get_layer(bn_name))
    folded = [bn for _, bn in pairs]
    shape = tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(seed).uniform(0, 255, size=(probe_images, *shape)).astype("float32")
    ref = keras.ops.convert_to_numpy(model(x, training=False))
    out = keras.ops.convert_to_numpy(copy(x, training=False))
    err = float(np.max(np.abs(out - ref)))
    if not err <= 1e-4 * (1.0 + float(np.max(np.abs(ref)))):  # float32 rounding only; NaN fails too
        return model, f"BatchNormalization fold not applied: the folded copy differs by {err:.3g} on random images"
    return copy, describe(folded, err)


def describe(folded: list[str], err: float) -> str:
    return (f"BatchNormalization after ReLU: scale folded into the layer before the ReLU ({len(folded)} layer(s): "
            f"{', '.join(folded)}; a·relu(z) = sign(a)·relu(|a|·z), float output max |diff| {err:.1e})")


def foldable_pairs(model) -> list[tuple[str, str]]:
    """(producer layer name, BN layer name) for each BN this module can fold, in model order."""
    import keras

    consumers = _consumer_counts(model) if hasattr(model, "outputs") else None
    if consumers is None:
        return []
    pairs = []
    for layer in getattr(model, "layers", []):
        if not isinstance(layer, keras.layers.BatchNormalization) or not _last_axis(layer):
            continue
        feeder = _producer(layer)
        if feeder is None or consumers.get(id(feeder), 0) != 1:
            continue
        if _is_relu_layer(feeder):  # Conv → Activation("relu") → BN
            producer = _producer(feeder)
            if producer is None or consumers.get(id(producer), 0) != 1 or _activation(producer) != "linear":
                continue
        elif _activation(feeder) == "relu":  # Conv(activation="relu") → BN
            producer = feeder
        else:
            continue
        if type(producer).__name__ in FOLDABLE:
            pairs.append((producer.name, layer.name))
    return pairs


def _fold(producer, bn) -> None:
    import keras

    def values(v, default):
        return np.asarray(keras.ops.convert_to_numpy(v) if v is not None else default, dtype=np.float64)

    gamma, beta = values(bn.gamma, 1.0), values(bn.beta, 0.0)
    mean, var = values(bn.moving_mean, None), values(bn.moving_variance, None)
    a = gamma / np.sqrt(var + bn.epsilon) * np.ones_like(mean)
    sign = np.where(a < 0, -1.0, 1.0)
    shift = beta - mean * a  # BN(y) = a·y + shift
    weights = producer.get_weights()
    weights[0] = (weights[0] * np.abs(a)).astype(weights[0].dtype)  # kernel's last axis = output channel
    if len(weights) > 1:
        weights[1] = (weights[1] * np.abs(a)).astype(weights[1].dtype)
    producer.set_weights(weights)
    # What is left for the BN: y ↦ sign·y + shift, written as sign·(y - mean') + beta' with var + eps == 1.
    one_var = _variance_for_unit_scale(bn.epsilon, len(mean))
    if bn.gamma is not None:
        bn.gamma.assign(sign.astype("float32"))
    elif np.any(sign < 0):  # unreachable: without gamma, a = 1/sqrt(var + eps) > 0
        raise ValueError(f"{bn.name}: negative scale without gamma")
    if bn.beta is not None:
        bn.beta.assign(np.zeros(len(mean), dtype="float32"))
    bn.moving_mean.assign((-sign * shift).astype("float32"))
    bn.moving_variance.assign(one_var)


def _variance_for_unit_scale(epsilon: float, n: int) -> np.ndarray:
    """A float32 variance v with float32(v + eps) == 1, so the BN's multiplier rsqrt(v + eps) is exactly 1."""
    eps = np.float32(epsilon)
    v = np.float32(1) - eps
    for _ in range(4):
        total = np.float32(v + eps)
        if total == np.float32(1):
            break
        v = np.nextafter(v, np.float32(0) if total > 1 else np.float32(2), dtype=np.float32)
    return np.full(n, v, dtype=np.float32)


# --- reading the graph ---------------------------------------------------------------------


def _producer(layer):
    """The layer whose output is `layer`'s single input, or None."""
    tensor = getattr(layer, "input", None)
    if isinstance(tensor, (list, tuple)):
        return None
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history is not None else None


def _consumer_counts(model) -> dict[int, int] | None:
    """id(layer) -> how many layers (and model outputs) read that layer's output; None when some
    layer is called more than once (shared layers: their callers cannot be told apart, so no folding)."""
    import keras

    counts: dict[int, int] = {}
    tensors = list(keras.tree.flatten(model.outputs))
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            tensors += keras.tree.flatten(layer.input)
        except (AttributeError, ValueError):
            return None
    for tensor in tensors:
        history = getattr(tensor, "_keras_history", None)
        if history is not None:
            counts[id(history[0])] = counts.get(id(history[0]), 0) + 1
    return counts


def _activation(layer) -> str | None:
    try:
        return layer.get_config().get("activation")
    except Exception:  # a layer without a config is not ours to rewrite
        return None


def _is_relu_layer(layer) -> bool:
    import keras

    if isinstance(layer, keras.layers.Activation):
        return _activation(layer) == "relu"
    if isinstance(layer, keras.layers.ReLU):
        cfg = layer.get_config()
        return cfg.get("max_value") is None and not cfg.get("negative_slope") and not cfg.get("threshold")
    return False


def _last_axis(bn) -> bool:
    axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
    rank = len(bn.input.shape) if getattr(bn, "input", None) is not None else None
    return axis is not None and rank is not None and axis in (-1, rank - 1)

"""Empirical bias correction: int8 weight rounding shifts each channel's mean output; put the mean back.

Why. Per-channel int8 weights round every kernel value by up to half a step. The errors do not
average out: for a given input distribution they shift each output channel's mean, and the shifts
add up layer after layer. Measured on the MobileNetV2 transfer model (frozen ImageNet backbone on
CIFAR images upscaled to 96 px, 77.93 % top-1), with nothing but its weights rounded as the
converters round them, in Keras: top-1 agreement with the float model 88.15 % on the 10,000 test
images; with this correction 97.89 %. Through the real int8 artifacts (activations int8 too): TFLite
86.42 % -> 93.58 %, ONNX 87.33 % -> 94.10 % (benchmarks/results/int8_study_mobilenetv2.md and the two
seed004_mobilenetv2_transfer_amd reports under export/reports; with `edgecifar export RUN
--bias-correction` the report says how much for each artifact). Nagel et al., "Data-Free
Quantization" (2019), section 4.2, is the idea; this is its empirical form.

What, in graph order (nested models included), for every weight layer whose output is linear
(Conv2D, DepthwiseConv2D or Dense with no activation of its own):
  1. Round its kernel, and every kernel before it, to the int8 grid both converters use for weights:
     per output channel, symmetric, [-127, 127], scale max|w| / 127 (TFLite; onnxruntime's QDQ
     per-channel weights alike).
  2. Compare the per-channel mean of its output over the calibration images (over images and
     positions) with the float model's; a BatchNormalization right after it is included, because
     the converters fold it in (the mean is taken after it).
  3. Add the difference to that BatchNormalization's beta, or else to the layer's own bias.
The model that ships keeps float kernels (the converters round them to that same grid themselves)
and the corrected biases. The final Dense is skipped: the default int8 artifact computes it in float.
A layer with its own nonlinear activation (Conv2D(..., activation="relu")) is skipped: its pre-
activation mean cannot be read from its output. The copy changes; the trained model never does.
"""

from __future__ import annotations

import time

import numpy as np

from ..layer_graph import layer_at, readers

WEIGHT_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")
BATCH = 100  # calibration images per forward pass (memory at 96 px stays small)


def round_kernel(kernel: np.ndarray, kind: str) -> np.ndarray:
    """`kernel` on the converters' int8 weight grid: per output channel, symmetric, [-127, 127]."""
    # Output channel axis: last for Conv2D (kh, kw, in, out) and Dense (in, out); the input channel for a
    # DepthwiseConv2D (kh, kw, channels, multiplier), whose multiplier is 1 in every model here.
    axis = 2 if kind == "DepthwiseConv2D" else kernel.ndim - 1
    reduce = tuple(i for i in range(kernel.ndim) if i != axis)
    scale = np.maximum(np.max(np.abs(kernel), axis=reduce, keepdims=True), 1e-12) / 127.0
    return (np.clip(np.round(kernel / scale), -127, 127) * scale).astype(kernel.dtype)


def walk(model, prefix=()):
    """(path, layer) for every layer of `model`, nested models' layers in place of the nested model."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from walk(layer, prefix + (layer.name,))
        else:
            yield prefix + (layer.name,), layer


def _sole_consumer(model_path, layer, model):
    """The one layer (in the same model) reading `layer`'s output, or None (a model output is read by its caller)."""
    found = readers(layer_at(model, model_path)).get(layer.name, [])
    return found[0] if len(found) == 1 else None


def _weighted(model) -> list[tuple[tuple, object]]:
    return [(path, layer) for path, layer in walk(model) if type(layer).__name__ in WEIGHT_LAYERS]


def rounds(path, layer, model) -> bool:
    """Whether the int8 artifact rounds this layer's kernel: every weight layer but a final Dense (the float head)."""
    weighted = _weighted(model)
    if type(layer).__name__ not in WEIGHT_LAYERS:
        return False
    last_path, last = weighted[-1]
    return not (path == last_path and type(last).__name__ == "Dense")


def plan(model) -> tuple[list[dict], list[str]]:
    """([{"layer": path, "target": path, "kind": "beta"|"bias"}], [skipped layer names with why])."""
    weighted = _weighted(model)
    steps, skipped = [], []
    for i, (path, layer) in enumerate(weighted):
        if i == len(weighted) - 1 and type(layer).__name__ == "Dense":
            continue  # the float head: computed in float by the default int8 artifact
        if layer.get_config().get("activation", "linear") != "linear":
            skipped.append(f"{'/'.join(path)} (own activation)")
            continue
        nxt = _sole_consumer(path[:-1], layer, model)
        if nxt is not None and type(nxt).__name__ == "BatchNormalization" and nxt.center:
            steps.append({"layer": path, "target": path[:-1] + (nxt.name,), "kind": "beta"})
        elif getattr(layer, "use_bias", False):
            steps.append({"layer": path, "target": path, "kind": "bias"})
        else:
            skipped.append(f"{'/'.join(path)} (no bias to correct)")
    return steps, skipped


def _clone(model):
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _probe(model, path):
    """f(images) -> the output of the layer at `path`, computed from the model's own input."""
    import keras

    inputs = keras.Input(shape=model.input_shape[1:])
    x, layers, scope = inputs, [], model
    # Walk down: at each level, the layers from that level's input up to the next nested model (or the target).
    for depth, name in enumerate(path):
        target = scope.get_layer(name)
        inner = keras.Model(scope.inputs, target._inbound_nodes[0].input_tensors if depth < len(path) - 1 else target.output)
        layers.append(inner)
        scope = target
    for inner in layers:
        x = inner(x)
    return keras.Model(inputs, x)


def channel_means(model, path, images) -> np.ndarray:
    """Per-channel mean of the output of the layer at `path` over `images`, over images and positions."""
    probe = _probe(model, path)
    total, count = 0.0, 0
    for start in range(0, len(images), BATCH):
        out = np.asarray(probe(images[start:start + BATCH].astype(np.float32), training=False))
        total = total + out.reshape(-1, out.shape[-1]).sum(axis=0)
        count += int(np.prod(out.shape[:-1]))
    return total / count


def correct(model, images: np.ndarray, echo=print):
    """(corrected copy of `model`, report dict). `images`: the export's calibration images (uint8 NHWC)."""
    t0 = time.perf_counter()
    steps, skipped = plan(model)
    fixed = _clone(model)  # what ships: float kernels, corrected biases
    rounded = _clone(model)  # the same with every kernel on the int8 grid: what the converters will compute
    for path, layer in walk(rounded):
        if rounds(path, layer, model):  # skipped layers too: they are int8 in the artifact, and feed later ones
            weights = layer.get_weights()
            layer.set_weights([round_kernel(weights[0], type(layer).__name__), *weights[1:]])
    shifts = []
    for step in steps:
        want = channel_means(model, step["target"], images)
        got = channel_means(rounded, step["target"], images)
        delta = (want - got).astype(np.float32)
        for copy in (fixed, rounded):  # both: later layers are measured with this one already corrected
            target = layer_at(copy, step["target"])
            weights = target.get_weights()
            idx = [w.name for w in target.weights].index("beta" if step["kind"] == "beta" else "bias")
            weights[idx] = weights[idx] + delta
            target.set_weights(weights)
        shifts.append(float(np.max(np.abs(delta))))
    info = {"method": "empirical bias correction of int8 weight rounding (edgecifar/export/bias_correction.py): per "
                      "channel, the mean output shift of int8-rounded kernels on the calibration images, added back",
            "layers_corrected": len(steps), "skipped": skipped, "images": int(len(images)),
            "largest_shift": round(max(shifts), 5) if shifts else 0.0,
            "seconds": round(time.perf_counter() - t0, 1)}
    echo(f"    bias correction: {len(steps)} layer(s), largest mean shift {info['largest_shift']:.4f} "
         f"({info['seconds']:.0f} s)")
    return fixed, info

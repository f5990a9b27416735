"""Quantization-aware fine-tuning (QAT) in pure Keras 3: a trained model learns weights that survive int8.

Why. Post-training int8 rounds every weight and activation once, after training. On small,
low-confidence models (seed002_m1: 64 % top-1) that flips enough near-tied predictions to miss the
int8 budget (agreement 98.25 % against 98.5 %), and keeping layers in float costs more size than
the budget allows (export/fallback.py). QAT lets the weights settle where rounding hurts least.
tensorflow-model-optimization does not support Keras 3, so this is written in Keras 3 itself and
runs under the TensorFlow and JAX backends alike.

What it does, in order (`fine_tune`):
  1. Copy the model with int8 simulated (`simulate_int8`), TFLite's int8 scheme:
     - weights of Conv2D and Dense: per output channel, symmetric, [-127, 127]. A BatchNorm right
       after a convolution without its own activation folds into it at export, and per-channel
       symmetric rounding does not change under a per-channel scale, so rounding the kernel before
       the fold is rounding the folded kernel the converter ships. BatchNorm is frozen so that fold
       stays the same. DepthwiseConv2D likewise, per channel (its channel axis is the third).
       A model that nests models (transfer models: backbone, head) is simulated flattened (`flatten`),
       and every weight layer is trainable in the copy: a backbone frozen for training must move too,
       or only the head could adapt (MobileNetV2: agreement of its int8 TFLite 93.58 % → 94.92 % with
       the backbone free, one epoch on 10,000 images).
     - activations: per tensor, 8-bit asymmetric, at every tensor TFLite stores in int8 (after a
       fused conv/BN/ReLU or Add/ReLU chain, after pooling averages), in the min/max range over the
       export's own calibration images, as the converter sets it (recalibrated after every epoch);
       except where the converter fixes the range: [0, 6] after a ReLU6, the input's range after an
       average pool (MEAN keeps its input's scale). A Rescaling is passed through: x/255 of uint8
       pixels keeps the input's 256 levels, and an offset scaling (x/127.5 - 1) is folded by the
       exporter before QAT sees the model (edgecifar/export/input_fold.py), leaving x - 128, exact.
     - the head Dense stays float: the default int8 artifact computes it in float (float head).
  2. Fine-tune that copy for a few epochs to reproduce the original model's own predictions (`teacher_model`)
     (self-distillation: mean squared error against its logits on training images, no labels), so
     what it learns is to agree with the model the user trained, which is what the budget measures.
     The agreement it reports is measured on held-out images: on the images it tunes on it reads higher
     than the converted file then scores on test (MobileNetV2: 97.35 % on 2,000 tuning images, 94.5 % on
     test). Tried and not kept (session 31, MobileNetV2): a new flipped and shifted copy of the images
     every epoch, labelled by the teacher (file 94.86 % vs 94.96 %), and cross-entropy on the teacher's
     top-1 next to the squared error (94.52 %).
  3. Copy the tuned weights into a plain copy of the model (no fake quantization left). The normal
     converter then calibrates, quantizes and checks it like any model, against the ORIGINAL model.

Fake quantization is keras.quantizers.fake_quant_with_min_max_vars: straight-through gradients
inside the range, the same nudged grid as TensorFlow's fake-quant ops.
"""

from __future__ import annotations

import functools
import math
import time
import warnings

import numpy as np

from . import defaults
from .layer_graph import readers

# --- knobs ---------------------------------------------------------------------------------
EPOCHS = 2  # `edgecifar export --qat N` overrides
LEARNING_RATE = 1e-5  # Adam, cosine to 0: small steps, the model is already trained
BATCH_SIZE = 128
SEED = 0

WEIGHT_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")
# Layers whose output TFLite keeps in the same int8 grid as their input (or never materialises).
PASS_THROUGH = ("InputLayer", "Dropout", "Flatten", "Reshape", "MaxPooling2D", "ZeroPadding2D", "Rescaling",
                "SpatialDropout2D", "Identity")
# A layer of these kinds feeding only a BatchNorm or a ReLU is fused with it: no int8 tensor between.
FUSES_FORWARD = ("Conv2D", "DepthwiseConv2D", "Dense", "BatchNormalization", "Add")


def _keras():
    import keras

    return keras


# --- 1. simulating int8 ----------------------------------------------------------------------


def fake_quant_kernel(kernel):
    """Per-output-channel symmetric int8 rounding of a kernel whose LAST axis is the output channel
    (Conv2D, Dense): [-127, 127] times max|w| / 127, straight-through. Last, because the JAX path of
    fake_quant_with_min_max_vars broadcasts per-channel ranges against the last axis."""
    keras = _keras()
    ops = keras.ops
    amax = ops.stop_gradient(ops.maximum(ops.max(ops.abs(kernel), axis=tuple(range(len(kernel.shape) - 1))), 1e-8))
    return keras.quantizers.fake_quant_with_min_max_vars(kernel, -amax, amax, num_bits=8, narrow_range=True, axis=-1)


def fake_quant_depthwise_kernel(kernel):
    """fake_quant_kernel for a DepthwiseConv2D kernel (kh, kw, channels, 1): per channel on the third axis. With a
    depth multiplier of 1, (kh, kw, C, 1) and (kh, kw, 1, C) hold the same values in the same order."""
    ops = _keras().ops
    shape = tuple(kernel.shape)
    if shape[-1] != 1:
        raise ValueError(f"QAT simulates depth multiplier 1 only (kernel shape {shape})")
    flat = fake_quant_kernel(ops.reshape(kernel, shape[:2] + (1, shape[2])))
    return ops.reshape(flat, shape)


@functools.lru_cache(maxsize=None)
def _qat_depthwise_class():
    """DepthwiseConv2D with its kernel read through fake_quant_depthwise_kernel. Unlike Conv2D it keeps the kernel
    in a plain attribute (build() assigns it, call() reads it), so the property needs a setter."""
    keras = _keras()

    class Int8DepthwiseConv2D(keras.layers.DepthwiseConv2D):
        @property
        def kernel(self):
            return fake_quant_depthwise_kernel(self._float_kernel)

        @kernel.setter
        def kernel(self, value):
            self._float_kernel = value

    return keras.saving.register_keras_serializable("edgecifar_qat")(Int8DepthwiseConv2D)


@functools.lru_cache(maxsize=None)  # one class per base, registered once
def _qat_class(base):
    """`base` (Conv2D, Dense) with its kernel read through fake_quant_kernel: same weights, same config.
    Both keep their kernel behind a `kernel` property, which their call() reads."""
    keras = _keras()

    class QuantizedKernel(base):
        @property
        def kernel(self):
            return fake_quant_kernel(super().kernel)

    QuantizedKernel.__name__ = f"Int8{base.__name__}"
    return keras.saving.register_keras_serializable("edgecifar_qat")(QuantizedKernel)


@functools.lru_cache(maxsize=None)
def _fake_quant_layer():
    keras = _keras()
    ops = keras.ops

    class ActivationFakeQuant(keras.layers.Layer):
        """Per-tensor 8-bit fake quantization of a layer's output, in a range set by `calibrate_ranges`."""

        def __init__(self, inner, fixed=None, follows=None, **kwargs):
            super().__init__(name=kwargs.pop("name", f"{inner.name}_int8"), **kwargs)
            self.inner = inner
            self.calibrating = False  # a Python flag: fit() traces with it off, so training never moves a range
            # Where TFLite does not calibrate the range: ReLU6's output is always [0, 6] (fixed), and an average
            # pool keeps its input's scale (follows: the fake-quant layer of the producer).
            self.fixed, self.follows = fixed, follows

        def build(self, input_shape):
            self.range_min = self.add_weight(name="range_min", shape=(), initializer="zeros", trainable=False)
            self.range_max = self.add_weight(name="range_max", shape=(), initializer="zeros", trainable=False)

        def call(self, inputs, training=None, mask=None):  # (masks: no layer QAT wraps uses them)
            x = self.inner(inputs)
            if self.calibrating:
                # As the converter calibrates: the min and max over all calibration images, always holding 0.
                self.range_min.assign(ops.minimum(self.range_min, ops.min(x)))
                self.range_max.assign(ops.maximum(self.range_max, ops.max(x)))
                return x
            lo, hi = ops.stop_gradient(self.range_min), ops.stop_gradient(self.range_max)
            return keras.quantizers.fake_quant_with_min_max_vars(x, lo, ops.maximum(hi, lo + 1e-6), num_bits=8)

    return ActivationFakeQuant


def _consumers(model) -> dict:
    """{layer name: [names of the layers that read its output]} (a model output alone is not a reader here)."""
    return {name: [r.name for r in found if r is not None] for name, found in readers(model).items()}


def _is_relu(layer) -> bool:
    kind = type(layer).__name__
    return kind == "ReLU" or (kind == "Activation" and layer.get_config().get("activation") in ("relu", "relu6"))


def quantized_tensors(model, head: str | None) -> list[str]:
    """Names of the layers whose output TFLite stores as an int8 tensor (so QAT rounds it there)."""
    consumers = _consumers(model)
    by_name = {layer.name: layer for layer in model.layers}
    points = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in PASS_THROUGH or layer.name == head or not consumers[layer.name]:
            continue
        if kind == "Activation" and layer.get_config().get("activation") == "linear":
            continue
        nxt = [by_name[n] for n in consumers[layer.name]]
        # A layer with its own activation (Conv2D(..., activation="relu") → BatchNorm, as in seed003) cannot
        # fuse with what follows: its output is an int8 tensor of its own.
        linear = layer.get_config().get("activation", "linear") == "linear"
        fused = len(nxt) == 1 and kind in FUSES_FORWARD and linear and (
            _is_relu(nxt[0]) or (type(nxt[0]).__name__ == "BatchNormalization" and kind in WEIGHT_LAYERS))
        if not fused:
            points.append(layer.name)
    return points


def check_supported(model) -> None:
    """ValueError (one line) for a model this module cannot rewrite faithfully (nested models are checked too)."""
    keras = _keras()
    # Graph ops that are not layers (x + y, keras.ops.*) would hide int8 tensors from quantized_tensors().
    bare = [op.name for op in getattr(model, "operations", []) if not isinstance(op, keras.layers.Layer)]
    if bare:
        raise ValueError(f"QAT needs a model built from layers only; {model.name} has bare ops {', '.join(bare[:3])}")
    multiplier = [layer.name for layer in model.layers
                  if type(layer).__name__ == "DepthwiseConv2D" and layer.get_config().get("depth_multiplier", 1) != 1]
    if multiplier:
        raise ValueError(f"QAT simulates DepthwiseConv2D with depth multiplier 1 only ({', '.join(multiplier[:3])})")
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            check_supported(layer)
    shared = [layer.name for layer in model.layers if len(getattr(layer, "_inbound_nodes", [])) > 1 and not isinstance(layer, keras.Model)]
    if shared:  # flatten() replays each layer once
        raise ValueError(f"QAT needs every layer used once; {model.name} reuses {', '.join(shared[:3])}")


def flatten(model):
    """A flat functional copy of `model` (same weights): nested models' layers replayed in place of the nested
    model, so every int8 tensor is a layer output of one graph. A flat model comes back as it is."""
    keras = _keras()
    if not any(isinstance(layer, keras.Model) for layer in model.layers):
        return model
    inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name) for t in model.inputs]
    outputs = _replay(model, inputs)
    return keras.Model(inputs, outputs, name=model.name)


def _replay(model, inputs):
    """`model`'s graph called on `inputs` with fresh copies of its layers (nested models replayed recursively)."""
    keras = _keras()
    memo = {id(t): x for t, x in zip(model.inputs, inputs, strict=True)}

    def mapped(structure):
        return keras.tree.map_structure(lambda t: memo.get(id(t), t) if isinstance(t, keras.KerasTensor) else t, structure)

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        node = next(n for n in layer._inbound_nodes if all(id(t) in memo for t in n.input_tensors))
        args, kwargs = mapped(node.arguments.args), mapped(node.arguments.kwargs)
        if isinstance(layer, keras.Model):
            out = _replay(layer, keras.tree.flatten(args))
            out = out[0] if len(out) == 1 else out
        else:
            fresh = type(layer).from_config(layer.get_config())
            out = fresh(*args, **kwargs)
            fresh.set_weights(layer.get_weights())
        for t, x in zip(node.output_tensors, keras.tree.flatten(out), strict=True):
            memo[id(t)] = x
    return [memo[id(t)] for t in model.outputs]


def simulate_int8(model, head: str | None = None, points: list[str] | None = None, quantize_kernels: bool = True):
    """A copy of `model` (same weights) that computes with int8 rounding where TFLite's int8 does.

    `head`: the name of a Dense left in float (the float-head artifact's final layer), else None.
    `points`: quantized_tensors(model, head), when the caller already has it (a subset rounds only those outputs).
    `quantize_kernels`: False keeps every kernel float, to measure what the activations alone cost.
    Raises ValueError for models this cannot rewrite (check_supported).
    """
    keras = _keras()
    check_supported(model)
    model = flatten(model)
    points = set(quantized_tensors(model, head) if points is None else points)
    classes = {"Conv2D": _qat_class(keras.layers.Conv2D), "Dense": _qat_class(keras.layers.Dense),
               "DepthwiseConv2D": _qat_depthwise_class()}
    fake_quant = _fake_quant_layer()

    def clone(layer):
        kind = type(layer).__name__
        cls = classes[kind] if quantize_kernels and kind in WEIGHT_LAYERS and layer.name != head else type(layer)
        config = layer.get_config()
        if kind in ("Dropout", "SpatialDropout2D"):
            config["rate"] = 0.0  # the copy must compute what the original computes at inference, and nothing else
        for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            if key in config:
                config[key] = None  # the loss is agreement with the original alone: no weight decay pulling away
        new = cls.from_config(config)
        if kind in WEIGHT_LAYERS:
            new.trainable = True  # a frozen backbone (transfer models) must move too, or only the head can adapt
        if kind == "BatchNormalization":
            new.trainable = False  # frozen: the fold the converter makes is the one trained against
        if layer.name not in points:
            return new
        return fake_quant(new, fixed=_fixed_range(layer), follows=_same_scale_as(layer, model, points))

    sim = keras.models.clone_model(model, clone_function=clone)
    copy_weights(model, sim)
    return sim


def _fixed_range(layer):
    """(0, max_value) for a capped ReLU (ReLU6): TFLite quantizes its output to that range, not the calibrated one."""
    cap = layer.get_config().get("max_value") if type(layer).__name__ == "ReLU" else None
    return (0.0, float(cap)) if cap else None


def _same_scale_as(layer, model, points):
    """The quantized producer whose scale an average pool keeps in TFLite (MEAN, AVERAGE_POOL_2D), else None."""
    if type(layer).__name__ not in ("GlobalAveragePooling2D", "AveragePooling2D"):
        return None
    parents = [parent.operation.name for node in layer._inbound_nodes for parent in node.parent_nodes]
    return f"{parents[0]}_int8" if len(parents) == 1 and parents[0] in points else None


def _inner_layers(model) -> dict:
    """{name: layer} through fake-quant wrappers and nested models (names are unique in the models QAT takes)."""
    keras = _keras()
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(_inner_layers(layer))
            continue
        found[layer.name] = layer
        inner = getattr(layer, "inner", None)
        if inner is not None:
            found[inner.name] = inner
    return found


def copy_weights(src, dst) -> None:
    """Copy every layer's weights from `src` to `dst` by layer name (fake-quant wrappers looked through)."""
    def weighted(model):  # wrappers are looked through: their own weights are the ranges, not the model's
        return {name: layer for name, layer in _inner_layers(model).items()
                if getattr(layer, "inner", None) is None and layer.weights}

    sources, targets = weighted(src), weighted(dst)
    if sources.keys() != targets.keys():
        raise ValueError(f"the two models' layers with weights differ: {sorted(sources.keys() ^ targets.keys())[:4]}")
    for name, layer in sources.items():
        for w, t in zip(layer.weights, targets[name].weights, strict=True):
            # A numpy copy: under JAX, assigning the variable itself shares its buffer, and fit() donates (deletes)
            # the copy's buffers, which would leave the source model unusable (its teacher predictions, for one).
            t.assign(np.array(_keras().ops.convert_to_numpy(w)))


def float_head(model) -> str | None:
    """The float-head artifact's float layer: the model's final Dense, looked for inside a final nested model too
    (None when the model ends otherwise)."""
    keras = _keras()
    last = model.layers[-1] if getattr(model, "layers", None) else None
    if isinstance(last, keras.Model):
        return float_head(last)
    return last.name if type(last).__name__ == "Dense" else None


# --- 2. fine-tuning ---------------------------------------------------------------------------


def fine_tune(model, images: np.ndarray, calibration: np.ndarray, *, head: str | None = None, epochs: int = EPOCHS,
              lr: float = LEARNING_RATE, batch_size: int = BATCH_SIZE, seed: int = SEED, echo=print, teacher_model=None,
              held_out: np.ndarray | None = None):
    """(tuned plain copy of `model`, report dict). `model` outputs logits; `images` (uint8 NHWC training images)
    tune it, `calibration` (the export's calibration images) sets the activation ranges, as in the converter.
    `teacher_model`: the model whose logits it learns to reproduce, when not `model` itself (the exporter passes
    the trained model's logits copy, so a bias-corrected `model` is pulled back to the original's predictions).
    `held_out`: images never tuned on, on which the simulated agreement is reported (else on the first 2,000
    tuning images, which flatter it)."""
    keras = _keras()
    if epochs < 1:
        raise ValueError(f"QAT needs at least 1 epoch, got {epochs}")
    keras.utils.set_random_seed(seed)
    t0 = time.perf_counter()
    check_supported(model)  # before the teacher's predictions (slow) and the graph walk
    flat = flatten(model)
    points = quantized_tensors(flat, head)
    # Targets: the original model's own logits, computed once (it never changes). Matching logits (mean
    # squared error) rather than softmax keeps a signal on the near-tied images, where int8 flips the class.
    teacher_model = model if teacher_model is None else teacher_model
    teacher = teacher_model.predict(images, batch_size=defaults.EVAL_BATCH, verbose=0).astype(np.float32)
    # The agreement is judged on images the tuning never sees, when the caller has some: on tuning images it
    # reads 2-3 points higher than the converted file then scores on test (MobileNetV2).
    if held_out is not None and len(held_out):
        judge = held_out[:2000]
        judge_teacher = teacher_model.predict(judge, batch_size=defaults.EVAL_BATCH, verbose=0).astype(np.float32)
        judge_on = f"{len(judge):,} held-out images"
    else:
        judge, judge_teacher = images[:2000], teacher[:2000]
        judge_on = f"{len(judge):,} of the training images it tunes on"
    sim = simulate_int8(flat, head, points)
    steps = epochs * math.ceil(len(images) / batch_size)
    sim.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)),
                loss=keras.losses.MeanSquaredError())
    calibrate_ranges(sim, calibration)
    agree_before = _agreement(sim, judge, judge_teacher)

    losses = []
    for epoch in range(epochs):  # one fit() per epoch: the ranges are set between them, on every backend
        history = sim.fit(images, teacher, batch_size=batch_size, initial_epoch=epoch, epochs=epoch + 1, shuffle=True,
                          verbose=0)
        losses.append(history.history["loss"][-1])
        calibrate_ranges(sim, calibration)  # the weights moved: the converter would see new ranges
        echo(f"    qat epoch {epoch + 1}/{epochs}: logit mean squared error {losses[-1]:.4f}")
    agree_after = _agreement(sim, judge, judge_teacher)
    tuned = keras.models.clone_model(model)
    copy_weights(sim, tuned)
    info = {
        "method": "quantization-aware fine-tuning (edgecifar/qat.py): int8-simulated weights (per channel, symmetric) "
                  "and activations (per tensor), self-distillation to the original model's logits (mean squared error)",
        "epochs": epochs, "images": int(len(images)), "batch_size": batch_size, "optimizer": f"adam, lr {lr:g} cosine to 0",
        "seed": seed, "float_head": head, "quantized_tensors": points,
        "loss": [round(float(v), 5) for v in losses],
        "simulated_agreement_on": judge_on,
        "simulated_agreement_before": agree_before, "simulated_agreement_after": agree_after,
        "seconds": round(time.perf_counter() - t0, 1), "backend": keras.backend.backend(),
    }
    echo(f"    qat: simulated-int8 agreement with the original on {judge_on} {100 * agree_before:.2f} % → "
         f"{100 * agree_after:.2f} % ({info['seconds']:.0f} s)")
    return tuned, info


def calibrate_ranges(sim, images: np.ndarray, batch_size: int = BATCH_SIZE) -> None:
    """Set every activation range to the min/max over `images` (the converter's own calibration rule)."""
    quantizers = [layer for layer in sim.layers if hasattr(layer, "calibrating")]
    for q in quantizers:
        q.range_min.assign(0.0)
        q.range_max.assign(0.0)
        q.calibrating = True
    try:
        with warnings.catch_warnings():  # the clone lists its one input; a bare batch is what predict() feeds too
            warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
            for start in range(0, len(images), batch_size):
                sim(images[start:start + batch_size].astype(np.float32), training=False)
    finally:
        for q in quantizers:
            q.calibrating = False
    for q in quantizers:  # the ranges TFLite does not take from calibration
        if q.fixed is not None:
            q.range_min.assign(q.fixed[0])
            q.range_max.assign(q.fixed[1])
    for q in quantizers:
        if q.follows is not None:
            source = sim.get_layer(q.follows)
            q.range_min.assign(source.range_min)
            q.range_max.assign(source.range_max)


def _agreement(model, images, teacher_logits) -> float:
    pred = model.predict(images, batch_size=defaults.EVAL_BATCH, verbose=0)
    return float(np.mean(np.argmax(pred, axis=-1) == np.argmax(teacher_logits, axis=-1)))

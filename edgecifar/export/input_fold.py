"""The int8 source model, step three: an input scaling with an offset folds into the first convolution.

Why. Transfer models map camera pixels to the backbone's range with Rescaling(1/127.5, offset=-1).
The converter turns that into an int8 MUL and an int8 ADD, each on a calibrated grid: the MUL's step
is 3/255 (1.5 pixel values, range [-1, 2]), the ADD's 2/255 (one pixel value). So the pixels are
rounded twice, once coarser than the camera delivered them, before the first convolution sees them.
On MobileNetV2 that input path alone (simulated in Keras, activations otherwise float) agreed with the
float model on 96.6 % of 3,000 test images; rounding the upscaled pixels once, to whole values,
98.8 %.

How. With u = a·x + b the backbone's input and m = round(-b / a) a whole pixel value (128 for
1/127.5, -1), u = a·(x - m) + (a·m + b). The first convolution takes `a` into its kernel
(W' = a·W), and the constant (a·m + b)·sum(W) per output channel into its bias, or into the moving
mean of the BatchNormalization it feeds. The Rescaling left computes x - m: whole numbers in
[-m, 255 - m], which the int8 tensor after it holds exactly (scale 1).

Exact in the interior of the image. Where a "same" convolution pads, the padded taps stand for
pixel value m instead of -b/a (128 instead of 127.5): a difference of (a·m + b)·W per padded tap.
fold_copy measures the float difference on random images and reports it; the artifacts are checked
against the original model like any.

Applies to: a top-level Rescaling with a scalar scale and a non-zero scalar offset whose output
feeds only a Conv2D, directly or as the first layer of a nested model (a backbone), where that
Conv2D has a bias or feeds only a BatchNormalization over the last axis. Only in-memory copies
change; model.keras is never touched.
"""

from __future__ import annotations

import numpy as np

from ..layer_graph import layer_at, readers as graph_readers

TOLERANCE = 2e-2  # relative float difference the border taps may cause (measured: MobileNetV2 1e-3)


def fold_copy(model, probe_images: int = 8, seed: int = 0):
    """(model to convert, description or None). `model` itself comes back when nothing applies or the copy's float
    output differs from it by more than TOLERANCE on seeded random images (then with the reason)."""
    import keras

    found = foldable(model)
    if found is None:
        return model, None
    rescaling, conv_path, after = found
    a, b = float(rescaling.scale), float(rescaling.offset)
    m = float(np.round(-b / a))

    def clone(layer):
        if layer.name == rescaling.name:
            return keras.layers.Rescaling(1.0, offset=-m, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    conv = layer_at(copy, conv_path)
    weights = conv.get_weights()
    kernel = weights[0].astype(np.float64)
    shift = (a * m + b) * kernel.sum(axis=(0, 1, 2))  # what the first convolution's output lost, per channel
    weights[0] = (a * kernel).astype(weights[0].dtype)
    if conv.use_bias:
        weights[1] = (weights[1].astype(np.float64) + shift).astype(weights[1].dtype)
    else:
        bn = layer_at(copy, conv_path[:-1] + (after,))
        bn.moving_mean.assign((keras.ops.convert_to_numpy(bn.moving_mean).astype(np.float64) - shift).astype("float32"))
    conv.set_weights(weights)

    shape = tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(seed).uniform(0, 255, size=(probe_images, *shape)).astype("float32")
    ref = keras.ops.convert_to_numpy(model(x, training=False))
    out = keras.ops.convert_to_numpy(copy(x, training=False))
    err = float(np.max(np.abs(out - ref)))
    if not err <= TOLERANCE * (1.0 + float(np.max(np.abs(ref)))):  # NaN fails too
        return model, f"input scaling fold not applied: the folded copy differs by {err:.3g} on random images"
    return copy, (f"input scaling x·{a:.6g}{b:+g} folded into {'/'.join(conv_path)}: the int8 input path holds x - {m:g} "
                  f"exactly (scale 1); float output max |diff| {err:.1e} on random images, from the padded border taps")


def foldable(model):
    """(Rescaling layer, path of the Conv2D it feeds, name of that conv's BatchNormalization or None), or None."""
    import keras

    layers = getattr(model, "layers", [])
    for layer in layers:
        if not isinstance(layer, keras.layers.Rescaling) or not _scalar(layer.scale) or not _scalar(layer.offset):
            continue
        if float(layer.offset) == 0.0 or float(layer.scale) == 0.0:
            continue  # x·a alone keeps the camera's 256 levels on one grid: nothing to gain
        readers = graph_readers(model)[layer.name]
        if len(readers) != 1:
            return None
        reader, path = readers[0], (readers[0].name,)
        if isinstance(reader, keras.Model):  # a backbone: its input must feed one Conv2D only
            inner = graph_readers(reader)[reader.layers[0].name] if reader.layers else []
            if len(inner) != 1:
                return None
            reader, path = inner[0], (reader.name, inner[0].name)
            owner = model.get_layer(path[0])
        else:
            owner = model
        if type(reader).__name__ != "Conv2D" or reader.get_config().get("groups", 1) != 1:
            return None
        if reader.use_bias:
            return layer, path, None
        after = graph_readers(owner)[reader.name]
        if len(after) == 1 and isinstance(after[0], keras.layers.BatchNormalization) and after[0].axis in (-1, 3, [-1], [3]):
            return layer, path, after[0].name
        return None
    return None


def _scalar(value) -> bool:
    return np.ndim(value) == 0 and isinstance(value, (int, float, np.floating, np.integer))



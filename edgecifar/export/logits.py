"""The int8 artifacts' source model: the trained model with its final softmax removed and its logits centred.

Why logits. A quantized softmax output is coarse: TFLite fixes its int8 scale at 1/256, so on
the trained seed002_m1 model 11.7 % of the test images had two classes tied on top (argmax then
picks the lower class index; agreement with Keras was 93.4 %) and per-frame labels flickered.
The int8 logits keep their calibrated range instead, and the device applies the softmax in
float (edgecifar.device.runtime.Classifier, driven by the metadata's output kind "logits").

Why centred. softmax(z) == softmax(z - c) for any per-image constant c. With c = the mean of z
over classes, the shift is linear in the penultimate features, so it folds into the final Dense:

    W' = W - mean_k W[:, k]        b' = b - mean_k b[k]

Training never pins that common offset down (the loss cannot see it), and int8 must cover it
anyway: the full-recipe seed002_m1 model has every logit negative on its calibration images
(-137 .. -1.6), so one int8 step would be 0.54. Centred, the range is -23 .. 47 and symmetric-ish.
Probabilities computed from the centred logits equal the model's (max |delta p| ~5e-6).

Zoo heads handled: ``Dense(10) → Activation("softmax")`` (or a Softmax layer),
``Dense(10, activation="softmax")``, and transfer models whose last layer is a nested head Model
ending in either. Only in-memory copies change; model.keras is never touched.
"""

from __future__ import annotations

from typing import NamedTuple


class Int8Source(NamedTuple):
    """What the int8 conversions start from, and how it was made from the trained model."""
    teacher: object        # the logits copy with post-ReLU BatchNorms folded: what QAT learns to agree with
    model: object          # the teacher with an offset input scaling folded into its first convolution: what converts
    logits_output: bool    # False: the trained model has no softmax head to remove, its own output is kept
    steps: tuple           # one description per step taken, in order (the first says what happened to the softmax)


def int8_source(model) -> Int8Source:
    """The exporter's int8 source of a trained model, in its order: logits copy, BatchNorm fold, input-scaling fold.
    One place for the sequence, so that every script studying int8 starts from the model the exporter converts."""
    from .bn_fold import fold_copy
    from .input_fold import fold_copy as fold_input_scaling

    copy, how = logits_copy(model)
    steps = [how]
    teacher, folded = fold_copy(copy if copy is not None else model)
    if folded:  # a post-ReLU BatchNormalization quantizes badly unfolded (edgecifar/export/bn_fold.py)
        steps.append(folded)
    source, input_folded = fold_input_scaling(teacher)
    if input_folded:  # x/127.5 - 1 would round the pixels twice in int8 (edgecifar/export/input_fold.py)
        steps.append(input_folded)
    return Int8Source(teacher, source, copy is not None, tuple(steps))


def logits_copy(model):
    """(copy of `model` that outputs centred logits, description) or (None, reason) when it does not apply."""
    found = _softmax_head(model)
    if isinstance(found, str):
        return None, found
    copy, dense_path, how = _without_softmax(model, found)
    copy.set_weights(model.get_weights())  # the softmax carries no weights: same list, same order
    _centre(_nested_layer(copy, dense_path))
    return copy, (f"softmax removed, output = logits of final Dense '{'/'.join(dense_path)}' ({how}); kernel and bias "
                  f"minus their mean over classes (exact: softmax is shift-invariant); the runtime applies the softmax in float")


# --- finding and removing the softmax ------------------------------------------------------


def _softmax_head(model):
    """{"dense_path", "how", "style"} for the Dense feeding the final softmax, or a reason string."""
    import keras

    layers = getattr(model, "layers", [])
    last = layers[-1] if layers else None
    if isinstance(last, keras.layers.Dense) and last.get_config().get("activation") == "softmax":
        return {"dense_path": [last.name], "how": "Dense with softmax activation", "style": "dense"}
    is_softmax = isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and last.get_config().get("activation") == "softmax")
    if is_softmax and len(layers) > 1:
        prev = layers[-2]
        if isinstance(prev, keras.layers.Dense) and prev.get_config().get("activation") == "linear" and last.input is prev.output:
            return {"dense_path": [prev.name], "how": "Dense followed by a softmax layer", "style": "layer", "softmax": last.name}
    if isinstance(last, keras.Model) and _produces_the_output(model, last):
        inner = _softmax_head(last)
        if isinstance(inner, dict):
            return {"dense_path": [last.name, *inner["dense_path"]], "how": f"{inner['how']}, in nested model '{last.name}'",
                    "style": "nested", "inner": inner}
    return "not applied: the model does not end in Dense → softmax"


def _produces_the_output(model, layer) -> bool:
    """Whether `layer` computes the model's only output (a nested model's own .output is its inner tensor)."""
    outputs = getattr(model, "outputs", None) or []
    history = getattr(outputs[0], "_keras_history", None) if len(outputs) == 1 else None
    return history is not None and history[0] is layer


def _without_softmax(model, found):
    """A fresh copy of `model` (new layers, weights not yet set) whose output is the final Dense's linear output."""
    import keras

    last = model.layers[-1]
    if found["style"] == "layer":
        clone = keras.models.clone_model(model)
        out = clone.get_layer(found["dense_path"][0]).output
        return keras.Model(clone.inputs, out, name=model.name), found["dense_path"], found["how"]
    if found["style"] == "dense":
        replacement = _linear_dense(last)
    else:  # nested head model: rebuild it without its softmax, then put it in place of the original
        replacement, _, _ = _without_softmax(last, found["inner"])

    def clone_layer(layer):
        return replacement if layer is last else layer.__class__.from_config(layer.get_config())

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    return clone, found["dense_path"], found["how"]


def _linear_dense(dense):
    import keras

    return keras.layers.Dense.from_config({**dense.get_config(), "activation": "linear"})


def _nested_layer(model, path):
    layer = model
    for name in path:
        layer = layer.get_layer(name)
    return layer


def _centre(dense) -> None:
    weights = dense.get_weights()
    kernel = weights[0] - weights[0].mean(axis=-1, keepdims=True)
    rest = [weights[1] - weights[1].mean()] if len(weights) > 1 else []
    dense.set_weights([kernel, *rest])

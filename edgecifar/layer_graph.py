"""Who reads whose output in a functional Keras model: the one walk of a model's layer graph that the
model rewrites share (input_fold, bias_correction, qat). Pure Keras, so it also runs under JAX."""

from __future__ import annotations


def readers(model) -> dict[str, list]:
    """{layer name: the layers of `model` that take that layer's output as an input, in model order}. A layer
    whose output is also a model output has None among its readers (the model's caller reads it)."""
    import keras

    out = {layer.name: [] for layer in model.layers}
    for other in model.layers:
        for node in getattr(other, "_inbound_nodes", []):
            for parent in node.parent_nodes:
                name = parent.operation.name
                if name in out and other not in out[name]:
                    out[name].append(other)
    for tensor in keras.tree.flatten(model.outputs):
        name = tensor._keras_history[0].name
        if name in out and None not in out[name]:
            out[name].append(None)
    return out


def layer_at(model, path):
    """The layer at `path`: layer names from the outer model inwards (a nested model is a layer of its outer one)."""
    for name in path:
        model = model.get_layer(name)
    return model

"""Keras predictions as every stage measures them: model.predict on float32 pixels, batch 256."""

from __future__ import annotations

import numpy as np

from . import defaults, zoo

EVAL_BATCH = defaults.EVAL_BATCH


def predict_probs(model, images: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Keras predictions on uint8 pixels (model.predict: correct under a distribution strategy too)."""
    if len(images) == 0:
        return np.zeros((0, zoo.NUM_CLASSES), "float32")
    return np.asarray(model.predict(images.astype("float32"), batch_size=batch_size, verbose=0))


def split_accuracy(model, split) -> float:
    return float((predict_probs(model, split.images).argmax(1) == split.labels).mean())

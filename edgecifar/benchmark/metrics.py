"""Accuracy against the labels and against Keras, and the Pareto front. Pure numpy."""

from __future__ import annotations

import numpy as np


def accuracy_block(preds: np.ndarray, labels: np.ndarray, class_names: list[str], keras_preds: np.ndarray | None) -> dict:
    """Top-1, per-class accuracy and, when the Keras predictions are known, deltas and agreement.

    Deltas are in percentage points (format minus Keras); agreement is the share of images where
    the format's top-1 class equals Keras's, right or wrong.
    """
    preds, labels = np.asarray(preds), np.asarray(labels)
    top1 = float((preds == labels).mean())
    per_class = {}
    for c, name in enumerate(class_names):
        mask = labels == c
        per_class[name] = float((preds[mask] == c).mean()) if mask.any() else None
    block = {"samples": int(len(labels)), "correct": int((preds == labels).sum()), "top1": top1, "per_class": per_class,
             "top1_delta_pp": None, "agreement": None, "per_class_delta_pp": None, "max_abs_class_delta_pp": None}
    if keras_preds is not None:
        keras_preds = np.asarray(keras_preds)
        keras = accuracy_block(keras_preds, labels, class_names, None)
        block["top1_delta_pp"] = 100 * (top1 - keras["top1"])
        block["agreement"] = float((preds == keras_preds).mean())
        deltas = {n: (100 * (per_class[n] - keras["per_class"][n]) if per_class[n] is not None else None) for n in class_names}
        block["per_class_delta_pp"] = deltas
        block["max_abs_class_delta_pp"] = max((abs(d) for d in deltas.values() if d is not None), default=None)
    return block


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats: lower-or-equal latency AND higher-or-equal accuracy,
    strictly better in one. Points are (latency, accuracy)."""
    front = []
    for i, (lat_i, acc_i) in enumerate(points):
        dominated = any(
            lat_j <= lat_i and acc_j >= acc_i and (lat_j < lat_i or acc_j > acc_i)
            for j, (lat_j, acc_j) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def speedup(reference_ms: float | None, ms: float | None) -> float | None:
    """How many times faster than the reference (>1 = faster)."""
    if not reference_ms or not ms:
        return None
    return reference_ms / ms

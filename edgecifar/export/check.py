"""Check each exported artifact in the runtime that will run it on the device, against Keras.

Everything goes through edgecifar.device.runtime.Classifier (LiteRT for .tflite, onnxruntime
for .onnx) fed uint8 RGB test images, exactly as the device runner feeds camera frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import data as cifar
from .. import defaults
from ..files import sha256_file

BUDGETS_PP = defaults.BUDGETS_PP  # per format, in pp (edgecifar/defaults.py says why)
PASSED, OVER_BUDGET, FAILED = "passed", "accuracy drop above budget", "failed"
BATCH = 250


@dataclass
class Reference:
    """The test images an artifact is judged on and the Keras model's answers for them."""

    images: np.ndarray
    labels: np.ndarray
    keras_probs: np.ndarray
    subset: dict

    @property
    def keras_correct(self) -> int:
        return int((self.keras_probs.argmax(1) == self.labels).sum())


def pick_test_subset(test: cifar.Split, check_samples: int | None, seed: int = 0) -> tuple[np.ndarray, dict]:
    """All test images, or a class-stratified subset of `check_samples` (seeded, reproducible)."""
    if check_samples is None or check_samples >= len(test):
        return np.arange(len(test)), {"split": "test", "samples": len(test), "selection": "full test set"}
    idx = cifar.stratified_indices(test.labels, check_samples, seed)
    return idx, {"split": "test", "samples": int(len(idx)),
                 "selection": f"stratified subset: edgecifar.data.stratified_indices(test labels, {check_samples}, seed={seed})"}


def reference(keras_model, test: cifar.Split, check_samples: int | None, echo=print) -> Reference:
    from ..predict import predict_probs

    idx, subset = pick_test_subset(test, check_samples)
    images, labels = test.images[idx], test.labels[idx]
    echo(f"keras reference on {subset['samples']} test images ({subset['selection']})")
    probs = predict_probs(keras_model, images)
    ref = Reference(images, labels, probs.astype(np.float32), subset)
    echo(f"  keras top-1 {100 * ref.keras_correct / len(labels):.2f}%")
    return ref


MIN_VALIDATION = 100  # held-back images needed for a validation Δ worth printing (1 image = 1 pp at 100)


def held_out_indices(train: cifar.Split, data_info: dict, fingerprint: dict | None = None):
    """(positions in `train` of the validation images the run held out, None), or (None, why they are not
    known). `data_info` is the manifest's "data" section: the run's val_images, seed, limit and fingerprint."""
    val_size = int(data_info.get("val_images") or 0)
    if not val_size:
        return None, "the run trained on all its training images: there are no held-back validation images"
    if data_info.get("limit"):
        return None, "the run trained on a --limit subset: its validation split is not reconstructed"
    if fingerprint is not None and data_info.get("fingerprint") and data_info["fingerprint"] != fingerprint:
        return None, "the export reads other CIFAR-10 files than the run trained on: its validation split is not known"
    # The very slice train_val_split held out.
    return cifar.validation_indices(train.labels, val_size, int(data_info.get("seed") or 0)), None


def validation_reference(keras_model, train: cifar.Split, held, data_info: dict, calibration_indices, echo=print):
    """The run's held-back validation images (`held`, from held_out_indices), minus any calibration image,
    with Keras' answers; or (None, why not). Neither trained on nor calibrated on, they show whether the
    int8 Δ on test is a property of the model or of the 10,000 test images."""
    val_size, seed = int(data_info.get("val_images") or 0), int(data_info.get("seed") or 0)
    kept = np.setdiff1d(held, np.asarray(calibration_indices if calibration_indices is not None else [], int))
    if len(kept) < MIN_VALIDATION:
        return None, (f"only {len(kept)} of the run's {val_size} validation images are not calibration images "
                      "(calibration drew the same ones); use another --calib-samples to measure it")
    subset = {"split": "validation", "samples": int(len(kept)),
              "selection": f"the run's validation split (edgecifar.data.stratified_indices(train labels, {val_size}, "
                           f"seed={seed})) minus {len(held) - len(kept)} calibration images"}
    from ..predict import predict_probs

    echo(f"keras reference on {len(kept)} held-back validation images")
    probs = predict_probs(keras_model, train.images[kept]).astype(np.float32)
    return Reference(train.images[kept], train.labels[kept], probs, subset), None


def brief(result: dict) -> dict:
    """The figures a second image set adds to an artifact's row (validation next to test)."""
    return {k: result[k] for k in ("accuracy", "keras_accuracy", "delta_pp", "agreement", "top1_ties", "samples")}


def check(path: Path, fmt: str, ref: Reference, echo=print, budget_pp: float | None = None) -> dict:
    """Top-1 accuracy, delta and agreement vs Keras, max |delta probability|, size, status."""
    from ..device.runtime import Classifier

    budget = BUDGETS_PP[fmt] if budget_pp is None else budget_pp
    t0 = time.perf_counter()
    clf = Classifier(path)
    n = len(ref.labels)
    probs = []
    step = max(BATCH, (n // 4) // BATCH * BATCH)  # about four progress lines per artifact
    for i in range(0, n, BATCH):
        probs.append(clf.predict(ref.images[i : i + BATCH], batch_size=BATCH))
        done = min(i + BATCH, n)
        if done % step == 0 or done == n:
            echo(f"    checking {fmt}: {done}/{n} images")
    probs = np.concatenate(probs)
    pred, kpred = probs.argmax(1), ref.keras_probs.argmax(1)
    correct = int((pred == ref.labels).sum())
    # Counts, not rounded fractions, so the budget comparison is exact (1 image = 100/n pp).
    drop_pp = 100.0 * (ref.keras_correct - correct) / n
    status = PASSED if drop_pp <= budget + 1e-9 else OVER_BUDGET
    return {
        "status": status,
        "accuracy": correct / n,
        "keras_accuracy": ref.keras_correct / n,
        "delta_pp": 100.0 * (correct - ref.keras_correct) / n,
        "budget_pp": budget,
        "agreement": float((pred == kpred).mean()),
        "max_abs_prob_delta": float(np.abs(probs - ref.keras_probs).max()),
        # Images whose top probability is shared by two classes: argmax then picks the lower class index, so
        # with coarse integer outputs this is where quantization loses top-1 accuracy.
        "top1_ties": int((np.sort(probs, axis=1)[:, -1] == np.sort(probs, axis=1)[:, -2]).sum()),
        "size_bytes": Path(path).stat().st_size,
        "sha256": sha256_file(path),  # the report describes exactly these bytes
        "runtime": clf.runtime,
        "input": f"{clf.input_dtype.name}" + (f" (scale {clf.input_quant[0]:.6g}, zero point {clf.input_quant[1]})" if clf.input_quant else ""),
        "samples": n,
        "check_seconds": round(time.perf_counter() - t0, 2),
    }

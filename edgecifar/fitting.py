"""What train.py fits with: a zoo Recipe turned into Keras objects, augmentation batches, the epoch log.

Kept apart from the training steps so that train.py reads top to bottom as the recipe, and so
transfer.py (which fits a head) uses the same pieces without importing train. Pure Keras 3.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import keras
import numpy as np

from . import runs, zoo
from .camera_augment import camera_augment

SHIFT = 0.1  # seed 003's width/height_shift_range
PROGRESS_EVERY_S = 60  # inside an epoch, one progress line this often when output goes to a log (a terminal gets Keras' bar)

# Augmented phases: (padding in pixels, numpy pad mode) for a random crop back to 32x32, plus a flip.
AUGMENTATIONS = {
    "shift10_edge": (round(SHIFT * 32), "edge"),  # seed 003's ImageDataGenerator shift 0.1, nearest fill
    "crop4_reflect": (4, "reflect"),  # the ResNet-on-CIFAR standard: reflect-pad 4, random 32x32 crop
}


def make_optimizer(recipe: zoo.Recipe, steps_per_epoch: int, total_epochs: int):
    makers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    args = dict(recipe.optimizer_args)
    if recipe.schedule == "warmup_cosine":
        # Linear warm-up to the peak rate, then cosine to zero at the last step (per-step, so --epochs rescales it).
        peak = args.get("learning_rate", 1e-3)
        warmup = min(recipe.warmup_epochs, max(0, total_epochs - 1)) * steps_per_epoch
        decay = max(1, total_epochs * steps_per_epoch - warmup)
        args["learning_rate"] = keras.optimizers.schedules.CosineDecay(
            peak / 10 if warmup else peak, decay, alpha=0.0, warmup_target=peak if warmup else None, warmup_steps=warmup)
    elif "decay" in args:
        # Keras 2's per-step `decay` (lr / (1 + decay * step)), which Keras 3 expresses as a schedule.
        args["learning_rate"] = keras.optimizers.schedules.InverseTimeDecay(args.get("learning_rate", 1e-3), 1, args.pop("decay"))
    return makers[recipe.optimizer](**args)


@keras.saving.register_keras_serializable(package="edgecifar")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels with label smoothing (Keras' sparse loss has no smoothing).

    Registered so a resumed checkpoint (saved compiled) loads without custom_objects.
    """

    def __init__(self, label_smoothing=0.1, name="sparse_smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        one_hot = keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1])
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def make_loss(recipe: zoo.Recipe):
    if recipe.label_smoothing:
        return SparseSmoothedCrossentropy(recipe.label_smoothing)
    return "sparse_categorical_crossentropy"


class AugmentedBatches(keras.utils.PyDataset):
    """Random shift (pad, then crop back to 32x32) and horizontal flip, then the camera augmentation, in numpy.

    Seed 003: shift up to 10 % with nearest fill (integer-pixel shifts stand in for
    ImageDataGenerator's interpolated ones); edge models: reflect-pad 4. `augmentation=None` skips
    the shift and flip (a plain phase of a camera-augmented run). `camera`: the camera augmentation's
    rate (edgecifar.camera_augment; 0: off, 1: its own probabilities). A Keras PyDataset keeps it
    backend-agnostic.
    """

    def __init__(self, x, y, batch_size, seed, augmentation="shift10_edge", camera=0.0):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.pad, self.mode = AUGMENTATIONS[augmentation] if augmentation else (0, None)
        self.geometric, self.camera = augmentation is not None, float(camera)
        self.order = self.rng.permutation(len(x))

    def __len__(self):
        return max(1, len(self.x) // self.batch_size)  # as the seed: steps = N // batch (one short batch for tiny sets)

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.x))

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        out = self.x[idx]
        if self.geometric:
            p = self.pad
            padded = np.pad(out, ((0, 0), (p, p), (p, p), (0, 0)), mode=self.mode)
            dy, dx = self.rng.integers(0, 2 * p + 1, size=(2, len(idx)))
            out = np.stack([padded[k, dy[k] : dy[k] + out.shape[1], dx[k] : dx[k] + out.shape[2]] for k in range(len(idx))])
            flip = self.rng.random(len(idx)) < 0.5
            out[flip] = out[flip, :, ::-1]
        if self.camera:
            out = camera_augment(out, self.rng, self.camera)
        return out.astype("float32"), self.y[idx]


class EpochLog(keras.callbacks.Callback):
    """One progress line per epoch, history.csv appended, resumable checkpoint."""

    def __init__(self, run_dir: Path, phase: int, total_epochs: int, echo, checkpoint_model=None, progress_lines=False):
        super().__init__()
        self.run_dir, self.phase, self.total, self.echo = run_dir, phase, total_epochs, echo
        self.checkpoint_model = checkpoint_model  # the whole model when only a part (a head) is being fitted
        self.progress_lines = progress_lines

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = self.last_line = time.perf_counter()
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if not self.progress_lines or time.perf_counter() - self.last_line < PROGRESS_EVERY_S:
            return
        self.last_line = time.perf_counter()
        logs = logs or {}
        steps = self.params.get("steps") or "?"
        self.echo(f"  epoch {self.epoch}/{self.total}: step {batch + 1}/{steps}, {self.last_line - self.t0:.0f}s, "
                  f"loss {float(logs.get('loss', float('nan'))):.4f} acc {float(logs.get('accuracy', float('nan'))):.4f}")

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        seconds = time.perf_counter() - self.t0
        row = {"epoch": epoch + 1, "phase": self.phase, "seconds": round(seconds, 2)}
        row.update({k: round(float(v), 6) for k, v in logs.items()})
        append_history(self.run_dir / "history.csv", row)
        val = f" val_loss {logs['val_loss']:.4f} val_acc {logs['val_accuracy']:.4f}" if "val_loss" in logs else ""
        runs.save_checkpoint(self.run_dir, self.checkpoint_model or self.model, epoch + 1)
        self.echo(
            f"epoch {epoch + 1}/{self.total} (phase {self.phase}) {seconds:.1f}s "
            f"loss {logs.get('loss', float('nan')):.4f} acc {logs.get('accuracy', float('nan')):.4f}{val}"
        )


_HISTORY_FIELDS = ["epoch", "phase", "seconds", "loss", "accuracy", "val_loss", "val_accuracy"]


def append_history(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_HISTORY_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def truncate_history(path: Path, keep_epochs: int) -> None:
    """On resume, drop rows of epochs that were logged but not checkpointed."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= keep_epochs]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_HISTORY_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

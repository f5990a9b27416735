"""Stage 3 — train: run a zoo model's documented recipe on CIFAR-10 and write a run directory.

Read top to bottom: hyper-parameters that are not per-model sit right here, then the steps
(data → model → fit phase by phase → evaluate on test → write artifacts).

Pure Keras 3: no ``tf.*`` in here, so the same code trains under the TensorFlow or the
JAX backend (``KERAS_BACKEND=jax``).

Run directory (``runs/<model>-<timestamp>/``):
    model.keras      the trained Keras model (input: 32x32x3 RGB pixels 0..255, float32)
    manifest.json    model, params, recipe, preprocessing, classes, data fingerprint, metrics, versions, git
    history.csv      one row per epoch (train/val loss and accuracy, phase, seconds)
    curves.png       accuracy and loss, train vs validation
    phases.json      multi-phase recipes (seed 003): test accuracy after each phase
    checkpoint/      last completed epoch (model + optimizer state), removed when the run finishes
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import keras
import numpy as np

from . import data as cifar
from . import runs, zoo
from .distribute import distribute_scope
from .errors import UserError
from .files import write_json

# --- hyper-parameters shared by every recipe ------------------------------------------------
VAL_SIZE = 5000  # stratified hold-out from the 50,000 training images (seeds validated on test: we don't)
SHIFT = 0.1  # seed 003's width/height_shift_range
EVAL_BATCH = 256
PROGRESS_EVERY_S = 60  # inside an epoch, one progress line this often when output goes to a log (a terminal gets Keras' bar)
PREPROCESSING = {
    "input": "RGB pixels, float32 0..255, 32x32, NHWC",
    "in_model": "Rescaling(1/255) is the model's first layer (transfer models: resize + backbone scaling)",
    "color_order": "RGB",
    "layout": "NHWC",
    "scale": 1.0,
    "offset": 0.0,
}


# Augmented phases: (padding in pixels, numpy pad mode) for a random crop back to 32x32, plus a flip.
AUGMENTATIONS = {
    "shift10_edge": (round(SHIFT * 32), "edge"),  # seed 003's ImageDataGenerator shift 0.1, nearest fill
    "crop4_reflect": (4, "reflect"),  # the ResNet-on-CIFAR standard: reflect-pad 4, random 32x32 crop
}


def _optimizer(recipe: zoo.Recipe, steps_per_epoch: int, total_epochs: int):
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


def _loss(recipe: zoo.Recipe):
    if recipe.label_smoothing:
        return SparseSmoothedCrossentropy(recipe.label_smoothing)
    return "sparse_categorical_crossentropy"


class AugmentedBatches(keras.utils.PyDataset):
    """Random shift (pad, then crop back to 32x32) and horizontal flip, in numpy.

    Seed 003: shift up to 10 % with nearest fill (integer-pixel shifts stand in for
    ImageDataGenerator's interpolated ones); edge models: reflect-pad 4. A Keras PyDataset
    keeps it backend-agnostic.
    """

    def __init__(self, x, y, batch_size, seed, augmentation="shift10_edge"):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.pad, self.mode = AUGMENTATIONS[augmentation]
        self.order = self.rng.permutation(len(x))

    def __len__(self):
        return len(self.x) // self.batch_size  # as the seed: steps = N // batch

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.x))

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        x, p = self.x[idx], self.pad
        padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode=self.mode)
        dy, dx = self.rng.integers(0, 2 * p + 1, size=(2, len(idx)))
        out = np.stack([padded[k, dy[k] : dy[k] + x.shape[1], dx[k] : dx[k] + x.shape[2]] for k in range(len(idx))])
        flip = self.rng.random(len(idx)) < 0.5
        out[flip] = out[flip, :, ::-1]
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
        _append_history(self.run_dir / "history.csv", row)
        val = f" val_loss {logs['val_loss']:.4f} val_acc {logs['val_accuracy']:.4f}" if "val_loss" in logs else ""
        runs.save_checkpoint(self.run_dir, self.checkpoint_model or self.model, epoch + 1)
        self.echo(
            f"epoch {epoch + 1}/{self.total} (phase {self.phase}) {seconds:.1f}s "
            f"loss {logs.get('loss', float('nan')):.4f} acc {logs.get('accuracy', float('nan')):.4f}{val}"
        )


_HISTORY_FIELDS = ["epoch", "phase", "seconds", "loss", "accuracy", "val_loss", "val_accuracy"]


def _append_history(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_HISTORY_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def _truncate_history(path: Path, keep_epochs: int) -> None:
    """On resume, drop rows of epochs that were logged but not checkpointed."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= keep_epochs]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_HISTORY_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def predict_probs(model, images: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Keras predictions on uint8 pixels (model.predict: correct under a distribution strategy too)."""
    if len(images) == 0:
        return np.zeros((0, zoo.NUM_CLASSES), "float32")
    return np.asarray(model.predict(images.astype("float32"), batch_size=batch_size, verbose=0))


def split_accuracy(model, split) -> float:
    return float((predict_probs(model, split.images).argmax(1) == split.labels).mean())


def train(
    model_name: str = zoo.DEFAULT_MODEL,
    *,
    data_dir=None,
    runs_dir=None,
    run_dir=None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    limit: int | None = None,
    test_limit: int | None = None,
    val_size: int = VAL_SIZE,
    backbone_weights=None,
    distribute: bool = False,
    echo=print,
    progress_bar: bool | None = None,
) -> Path:
    """Train `model_name` with its recipe (overridable) and return the run directory.

    progress_bar: Keras' bar inside each epoch (default: when stdout is a terminal); otherwise
    a progress line every PROGRESS_EVERY_S seconds through `echo`, which reads well in a log file.
    """
    if progress_bar is None:
        progress_bar = sys.stdout.isatty()
    info = zoo.model_info(model_name)
    recipe = info.recipe
    if lr is not None:
        if not math.isfinite(lr) or lr <= 0:
            raise UserError(f"--lr must be a positive number, got {lr}")
        recipe = dataclasses.replace(recipe, optimizer_args={**recipe.optimizer_args, "learning_rate": lr})
    phases = list(recipe.phases)
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {epochs}")
        phases = _scale_phases(phases, epochs)
    batch_size = recipe.batch_size if batch_size is None else batch_size
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    total_epochs = sum(p.epochs for p in phases)
    if limit is not None and limit < 20:
        raise UserError(f"--limit must be at least 20 images, got {limit}")
    if seed < 0:
        raise UserError(f"--seed must be 0 or more, got {seed}")
    if val_size < 0:
        raise UserError(f"--val-size must be 0 or more, got {val_size}")
    if test_limit is not None and not 10 <= test_limit <= 10000:
        raise UserError(f"--test-limit must be between 10 and 10000, got {test_limit}")
    weights = None
    if recipe.kind == "features":
        from .transfer import backbone_weights_arg

        weights = backbone_weights_arg(model_name, backbone_weights)  # checked before any run directory exists

    # 1. Data: the training split, minus a stratified validation slice; test is for the end only.
    ds = cifar.load(data_dir)
    train_split = ds.train
    if limit is not None:
        train_split = cifar.Split(train_split.images[:limit], train_split.labels[:limit])
        val_size = min(val_size, max(10, limit // 10))
    if len(train_split) - val_size < max(batch_size, 10):
        raise UserError(f"--val-size {val_size} leaves {max(0, len(train_split) - val_size)} of {len(train_split)} images "
                        f"to train on (fewer than one batch of {batch_size}); use a smaller --val-size")
    train_split, val_split = cifar.train_val_split(train_split, val_size, seed)
    echo(f"data: {ds.source} — train {len(train_split)}, validation {len(val_split)} (held out of train), test {len(ds.test)}")

    # 2. Run directory, resuming an interrupted run when its checkpoint is there.
    run_dir = runs.use_run_dir(run_dir) if run_dir else runs.new_run_dir(model_name, runs_dir)
    done_epochs, model = runs.load_checkpoint(run_dir)
    keras.utils.set_random_seed(seed + done_epochs)  # same seed → same result, also after a resume
    strategy = distribute_scope(distribute, echo)
    with strategy:
        if model is None:
            model = info.factory(weights=weights) if recipe.kind == "features" else info.factory()
            steps = len(train_split) // batch_size if recipe.kind != "features" else 1
            model.compile(optimizer=_optimizer(recipe, max(1, steps), total_epochs), loss=_loss(recipe),
                          metrics=["accuracy"])
        else:
            echo(f"resuming {run_dir} after epoch {done_epochs}/{total_epochs}")
    _truncate_history(run_dir / "history.csv", done_epochs)
    n_params = int(model.count_params())
    echo(f"model: {model_name} ({n_params:,} params) — {info.source}")
    echo(f"recipe: {dataclasses.replace(recipe, batch_size=batch_size, phases=tuple(phases)).describe()}")
    echo(f"run: {run_dir}")

    test = ds.test
    if test_limit is not None:
        idx = cifar.stratified_indices(test.labels, test_limit, seed)
        test = cifar.Split(test.images[idx], test.labels[idx])
    phase_file = run_dir / "phases.json"  # test accuracy after each phase; survives a resume
    phase_results = json.loads(phase_file.read_text()) if phase_file.is_file() else {}

    # 3. Fit, phase by phase (seed 003: plain, then augmented).
    t_start = time.perf_counter()
    x_val = val_split.images.astype("float32") if len(val_split) else None
    validation = (x_val, val_split.labels) if x_val is not None else None
    if recipe.kind == "features":
        from . import transfer

        model = transfer.fit_head(model, train_split, val_split, phases, batch_size, run_dir, seed, echo, total_epochs, done_epochs)
    else:
        x_train = train_split.images.astype("float32")
        start = 0
        for number, phase in enumerate(phases, 1):
            end = start + phase.epochs
            if done_epochs < end:
                callbacks = [EpochLog(run_dir, number, total_epochs, echo, progress_lines=not progress_bar)]
                if phase.augment:
                    batches = AugmentedBatches(train_split.images, train_split.labels, batch_size, seed + number,
                                               recipe.augmentation)
                    model.fit(batches, epochs=end, initial_epoch=max(start, done_epochs), validation_data=validation,
                              callbacks=callbacks, verbose=int(progress_bar))
                else:
                    model.fit(x_train, train_split.labels, batch_size=batch_size, epochs=end, initial_epoch=max(start, done_epochs),
                              validation_data=validation, shuffle=True, callbacks=callbacks, verbose=int(progress_bar))
            if number < len(phases) and done_epochs <= end and str(number) not in phase_results:
                # A multi-phase write-up (seed 003) reports test accuracy after each phase: measure it too.
                acc = split_accuracy(model, test)
                phase_results[str(number)] = {"epochs": end, "test_accuracy": acc}
                write_json(phase_file, phase_results)
                echo(f"phase {number} done after epoch {end}: test accuracy {100 * acc:.2f}% on {len(test)} images")
            start = end
    train_seconds = time.perf_counter() - t_start

    # 4. Evaluate on the test set (once, or after each phase of a multi-phase recipe), then write the run artifacts.
    test_acc = split_accuracy(model, test)
    echo(f"test accuracy: {100 * test_acc:.2f}% on {len(test)} images")
    if len(phases) > 1 and recipe.kind != "features":
        phase_results[str(len(phases))] = {"epochs": total_epochs, "test_accuracy": test_acc}
    runs.save_model(model, run_dir / "model.keras")
    history = runs.read_history(run_dir / "history.csv")
    manifest = {
        "model": model_name,
        "params": n_params,
        "source": info.source,
        "recipe": {**recipe.to_dict(), "batch_size": batch_size, "phases": [vars(p) for p in phases], "epochs": total_epochs},
        "preprocessing": PREPROCESSING,
        "input_shape": list(zoo.INPUT_SHAPE),
        "class_names": ds.class_names,
        "data": {"source": ds.source, "fingerprint": ds.fingerprint, "train_images": len(train_split),
                 "val_images": len(val_split), "limit": limit, "seed": seed},
        "metrics": {
            "test_accuracy": test_acc,
            "test_images": len(test),
            "phase_test_accuracy": phase_results or None,
            "final_train_accuracy": history[-1].get("accuracy") if history else None,
            "final_val_accuracy": history[-1].get("val_accuracy") if history else None,
            "documented_test_accuracy": info.documented_test_accuracy,
            "train_seconds_this_session": round(train_seconds, 1),
            "train_seconds_total": round(sum(float(r.get("seconds") or 0) for r in history), 1),
        },
        "backend": keras.backend.backend(),
        "distribute": bool(distribute),
        "versions": runs.library_versions(),
        "git_commit": runs.git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    runs.write_manifest(run_dir, manifest)
    from .plots import plot_curves

    plot_curves(history, run_dir / "curves.png", title=f"{model_name} — test {100 * test_acc:.2f}%")
    runs.finish(run_dir)
    echo(f"wrote {run_dir}/ (model.keras, manifest.json, history.csv, curves.png)")
    return run_dir


def _scale_phases(phases, epochs):
    """--epochs N: keep the recipe's phase proportions (seed 003: half plain, half augmented)."""
    if len(phases) == 1:
        return [zoo.Phase(epochs, phases[0].augment)]
    total = sum(p.epochs for p in phases)
    scaled = [max(1, round(p.epochs * epochs / total)) for p in phases]
    scaled[-1] = max(1, epochs - sum(scaled[:-1])) if epochs > len(phases) - 1 else 1
    return [zoo.Phase(n, p.augment) for n, p in zip(scaled, phases)][: max(1, epochs)]

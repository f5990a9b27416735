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

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import keras

from . import data as cifar
from . import camera_augment, defaults, machine, precision, runs, zoo
from .distribute import distribute_scope
from .errors import UserError
from .files import write_json
from .fitting import AugmentedBatches, EpochLog, make_loss, make_optimizer, truncate_history
from .predict import split_accuracy

# --- hyper-parameters shared by every recipe ------------------------------------------------
VAL_SIZE = defaults.VAL_SIZE  # stratified hold-out of the training images (edgecifar/defaults.py)
PREPROCESSING = {
    "input": "RGB pixels, float32 0..255, 32x32, NHWC",
    "in_model": "Rescaling(1/255) is the model's first layer (transfer models: resize + backbone scaling)",
    "color_order": "RGB",
    "layout": "NHWC",
    "scale": 1.0,
    "offset": 0.0,
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one run will do, every option checked: the recipe as it will run, and the data sizes."""

    model_name: str
    label: str
    recipe: zoo.Recipe  # with this run's batch size, phases (--epochs) and --lr
    model_kwargs: dict
    seed: int
    limit: int | None
    test_limit: int | None
    val_size: int
    weights: object = None  # transfer models: the backbone weights argument

    @property
    def total_epochs(self) -> int:
        return self.recipe.epochs


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
    val_size: int | None = None,
    backbone_weights=None,
    distribute: bool = False,
    echo=print,
    progress_bar: bool | None = None,
    model_kwargs: dict | None = None,
    recipe: zoo.Recipe | None = None,
    label: str | None = None,
    augment: str | None = None,
    precision_name: str | None = None,
    camera_rate: float | None = None,
) -> Path:
    """Train `model_name` with its recipe (overridable) and return the run directory.

    Experiments (timm-style, no registry patching): model_kwargs go to the zoo factory
    (zoo.create_model(name, **model_kwargs)), `recipe` replaces the zoo recipe, and `label` names the
    run directory and the manifest's "model" (default: model_name; the zoo name is kept as "zoo_model").

    progress_bar: Keras' bar inside each epoch (default: when stdout is a terminal); otherwise
    a progress line every PROGRESS_EVERY_S seconds through `echo`, which reads well in a log file.
    """
    if progress_bar is None:
        progress_bar = sys.stdout.isatty()
    # 0. Every option checked before anything slow happens or any run directory exists.
    plan = plan_run(model_name, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, limit=limit, test_limit=test_limit,
                    val_size=val_size, backbone_weights=backbone_weights, model_kwargs=model_kwargs, recipe=recipe,
                    label=label, augment=augment, precision_name=precision_name, camera_rate=camera_rate)
    policy = precision.resolve(plan.recipe.precision)
    commit = runs.git_commit()  # the code that trains, read now: the tree may move on during a long run

    # 1. Data: the training split, minus a stratified validation slice; test is for the end only.
    ds, train_split, val_split, test = load_splits(plan, data_dir, echo)

    # 2. Run directory and model, resuming an interrupted run when its checkpoint is there.
    # Under mixed_bfloat16 (recipe precision "auto" on an AMX CPU) the layers compute in bf16.
    run_dir = runs.use_run_dir(run_dir) if run_dir else runs.new_run_dir(plan.label, runs_dir)
    with precision.dtype_policy(policy):
        model, done_epochs = open_model(plan, run_dir, len(train_split), distribute, echo)
        echo(f"model: {plan.label} ({model.count_params():,} params) — {zoo.model_info(model_name).source}"
             + (f" with {plan.model_kwargs}" if plan.model_kwargs else ""))
        echo(f"recipe: {plan.recipe.describe()}" + (f" (this CPU: {policy})" if plan.recipe.precision == "auto" else ""))
        echo(f"run: {run_dir}")

        # 3. Fit, phase by phase (seed 003: plain, then augmented).
        t_start = time.perf_counter()
        model, phase_results = fit(plan, model, done_epochs, train_split, val_split, test, run_dir, echo, progress_bar)
        train_seconds = time.perf_counter() - t_start
    # What a run saves computes in float32, whatever it trained in: same weights, float32 layers.
    model = precision.to_float32(model, lambda: zoo.create_model(plan.model_name, **plan.model_kwargs))

    # 4. Evaluate on the test set (once, or after each phase of a multi-phase recipe), then write the run artifacts.
    test_acc = split_accuracy(model, test)
    echo(f"test accuracy: {100 * test_acc:.2f}% on {len(test)} images")
    if len(plan.recipe.phases) > 1 and plan.recipe.kind != "features":
        phase_results[str(len(plan.recipe.phases))] = {"epochs": plan.total_epochs, "test_accuracy": test_acc}
    runs.save_model(model, run_dir / "model.keras")
    history = runs.read_history(run_dir / "history.csv")
    runs.write_manifest(run_dir, manifest(plan, model, ds, train_split, val_split, test, test_acc, phase_results, history,
                                          train_seconds, distribute, policy, commit))
    from .plots import plot_curves

    plot_curves(history, run_dir / "curves.png", title=f"{plan.label} — test {100 * test_acc:.2f}%")
    runs.finish(run_dir)
    echo(f"wrote {run_dir}/ (model.keras, manifest.json, history.csv, curves.png)")
    return run_dir


def plan_run(model_name, *, epochs=None, batch_size=None, lr=None, seed=0, limit=None, test_limit=None, val_size=None,
             backbone_weights=None, model_kwargs=None, recipe=None, label=None, augment=None, precision_name=None,
             camera_rate=None) -> Plan:
    """The recipe this run will follow, with every override applied and checked (UserError: one line)."""
    info = zoo.model_info(model_name)
    recipe, label = with_augment(model_name, recipe or info.recipe, augment, label, camera_rate)
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
    if limit is not None and limit < 20:
        raise UserError(f"--limit must be at least 20 images, got {limit}")
    if seed < 0:
        raise UserError(f"--seed must be 0 or more, got {seed}")
    if val_size is None:  # the recipe's own hold-out, else the shared default
        val_size = VAL_SIZE if recipe.val_size is None else recipe.val_size
    if val_size < 0:
        raise UserError(f"--val-size must be 0 or more, got {val_size}")
    if test_limit is not None and not 10 <= test_limit <= 10000:
        raise UserError(f"--test-limit must be between 10 and 10000, got {test_limit}")
    if precision_name is not None:
        precision.resolve(precision_name)  # one line naming the choices when it is not one
        recipe = dataclasses.replace(recipe, precision=precision_name)
    weights = None
    if recipe.kind == "features":
        if recipe.precision != "float32":
            raise UserError(f"--precision {recipe.precision} does not apply to {model_name}: it fits a head on cached "
                            "float32 features; leave --precision out")
        from .transfer import backbone_weights_arg

        weights = backbone_weights_arg(model_name, backbone_weights)  # checked before any run directory exists
    recipe = dataclasses.replace(recipe, batch_size=batch_size, phases=tuple(phases))
    return Plan(model_name, label, recipe, dict(model_kwargs or {}), seed, limit, test_limit, val_size, weights)


def load_splits(plan: Plan, data_dir, echo):
    """(dataset, train, validation, test): --limit trims the training split, --test-limit the test split."""
    ds = cifar.load(data_dir)
    train_split, val_size = ds.train, plan.val_size
    if plan.limit is not None:
        train_split = cifar.Split(train_split.images[: plan.limit], train_split.labels[: plan.limit])
        val_size = min(val_size, max(10, plan.limit // 10))
    if len(train_split) - val_size < 10:
        raise UserError(f"--val-size {val_size} leaves {max(0, len(train_split) - val_size)} of {len(train_split)} images "
                        "to train on (at least 10 are needed); use a smaller --val-size")
    train_split, val_split = cifar.train_val_split(train_split, val_size, plan.seed)
    echo(f"data: {ds.source} — train {len(train_split)}, validation {len(val_split)} (held out of train), test {len(ds.test)}")
    test = ds.test
    if plan.test_limit is not None:
        idx = cifar.stratified_indices(test.labels, plan.test_limit, plan.seed)
        test = cifar.Split(test.images[idx], test.labels[idx])
    return ds, train_split, val_split, test


def open_model(plan: Plan, run_dir: Path, n_train: int, distribute: bool, echo):
    """(compiled model, epochs already done): the checkpoint of an interrupted run, or a new model."""
    done_epochs, model = runs.load_checkpoint(run_dir)
    keras.utils.set_random_seed(plan.seed + done_epochs)  # same seed → same result, also after a resume
    recipe = plan.recipe
    with distribute_scope(distribute, echo):
        if model is None:
            extra = {"weights": plan.weights} if recipe.kind == "features" else {}
            model = zoo.create_model(plan.model_name, **extra, **plan.model_kwargs)
            steps = n_train // recipe.batch_size if recipe.kind != "features" else 1
            model.compile(optimizer=make_optimizer(recipe, max(1, steps), plan.total_epochs), loss=make_loss(recipe),
                          metrics=["accuracy"])
        else:
            echo(f"resuming {run_dir} after epoch {done_epochs}/{plan.total_epochs}")
    truncate_history(run_dir / "history.csv", done_epochs)
    return model, done_epochs


def fit(plan: Plan, model, done_epochs, train_split, val_split, test, run_dir: Path, echo, progress_bar):
    """Fit the epochs not done yet, phase by phase; returns (model, {phase: test accuracy after it})."""
    recipe, batch_size, total = plan.recipe, plan.recipe.batch_size, plan.total_epochs
    phase_file = run_dir / "phases.json"  # test accuracy after each phase; survives a resume
    phase_results = json.loads(phase_file.read_text()) if phase_file.is_file() else {}
    validation = (val_split.images.astype("float32"), val_split.labels) if len(val_split) else None
    if recipe.kind == "features":
        from . import transfer

        model = transfer.fit_head(model, recipe, train_split, val_split, batch_size, run_dir, echo, total, done_epochs)
        return model, phase_results
    start = 0
    for number, phase in enumerate(recipe.phases, 1):
        end = start + phase.epochs
        if done_epochs < end:
            callbacks = [EpochLog(run_dir, number, total, echo, progress_lines=not progress_bar)]
            epochs = dict(epochs=end, initial_epoch=max(start, done_epochs), validation_data=validation,
                          callbacks=callbacks, verbose=int(progress_bar))
            if phase.augment or recipe.camera:
                batches = AugmentedBatches(train_split.images, train_split.labels, batch_size, plan.seed + number,
                                           recipe.augmentation if phase.augment else None,
                                           camera=recipe.camera_rate if recipe.camera else 0.0)
                model.fit(batches, **epochs)
            else:
                model.fit(train_split.images.astype("float32"), train_split.labels, batch_size=batch_size, shuffle=True,
                          **epochs)
        if number < len(recipe.phases) and done_epochs <= end and str(number) not in phase_results:
            # A multi-phase write-up (seed 003) reports test accuracy after each phase: measure it too.
            acc = split_accuracy(model, test)
            phase_results[str(number)] = {"epochs": end, "test_accuracy": acc}
            write_json(phase_file, phase_results)
            echo(f"phase {number} done after epoch {end}: test accuracy {100 * acc:.2f}% on {len(test)} images")
        start = end
    return model, phase_results


def manifest(plan: Plan, model, ds, train_split, val_split, test, test_acc, phase_results, history, train_seconds,
             distribute, policy="float32", commit=None) -> dict:
    """manifest.json: the contract export and benchmark read (model, recipe as run, data, metrics, provenance)."""
    info = zoo.model_info(plan.model_name)
    recipe = plan.recipe
    return {
        "model": plan.label,
        "zoo_model": plan.model_name,
        "model_kwargs": plan.model_kwargs or None,
        "augment": "camera" if recipe.camera else "plain",
        "camera_augmentation": camera_augment.describe(recipe.camera_rate) if recipe.camera else None,
        # The Keras dtype policy training ran under (recipe precision "auto" resolves per CPU); model.keras is float32.
        "training_precision": policy,
        "params": int(model.count_params()),
        "source": info.source,
        # What ran: the recipe with this run's batch size and phases (--epochs), described as such.
        "recipe": {**recipe.to_dict(), "phases": [vars(p) for p in recipe.phases]},
        "preprocessing": PREPROCESSING,
        "input_shape": list(zoo.INPUT_SHAPE),
        "class_names": ds.class_names,
        "data": {"source": ds.source, "fingerprint": ds.fingerprint, "train_images": len(train_split),
                 "val_images": len(val_split), "limit": plan.limit, "seed": plan.seed},
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
        # Where it ran: a run reproduces bit for bit only on the same CPU kind and oneDNN setting (README: Reproducibility).
        "machine": {"cpu": machine.cpu_model(), "cores": machine.usable_cores(),
                    "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")},
        "backend": keras.backend.backend(),
        "distribute": bool(distribute),
        "versions": runs.library_versions(),
        "git_commit": commit or runs.git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def with_augment(model_name: str, recipe: zoo.Recipe, augment: str | None, label: str | None = None,
                 camera_rate: float | None = None):
    """--augment camera|plain (and --camera-rate R): the recipe with the camera augmentation switched
    on or off, at rate R, and the run's label. A run that differs from the model's own recipe is a
    variant, named `<model>_plain`, `<model>_camera` (rate 1) or `<model>_camera_rate<R>`: its run
    directory, manifest and --resume use that name, so a resume never continues a run at another rate."""
    label = label or model_name
    if camera_rate is not None:
        if not (math.isfinite(camera_rate) and 0 < camera_rate <= 1):
            raise UserError(f"--camera-rate must be in (0, 1], got {camera_rate}: it multiplies every "
                            f"camera-augmentation probability")
        if augment == "plain":
            raise UserError("--camera-rate needs the camera augmentation: drop --augment plain, or --camera-rate")
        if augment is None and not recipe.camera:
            raise UserError(f"--camera-rate needs the camera augmentation: add --augment camera "
                            f"({model_name}'s recipe trains without it)")
    if augment is not None and augment not in recipe.variants:
        choices = ", ".join(recipe.variants) or "none (this model fits a head on cached backbone features)"
        raise UserError(f"--augment {augment} does not apply to {model_name}: choose from {choices}")
    camera = recipe.camera if augment is None else augment == "camera"
    rate = recipe.camera_rate if camera_rate is None else camera_rate
    if (camera, rate) == (recipe.camera, recipe.camera_rate):
        return recipe, label
    variant = "plain" if not camera else "camera" if rate == 1 else f"camera_rate{rate:g}"
    return dataclasses.replace(recipe, camera=camera, camera_rate=rate), label if label != model_name else f"{model_name}_{variant}"


def _scale_phases(phases, epochs):
    """--epochs N: keep the recipe's phase proportions (seed 003: half plain, half augmented)."""
    if len(phases) == 1:
        return [zoo.Phase(epochs, phases[0].augment)]
    total = sum(p.epochs for p in phases)
    scaled = [max(1, round(p.epochs * epochs / total)) for p in phases]
    scaled[-1] = max(1, epochs - sum(scaled[:-1])) if epochs > len(phases) - 1 else 1
    return [zoo.Phase(n, p.augment) for n, p in zip(scaled, phases)][: max(1, epochs)]

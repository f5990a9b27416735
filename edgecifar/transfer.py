"""Transfer learning as seed 004 documents it, made deployable.

1. A frozen ImageNet backbone turns every (upscaled) training image into a feature vector,
   once; the vectors are cached on disk, keyed by backbone weights and data.
2. A small dense head is fitted on the cached vectors: minutes instead of hours on a CPU.
3. Backbone and head already form one Keras model (zoo._transfer), so what was trained is
   what gets exported: 32x32 pixels in, class probabilities out.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import keras
import numpy as np

from .errors import UserError
from .fitting import EpochLog, make_loss, make_optimizer

CACHE_ENV = "EDGECIFAR_CACHE"
FEATURE_BATCH = 128


def backbone_weights_arg(model_name: str, path):
    """A weights file the user named, or Keras' normal ImageNet download."""
    if path is None:
        return "imagenet"
    if str(path).lower() in ("none", "random"):
        return None
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--backbone-weights {path} does not exist; pass the ImageNet no-top .h5 file for {model_name}")
    return str(path)


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path("~/.cache/edgecifar").expanduser()) / "features"


def _key(backbone, images: np.ndarray) -> str:
    h = hashlib.sha256()
    for w in backbone.weights:
        h.update(np.asarray(w).tobytes())
    h.update(str(backbone.input_shape).encode())
    h.update(images.tobytes())
    return h.hexdigest()[:24]


def features(model, images: np.ndarray, echo=print, label="images") -> np.ndarray:
    """Backbone features of uint8 pixels, through the model's own upscale + scaling layers."""
    # Re-apply the deployable model's own first layers, so cached features are exactly what it computes.
    inputs = keras.Input(shape=model.input_shape[1:])
    x = inputs
    for name in ("upscale", "backbone_scaling", "backbone"):
        x = model.get_layer(name)(x)
    extractor = keras.Model(inputs, x, name="feature_extractor")
    backbone = model.get_layer("backbone")
    path = _cache_dir() / f"{model.name}-{_key(backbone, images)}.npy"
    if path.is_file():
        echo(f"features: cached {label} from {path}")
        return np.load(path)
    t0, out = time.perf_counter(), []
    for i in range(0, len(images), FEATURE_BATCH):
        out.append(np.asarray(extractor.predict_on_batch(images[i : i + FEATURE_BATCH].astype("float32"))))
        done = min(i + FEATURE_BATCH, len(images))
        if (i // FEATURE_BATCH) % 20 == 0 or done == len(images):
            rate = done / (time.perf_counter() - t0)
            echo(f"features: {label} {done}/{len(images)} ({rate:.0f} img/s)")
    feats = np.concatenate(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, feats)
    os.replace(tmp, path)
    return feats


def fit_head(model, recipe, train_split, val_split, batch_size, run_dir, echo, total_epochs, done_epochs):
    """Fit the head on cached features with the recipe's own optimizer, learning rate and loss (--lr included)."""
    head = model.get_layer("head")
    f_train = features(model, train_split.images, echo, "train")
    validation = None
    if len(val_split):
        validation = (features(model, val_split.images, echo, "validation"), val_split.labels)
    steps = max(1, -(-len(train_split) // batch_size))  # fit on arrays: ceil(N / batch) steps per epoch
    head.compile(optimizer=make_optimizer(recipe, steps, total_epochs), loss=make_loss(recipe), metrics=["accuracy"])
    log = EpochLog(run_dir, 1, total_epochs, echo, checkpoint_model=model)
    head.fit(f_train, train_split.labels, batch_size=batch_size, epochs=total_epochs, initial_epoch=done_epochs,
             validation_data=validation, shuffle=True, callbacks=[log], verbose=0)
    return model

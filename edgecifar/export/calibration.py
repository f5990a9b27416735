"""Calibration data for post-training quantization: one set, shared by TFLite and ONNX.

A CalibrationSet is a handful of *training* images (never test: the test set judges the
result, it must not shape it), stratified by class, in exactly the form the model was trained
on (raw RGB pixels 0..255 as float32; the Rescaling layer inside the model does the rest).
It hands the same samples to each quantizer in the shape that quantizer wants, in the spirit
of onnxruntime's CalibrationDataReader:

    calib = CalibrationSet.from_training_split(train, 500)
    converter.representative_dataset = calib.tflite_representative_dataset
    quantize_static(..., calibration_data_reader=onnx_reader(calib.images, "pixels"))
    report["calibration"] = calib.describe()
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from .. import data as cifar
from .. import defaults
from ..errors import UserError

DEFAULT_SAMPLES = defaults.CALIB_SAMPLES
WARN_BELOW = 100
PROGRESS_EVERY = 100


@dataclass
class CalibrationSet:
    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    labels: np.ndarray  # (N,) int
    indices: np.ndarray  # positions in the training split
    seed: int
    split: str = "train"
    source: dict = field(default_factory=dict)  # data fingerprint of the split it was drawn from
    echo: object = None  # progress callback (calibration passes can take a while)
    augmentation: str | None = None  # how the selected images were degraded afterwards (None: as stored)

    @classmethod
    def from_training_split(cls, train: cifar.Split, n: int, seed: int = 0, fingerprint: dict | None = None,
                            echo=None) -> "CalibrationSet":
        n = validate_count(n, len(train), echo)
        idx = cifar.stratified_indices(train.labels, n, seed)
        return cls(train.images[idx], train.labels[idx], idx, seed, "train", dict(fingerprint or {}), echo)

    def camera_augmented(self, rate: float, seed: int = 0) -> "CalibrationSet":
        """The same images through the training camera augmentation (edgecifar/camera_augment.py) at `rate`,
        seeded. Why: int8 ranges should come from what the model sees. A run trained with `--augment camera`
        saw degraded images, and so does the device. Measured on seed003 camera rate 0.5, all 10,000 test
        images: agreement with Keras 98.09 -> 98.32 % (TFLite int8), 98.27 -> 98.46 % (ONNX int8, 7-bit weights then)."""
        from .. import camera_augment

        images = camera_augment.camera_augment(self.images, np.random.default_rng(seed), rate)
        return replace(self, images=images, augmentation=f"{camera_augment.describe(rate)}; seed {seed}")

    def __len__(self) -> int:
        return len(self.images)

    def float_batches(self, batch_size: int = 1):
        """Preprocessed exactly as in training: float32 pixels 0..255, NHWC."""
        for i in range(0, len(self.images), batch_size):
            yield self.images[i : i + batch_size].astype(np.float32)

    def tflite_representative_dataset(self):
        """Generator for TFLiteConverter.representative_dataset (one sample per step, as the converter expects)."""
        for i, batch in enumerate(self.float_batches(1), 1):
            if self.echo and (i % PROGRESS_EVERY == 0 or i == len(self)):
                self.echo(f"    calibrating: {i}/{len(self)} samples")
            yield [batch]

    def describe(self) -> dict:
        """How the samples were chosen, precisely enough to draw the same ones again."""
        counts = np.bincount(self.labels, minlength=cifar.NUM_CLASSES)
        return {
            "split": self.split,
            "samples": int(len(self)),
            "selection": f"edgecifar.data.stratified_indices(train labels, {len(self)}, seed={self.seed})",
            "seed": int(self.seed),
            "indices_sha256": hashlib.sha256(np.asarray(self.indices, "<i8").tobytes()).hexdigest(),
            "per_class_counts": [int(c) for c in counts],
            "preprocessing": "RGB pixels as float32 0..255, NHWC, as in training (scaling is inside the model)",
            "train_split_sha256": self.source.get("train_sha256"),
            "augmentation": self.augmentation,
        }


def onnx_reader(images: np.ndarray, input_name: str = "pixels", batch_size: int = defaults.CALIB_BATCH, echo=None):
    """The one CalibrationDataReader: uint8 images fed as float32 pixels 0..255, `batch_size` at a time, under
    `input_name`. The ONNX quantizer and the quantization debugger both read calibration images through it."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.rewind()

        def get_next(self):
            if self._i >= len(images):
                return None
            x = images[self._i : self._i + batch_size].astype(np.float32)
            self._i += len(x)
            if echo and (self._i % PROGRESS_EVERY < len(x) or self._i == len(images)):
                echo(f"    calibrating: {self._i}/{len(images)} samples")
            return {input_name: x}

        def rewind(self):
            self._i = 0

    return _Reader()


def validate_count(n: int, available: int | None = None, echo=None) -> int:
    """Refuse calibration sets that cannot represent every class or exceed `available`; warn when small."""
    if n is None:
        n = DEFAULT_SAMPLES
    if n < cifar.NUM_CLASSES:
        raise UserError(f"--calib-samples {n} is too small: calibration needs at least one image per class "
                        f"({cifar.NUM_CLASSES}); use a few hundred (default {DEFAULT_SAMPLES})")
    if available is not None and n > available:
        raise UserError(f"--calib-samples {n} is more than the {available} training images; use at most {available} "
                        f"(a few hundred is enough, default {DEFAULT_SAMPLES})")
    if n < WARN_BELOW and echo:
        echo(f"warning: only {n} calibration samples; activation ranges may be poorly estimated (use >= {WARN_BELOW})")
    return int(n)

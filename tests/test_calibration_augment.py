"""Calibration images degraded as the run was trained (export --calib-augment)."""

from __future__ import annotations

import numpy as np
import pytest

CAMERA_RUN = {"augment": "camera", "recipe": {"camera_rate": 0.5}}
PLAIN_RUN = {"augment": "plain", "recipe": {"camera_rate": 1.0}}


@pytest.mark.parametrize("choice, manifest, rate", [
    ("auto", CAMERA_RUN, 0.5), ("auto", PLAIN_RUN, None), ("auto", {}, None),
    ("camera", CAMERA_RUN, 0.5), ("camera", PLAIN_RUN, 1.0), ("none", CAMERA_RUN, None)])
def test_calibration_camera_rate_follows_the_run(choice, manifest, rate):
    from edgecifar.export.pipeline import calibration_camera_rate

    assert calibration_camera_rate(choice, manifest) == rate


def test_camera_augmented_calibration_is_seeded_recorded_and_keeps_the_selection(cifar):
    from edgecifar.export.calibration import CalibrationSet

    calib = CalibrationSet.from_training_split(cifar.train, 200)
    a, b = calib.camera_augmented(0.5), calib.camera_augmented(0.5)
    assert np.array_equal(a.images, b.images)  # same seed, same images
    assert not np.array_equal(a.images, calib.images) and a.images.dtype == np.uint8
    changed = np.any(a.images != calib.images, axis=(1, 2, 3)).mean()
    assert 0.1 < changed < 0.7  # rate 0.5: about a third of the images get some degradation
    assert np.array_equal(a.indices, calib.indices) and np.array_equal(a.labels, calib.labels)
    assert calib.describe()["augmentation"] is None
    assert "camera augmentation" in a.describe()["augmentation"] and "seed 0" in a.describe()["augmentation"]
    assert not np.array_equal(calib.camera_augmented(0.5, seed=1).images, a.images)


def test_unknown_calibration_augmentation_is_a_usage_error(tmp_path):
    from edgecifar.errors import UserError
    from edgecifar.export import export_run

    with pytest.raises(UserError, match="unknown calibration augmentation 'blur'"):
        export_run(tmp_path / "no-such-run", formats=["tflite_int8"], calib_augment="blur")

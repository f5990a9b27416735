"""The camera augmentation (issue 16): `edgecifar train --augment camera`, a named camera-robust variant."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecifar import camera_augment, corruptions, data, zoo
from edgecifar.errors import UserError
from edgecifar.fitting import AugmentedBatches
from edgecifar.train import with_augment

from .conftest import run_cli

KNOBS = ("BLUR", "LOW_LIGHT", "CONTRAST", "NOISE", "JPEG")


@pytest.fixture(scope="module")
def images(cifar):
    idx = data.stratified_indices(cifar.train.labels, 2000, seed=0)
    return cifar.train.images[idx]


def test_same_seed_same_batch_and_input_untouched(images):
    before = images.copy()
    a = camera_augment.camera_augment(images[:256], np.random.default_rng(7))
    b = camera_augment.camera_augment(images[:256], np.random.default_rng(7))
    c = camera_augment.camera_augment(images[:256], np.random.default_rng(8))
    assert a.dtype == np.uint8 and a.shape == (256, 32, 32, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(images, before), "the training array itself must never be modified"


def test_about_the_documented_share_stays_clean(images):
    out = camera_augment.camera_augment(images, np.random.default_rng(0))
    unchanged = np.mean([np.array_equal(x, y) for x, y in zip(images, out)])
    expected = camera_augment.clean_fraction()
    assert 0.3 < expected < 0.5
    # 2,000 images: the binomial standard error is 1.1 pp; a degradation can leave an image equal only rarely.
    assert abs(unchanged - expected) < 0.04, (unchanged, expected)


@pytest.mark.parametrize("knob", KNOBS)
def test_every_degradation_changes_every_image_it_picks(images, monkeypatch, knob):
    for other in KNOBS:  # only this one, always
        p, bounds = getattr(camera_augment, other)
        monkeypatch.setattr(camera_augment, other, (1.0 if other == knob else 0.0, bounds))
    out = camera_augment.camera_augment(images[:200], np.random.default_rng(0))
    changed = np.mean([not np.array_equal(x, y) for x, y in zip(images[:200], out)])
    assert changed > 0.95, (knob, changed)
    if knob in ("LOW_LIGHT",):  # dimmer: darker on average, never brighter per pixel
        assert out.astype(int).sum() < images[:200].astype(int).sum()


def test_it_shares_the_suites_operations(images):
    """'Blur' means the same in training and in the suite: the suite's severity-3 blur is blur_image(1.0)."""
    img = images[:5]
    suite = corruptions.gaussian_blur(img, 3, np.random.default_rng(0))
    assert np.array_equal(suite, np.stack([corruptions.blur_image(x, corruptions.GAUSSIAN_BLUR_SIGMA[2]) for x in img]))
    assert np.array_equal(corruptions.jpeg(img, 1, None), np.stack([corruptions.jpeg_image(x, 80) for x in img]))


def test_batches_with_and_without_the_geometric_part(images):
    y = np.arange(len(images)) % 10
    plain = AugmentedBatches(images, y, 64, seed=0, augmentation=None, camera=False)
    x0, y0 = plain[0]
    assert np.array_equal(x0, images[plain.order[:64]].astype("float32")), "no shift, no flip, no camera: the images"
    cam = AugmentedBatches(images, y, 64, seed=0, augmentation=None, camera=True)
    x1, y1 = cam[0]
    assert np.array_equal(y1, y0) and x1.dtype == np.float32 and not np.array_equal(x1, x0)
    both = AugmentedBatches(images, y, 64, seed=0, augmentation="crop4_reflect", camera=True)
    assert both[0][0].shape == (64, 32, 32, 3)


def test_with_augment_names_the_variant():
    recipe = zoo.model_info("seed003_bn_cnn").recipe
    assert with_augment("seed003_bn_cnn", recipe, None) == (recipe, "seed003_bn_cnn")
    assert with_augment("seed003_bn_cnn", recipe, "plain") == (recipe, "seed003_bn_cnn")  # its own recipe: no variant
    cam, label = with_augment("seed003_bn_cnn", recipe, "camera")
    assert cam.camera and label == "seed003_bn_cnn_camera" and "camera augmentation" in cam.describe()
    assert cam.phases == recipe.phases and cam.optimizer_args == recipe.optimizer_args  # nothing else changes
    with pytest.raises(UserError, match="cached backbone features"):
        with_augment("seed004_mobilenetv2_transfer", zoo.model_info("seed004_mobilenetv2_transfer").recipe, "camera")


def test_camera_rate_makes_a_variant_at_that_rate():
    """--camera-rate R: the camera variant with every probability times R (recorded in the recipe)."""
    recipe = zoo.model_info("seed003_bn_cnn").recipe
    cam, label = with_augment("seed003_bn_cnn", recipe, "camera", camera_rate=0.5)
    assert cam.camera and cam.camera_rate == 0.5 and label == "seed003_bn_cnn_camera_rate0.5"  # resume never mixes rates
    assert "camera augmentation at rate 0.5" in cam.describe()
    edge = zoo.model_info("resnet8_edge").recipe  # a camera recipe: the rate alone changes it
    assert with_augment("resnet8_edge", edge, None, camera_rate=edge.camera_rate) == (edge, "resnet8_edge")
    other, label = with_augment("resnet8_edge", edge, None, camera_rate=1.0)
    assert other.camera_rate == 1.0 and label == "resnet8_edge_camera"  # full rate: the plain `_camera` name
    with pytest.raises(UserError, match="drop --augment plain"):
        with_augment("resnet8_edge", edge, "plain", camera_rate=0.5)
    for rate in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(UserError, match="--camera-rate must be in"):
            with_augment("seed003_bn_cnn", recipe, "camera", camera_rate=rate)
    with pytest.raises(UserError, match="needs the camera augmentation: add --augment camera"):
        with_augment("seed003_bn_cnn", recipe, None, camera_rate=0.5)


def test_train_camera_variant_is_named_in_run_and_manifest(data_dir, tmp_path):
    res = run_cli("train", "seed002_m1_cnn", "--augment", "camera", "--epochs", "1", "--limit", "256", "--samples", "100",
                  "--runs-dir", tmp_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (run,) = list(tmp_path.iterdir())
    assert run.name.startswith("seed002_m1_cnn_camera-")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model"] == "seed002_m1_cnn_camera" and manifest["zoo_model"] == "seed002_m1_cnn"
    assert manifest["augment"] == "camera" and manifest["recipe"]["camera"] is True
    assert manifest["camera_augmentation"] == camera_augment.DESCRIPTION
    assert "epochs 1" in manifest["recipe"]["description"], "the description says what ran, not the zoo's epochs"


def test_models_lists_the_variant():
    res = run_cli("models", "--json")
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["seed003_bn_cnn"]["augment"] == "plain" and rows["seed003_bn_cnn"]["variants"] == ["camera"]
    assert rows["seed004_mobilenetv2_transfer"]["variants"] == []
    text = run_cli("models").stdout
    assert "variant  seed003_bn_cnn_camera: edgecifar train seed003_bn_cnn --augment camera" in text


@pytest.mark.parametrize("args,message", [
    (["seed004_mobilenetv2_transfer", "--augment", "camera"], "does not apply to seed004_mobilenetv2_transfer"),
    (["seed002_m1_cnn", "--augment", "foggy"], "'foggy' is not one of 'plain', 'camera'"),
    (["seed002_m1_cnn", "--camera-rate", "0.5"], "--camera-rate needs the camera augmentation"),
    (["seed002_m1_cnn", "--augment", "camera", "--camera-rate", "2"], "--camera-rate must be in (0, 1]"),
])
def test_bad_augment_is_one_line(tmp_path, args, message):
    res = run_cli("train", *args, "--runs-dir", tmp_path, cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert message in res.stderr
    assert not list(tmp_path.iterdir())


def test_rate_scales_every_probability(images):
    """camera_rate 0.5: each degradation half as often, so more images stay clean."""
    assert camera_augment.clean_fraction(0.0) == 1.0
    half = camera_augment.clean_fraction(0.5)
    assert camera_augment.clean_fraction() < half < 1.0
    out = camera_augment.camera_augment(images, np.random.default_rng(0), rate=0.5)
    unchanged = np.mean([np.array_equal(x, y) for x, y in zip(images, out)])
    assert abs(unchanged - half) < 0.04, (unchanged, half)
    assert np.array_equal(camera_augment.camera_augment(images[:50], np.random.default_rng(0), rate=0.0), images[:50])
    assert "p 0.1)" in camera_augment.describe(0.5) and camera_augment.describe() == camera_augment.DESCRIPTION

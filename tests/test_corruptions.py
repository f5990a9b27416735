"""The corruption suite (issue 16): deterministic CIFAR-10-C-style corruptions, and top-1 / mCA under them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecifar import corruptions, data
from edgecifar.device.cli import default_model
from edgecifar.device.runtime import Classifier
from edgecifar.errors import UserError
from edgecifar.evaluate import corruption_accuracy, mean_corruption_accuracy

from .conftest import run_cli
from .test_device_no_tensorflow import _python

PAIRS = [(name, s) for name in corruptions.CORRUPTIONS for s in corruptions.SEVERITIES]


@pytest.fixture(scope="module")
def few(cifar):
    """200 stratified test images: enough for image-level checks, fast."""
    idx = data.stratified_indices(cifar.test.labels, 200, seed=0)
    return cifar.test.images[idx]


# A model trained without the camera augmentation: its accuracy falls clearly at every severity step. (The bundled,
# camera-robust model loses under 1 pp between mild severities, within the noise of 1,000 images.) This is
# resnet8_w20's plain int8 artifact, byte for byte the one export/reports/resnet8_w20 checked.
PLAIN_MODEL = Path(__file__).parent / "assets" / "resnet8_w20_int8.tflite"


@pytest.fixture(scope="module")
def plain_suite(cifar):
    """A trained plain int8 model (resnet8_w20, 89.5 %) through the whole suite on 1,000 stratified test images."""
    idx = data.stratified_indices(cifar.test.labels, 1000, seed=0)
    clf = Classifier(PLAIN_MODEL)
    return corruption_accuracy(lambda x: clf.predict(x, batch_size=500), cifar.test.images[idx], cifar.test.labels[idx])


@pytest.mark.parametrize("name,severity", PAIRS)
def test_same_seed_same_images_and_every_image_changes(few, name, severity):
    a = corruptions.apply(name, few, severity, seed=0)
    assert a.dtype == np.uint8 and a.shape == few.shape
    np.testing.assert_array_equal(a, corruptions.apply(name, few, severity, seed=0))
    changed = (a != few).reshape(len(few), -1).any(1)
    assert changed.all(), f"{name} s{severity} left {int((~changed).sum())} of {len(few)} images unchanged"


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "motion_blur"])
def test_random_corruptions_follow_the_seed(few, name):
    assert not np.array_equal(corruptions.apply(name, few, 2, seed=0), corruptions.apply(name, few, 2, seed=1))


def test_a_set_does_not_depend_on_what_else_is_generated(few):
    alone = corruptions.apply("shot_noise", few, 3, seed=5)
    sets = {(n, s): x for n, s, x in corruptions.corrupted_test_sets(few, ["gaussian_noise", "shot_noise"], seed=5)}
    np.testing.assert_array_equal(sets["shot_noise", 3], alone)
    assert sorted(sets) == [(n, s) for n in ("gaussian_noise", "shot_noise") for s in corruptions.SEVERITIES]


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_distortion_grows_with_severity(few, name):
    clean = few.astype(np.float32)
    mad = [float(np.abs(corruptions.apply(name, few, s).astype(np.float32) - clean).mean()) for s in corruptions.SEVERITIES]
    assert all(b > a for a, b in zip(mad, mad[1:])), (name, mad)


def test_accuracy_falls_monotonically_with_severity(plain_suite):
    """A real 89.5 % model on 1,000 images: clean > severity 1 > 2 > 3 for every corruption."""
    clean = plain_suite["clean_accuracy"]
    assert clean > 0.8
    for name, by_severity in plain_suite["accuracy"].items():
        chain = [clean] + [by_severity[str(s)] for s in corruptions.SEVERITIES]
        assert all(b < a for a, b in zip(chain, chain[1:])), (name, chain)


def test_bundled_model_is_camera_robust(cifar):
    """Issue 16: the bundled int8 model keeps clean top-1 >= 84 % and mCA >= 75 % on 2,000 stratified test images."""
    idx = data.stratified_indices(cifar.test.labels, 2000, seed=0)
    clf = Classifier(default_model())
    result = corruption_accuracy(lambda x: clf.predict(x, batch_size=500), cifar.test.images[idx], cifar.test.labels[idx])
    assert result["clean_accuracy"] >= 0.84, result["clean_accuracy"]
    assert result["mca"] >= 0.75, result["mca"]


def test_mca_is_the_mean_of_the_per_corruption_figures(plain_suite):
    acc = plain_suite["accuracy"]
    assert sorted(acc) == sorted(corruptions.CORRUPTIONS)
    per_corruption = {n: np.mean([acc[n][str(s)] for s in corruptions.SEVERITIES]) for n in acc}
    assert plain_suite["corruption_mean"] == pytest.approx(per_corruption)
    assert plain_suite["mca"] == pytest.approx(np.mean(list(per_corruption.values())))
    assert mean_corruption_accuracy({"a": {"1": 0.5, "2": 0.3}, "b": {"1": 1.0, "2": 0.0}}) == ({"a": 0.4, "b": 0.5}, 0.45)
    # The camera-trained and the unseen halves: each the mean of its own corruptions, together the mCA.
    from edgecifar.camera_augment import TRAINED_FAMILIES

    seen = [per_corruption[n] for n in per_corruption if n in TRAINED_FAMILIES]
    unseen = [per_corruption[n] for n in per_corruption if n not in TRAINED_FAMILIES]
    assert len(seen) == 5 and len(unseen) == 5
    assert plain_suite["mca_camera_trained_families"] == pytest.approx(np.mean(seen))
    assert plain_suite["mca_camera_unseen_families"] == pytest.approx(np.mean(unseen))


def test_corruption_accuracy_takes_any_predict(few):
    """A fake model that is right exactly when the image is unchanged: clean 100 %, every corruption 0 %."""
    labels = np.arange(len(few)) % 10

    def predict(images):
        same = (images == few).reshape(len(few), -1).all(1)
        return np.eye(10)[np.where(same, labels, (labels + 1) % 10)]

    res = corruption_accuracy(predict, few, labels, names=["jpeg", "low_light"], severities=[1, 3])
    assert res["clean_accuracy"] == 1.0 and res["mca"] == 0.0
    assert res["accuracy"] == {"jpeg": {"1": 0.0, "3": 0.0}, "low_light": {"1": 0.0, "3": 0.0}}
    assert res["seconds"]["generate"] > 0 and res["seconds"]["predict"] > 0


def test_motion_kernel_is_a_one_sided_streak():
    kernel, anchor = corruptions.motion_kernel(6, 2.0, 0.0)
    assert kernel.shape == (1, 13) and anchor == (0, 0)  # taps at x+0 .. x+12: the streak trails one way
    assert kernel.sum() == pytest.approx(1) and np.all(np.diff(kernel[0]) < 0)
    kernel, anchor = corruptions.motion_kernel(6, 2.0, 45.0)
    assert kernel.shape[0] == kernel.shape[1] > 1 and kernel.sum() == pytest.approx(1)


def test_jpeg_uses_4_2_0_chroma(few):
    """What cv2.imencode writes with the suite's parameters: luma sampled 2x2, both chroma planes 1x1."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 80, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
    buf = cv2.imencode(".jpg", few[0], params)[1].tobytes()
    sof = buf.index(b"\xff\xc0")
    components = buf[sof + 10 : sof + 19]  # 3 x (id, HV sampling, table)
    assert [components[i] for i in (1, 4, 7)] == [0x22, 0x11, 0x11]


def test_camera_roundtrip_goes_through_the_runners_preprocessing(few):
    frame = corruptions.camera_frame(few[0], 480)
    assert frame.shape == (480, 640, 3) and not frame[:, :80].any() and not frame[:, 560:].any()
    from edgecifar.device.preprocess import frame_to_rgb

    # Nearest-neighbour upscaling by 15 and INTER_AREA back is exact, so the frame layout and colour order are right.
    frame[:, 80:560] = cv2.resize(few[0][:, :, ::-1], (480, 480), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(frame_to_rgb(frame, (32, 32), "BGR"), few[0])
    assert corruptions.camera_frame(few[0], 544).shape == (480, 640, 3)  # larger than the frame: cropped, as a sensor does


def test_bad_names_and_inputs_are_user_errors(few):
    with pytest.raises(UserError, match="unknown corruption fog; choose from"):
        corruptions.apply("fog", few, 1)
    with pytest.raises(UserError, match="unknown severity 4"):
        corruptions.apply("jpeg", few, 4)
    with pytest.raises(UserError, match="uint8 RGB images"):
        corruptions.apply("jpeg", few.astype(np.float32), 1)


def test_corruptions_need_no_tensorflow(few):
    res = _python("""
        import numpy as np
        from edgecifar import corruptions
        x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        for name, s, y in corruptions.corrupted_test_sets(x):
            assert y.shape == x.shape
        print("ok")
    """)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_evaluate_corruptions_cli(tiny_run):
    res = run_cli("evaluate", tiny_run, "--corruptions", "--samples", "200", cwd=tiny_run.parent)
    assert res.returncode == 0, res.stderr
    assert "mCA" in res.stdout and "corruptions.md" in res.stdout
    result = json.loads((tiny_run / "corruptions.json").read_text())
    assert result["samples"] == 200 and result["seed"] == 0
    assert {n: sorted(v) for n, v in result["accuracy"].items()} == {n: ["1", "2", "3"] for n in corruptions.CORRUPTIONS}
    assert result["mca"] == pytest.approx(np.mean(list(result["corruption_mean"].values())))
    rows = list(csv.DictReader((tiny_run / "corruptions.csv").open()))
    assert len(rows) == 1 + 10 * 4 + 1 and rows[-1]["corruption"] == "mCA"
    md = (tiny_run / "corruptions.md").read_text()
    command = md.splitlines()[2]
    assert command == f"Regenerate: `edgecifar evaluate {tiny_run.name} --corruptions --samples 200`"  # relative path
    assert str(tiny_run.parent) not in md
    assert (tiny_run / "corruptions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,message", [
    (["--samples", "0", "--corruptions"], "--samples 0 is out of range; pass 1 to 10000"),
    (["--samples", "50"], "--samples applies to the corruption suite; add --corruptions"),
    (["--seed", "3"], "--seed applies to the corruption suite; add --corruptions"),
    (["--corruptions", "--seed", "-1"], "--seed -1 is negative"),
])
def test_evaluate_bad_options_are_one_line_errors(tmp_path, args, message):
    res = run_cli("evaluate", tmp_path, *args)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("edgecifar: error: ") and message in res.stderr


def test_evaluate_samples_beyond_the_test_set(tiny_run):
    res = run_cli("evaluate", tiny_run, "--corruptions", "--samples", "20000")
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "--samples 20000 is out of range; pass 1 to 10000" in res.stderr

"""The int8 model bundled in the package: `edgecifar run` works before anything is trained, without TensorFlow."""

from __future__ import annotations

import json

import cv2
import numpy as np

from edgecifar.device.cli import default_model
from edgecifar.device.runtime import Classifier

from .test_device_no_tensorflow import _python


def test_bundled_model_is_small_integer_and_described():
    path = default_model()
    assert path.stat().st_size < 3 * 2**20  # "a few MB at most"
    clf = Classifier(path)
    assert clf.input_dtype == np.uint8 and clf.input_size == (32, 32)
    meta = clf.meta
    assert meta["format"] == "tflite_int8" and len(meta["class_names"]) == 10
    assert meta["input"]["quantization"]["scale"] == clf.input_quant[0]


def test_bundled_model_accuracy_matches_its_metadata(cifar):
    """Its accuracy on the full test set is within the int8 budget (1 pp) of the Keras model it came from."""
    clf = Classifier(default_model())
    acc = float((clf.predict(cifar.test.images, batch_size=500).argmax(1) == cifar.test.labels).mean())
    keras_acc = clf.meta["source_model"]["keras_test_accuracy"]
    assert abs(acc - keras_acc) <= 0.01, (acc, keras_acc)
    assert acc > 0.6


def test_run_without_model_on_a_folder_without_tensorflow(cifar, tmp_path):
    for i in range(30):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), cifar.test.images[i][:, :, ::-1])
    res = _python(f"""
        import sys
        from edgecifar.cli import main
        sys.argv = ["edgecifar", "run", "--source", {str(tmp_path)!r}, "--json"]
        main()
    """)
    assert res.returncode == 0, res.stderr
    assert "bundled default model" in res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["file"] for r in lines] == [f"{i:03d}.png" for i in range(30)]
    expected = Classifier(default_model()).predict(cifar.test.images[:30]).argmax(1)
    assert [r["top"][0]["index"] for r in lines] == expected.tolist()


def test_training_commands_on_a_device_install_say_which_extra_is_missing():
    """On a Pi with only edgecifar[device], `edgecifar train` explains itself in one line, before printing anything
    else; `edgecifar models` (the registry alone) works there."""
    res = _python("""
        import sys
        from edgecifar.cli import main
        sys.argv = ["edgecifar", "train"]
        main()
    """)
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "edgecifar: error: this command needs keras, which is not installed; pip install 'edgecifar[train]'"]
    listing = _python("""
        import sys
        from edgecifar.cli import main
        sys.argv = ["edgecifar", "models"]
        main()
    """)
    assert listing.returncode == 0 and "resnet8_w20" in listing.stdout and "MACs" in listing.stdout, listing.stderr

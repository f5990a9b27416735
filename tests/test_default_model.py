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


def test_bundled_model_is_the_committed_report_s_artifact_and_scores_what_it_says(cifar):
    """The bundled file is byte for byte an artifact a committed export report checked (sha256), and it scores that
    report's top-1 on the full test set. XNNPACK's int8 kernels differ between CPU builds (AVX2, AVX-512) by at most a
    rounding step, which may flip a near-tie: the tolerance is 5 of 10,000 images (0.05 pp)."""
    from pathlib import Path

    from edgecifar.files import sha256_file

    sha = sha256_file(default_model())
    rows = [a for r in Path(__file__).resolve().parents[1].glob("export/reports/*/export_report.json")
            for a in json.loads(r.read_text())["artifacts"] if a.get("sha256") == sha]
    assert rows, "no committed export report describes the bundled model's bytes"
    clf = Classifier(default_model())
    correct = int((clf.predict(cifar.test.images, batch_size=500).argmax(1) == cifar.test.labels).sum())
    assert abs(correct - round(rows[0]["accuracy"] * 10000)) <= 5, (correct, rows[0]["accuracy"])
    assert rows[0]["top1_ties"] == 0  # the float head: no tied logits


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

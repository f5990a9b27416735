"""benchmarks/int8_margins.py: the Keras margin of each image, the artifact's error on it, agreement per margin bin."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def margins_script():
    return load_benchmark("int8_margins")


def _probs(logits):
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def test_margin_error_and_flips_are_measured_on_the_keras_top_two(margins_script):
    keras = _probs([[3.0, 2.95, 0.0], [5.5, 0.0, 1.0], [0.0, 0.3, 2.3]])
    # Image 0: a 0.05 margin the int8 model reverses (error -0.1); image 1: margin 4.5, error +0.5; image 2: margin 2, exact.
    int8 = _probs([[2.95, 3.0, 0.0], [6.0, 0.0, 1.0], [0.0, 0.3, 2.3]])
    m = margins_script.margins(keras, int8)
    np.testing.assert_allclose(m["keras_margin"], [0.05, 4.5, 2.0], atol=1e-5)
    np.testing.assert_allclose(m["error"], [-0.1, 0.5, 0.0], atol=1e-5)
    assert m["agree"].tolist() == [False, True, True]

    s = margins_script.summarise(m, target_agreement=0.5)
    assert s["images"] == 3 and s["agreement"] == pytest.approx(2 / 3)
    assert s["margin_error_rms"] == pytest.approx(np.sqrt((0.01 + 0.25) / 3), abs=1e-5)
    assert s["keras_margin_at_target"] == pytest.approx(2.0, abs=1e-5)  # the median of 0.05, 2, 4.5
    assert s["share_below_error_rms"] == pytest.approx(1 / 3)  # only the 0.05 margin is below the error (0.29)
    by_bin = {(b["from"], b["to"]): (b["images"], b["agreement"]) for b in s["bins"]}
    assert by_bin[(0.0, 0.1)] == (1, 0.0)
    assert by_bin[(2.0, 4.0)] == (1, 1.0) and by_bin[(4.0, None)] == (1, 1.0)
    assert by_bin[(0.5, 1.0)] == (0, None)


def test_the_report_names_each_run_and_bin(margins_script, tmp_path):
    m = margins_script.margins(_probs([[1.0, 0.0]]), _probs([[0.0, 1.0]]))
    row = {"run": "runs/m-20260101-000000", "model": "m", "format": "tflite_int8", "sha256": "ab" * 32,
           **margins_script.summarise(m, target_agreement=0.985)}
    text = margins_script.markdown([row], "python benchmarks/int8_margins.py runs/m-20260101-000000 --out x.md")
    assert "| m (`runs/m-20260101-000000`) | tflite_int8 | 0.00 % | 98.5 % |" in text
    assert "| m (20260101-000000) | tflite_int8 | – (0) | – (0) | – (0) | 0.0 % (1) |" in text
    margins_script.plot([row], tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

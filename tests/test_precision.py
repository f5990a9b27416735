"""Training precision: `--precision auto|float32|mixed_bfloat16`, and a run always saves a float32 model."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from edgecifar import machine, precision, zoo
from edgecifar.errors import UserError

from .conftest import run_cli


def test_auto_means_bf16_only_where_the_cpu_multiplies_it(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert precision.resolve("auto") == "mixed_bfloat16"
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "fma"})  # an AVX2 AMD: no bf16 fast path
    assert precision.resolve("auto") == "float32"
    assert precision.resolve("float32") == "float32" and precision.resolve("mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(UserError, match="auto, float32, mixed_bfloat16"):
        precision.resolve("fp8")


def test_a_mixed_model_copies_into_float32_exactly():
    before = keras.config.dtype_policy().name
    with precision.dtype_policy("mixed_bfloat16"):
        mixed = zoo.create_model("resnet8")
    assert keras.config.dtype_policy().name == before, "the global policy is restored"
    assert mixed.get_layer("s1b1a_conv").compute_dtype == "bfloat16"
    assert mixed.get_layer("probs").compute_dtype == "float32", "the softmax stays float32 for the loss"
    rng = np.random.default_rng(0)  # the weights: Keras' random initialisation (he_normal kernels)
    plain = precision.to_float32(mixed, lambda: zoo.create_model("resnet8"))
    assert {layer.compute_dtype for layer in plain.layers} == {"float32"}
    assert all(np.array_equal(a, b) for a, b in zip(mixed.get_weights(), plain.get_weights()))
    x = rng.integers(0, 256, (8, 32, 32, 3)).astype("float32")
    # Same weights, float32 arithmetic: close to the bf16 forward pass, not equal to it.
    assert np.abs(plain.predict(x, verbose=0) - mixed.predict(x, verbose=0)).max() < 0.1
    assert precision.to_float32(plain, lambda: pytest.fail("a float32 model is returned as is")) is plain


def test_a_bf16_run_saves_float32_and_says_how_it_trained(data_dir, tmp_path):
    res = run_cli("train", "resnet8", "--precision", "mixed_bfloat16", "--epochs", "1", "--limit", "256", "--samples", "100",
                  "--runs-dir", tmp_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (run,) = list(tmp_path.iterdir())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["training_precision"] == "mixed_bfloat16" and manifest["recipe"]["precision"] == "mixed_bfloat16"
    assert manifest["machine"]["cpu"] and manifest["machine"]["cores"] >= 1, "where it trained: reproducibility is per CPU kind"
    model = keras.models.load_model(run / "model.keras", compile=False)
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}, "export and the device only see float32"


def test_precision_on_a_transfer_model_is_one_line(tmp_path):
    res = run_cli("train", "seed004_mobilenetv2_transfer", "--precision", "mixed_bfloat16", "--runs-dir", tmp_path, cwd=tmp_path)
    assert res.returncode == 2 and not list(tmp_path.iterdir())
    assert res.stderr.strip().splitlines()[-1].startswith("edgecifar: error: --precision mixed_bfloat16 does not apply")
    assert "Traceback" not in res.stderr

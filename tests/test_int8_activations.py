"""benchmarks/int8_activations.py: the int8 disagreement split between weights and activations, in Keras."""

from __future__ import annotations

import json

import pytest

from .conftest import load_benchmark


def test_activation_study_variants_split_weights_activations_kinds_and_prefixes():
    study = load_benchmark("int8_activations")
    points = ["upscale", "Conv1_relu", "expanded_conv_depthwise_relu", "expanded_conv_project_BN",
              "block_1_expand_relu", "block_1_depthwise_relu", "block_1_project_BN", "block_2_add", "out_relu", "pool"]
    found = {name: (chosen, kernels) for name, chosen, kernels in study.variants(points)}
    assert found["int8 weights and activations"] == (points, True)
    assert found["int8 weights only"] == ([], True)
    assert found["int8 activations only"] == (points, False)
    kinds = {n: c for n, (c, k) in found.items() if n.startswith("int8 activations of") and "tensors only" in n}
    assert sorted(p for c in kinds.values() for p in c) == sorted(points)  # every tensor in exactly one kind
    assert kinds["int8 activations of residual add tensors only (1)"] == ["block_2_add"]
    assert kinds["int8 activations of other tensors only (4)"] == ["upscale", "Conv1_relu", "out_relu", "pool"]
    singles = {n: c for n, (c, k) in found.items() if n.endswith(" only") and n.startswith("int8 activations of ")
               and "tensors" not in n}
    assert singles == {f"int8 activations of {p} only": [p] for p in ["upscale", "Conv1_relu", "out_relu", "pool"]}
    prefixes = [(c, k) for n, (c, k) in found.items() if "tensors float" in n]
    assert [len(c) for c, _ in prefixes] == [9, 8, 5] and not any(k for _, k in prefixes)
    assert all(c == points[-len(c):] for c, _ in prefixes)  # a prefix is float, the rest int8
    assert len(study.variants(["a", "b"])) == 3 + 1 + 2 + 1  # a kind, its two tensors, one prefix (never all or none)


@pytest.mark.slow
def test_activation_study_runs_on_a_trained_model(tiny_run, tmp_path):
    study = load_benchmark("int8_activations")
    out = tmp_path / "study.md"
    assert study.main([str(tiny_run), "--out", str(out), "--samples", "200"]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    rows = {r["variant"]: r for r in result["rows"]}
    assert result["images"] == 200 and result["int8_tensors"] == 3  # seed002_m1: its three ReLU outputs
    assert all(0.5 < r["agreement"] <= 1 for r in rows.values())
    assert not rows["int8 activations only"]["kernels_int8"] and rows["int8 weights only"]["int8_tensors"] == 0
    assert "| int8 weights and activations | int8 |" in out.read_text() and out.with_suffix(".png").stat().st_size > 0
    assert study.main([str(tmp_path), "--out", str(tmp_path / "x.md")]) == 2 and not (tmp_path / "x.md").exists()


@pytest.mark.parametrize("extra, message", [(["--samples", "0"], "--samples 0: pass at least 1 test image"),
                                            (["--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar")])
def test_activation_study_refuses_bad_input_in_one_line(tiny_run, tmp_path, capsys, extra, message):
    study = load_benchmark("int8_activations")
    out = tmp_path / "study.md"
    assert study.main([str(tiny_run), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("int8_activations: ") and message in err[-1], err
    assert "Traceback" not in "\n".join(err) and not out.exists()

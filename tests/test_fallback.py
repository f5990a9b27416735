"""Accuracy-aware int8 (issue 15): an int8 artifact that misses its target keeps its most sensitive layers in float."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgecifar.device import metadata as meta_io
from edgecifar.export import export_run, fallback


def test_a_missed_target_keeps_ranked_layers_in_float(tiny_run, data_dir, tmp_path, monkeypatch):
    # An agreement above 100 % can never be met: every try is made, and the best one is left in place.
    monkeypatch.setattr(fallback, "TARGET_AGREEMENT", 1.01)
    monkeypatch.setattr(fallback, "MAX_LAYERS", 2)
    monkeypatch.setattr(fallback, "MAX_SIZE_GROWTH", 100.0)  # the tiny model's big Dense in float: allowed here
    lines = []
    report = export_run(tiny_run, formats="tflite_int8,onnx_int8", calib_samples=100, check_samples=1000,
                        data_dir=data_dir, out_dir=tmp_path, echo=lines.append, qat_epochs=0)
    for row in report["artifacts"]:
        block = row["accuracy_aware"]
        assert row["status"] != "failed", row.get("reason")
        assert block["met"] is False and "agreement" in block["miss"]
        assert len(block["tries"]) == 2 and [t["kept_float"] for t in block["tries"]] == [block["ranking"][:1], block["ranking"][:2]]
        assert all(t["status"] != "failed" for t in block["tries"]), block["tries"]
        # Every try is a different model: the denylisted layers really changed the conversion.
        shas = [block["first"]["sha256"]] + [t["sha256"] for t in block["tries"]]
        assert len(set(shas)) == 3, shas
        # No try met the target: the all-int8 artifact is back in place, byte for byte, and the row describes it;
        # the report still names the best try.
        assert block["kept_float"] == [] and row["sha256"] == block["first"]["sha256"]
        assert hashlib.sha256(Path(row["path"]).read_bytes()).hexdigest() == block["first"]["sha256"]
        best = max(block["tries"], key=lambda t: (t["agreement"], t["delta_pp"]))
        if (best["agreement"], best["delta_pp"]) > (block["first"]["agreement"], block["first"]["delta_pp"]):
            assert block["best_try"]["sha256"] == best["sha256"], (block["first"], block["tries"], block["best_try"])
        assert not [p for p in Path(row["path"]).parent.iterdir() if ".best" in p.name or ".staged" in p.name]
        path = Path(row["path"])
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
        conversion = meta_io.read(path).get("conversion") or {}
        assert conversion.get("float_layers", []) == block["kept_float"]
        assert "latency_ms" in block["tries"][0] and block["first_latency_ms"] > 0
    md = (tmp_path / "export_report.md").read_text()
    assert "## Accuracy-aware int8" in md and "target not met" in md
    assert any("sensitivity ranking" in line for line in lines)
    assert report["qat"] is None and "## Quantization-aware fine-tuning" not in md  # --qat 0: never fine-tuned


def test_small_check_sets_skip_the_search(tiny_run, data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(fallback, "TARGET_AGREEMENT", 1.01)
    report = export_run(tiny_run, formats="tflite_int8", calib_samples=100, check_samples=200, data_dir=data_dir,
                        out_dir=tmp_path, echo=lambda *_: None)
    (row,) = report["artifacts"]
    assert "at least 1000" in row["accuracy_aware"]["skipped"] and not row["accuracy_aware"]["kept_float"]


def test_miss_reads_both_targets():
    assert fallback.miss({"accuracy": 0.9, "delta_pp": -0.2, "agreement": 0.99}) is None
    assert "Δ -0.40 pp" in fallback.miss({"accuracy": 0.9, "delta_pp": -0.4, "agreement": 0.99})
    assert "agreement 98.00 %" in fallback.miss({"accuracy": 0.9, "delta_pp": +0.1, "agreement": 0.98})
    assert fallback.miss({"status": "failed"}) is None  # nothing to improve on a failed conversion
    with pytest.raises(TypeError):
        fallback.miss()


def test_each_model_is_held_to_its_own_target():
    """MobileNetV2 has the issue's 0.5 pp / 97.5 %; other models and unknown ones the product-wide 0.3 pp / 98.5 %.
    improve() applies the target it is given, and records it."""
    from edgecifar import defaults, zoo

    assert zoo.int8_target("seed004_mobilenetv2_transfer") == (0.5, 0.975)
    assert zoo.int8_target("seed002_m1_cnn") is None and zoo.int8_target("someone_elses_model") is None
    default = (defaults.INT8_TARGET_PP, defaults.INT8_TARGET_AGREEMENT)
    assert fallback.target_for("seed004_mobilenetv2_transfer") == (0.5, 0.975)
    assert fallback.target_for("seed002_m1_cnn") == fallback.target_for("someone_elses_model") == default
    assert fallback.target_for(None) == default
    row = {"accuracy": 0.78, "delta_pp": -0.45, "agreement": 0.976}
    never = lambda *_: pytest.fail("a met target searches nothing")  # noqa: E731
    met = fallback.improve("tflite_int8", None, dict(row), 10_000, never, never, print, target=(0.5, 0.975))
    assert met["accuracy_aware"] == {"met": True, "kept_float": [], "target_pp": 0.5, "target_agreement": 0.975}
    skipped = fallback.improve("tflite_int8", None, dict(row), 500, never, never, print)  # default target: missed
    assert skipped["accuracy_aware"]["met"] is False and skipped["accuracy_aware"]["target_pp"] == default[0]


def test_a_target_met_by_a_try_keeps_that_try(tiny_run, data_dir, tmp_path, monkeypatch):
    """The first try that meets the target stays installed, with its float layers really in float."""
    calls = []
    real_miss = fallback.miss

    def miss_until_one_float_layer(row, *a, **k):
        calls.append(row.get("sha256"))
        return None if len(calls) > 1 else "forced miss of the all-int8 artifact"

    monkeypatch.setattr(fallback, "miss", miss_until_one_float_layer)
    monkeypatch.setattr(fallback, "MAX_SIZE_GROWTH", 100.0)
    report = export_run(tiny_run, formats="tflite_int8", calib_samples=100, check_samples=1000, data_dir=data_dir,
                        out_dir=tmp_path, echo=lambda *_: None, qat_epochs=0)
    monkeypatch.setattr(fallback, "miss", real_miss)
    (row,) = report["artifacts"]
    block = row["accuracy_aware"]
    assert block["met"] and block["kept_float"] == block["ranking"][:1] and len(block["tries"]) == 1
    assert row["sha256"] == block["tries"][0]["sha256"] != block["first"]["sha256"]
    conversion = meta_io.read(Path(row["path"])).get("conversion") or {}
    assert conversion["float_layers"] == block["kept_float"]
    # The kept layer really runs in float: more float ops than the head's FULLY_CONNECTED.
    assert len([op for op in conversion["float_ops"] if op != "DEQUANTIZE"]) > 1
    assert block["size_cost_bytes"] > 0 and block["latency_cost_ms"] is not None


def test_a_try_over_the_size_limit_is_never_taken(tiny_run, data_dir, tmp_path, monkeypatch):
    """Int8 that became float-sized is not int8: with no growth allowed, every try is reported and none is taken."""
    monkeypatch.setattr(fallback, "miss", lambda row, *a, **k: None if row.get("over_size_limit") is None and
                        row.get("kept_float") else "forced")
    monkeypatch.setattr(fallback, "MAX_LAYERS", 2)
    monkeypatch.setattr(fallback, "MAX_SIZE_GROWTH", 0.0)
    report = export_run(tiny_run, formats="tflite_int8", calib_samples=100, check_samples=1000, data_dir=data_dir,
                        out_dir=tmp_path, echo=lambda *_: None, qat_epochs=0)
    (row,) = report["artifacts"]
    block = row["accuracy_aware"]
    assert all(t["over_size_limit"] for t in block["tries"]) and len(block["tries"]) == 2
    assert not block["met"] and block["kept_float"] == [] and row["sha256"] == block["first"]["sha256"]
    assert "over the size limit" in (tmp_path / "export_report.md").read_text()


@pytest.mark.parametrize("tuned_is_better", [True, False])
def test_a_target_still_missed_fine_tunes_and_keeps_the_better_artifact(tiny_run, data_dir, tmp_path, monkeypatch,
                                                                        tuned_is_better):
    """`--qat auto` (the default): what the float-layer search leaves short of the target is fine-tuned with int8
    simulated, converted again, checked, and kept only when better; otherwise the post-training artifact stays
    byte for byte."""
    from edgecifar import defaults

    monkeypatch.setattr(fallback, "TARGET_AGREEMENT", 1.01)  # never met: the search and then QAT both run
    monkeypatch.setattr(fallback, "MAX_LAYERS", 1)
    monkeypatch.setattr(fallback, "MAX_SIZE_GROWTH", 100.0)
    monkeypatch.setattr(defaults, "QAT_AUTO_EPOCHS", 1)
    monkeypatch.setattr(fallback, "better", lambda row, than, target=None: tuned_is_better)
    lines = []
    report = export_run(tiny_run, formats="tflite_int8", calib_samples=100, check_samples=1000, data_dir=data_dir,
                        out_dir=tmp_path, echo=lines.append)
    (row,) = report["artifacts"]
    qat = report["qat"]
    assert qat["auto"] is True and qat["epochs"] == 1 and qat["formats"] == ["tflite_int8"]
    result = qat["results"]["tflite_int8"]
    assert result["post_training"]["sha256"] != result["tuned"]["sha256"]  # QAT really changed the model
    assert result["tuned"]["status"] != "failed" and qat["kept"] == {"tflite_int8": tuned_is_better}
    path = Path(row["path"])
    installed = hashlib.sha256(path.read_bytes()).hexdigest()
    assert installed == row["sha256"]
    logits_how = (meta_io.read(path).get("conversion") or {}).get("logits", "")
    if tuned_is_better:
        assert installed == result["tuned"]["sha256"] and row["auto_qat"]["kept"] and row["qat_epochs"] == 1
        assert "quantization-aware fine-tuning (1 epochs)" in logits_how
        # The float-layer search that came first is still reported, under the post-training artifact.
        assert row["accuracy_aware"]["post_training"]["tries"] and row["accuracy_aware"]["met"] is False
    else:
        assert installed == result["post_training"]["sha256"] and row["auto_qat"]["kept"] is False
        assert "quantization-aware" not in logits_how and "qat_epochs" not in row
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staged or set-aside file left
    md = (tmp_path / "export_report.md").read_text()
    assert "## Quantization-aware fine-tuning" in md and "`--qat auto`" in md and "## Accuracy-aware int8" in md
    assert ("| tflite_int8 |" in md.split("## Quantization-aware fine-tuning")[1]
            and ("fine-tuned |" if tuned_is_better else "post-training |") in md)
    assert any("quantization-aware fine-tuning" in line for line in lines)
    assert ("its artifact replaced this one" if tuned_is_better else "did no better: this artifact stays") in md

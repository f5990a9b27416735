"""benchmarks/int8_table.py: one row per int8 artifact of each export report, judged against issue 15's target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "int8_table.py"


def _artifact(fmt, delta_pp, agreement, ties=0, kept=(), float_head=True):
    conversion = ({"head": "final Dense in float32"} if fmt == "tflite_int8" else {"quantization": {"float_logits": True}}) \
        if float_head else {}
    return {"format": fmt, "path": f"runs/gone/export/m_{fmt}", "status": "passed", "keras_accuracy": 0.8,
            "delta_pp": delta_pp, "agreement": agreement, "top1_ties": ties, "size_bytes": 2048,
            "accuracy_aware": {"kept_float": list(kept)}, "conversion": conversion}


def _report(path: Path, zoo_model, artifacts, qat_epochs=0, bias_correction=False):
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"model": zoo_model, "zoo_model": zoo_model, "artifacts": artifacts,
                                "qat": {"epochs": qat_epochs} if qat_epochs else None, "calibration": {},
                                "bias_correction": {"layers_corrected": 3} if bias_correction else None}))
    return path


def test_rows_are_judged_by_the_target_of_their_model(tmp_path):
    cnn = _report(tmp_path / "reports" / "cnn" / "export_report.json", "seed003_bn_cnn", [
        _artifact("tflite_float32", 0.0, 1.0),  # not int8: no row
        _artifact("tflite_int8", 0.15, 0.9859),  # met
        _artifact("onnx_int8", -0.03, 0.9850, kept=["conv"])])  # met, exactly at the agreement target
    mnv2 = _report(tmp_path / "reports" / "mnv2" / "export_report.json", "seed004_mobilenetv2_transfer", [
        _artifact("tflite_int8", -0.45, 0.976),  # met by MobileNetV2's own target (0.5 pp, 97.5 %)
        _artifact("onnx_int8", -0.1, 0.99, ties=3, float_head=False)], qat_epochs=2, bias_correction=True)  # ties: missed
    out = tmp_path / "results" / "int8.md"
    res = subprocess.run([sys.executable, str(SCRIPT), str(cnn), str(mnv2), "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "3/4 int8 artifacts meet the target" in res.stdout
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["format"], r["met"]) for r in rows] == [("tflite_int8", True), ("onnx_int8", True),
                                                       ("tflite_int8", True), ("onnx_int8", False)]
    assert rows[1]["float_layers"] == ["conv"] and rows[2]["qat_epochs"] == 2
    assert [r["bias_correction"] for r in rows] == [False, False, True, True]
    assert [r["float_head"] for r in rows] == [True, True, True, False]
    assert all(r["latency_ms"] is None for r in rows)  # the artifacts are not on this machine: not timed, not invented
    text = out.read_text()
    assert f"Regenerate: `python benchmarks/int8_table.py {cnn} {mnv2} --out {out}`" in text
    assert "](../reports/cnn/export_report.md)" in text  # links relative to the table
    assert "| final layer + 1 | – | – |" in text and "| none (integer output) | yes | 2 |" in text

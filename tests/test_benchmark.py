"""`edgecifar benchmark` end to end on the tiny_run fixture and its real export (all six formats).

The benchmark itself is not a unit test: here it runs with 200 images and a handful of timed runs,
and the test checks that every file and column is there and that the numbers are sane and real
(accuracies recomputed independently, percentiles ordered, sizes equal to the files on disk).
"""

from __future__ import annotations

import csv
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from edgecifar.benchmark import cells, metrics, report
from edgecifar.benchmark.timing import Plan, measure
from edgecifar.files import sha256_file

from .conftest import run_cli

SAMPLES = 200
FAST = ["--samples", SAMPLES, "--warmup", 2, "--min-runs", 5, "--min-seconds", 0.05, "--batch", 8]
ARTIFACT_FORMATS = [f for f in cells.FORMATS if f != "keras"]


@pytest.fixture(scope="module")
def exported_run(tiny_run) -> Path:
    """tiny_run with every format exported by the real exporter (only the missing ones are converted)."""
    missing = [f for f in ARTIFACT_FORMATS if not cells.artifact_path(tiny_run, "seed002_m1_cnn", f).is_file()]
    if missing:
        from edgecifar.export import export_run

        rep = export_run(tiny_run, formats=missing, calib_samples=100, check_samples=200, echo=lambda *_: None)
        failed = {a["format"]: a.get("reason") for a in rep["artifacts"] if not a.get("path")}
        assert not failed, f"export of the test artifacts failed: {failed}"
    return tiny_run


@pytest.fixture(scope="module")
def bench(exported_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = run_cli("benchmark", exported_run, "--out", out, *FAST, "--floor", 0, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc, json.loads((out / "results.json").read_text())


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.slow
def test_every_file_and_row(bench, exported_run):
    out, proc, res = bench
    for name in report.FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in ("pareto.png", "size.png"):
        w, h = _png_size(out / png)
        assert w >= 400 and h >= 200, (png, w, h)
    assert res["schema"] == cells.SCHEMA
    assert res["settings"]["samples"] == SAMPLES
    threads = [str(t) for t in res["settings"]["threads"]]
    assert threads[0] == "1" and len(res["machine"]["libraries"]) > 3
    assert all(len(res["load_average"][k]) == 3 for k in ("start", "end"))
    formats = [r["format"] for r in res["rows"]]
    assert formats == ["keras", "keras_predict", *ARTIFACT_FORMATS]
    assert res["baseline_rss_kb"] > 1000

    for r in res["rows"]:
        assert r["status"] == "ok", (r["format"], r["error"])
        assert r["size_bytes"] == Path(r["path"]).stat().st_size and r["sha256"] == sha256_file(r["path"])
        acc = r["accuracy"]
        assert 0 <= acc["top1"] <= 1 and 0 <= acc["agreement"] <= 1 and acc["samples"] == SAMPLES
        assert acc["correct"] == round(acc["top1"] * SAMPLES)
        assert set(acc["per_class"]) == set(res["class_names"]) and all(0 <= v <= 1 for v in acc["per_class"].values())
        assert acc["top1_delta_pp"] == pytest.approx(100 * (acc["top1"] - res["rows"][0]["accuracy"]["top1"]))
        assert set(r["threads"]) == set(threads)
        for t, cell in r["threads"].items():
            lat = cell["latency"]
            assert lat["runs"] >= 5 and lat["seconds"] >= 0.05
            assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
            assert cell["throughput"]["batch"] == 8 and cell["throughput"]["images_per_s"] > 0
            assert cell["rss_kb"] > res["baseline_rss_kb"] and cell["rss_delta_kb"] == cell["rss_kb"] - res["baseline_rss_kb"]
            assert cell["load_ms"] > 0 and cell["speedup_vs_keras"] > 0
            keras_p50 = res["rows"][0]["threads"][t]["latency"]["p50_ms"]
            assert cell["speedup_vs_keras"] == pytest.approx(keras_p50 / lat["p50_ms"])
            if r["format"].startswith(("tflite_", "onnx_")):
                assert cell["speedup_vs_float32"] > 0
    keras, predict = res["rows"][0], res["rows"][1]
    assert keras["accuracy"]["agreement"] == 1 and keras["accuracy"]["top1_delta_pp"] == 0
    assert keras["method"] in keras["threads"]["1"]["trials_p50_ms"] and predict["method"].startswith("model.predict")
    # The TensorFlow runtime costs memory the device runtimes do not: a sanity check on RSS.
    assert keras["threads"]["1"]["rss_kb"] > res["rows"][-1]["threads"]["1"]["rss_kb"]

    # Progress: one plain-text line per measurement, counting up to the total.
    n_cells = len(res["rows"][1:]) * len(threads)
    bar_lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert len(bar_lines) == n_cells and f"{n_cells}/{n_cells}" in bar_lines[-1] and "\r" not in proc.stdout
    assert f"all {2 + len(ARTIFACT_FORMATS)} formats pass" in proc.stdout  # keras, keras_predict and every artifact


@pytest.mark.slow
def test_accuracies_are_real(bench, exported_run, cifar):
    """Recompute two rows' top-1 independently: Keras in this process, int8 TFLite through the device Classifier."""
    from edgecifar import data, runs
    from edgecifar.device.runtime import Classifier
    from edgecifar.predict import predict_probs

    _, _, res = bench
    idx = data.stratified_indices(cifar.test.labels, SAMPLES, seed=0)
    x, y = cifar.test.images[idx], cifar.test.labels[idx]
    rows = {r["format"]: r for r in res["rows"]}
    keras_preds = predict_probs(runs.load_model(exported_run / "model.keras"), x).argmax(1)
    assert rows["keras"]["accuracy"]["correct"] == int((keras_preds == y).sum())
    clf = Classifier(rows["tflite_int8"]["path"], threads=1)
    int8_preds = clf.predict(x).argmax(1)
    assert rows["tflite_int8"]["accuracy"]["correct"] == int((int8_preds == y).sum())
    assert rows["tflite_int8"]["accuracy"]["agreement"] == pytest.approx(float((int8_preds == keras_preds).mean()))


@pytest.mark.slow
def test_csv_and_report(bench):
    out, _, res = bench
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == report.csv_columns(res)
        rows = list(reader)
    assert len(rows) == len(res["rows"]) * len(res["settings"]["threads"])
    for r in rows:
        for col in reader.fieldnames:
            if col != "error" and not (col == "speedup_vs_float32" and r["format"].startswith("keras")):
                assert r[col] != "", f"{r['format']} threads={r['threads']}: empty {col}"
        assert 0 <= float(r["top1"]) <= 1
        assert float(r["p50_ms"]) <= float(r["p90_ms"]) <= float(r["p99_ms"])
        assert float(r["fps_batch1"]) == pytest.approx(1000 / float(r["p50_ms"]), rel=1e-4)
    md = (out / "report.md").read_text()
    assert res["command"] in md.split("## Ratios first")[0]  # the command sits at the top
    assert res["command"].startswith("edgecifar benchmark ") and "--min-runs 5" in res["command"]
    assert "Absolute times are for this machine only" in md and res["machine"]["cpu"] in md
    for label in report.LABELS.values():
        assert f"| {label} |" in md
    assert "pareto.png" in md and "size.png" in md and "Per-class top-1 change" in md


@pytest.mark.slow
def test_floor_fails_and_compare_prints_change(bench, exported_run, tmp_path):
    out, _, _ = bench
    proc = run_cli("benchmark", exported_run, "--out", tmp_path / "again", *FAST, "--formats", "tflite_int8", "--threads", "1",
                   "--floor", 100, "--compare", out / "results.json", timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "accuracy floor 100 % not met" in proc.stderr and "seed002_m1_cnn tflite_int8: top-1" in proc.stderr
    # Same artifact, same images: the accuracy reproduces exactly.
    line = next(ln for ln in proc.stdout.splitlines() if "seed002_m1_cnn tflite_int8:" in ln)
    assert "(+0.00 pp)" in line and "p50@1" in line
    assert "seed002_m1_cnn keras: only in the old report" in proc.stdout
    assert "summary: top-1 identical for 1 of 1 unchanged artifacts" in proc.stdout and "DIFFERENT FILE" not in proc.stdout


def test_run_without_export_is_one_line_error(tiny_run, tmp_path):
    bare = tmp_path / "bare_run"
    bare.mkdir()
    for name in ("model.keras", "manifest.json"):
        shutil.copy(tiny_run / name, bare / name)
    proc = run_cli("benchmark", bare, "--out", tmp_path / "out", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "edgecifar export" in proc.stderr and "--export" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_bad_options_are_user_errors(tiny_run, tmp_path):
    for args, words in ((["--floor", 0.6], "--floor takes percent: --floor 60"), (["--formats", "tflite_int4"], "unknown tflite_int4"),
                        (["--threads", "x"], "not a thread count"), (["--samples", 3], "at least 10")):
        proc = run_cli("benchmark", tiny_run, "--out", tmp_path / "o", *args, timeout=120)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)


def test_unwritable_out_fails_before_measuring(exported_run, tmp_path):
    """A --out that cannot be written is refused up front (it used to fail after every measurement had run)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli("benchmark", exported_run, "--out", blocker / "out", "--formats", "tflite_int8", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot write to output directory" in err[0] and "--out" in err[0]
    assert "measuring" not in proc.stdout.lower() and "[1/" not in proc.stdout


def test_timing_loop_honours_runs_and_seconds():
    calls = []
    stats = measure(calls.append, [1, 2, 3], Plan(warmup=4, min_runs=7, min_seconds=0.0))
    assert stats["runs"] == 7 and len(calls) == 11 and not stats["capped"]
    stats = measure(lambda x: None, [0], Plan(warmup=0, min_runs=1, min_seconds=0.05))
    assert stats["seconds"] >= 0.05 and stats["runs"] > 1


def test_threads_all_is_the_usable_cores():
    from edgecifar import machine

    assert cells.parse_threads("1,all") == sorted({1, machine.usable_cores()})


def test_committed_results_rerender_identically():
    """results.csv (RSS in MiB: rss_mib, rss_delta_mib) is rendered from results.json alone, without measuring."""
    root = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    found = sorted(root.glob("**/results.csv"))
    assert found
    for path in found:
        res = json.loads((path.parent / "results.json").read_text())
        assert report.to_csv(res) == path.read_text(), path
        assert {"rss_mib", "rss_delta_mib"} <= set(path.read_text().splitlines()[0].split(","))


def test_pareto_front():
    pts = [(1.0, 60.0), (2.0, 70.0), (3.0, 65.0), (0.5, 50.0), (2.0, 69.0)]
    assert metrics.pareto_front(pts) == [3, 0, 1]


def test_accuracy_block_against_keras():
    labels = np.array([0, 0, 1, 1])
    keras = np.array([0, 1, 1, 1])
    fmt = np.array([0, 0, 1, 0])
    b = metrics.accuracy_block(fmt, labels, ["a", "b"], keras)
    assert b["top1"] == 0.75 and b["agreement"] == 0.5 and b["top1_delta_pp"] == pytest.approx(0)
    assert b["per_class_delta_pp"] == {"a": pytest.approx(50.0), "b": pytest.approx(-50.0)}


def test_corruptions_section_scores_every_format_against_keras(exported_run, tmp_path, cifar):
    """--corruptions: robustness.md/.json/.png; every format on the same corrupted images, Keras' figures equal to
    the evaluate stage's own suite on the same subset (one definition of mCA)."""
    from edgecifar.evaluate import corruption_accuracy, corruption_subset
    from edgecifar.predict import predict_probs
    from edgecifar.runs import load_model

    out = tmp_path / "bench"
    proc = run_cli("benchmark", exported_run, "--out", out, *FAST[:1], 100, *FAST[2:], "--threads", "1",
                   "--formats", "keras,tflite_int8,onnx_int8", "--corruptions", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("robustness.md", "robustness.json", "robustness.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rob = json.loads((out / "robustness.json").read_text())
    assert "--corruptions" in rob["command"]
    (entry,) = rob["runs"].values()
    assert list(entry["results"]) == ["keras", "tflite_int8", "onnx_int8"]
    images, labels = corruption_subset(cifar.test, 100, 0)
    model = load_model(exported_run / "model.keras")
    direct = corruption_accuracy(lambda x: predict_probs(model, x), images, labels)
    keras = entry["results"]["keras"]
    assert keras["mca"] == pytest.approx(direct["mca"]) and keras["accuracy"] == direct["accuracy"]
    md = (out / "robustness.md").read_text()
    assert "| tflite_int8 |" in md and "Δ mCA" in md and f"{100 * keras['mca']:.2f} %" in md

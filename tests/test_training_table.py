"""benchmarks/training_table.py: one row per run, the write-up's number beside it, and whether the run used
the recipe the zoo runs today (earlier choices and experiments stay in the table as evidence)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "training_table.py"


def test_table_rows_copies_and_zoo_recipe_column(tiny_run, tmp_path):
    from edgecifar import zoo

    # tiny_run trained 2 epochs on 1,024 images: not the zoo's recipe. A copy whose manifest carries the
    # zoo's recipe stands in for a full run.
    full = tmp_path / "runs" / "seed002_m1_cnn-full"
    shutil.copytree(tiny_run, full, ignore=shutil.ignore_patterns("export", "*.keras"))
    manifest = json.loads((full / "manifest.json").read_text())
    manifest["recipe"] = zoo.model_info("seed002_m1_cnn").recipe.to_dict()
    (full / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "results" / "training.md"
    res = subprocess.run([sys.executable, str(SCRIPT), str(tiny_run), str(full), str(tmp_path / "not-a-run"), "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert f"Regenerate: `python benchmarks/training_table.py {tiny_run} {full} {tmp_path / 'not-a-run'} --out {out}`" in text
    rows = [line for line in text.splitlines() if line.startswith("| seed002_m1_cnn |")]
    assert len(rows) == 2
    acc = 100 * json.loads((tiny_run / "manifest.json").read_text())["metrics"]["test_accuracy"]
    cells = {r.split(" | ")[3]: r.split(" | ") for r in rows}  # zoo recipe column → cells
    assert set(cells) == {"yes", "no"}
    assert cells["no"][4] == "2" and f"{acc:.2f} %" in cells["no"][7] and cells["no"][8] == "63.05 %"
    assert cells["no"][9] == f"{acc - 63.05:+.2f} pp"
    for run in (tiny_run, full):
        assert (out.parent / "training" / run.name / "manifest.json").is_file()
        assert (out.parent / "training" / run.name / "history.csv").is_file()
    assert not list((out.parent / "training").glob("*/model.keras"))  # weights are not copied


def test_no_finished_run_is_an_error(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--out", str(tmp_path / "t.md")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "no finished run" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "t.md").exists()

"""Plain against camera-robust, Keras against int8: one table from corruption-suite reports.

    python benchmarks/robustness_table.py benchmarks/results/corruptions/*.json \\
        --out benchmarks/results/robustness.md

Each JSON is a report of benchmarks/corruption_suite.py (or `edgecifar evaluate --corruptions`) on
one model: a run's Keras model (`runs/<run>`) or one of its exported artifacts
(`runs/<run>/export/<file>`). Reports of one run are grouped, so the int8 artifact's Δ on the
corruptions (its mCA minus Keras' mCA) stands next to its Δ on clean images: the issue's check
that calibration on clean images does not cost more under corruption. Nothing is re-measured.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from edgecifar.evaluate import family_split, relative
from edgecifar.files import write_text

BLUR_SIGMA_1 = ("gaussian_blur", "3")  # severity 3 of the suite's Gaussian blur is sigma 1.0 px (issue 16: >= 70 %)


def run_of(model_path: str) -> str:
    """runs/<run>/export*/x.tflite → runs/<run>; runs/<run> → runs/<run>; anything else: itself."""
    p = Path(model_path)
    if p.suffix in (".tflite", ".onnx") and p.parent.name.startswith("export"):  # export/, export_qat/, ...
        return str(p.parent.parent)
    if p.suffix == ".keras":
        return str(p.parent)
    return str(p)


def row(report: dict, path: Path) -> dict:
    """One table row. `evaluate --corruptions` reports (in a run folder) name no model: their run is their folder."""
    model = report.get("model") or str(path.parent)
    split = family_split(report["corruption_mean"])
    is_artifact = Path(model).suffix in (".tflite", ".onnx")
    blur = report["accuracy"].get(BLUR_SIGMA_1[0], {}).get(BLUR_SIGMA_1[1])
    return {"report": relative(path), "model": model, "run": run_of(model),
            "artifact": _artifact_name(Path(model)) if is_artifact else "Keras",
            "samples": report["samples"], "clean": report["clean_accuracy"], "mca": report["mca"],
            "blur_sigma1": blur, "trained_families": split["mca_camera_trained_families"],
            "unseen_families": split["mca_camera_unseen_families"], "per_corruption": report["corruption_mean"]}


def _artifact_name(path: Path) -> str:
    """The file name, with its folder when that is not the run's plain export/ (export_qat/x.tflite)."""
    folder = path.parent.name
    return f"{folder}/{path.name}" if folder.startswith("export") and folder != "export" else path.name


def worst_gap(artifact: dict, keras: dict) -> tuple[str, float]:
    """(corruption, pp) where the artifact's int8 Δ (its top-1 minus Keras', averaged over the severities) is
    furthest from its clean Δ: issue 16 asks for every corruption within 0.5 pp of the clean Δ."""
    clean = artifact["clean"] - keras["clean"]
    gaps = {c: (artifact["per_corruption"][c] - keras["per_corruption"][c]) - clean for c in keras["per_corruption"]}
    worst = max(gaps, key=lambda c: abs(gaps[c]))
    return worst, 100 * gaps[worst]


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def markdown(rows: list[dict], command: str) -> str:
    lines = ["# Camera robustness: plain against camera-augmented training, Keras against int8", "",
             f"Regenerate: `{command}` (from the corruption-suite reports listed in the last column; each names "
             "the command that made it).", "",
             "mCA: mean corruption accuracy over the 10 corruptions x 3 severities of `edgecifar/corruptions.py`. "
             "Trained / unseen: mCA over the 5 corruption families `train --augment camera` draws from (Gaussian blur, "
             "low light, contrast, Gaussian noise, JPEG, with other parameters) and over the 5 it never sees (defocus and "
             "motion blur, shot noise, pixelate, camera round trip). int8 Δ: the artifact minus Keras of the same run, "
             "on clean images and on mCA. Widest gap: the corruption whose int8 Δ (averaged over its severities) is furthest "
             "from the clean int8 Δ, and by how much.", "",
             "| run | model | images | clean top-1 | mCA | blur σ 1 px | trained families | unseen families | "
             "int8 Δ clean (pp) | int8 Δ mCA (pp) | widest gap to clean Δ (pp) | report |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    keras = {r["run"]: r for r in rows if r["artifact"] == "Keras"}
    for r in rows:
        k = keras.get(r["run"]) if r["artifact"] != "Keras" else None
        same = k is not None and k["samples"] == r["samples"]
        d_clean = f"{100 * (r['clean'] - k['clean']):+.2f}" if same else "–"
        d_mca = f"{100 * (r['mca'] - k['mca']):+.2f}" if same else "–"
        gap = "{1:+.2f} ({0})".format(*worst_gap(r, k)) if same else "–"
        md = Path(r["report"]).with_suffix(".md")
        lines.append(f"| `{r['run']}` | {r['artifact']} | {r['samples']:,} | {pct(r['clean'])} | **{pct(r['mca'])}** | "
                     f"{pct(r['blur_sigma1'])} | {pct(r['trained_families'])} | {pct(r['unseen_families'])} | "
                     f"{d_clean} | {d_mca} | {gap} | [{md.name}]({md.name}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", type=Path, help="corruption-suite .json reports")
    ap.add_argument("--out", type=Path, required=True, help="the table (.md); links assume the reports sit beside it")
    args = ap.parse_args(argv)
    rows = []
    for path in args.reports:
        try:
            report = json.loads(path.read_text())
            rows.append(row(report, path))
        except (OSError, ValueError, KeyError) as e:
            print(f"robustness_table: {path}: not a corruption-suite report ({type(e).__name__}: {e}); "
                  "make one with benchmarks/corruption_suite.py", file=sys.stderr)
            return 2
    rows.sort(key=lambda r: (r["run"], r["artifact"] != "Keras", r["artifact"]))
    command = "python benchmarks/robustness_table.py " + " ".join(shlex.quote(relative(p)) for p in args.reports) + \
        f" --out {relative(args.out)}"
    write_text(args.out, markdown(rows, command))
    print(f"wrote {relative(args.out)} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How many calibration images int8 needs: Δ, agreement and ties against the calibration set size.

    python benchmarks/calibration_curve.py runs/<run> [runs/<run> ...] \\
        --out benchmarks/results/calibration_curve.md

For each run and each size in SIZES, `edgecifar export` (the public export_run, nothing private)
builds the default int8 artifacts (TFLite int8 with its float head, ONNX int8; no accuracy-aware
float layers, so the curve shows calibration alone) from that many
class-stratified training images into a scratch folder, and checks them as every export does:
on the 10,000 test images and, where the run held some back, on its validation images (minus
the calibration images). The run's own export folder is never touched. Writes OUT (.md), the same
stem's .json, and a .png of Δ and agreement against the size.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

from edgecifar import defaults
from edgecifar.evaluate import relative
from edgecifar.export import export_run
from edgecifar.files import write_json, write_text

SIZES = (100, 500, 1000, 2000, 5000)
FORMATS = ("tflite_int8", "onnx_int8")


def measure(run: Path, sizes, echo) -> list[dict]:
    rows = []
    for n in sizes:
        echo(f"{relative(run)}: {n} calibration images")
        with tempfile.TemporaryDirectory(prefix="edgecifar-calib-") as tmp:
            t0 = time.perf_counter()
            # accuracy_aware=False: the calibration set's own effect, without float layers chosen afterwards.
            report = export_run(run, formats=list(FORMATS), calib_samples=n, out_dir=tmp, echo=lambda *_: None,
                                accuracy_aware=False)
            seconds = time.perf_counter() - t0
        for a in report["artifacts"]:
            row = {"run": relative(run), "model": report["model"], "calib_samples": n, "format": a["format"],
                   "status": a["status"], "export_seconds": round(seconds, 1)}
            if "accuracy" in a:
                row.update(delta_pp=a["delta_pp"], agreement=a["agreement"], ties=a["top1_ties"], accuracy=a["accuracy"],
                           keras_accuracy=a["keras_accuracy"], size_bytes=a["size_bytes"])
                v = a.get("validation") if "error" not in (a.get("validation") or {}) else None
                row.update(val_delta_pp=v["delta_pp"] if v else None, val_agreement=v["agreement"] if v else None,
                           val_samples=v["samples"] if v else 0)
            rows.append(row)
            echo(f"  {a['format']:<12} Δ {row.get('delta_pp', float('nan')):+.2f} pp  agree "
                 f"{100 * row.get('agreement', float('nan')):.2f}%  ties {row.get('ties', '-')}"
                 + (f"  | validation Δ {row['val_delta_pp']:+.2f} pp" if row.get("val_delta_pp") is not None else ""))
    return rows


def label(row: dict) -> str:
    """A model and its run (two runs of one architecture are two curves)."""
    return f"{row['model']} ({Path(row['run']).name.split('-', 1)[-1]})"


def markdown(rows: list[dict], command: str) -> str:
    lines = ["# Int8 calibration curve", "", f"Regenerate: `{command}`", "",
             f"The default int8 artifacts (TFLite int8 with a float head, ONNX QDQ int8), calibrated on N class-stratified "
             f"training images, checked on the 10,000 test images (and the run's held-back validation images where it has "
             f"them). The exporter's default is {defaults.CALIB_SAMPLES}. Δ: artifact top-1 minus Keras top-1 in "
             "percentage points (1 test image = 0.01 pp).", "",
             "| model (run) | format | N | Δ test (pp) | agree test | ties | Δ validation (pp) | agree validation | export s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "delta_pp" not in r:
            lines.append(f"| {label(r)} | {r['format']} | {r['calib_samples']} | {r['status']} | | | | | |")
            continue
        val = (f"{r['val_delta_pp']:+.2f} | {100 * r['val_agreement']:.2f}%" if r["val_delta_pp"] is not None else "– | –")
        lines.append(f"| {label(r)} | {r['format']} | {r['calib_samples']:,} | {r['delta_pp']:+.2f} | "
                     f"{100 * r['agreement']:.2f}% | {r['ties']} | {val} | {r['export_seconds']:.0f} |")
    lines += ["", "export s: wall seconds of that whole export (conversion and checks) on a shared machine, other jobs "
                  "and any pause included: not a speed figure."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    from edgecifar.plots import pyplot, save_png

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for (name, fmt) in sorted({(label(r), r["format"]) for r in rows}):
        pts = [r for r in rows if label(r) == name and r["format"] == fmt and "delta_pp" in r]
        xs = [r["calib_samples"] for r in pts]
        ax1.plot(xs, [r["delta_pp"] for r in pts], marker="o", label=f"{name} {fmt}")
        ax2.plot(xs, [100 * r["agreement"] for r in pts], marker="o", label=f"{name} {fmt}")
    for ax, ylabel in ((ax1, "int8 top-1 − Keras top-1 (pp, test)"), (ax2, "top-1 agreement with Keras (%, test)")):
        ax.set_xscale("log")
        ax.set_xlabel("calibration images (count, log scale)")
        ax.set_ylabel(ylabel)
        ax.axvline(defaults.CALIB_SAMPLES, color="grey", ls=":", lw=1)
        ax.grid(alpha=0.3)
    ax1.axhline(0, color="black", lw=0.8)
    ax2.legend(fontsize=7)
    fig.suptitle("int8 calibration set size (dotted: the exporter's default)")
    save_png(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated calibration set sizes")
    ap.add_argument("--out", type=Path, required=True, help="report .md (the .json and .png go beside it)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    command = "python benchmarks/calibration_curve.py " + " ".join(shlex.quote(relative(r)) for r in args.runs) + \
        (f" --sizes {args.sizes}" if args.sizes != ",".join(map(str, SIZES)) else "") + f" --out {relative(args.out)}"
    rows = []
    for run in args.runs:
        rows += measure(run, sizes, lambda m: print(m, file=sys.stderr, flush=True))
    write_text(args.out, markdown(rows, command))
    write_json(args.out.with_suffix(".json"), {"command": command, "sizes": sizes, "rows": rows})
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} (+ .json, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where int8 disagrees with Keras: agreement against the Keras model's own top-2 margin.

    python benchmarks/int8_margins.py runs/<run> [runs/<run> ...] \\
        --out benchmarks/results/int8_margins.md

Why. An int8 artifact changes the top-1 class only where its arithmetic error beats the float model's
own decision margin. So the agreement an int8 model can reach is bounded by two measurable things:
how many images the Keras model decides by a hair (its top-1 minus top-2 log-probability, "margin"),
and how large the int8 error on that margin is. This script measures both, on the 10,000 test images,
for each run's default int8 artifacts (runs/<run>/export/*_int8.tflite and *_int8.onnx, as
`edgecifar export` wrote them), through the device runtime and Keras (edgecifar.evaluate.predictor):

  - margin error: the artifact's log-probability difference between Keras' top-1 and top-2 classes
    minus Keras' own (log-probabilities: the softmax's shift-invariance makes them the centred logits);
  - agreement per margin bin: the share of images in each bin, and how often the artifact keeps Keras' top-1;
  - the margin below which the model's int8 target allows no flips: the (1 - target agreement)
    quantile of Keras' margins (edgecifar.zoo.int8_target; MobileNetV2 97.5 %, others 98.5 %).

Writes OUT (.md), the same stem's .json, and a .png of the disagreement per margin bin.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from edgecifar import data as cifar
from edgecifar.evaluate import predictor, relative
from edgecifar.export.fallback import target_for
from edgecifar.files import sha256_file, write_json, write_text
from edgecifar.machine import cpu_model, usable_cores
from edgecifar.runs import read_manifest

BINS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, np.inf)  # Keras top-1 minus top-2 log-probability
FORMATS = {"tflite_int8": "_int8.tflite", "onnx_int8": "_int8.onnx"}


def log_probs(p: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(p.astype(np.float64), 1e-37))  # float32 softmax underflows near e-87: clipped there


def margins(keras_probs: np.ndarray, probs: np.ndarray) -> dict:
    """Keras' margin per image, the artifact's margin on the same two classes, and agreement per image."""
    lk, la = log_probs(keras_probs), log_probs(probs)
    order = np.argsort(-lk, axis=1)
    rows = np.arange(len(lk))
    first, second = order[:, 0], order[:, 1]
    keras_margin = lk[rows, first] - lk[rows, second]
    int8_margin = la[rows, first] - la[rows, second]
    return {"keras_margin": keras_margin, "error": int8_margin - keras_margin, "agree": probs.argmax(1) == first}


def summarise(m: dict, target_agreement: float) -> dict:
    km, err, agree = m["keras_margin"], m["error"], m["agree"]
    bins = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        sel = (km >= lo) & (km < hi)
        bins.append({"from": lo, "to": None if np.isinf(hi) else hi, "images": int(sel.sum()),
                     "agreement": float(agree[sel].mean()) if sel.any() else None})
    rms = float(np.sqrt(np.mean(err ** 2)))
    return {"images": int(len(km)), "agreement": float(agree.mean()), "margin_error_rms": rms,
            "margin_error_p99": float(np.quantile(np.abs(err), 0.99)),
            "target_agreement": target_agreement,
            "keras_margin_at_target": float(np.quantile(km, 1 - target_agreement)),
            "share_below_error_rms": float(np.mean(km < rms)), "bins": bins}


def measure(run: Path, images: np.ndarray, echo) -> list[dict]:
    manifest = read_manifest(run)
    model = manifest.get("model")
    _, target_agreement = target_for(model)
    keras_predict, _ = predictor(run)
    echo(f"{relative(run)}: Keras on {len(images):,} test images")
    keras_probs = keras_predict(images)
    rows = []
    for fmt, suffix in FORMATS.items():
        found = sorted((run / "export").glob(f"*{suffix}"))
        if not found:
            echo(f"  {fmt}: no *{suffix} in {relative(run / 'export')} (run `edgecifar export {relative(run)}`)")
            continue
        path = found[0]
        predict, described = predictor(path, threads=1)
        echo(f"  {fmt}: {relative(path)}")
        row = {"run": relative(run), "model": model, "format": fmt, "artifact": relative(path),
               "sha256": sha256_file(path), "runtime": described,
               **summarise(margins(keras_probs, predict(images)), target_agreement)}
        echo(f"    agreement {100 * row['agreement']:.2f} %, margin error rms {row['margin_error_rms']:.3f}, "
             f"Keras margin at the {100 * (1 - target_agreement):.1f} % quantile {row['keras_margin_at_target']:.3f}")
        rows.append(row)
    return rows


def label(row: dict) -> str:
    """A model and its run (two runs of one architecture are two rows)."""
    return f"{row['model']} ({Path(row['run']).name.split('-', 1)[-1]})"


def _bin_label(b: dict) -> str:
    return f"≥ {b['from']:g}" if b["to"] is None else f"{b['from']:g}–{b['to']:g}"


def markdown(rows: list[dict], command: str) -> str:
    lines = ["# Int8 agreement against the Keras model's own margin", "", f"Regenerate: `{command}`", "",
             "All 10,000 CIFAR-10 test images. Margin: Keras' top-1 minus top-2 log-probability (the centred-logit gap). "
             "Margin error: the artifact's gap between those two classes minus Keras' (int8 arithmetic, as the device "
             "runtime computes it at 1 thread). An artifact can only flip an image whose margin its error exceeds, so the "
             "agreement a target asks for needs an error well below the Keras margin at the (1 − target) quantile.", "",
             f"Machine: {cpu_model()}, {usable_cores()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             "| model (run) | format | agreement | target | Keras margin at (1 − target) quantile | margin error RMS | "
             "99th pct abs error | images with margin < error RMS | artifact sha256 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['model']} (`{r['run']}`) | {r['format']} | {100 * r['agreement']:.2f} % | "
                     f"{100 * r['target_agreement']:g} % | {r['keras_margin_at_target']:.3f} | {r['margin_error_rms']:.3f} | "
                     f"{r['margin_error_p99']:.3f} | {100 * r['share_below_error_rms']:.2f} % | `{r['sha256'][:16]}…` |")
    lines += ["", "Agreement per Keras-margin bin (images in the bin in brackets):", "",
              "| model | format | " + " | ".join(_bin_label(b) for b in rows[0]["bins"]) + " |",
              "|---|---|" + "---:|" * len(rows[0]["bins"])] if rows else []
    for r in rows:
        cells = [("–" if b["agreement"] is None else f"{100 * b['agreement']:.1f} %") + f" ({b['images']:,})"
                 for b in r["bins"]]
        lines.append(f"| {label(r)} | {r['format']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    from edgecifar.plots import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    if rows:
        labels = [_bin_label(b) for b in rows[0]["bins"]]
        width = 0.8 / len(rows)
        for i, r in enumerate(rows):
            ys = [0.0 if b["agreement"] is None else 100 * (1 - b["agreement"]) for b in r["bins"]]
            ax.bar(np.arange(len(labels)) + i * width, ys, width, label=f"{label(r)} {r['format']}")
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
    ax.set_xlabel("Keras top-1 minus top-2 log-probability (margin bin)")
    ax.set_ylabel("images whose int8 top-1 differs (% of the bin)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle("int8 flips happen where the float model barely decides")
    save_png(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="report .md (the .json and .png go beside it)")
    args = ap.parse_args(argv)
    command = "python benchmarks/int8_margins.py " + " ".join(shlex.quote(relative(r)) for r in args.runs) + \
        f" --out {relative(args.out)}"
    test = cifar.load(splits=("test",)).test
    rows = []
    for run in args.runs:
        rows += measure(run, test.images, lambda m: print(m, file=sys.stderr, flush=True))
    write_text(args.out, markdown(rows, command))
    write_json(args.out.with_suffix(".json"), {"command": command, "bins": list(BINS[:-1]), "rows": rows})
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} (+ .json, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

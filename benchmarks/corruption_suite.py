"""The whole corruption suite (every corruption x severity of edgecifar.corruptions over the 10,000 test
images) on one model, timed: how long the suite takes here, and what the model scores under it.

    python benchmarks/corruption_suite.py edgecifar/assets/default_int8.tflite \\
        --out benchmarks/results/corruptions_default_int8.md

MODEL is an exported .tflite / .onnx artifact (run through edgecifar.device.runtime.Classifier, as on the
device) or a run directory / .keras file (its Keras model, through edgecifar.predict.predict_probs).
Writes OUT (.md) and, beside it, the same stem's .json, .csv and .png (edgecifar.evaluate's report
writer, the one `edgecifar evaluate --corruptions` uses). Generation (making the corrupted images) and
evaluation (the model predicting them) are timed separately: the first is the suite's own cost on
this machine, the second depends on the model.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from edgecifar import data
from edgecifar.evaluate import corruption_accuracy, corruption_subset, predictor, relative, write_corruption_reports
from edgecifar.machine import load_note

BUDGET_S = 300  # issue 16: the whole suite on one model in at most 5 minutes on this machine


def machine_line(load_start: float, load_end: float) -> str:
    return (f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {load_note(load_start, load_end)}.")


def timing_notes(result: dict, wall_s: float) -> list[str]:
    sec = result["seconds"]
    total = sec["generate"] + sec["predict"]
    verdict = "within" if wall_s <= BUDGET_S else "over"
    by = ", ".join(f"{name} {s:.1f}" for name, s in sorted(sec["generate_by_corruption"].items(), key=lambda kv: -kv[1]))
    n_sets = len(result["accuracy"]) * len(result["severities"])
    return ["", f"**Suite time: {wall_s:.0f} s wall in all** (data loading and model opening included), {verdict} the "
                f"{BUDGET_S} s budget: generation {sec['generate']:.1f} s for {n_sets} sets of {result['samples']:,} images, "
                f"evaluation {sec['predict']:.1f} s for those sets and the clean set (sum {total:.1f} s).",
            "", f"Generation by corruption (s, all severities): {by}."]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help=".tflite / .onnx artifact, or a run directory / .keras file")
    ap.add_argument("--out", type=Path, required=True, help="report .md; .json/.csv/.png are written beside it")
    ap.add_argument("--samples", type=int, default=None, help="a class-stratified subset (default: all 10,000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subset and the corruptions (default 0)")
    ap.add_argument("--threads", type=int, default=None, help="runtime threads for an artifact (default: the runtime's)")
    ap.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: $EDGECIFAR_DATA)")
    args = ap.parse_args(argv)
    if args.out.suffix != ".md":
        ap.error("--out must name a .md file; the .json, .csv and .png go beside it")

    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    test = data.load(args.data_dir, splits=("test",)).test
    images, labels = corruption_subset(test, args.samples, args.seed)
    predict, description = predictor(args.model, args.threads)
    print(f"{description}; {len(labels):,} test images", file=sys.stderr)
    result = corruption_accuracy(predict, images, labels, seed=args.seed, echo=lambda s: print(s, file=sys.stderr))
    wall_s = time.perf_counter() - t0
    result["seconds"]["wall"] = wall_s
    result["model"] = relative(args.model)
    result["runtime"] = description

    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/corruption_suite.py", *(argv or sys.argv[1:])])
    notes = ["", f"Model: `{relative(args.model)}` ({description}).", "",
             machine_line(load_start, os.getloadavg()[0]), *timing_notes(result, wall_s)]
    paths = write_corruption_reports(result, args.out.parent, args.model.name, command, stem=args.out.stem, notes=notes)
    print(f"clean {100 * result['clean_accuracy']:.2f}%  mCA {100 * result['mca']:.2f}%  wall {wall_s:.0f} s; wrote "
          + ", ".join(relative(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What int8 activations alone cost a model: its int8 disagreement split between weights and activations, in Keras.

    python benchmarks/int8_activations.py runs/<run> --out benchmarks/results/int8_activations_mobilenetv2_amd_zen4.md

Why. An int8 model rounds two things, its kernels and its activations. Bias correction, weight-rounding tricks and
float layers act mostly on the first; int16 activations (16x8) on the second. Before choosing, measure which one
holds the agreement below its target. On the run's int8 source, as the exporter prepares it (the logits copy,
post-ReLU BatchNorms folded, an offset input scaling folded into the first convolution), edgecifar.qat.simulate_int8
rounds where TFLite's int8 does (per-channel symmetric kernels; per-tensor activations, min/max over the 500
calibration images the exporter uses, ReLU6 at [0, 6]), and each variant below rounds only part of it:

  - weights and activations; weights only; activations only (every kernel float);
  - activations only, one kind of tensor at a time (grouped by the layer that produces it), and each tensor of no
    known kind (the stem, the pooling, the head) alone;
  - activations only, with the first 10 / 25 / 50 % of the int8 tensors left float (a float prefix).

Agreement is with the Keras model's top-1 on all 10,000 test images (or --samples, stratified); the simulation is
Keras arithmetic, so it tracks the TFLite file's agreement closely, not exactly (the export report has the file's).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from edgecifar import data as cifar
from edgecifar.evaluate import relative
from edgecifar.files import write_json, write_text
from edgecifar.machine import cpu_model, usable_cores

PREFIXES = (0.10, 0.25, 0.50)  # shares of the int8 tensors, in graph order, left float
# Kinds of int8 tensor, by the name of the layer that produces it (Keras' MobileNetV2 names; the rest is "other").
KINDS = (("expansion ReLU6", r"_expand_relu$"), ("depthwise ReLU6", r"_depthwise_relu$"),
         ("projection (linear)", r"_project_BN$"), ("residual add", r"_add$"))
MAX_SINGLES = 8             # at most this many "other" tensors get a row each
CALIBRATION_IMAGES, CALIBRATION_SEED = 500, 0  # the exporter's defaults


def kind_of(name: str) -> str:
    return next((kind for kind, pattern in KINDS if re.search(pattern, name)), "other")


def variants(points: list[str]) -> list[tuple[str, list[str], bool]]:
    """(name, int8 tensors, kernels rounded?) for each variant of the module docstring."""
    out = [("int8 weights and activations", points, True), ("int8 weights only", [], True),
           ("int8 activations only", points, False)]
    for kind in dict.fromkeys(kind_of(p) for p in points):
        chosen = [p for p in points if kind_of(p) == kind]
        out.append((f"int8 activations of {kind} tensors only ({len(chosen)})", chosen, False))
    # The tensors of no known kind (the stem, the pooling, the head) one by one: few, and each one of a kind of its own.
    others = [p for p in points if kind_of(p) == "other"]
    if 1 < len(others) <= MAX_SINGLES:
        out += [(f"int8 activations of {p} only", [p], False) for p in others]
    for first in dict.fromkeys(max(1, int(share * len(points))) for share in PREFIXES):  # rounded down, at least 1
        if first >= len(points):
            continue
        out.append((f"int8 activations only, first {first} of {len(points)} int8 tensors float "
                    f"(through {points[first - 1]})", points[first:], False))
    return out


def measure(run: Path, samples: int, echo, data_dir=None) -> dict:
    import keras

    from edgecifar import qat
    from edgecifar.export.calibration import CalibrationSet
    from edgecifar.export.logits import int8_source
    from edgecifar.runs import read_manifest

    model = keras.models.load_model(run / "model.keras", compile=False)
    ds = cifar.load(data_dir)
    idx = cifar.stratified_indices(ds.test.labels, samples, 0) if samples < len(ds.test.labels) \
        else np.arange(len(ds.test.labels))
    images, labels = ds.test.images[idx].astype(np.float32), ds.test.labels[idx]
    calib = CalibrationSet.from_training_split(ds.train, CALIBRATION_IMAGES, CALIBRATION_SEED).images
    keras_pred = model.predict(images, batch_size=250, verbose=0).argmax(1)
    keras_acc = float(np.mean(keras_pred == labels))
    echo(f"{relative(run)}: Keras top-1 {100 * keras_acc:.2f} % on {len(labels):,} test images")

    flat = qat.flatten(int8_source(model).model)
    head = qat.float_head(flat)
    points = qat.quantized_tensors(flat, head)
    rows = []
    for name, chosen, kernels in variants(points):
        t0 = time.perf_counter()
        sim = qat.simulate_int8(flat, head, chosen, quantize_kernels=kernels)
        qat.calibrate_ranges(sim, calib)
        pred = sim.predict(images, batch_size=250, verbose=0).argmax(1)
        rows.append({"variant": name, "int8_tensors": len(chosen), "kernels_int8": kernels,
                     "agreement": float(np.mean(pred == keras_pred)),
                     "delta_pp": 100 * (float(np.mean(pred == labels)) - keras_acc)})
        echo(f"  {name}: agreement {100 * rows[-1]['agreement']:.2f} %, Δ {rows[-1]['delta_pp']:+.2f} pp "
             f"({time.perf_counter() - t0:.0f} s)")
    return {"run": relative(run), "model": read_manifest(run).get("model") or model.name, "images": int(len(labels)), "keras_top1": keras_acc,
            "int8_tensors": len(points), "rows": rows}


def markdown(result: dict, command: str, target: float | None) -> str:
    lines = [f"# What int8 activations alone cost: {result['model']}", "", f"Regenerate: `{command}`", "",
             f"Run `{result['run']}`, Keras top-1 {100 * result['keras_top1']:.2f} % on {result['images']:,} test images; "
             f"{result['int8_tensors']} int8 activation tensors. Keras simulation of the int8 arithmetic "
             f"(edgecifar.qat.simulate_int8, {CALIBRATION_IMAGES} calibration images): agreement with the Keras "
             "model's top-1 and Δ top-1 when only the named part is rounded to int8"
             + (f"; the model's int8 agreement target is {100 * target:g} %." if target else "."), "",
             f"Machine: {cpu_model()}, {usable_cores()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             "| variant | kernels | agreement | Δ top-1 (pp) |", "|---|---|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {'int8' if r['kernels_int8'] else 'float'} | {100 * r['agreement']:.2f} % | "
                     f"{r['delta_pp']:+.2f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, target: float | None, path: Path) -> None:
    from edgecifar.plots import pyplot, save_png

    plt = pyplot()
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    ys = np.arange(len(rows))[::-1]
    ax.barh(ys, [100 * r["agreement"] for r in rows], color=["C0" if r["kernels_int8"] else "C1" for r in rows])
    ax.set_yticks(ys, [r["variant"] for r in rows], fontsize=7)
    if target:
        ax.axvline(100 * target, color="red", linestyle="--", label=f"target {100 * target:g} %")
        ax.legend(fontsize=8)
    low = min(100 * r["agreement"] for r in rows)
    ax.set_xlim(max(0.0, low - 2), 100)
    ax.set_xlabel("top-1 agreement with the Keras model (% of test images); orange: every kernel float")
    fig.suptitle(f"{result['model']}: where the simulated int8 disagreement comes from")
    save_png(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="report .md (the .json and .png go beside it)")
    ap.add_argument("--samples", type=int, default=10_000, help="test images (stratified; default all)")
    ap.add_argument("--data-dir", default=None, help="CIFAR-10 folder or archive (else $EDGECIFAR_DATA)")
    args = ap.parse_args(argv)

    def refuse(message: str) -> int:  # bad input: one line, exit 2, no report
        print(f"int8_activations: {message}", file=sys.stderr)
        return 2

    if not (args.run / "model.keras").is_file():
        return refuse(f"{args.run} has no model.keras; pass a finished run folder (runs/<run>)")
    if args.samples < 1:
        return refuse(f"--samples {args.samples}: pass at least 1 test image")
    from edgecifar.errors import UserError
    from edgecifar.export.fallback import target_for
    from edgecifar.quiet import import_tensorflow

    import_tensorflow()  # Keras (and TensorFlow) without their start-up noise
    command = f"python benchmarks/int8_activations.py {shlex.quote(relative(args.run))} --out {relative(args.out)}" \
        + (f" --samples {args.samples}" if args.samples != 10_000 else "")
    try:
        result = measure(args.run, args.samples, lambda m: print(m, file=sys.stderr, flush=True), args.data_dir)
    except UserError as e:  # no CIFAR-10 where pointed, and the like: the message says what to do
        return refuse(str(e))
    except ValueError as e:  # a model simulate_int8 cannot rewrite (edgecifar.qat.check_supported), or not a model
        return refuse(f"{args.run}: {e}")
    _, target = target_for(result["model"])
    result["target_agreement"] = target
    write_text(args.out, markdown(result, command, target))
    write_json(args.out.with_suffix(".json"), {"command": command, **result})
    plot(result, target, args.out.with_suffix(".png"))
    print(f"wrote {args.out} (+ .json, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

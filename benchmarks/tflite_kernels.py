"""Does a .tflite agree with its Keras model the same under every LiteRT kernel set?

    python benchmarks/tflite_kernels.py runs/<run> --out benchmarks/results/tflite_kernels_mobilenetv2.md

The export checks each artifact with LiteRT's default kernels (XNNPACK). A device may run others: tflite-runtime
without its delegate, or `edgecifar run --kernels builtin|reference`. This runs the run's exported .tflite files
(default: its int8 one; --formats for more) under every kernel set of edgecifar.device.runtime.KERNELS on the
test images, through the device's Classifier, and reports top-1, agreement with the run's Keras model, and how
many images each kernel set classifies differently from XNNPACK. Integer kernels round differently; on a model
whose top-1 sits near many rounding boundaries that moves the agreement the report promised.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from edgecifar import data
from edgecifar.files import write_json, write_text
from edgecifar.machine import cpu_model, usable_cores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--formats", default="tflite_int8", help="comma-separated TFLite formats (default tflite_int8)")
    parser.add_argument("--samples", type=int, default=None, help="first N test images (default: all 10,000)")
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (default: EDGECIFAR_DATA, else the Keras download)")
    args = parser.parse_args(argv)

    from edgecifar.device.runtime import KERNELS, Classifier
    from edgecifar.export.formats import artifact_name
    from edgecifar.predict import predict_probs
    from edgecifar.quiet import import_tensorflow
    from edgecifar.runs import load_model, read_manifest

    from edgecifar.errors import UserError

    try:
        manifest = read_manifest(args.run)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not manifest.get("model"):
        print(f"error: {args.run} is not a run directory (no manifest.json naming its model); pass runs/<run>",
              file=sys.stderr)
        return 2
    paths = [args.run / "export" / artifact_name(manifest["model"], f) for f in args.formats.split(",")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: no such artifact: {', '.join(missing)}; run `edgecifar export {args.run}` first", file=sys.stderr)
        return 2
    test = data.load(args.data, splits=("test",)).test
    images, labels = test.images[:args.samples], test.labels[:args.samples]
    import_tensorflow()
    keras_top1 = predict_probs(load_model(args.run / "model.keras"), images).argmax(1)

    rows = []
    for path in paths:
        by_kernels = {}
        for kernels in KERNELS:
            t0 = time.perf_counter()
            top1 = Classifier(path, threads=1, kernels=kernels).infer(images).argmax(1)
            by_kernels[kernels] = top1
            rows.append({"file": str(path), "kernels": kernels, "top1": float(np.mean(top1 == labels)),
                         "agreement": float(np.mean(top1 == keras_top1)),
                         "differs_from_xnnpack": int(np.sum(top1 != by_kernels[KERNELS[0]])),
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(f"{path.name} {kernels}: agreement {100 * rows[-1]['agreement']:.2f} %", flush=True)

    command = f"python benchmarks/tflite_kernels.py {args.run} --out {args.out}" + (
        f" --formats {args.formats}" if args.formats != "tflite_int8" else "") + (
        f" --samples {args.samples}" if args.samples else "")
    n = len(labels)
    lines = ["# One .tflite, every LiteRT kernel set", "", f"Regenerate: `{command}`", "",
             f"Keras top-1 {100 * np.mean(keras_top1 == labels):.2f} % on {n:,} test images. Each row: the "
             "device's Classifier at 1 thread with that kernel set; agreement with the run's Keras model; images whose "
             "top-1 differs from the XNNPACK (default) kernels'.", "",
             f"Measured on: {cpu_model()}, {usable_cores()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             "", "| file | kernels | top-1 | agreement | top-1 ≠ xnnpack | seconds |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{r['file']}` | {r['kernels']} | {100 * r['top1']:.2f} % | {100 * r['agreement']:.2f} % | "
                     f"{r['differs_from_xnnpack']:,} / {n:,} | {r['seconds']:.1f} |")
    lines.append("")
    write_text(args.out, "\n".join(lines))
    write_json(args.out.with_suffix(".json"), {"command": command, "images": n, "rows": rows})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

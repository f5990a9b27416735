"""Is OpenCV DNN's int8 fault on a model 8-bit weight saturation? The same model quantized with 8-bit and with 7-bit
weights (reduce_range), each run in OpenCV DNN with its optimized kernels and with them switched off.

    python benchmarks/opencv_weight_bits.py runs/<run> --out benchmarks/results/opencv_weight_bits_mobilenetv2.md

The run's model.keras as trained (no bias correction, fold or QAT: the question is about the reader, not the
model) goes through the exporter's ONNX int8 path (edgecifar.export.onnx_export.export_onnx, float logits) twice,
calibrated on the first N stratified training images. Each file classifies the first M test images in
onnxruntime unfused (the graph's own arithmetic) and in OpenCV DNN, with cv2.setUseOptimized on and off. If 7-bit
weights leave the optimized OpenCV as wrong as 8-bit ones, the fault is not weight saturation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgecifar import data
from edgecifar.files import write_json, write_text
from edgecifar.machine import cpu_model, usable_cores
from onnx_readers import graph_outputs, opencv_outputs  # a sibling script: benchmarks/ is on sys.path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=1000, help="test images (default 1,000)")
    parser.add_argument("--calib", type=int, default=500, help="calibration images (default 500)")
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (default: EDGECIFAR_DATA, else the Keras download)")
    args = parser.parse_args(argv)
    if not (args.run / "model.keras").is_file():
        print(f"error: {args.run} has no model.keras; pass a run directory (runs/<run>)", file=sys.stderr)
        return 2

    import cv2

    from edgecifar.data import stratified_indices
    from edgecifar.device import metadata as meta_io
    from edgecifar.export.logits import logits_copy
    from edgecifar.export.onnx_export import export_onnx
    from edgecifar.quiet import import_tensorflow

    import_tensorflow()
    import keras

    cifar = data.load(args.data)
    calib = cifar.train.images[stratified_indices(cifar.train.labels, args.calib, 0)]
    images = cifar.test.images[:args.samples].astype(np.float32)
    model, _ = logits_copy(keras.models.load_model(args.run / "model.keras", compile=False))
    meta = {"schema": meta_io.SCHEMA, "model": args.run.name, "format": "onnx_int8", "output": {"kind": "logits"},
            "class_names": list(cifar.class_names)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "logits.keras")
        for bits, reduce_range in ((8, False), (7, True)):
            path = export_onnx(Path(tmp) / "logits.keras", Path(tmp) / f"int8_{bits}bit.onnx", calib, quantize=True,
                               float_logits=True, reduce_range=reduce_range, metadata=meta, echo=lambda *_: None)
            graph = graph_outputs(path, images).argmax(1)
            row = {"weight_bits": bits,
                   "opencv_optimized": int(np.sum(opencv_outputs(path, images).argmax(1) == graph)),
                   "opencv_simd_off": int(np.sum(opencv_outputs(path, images, optimized=False).argmax(1) == graph))}
            rows.append(row)
            print(f"{bits}-bit weights: OpenCV optimized {row['opencv_optimized']}, SIMD off {row['opencv_simd_off']} "
                  f"of {len(images)} top-1 as onnxruntime unfused", flush=True)

    command = f"python benchmarks/opencv_weight_bits.py {args.run} --out {args.out}" + (
        f" --samples {args.samples}" if args.samples != 1000 else "") + (f" --calib {args.calib}" if args.calib != 500 else "")
    lines = ["# OpenCV DNN int8: 8-bit against 7-bit weights", "", f"Regenerate: `{command}`", "",
             f"{args.run.name}'s model as trained, ONNX int8 (float logits) calibrated on {len(calib)} stratified "
             f"training images; first {len(images):,} test images. Cells: images whose top-1 in OpenCV DNN "
             f"{cv2.__version__} equals onnxruntime's running the graph unfused.", "",
             f"Measured on: {cpu_model()}, {usable_cores()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             "", "| weights | OpenCV DNN (optimized kernels) | OpenCV DNN, SIMD off |", "|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['weight_bits']}-bit | {r['opencv_optimized']:,} / {len(images):,} | "
                     f"{r['opencv_simd_off']:,} / {len(images):,} |")
    lines.append("")
    write_text(args.out, "\n".join(lines))
    write_json(args.out.with_suffix(".json"), {"command": command, "samples": len(images), "rows": rows})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Do onnxruntime, OpenCV DNN (default engine) and onnx.reference run an exported .onnx with the same top-1?

    python benchmarks/onnx_readers.py runs/<run>/export/<model>_int8.onnx [more.onnx ...] \
        --out benchmarks/results/onnx_readers.md

Each file classifies the first N CIFAR-10 test images (default 1,000; EDGECIFAR_DATA or --data names the data) in
every reader. onnxruntime runs the graph's own arithmetic, the same on every CPU: unfused (graph optimization
"basic": float arithmetic on the quantized values, as onnx.reference computes it). OpenCV DNN runs as a user runs it,
with its optimized kernels. Two more columns say what the readers' results depend on, outside the verdict:
  - the device runtime (edgecifar.device.runtime.Classifier): where the CPU's int8 products are exact (VNNI, ARM dot
    product) it runs onnxruntime's fused int8 kernels, whose requantization rounds one output step apart from the
    graph on some values, so a near-tie can flip;
  - OpenCV DNN with its SIMD kernels off: on an AVX-512 VNNI Xeon its optimized int8 kernels got a convolution of
    MobileNetV2 wrong that they compute right with SIMD off (benchmarks/results/onnx_readers_mobilenetv2.md), with
    7-bit weights too (benchmarks/opencv_weight_bits.py).
A reader that cannot load or run the file is reported with its one-line error, not skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from edgecifar import data
from edgecifar.files import write_json, write_text
from edgecifar.machine import cpu_model, int8_products_exact, usable_cores


def graph_outputs(path: Path, images: np.ndarray) -> np.ndarray:
    """onnxruntime running the graph as written (no fusion): the graph's own arithmetic, the same on every CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # the graph as written, no fusion
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def _device_runtime(path: Path, images: np.ndarray) -> np.ndarray:
    from edgecifar.device.runtime import Classifier

    return Classifier(path, threads=1).infer(images)


def opencv_outputs(path: Path, images: np.ndarray, optimized: bool = True) -> np.ndarray:
    """OpenCV DNN's outputs; optimized=False switches its SIMD kernels off (cv2.setUseOptimized) for this call,
    which tells OpenCV's optimized int8 kernels apart from the graph."""
    import cv2

    was = cv2.useOptimized()
    cv2.setUseOptimized(optimized)
    try:
        net = cv2.dnn.readNetFromONNX(str(path))
        net.setInput(images)
        return np.array(net.forward()).reshape(len(images), -1)
    finally:
        cv2.setUseOptimized(was)


def _reference(path: Path, images: np.ndarray) -> np.ndarray:
    import onnx
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(onnx.load(str(path))).run(None, {"pixels": images})[0]


READERS = {"onnxruntime": graph_outputs, "OpenCV DNN": opencv_outputs, "onnx.reference": _reference}
# Reported next to the readers, not among them: what their results depend on (the CPU's kernels).
DEVICE = "device runtime"
OPENCV_PLAIN = "OpenCV DNN, SIMD off"
DIAGNOSTICS = {DEVICE: _device_runtime, OPENCV_PLAIN: lambda path, images: opencv_outputs(path, images, optimized=False)}


def check(path: Path, images: np.ndarray) -> dict:
    row = {"file": str(path), "readers": {}}
    for name, run in {**READERS, **DIAGNOSTICS}.items():
        t0 = time.perf_counter()
        try:
            top1 = run(path, images).argmax(1)
            row["readers"][name] = {"top1": top1, "seconds": round(time.perf_counter() - t0, 1), "error": None}
        except Exception as e:  # a reader that refuses the file is the finding, not a crash of this script
            message = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            row["readers"][name] = {"top1": None, "seconds": round(time.perf_counter() - t0, 1), "error": message[:200]}
    base = row["readers"]["onnxruntime"]["top1"]
    for name, r in row["readers"].items():
        r["same_top1_as_onnxruntime"] = (None if base is None or r["top1"] is None
                                         else int(np.sum(r["top1"] == base)))
    row["identical"] = base is not None and all(row["readers"][name]["same_top1_as_onnxruntime"] == len(images)
                                                for name in READERS)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", nargs="+", type=Path)
    ap.add_argument("--samples", type=int, default=1000, help="test images per file (default 1,000)")
    ap.add_argument("--data", help="CIFAR-10 folder (default: EDGECIFAR_DATA, else the Keras download)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx_readers.md"))
    args = ap.parse_args()
    missing = [str(p) for p in args.onnx if not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}; pass .onnx files written by `edgecifar export`",
              file=sys.stderr)
        return 2
    images = data.load(args.data, splits=("test",)).test.images[:args.samples].astype(np.float32)
    rows = []
    for path in args.onnx:
        print(f"{path}: ", end="", flush=True)
        rows.append(check(path, images))
        print("identical top-1 in every reader" if rows[-1]["identical"] else "READERS DIFFER")
    kernels = ("int8 products exact (VNNI or ARM dot product): fused int8 kernels" if int8_products_exact()
               else "no VNNI: int8 run unfused, as the readers")
    lines = ["# Every ONNX reader, same top-1?", "",
             f"Regenerate: `python benchmarks/onnx_readers.py {' '.join(str(p) for p in args.onnx)} --samples "
             f"{args.samples} --out {args.out}`", "",
             f"First {len(images):,} CIFAR-10 test images per file. onnxruntime runs the graph unfused (its own "
             "arithmetic, as the other readers); `identical` compares the three readers. The device runtime, on this "
             f"CPU: {kernels}. OpenCV DNN, SIMD off: the same OpenCV with cv2.setUseOptimized(False), which tells its "
             "optimized int8 kernels apart from the graph. Cells: images whose top-1 equals onnxruntime's, or the "
             "reader's error. Seconds in brackets (onnx.reference is plain numpy, slow by design).", "",
             f"Machine: {cpu_model()}, {usable_cores()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             "| file | " + " | ".join(READERS) + " | identical | " + " | ".join(DIAGNOSTICS) + " |",
             "|---|" + "---:|" * len(READERS) + "---|" + "---:|" * len(DIAGNOSTICS)]
    for row in rows:
        cells = []
        for name in (*READERS, *DIAGNOSTICS):
            r = row["readers"][name]
            cells.append(f"error: `{r['error']}`" if r["error"] else
                         f"{r['same_top1_as_onnxruntime']:,} / {len(images):,} ({r['seconds']:.1f} s)")
        cells.insert(len(READERS), "yes" if row["identical"] else "**no**")
        lines.append(f"| `{row['file']}` | " + " | ".join(cells) + " |")
    lines.append("")
    write_text(args.out, "\n".join(lines))
    for row in rows:
        for r in row["readers"].values():
            r.pop("top1")
    write_json(args.out.with_suffix(".json"), {"samples": len(images), "rows": rows})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Do onnxruntime, OpenCV DNN (default engine) and onnx.reference run an exported .onnx with the same top-1?

    python benchmarks/onnx_readers.py runs/<run>/export/<model>_int8.onnx [more.onnx ...] \
        --out benchmarks/results/onnx_readers.md

Each file classifies the first N CIFAR-10 test images (default 1,000; EDGECIFAR_DATA or --data names the data) in
every reader. onnxruntime runs as the device runtime runs it (edgecifar.device.runtime.Classifier: unfused where
the CPU's fused int8 kernels would saturate 8-bit weights), because the graph's own arithmetic is what the readers
are compared on. A reader that cannot load or run the file is reported with its one-line error, not skipped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgecifar import data
from edgecifar.files import write_json, write_text
from edgecifar.machine import cpu_model, int8_products_exact, usable_cores


def _onnxruntime(path: Path, images: np.ndarray) -> np.ndarray:
    from edgecifar.device.runtime import Classifier

    return Classifier(path, threads=1).infer(images)


def _opencv(path: Path, images: np.ndarray) -> np.ndarray:
    import cv2

    net = cv2.dnn.readNetFromONNX(str(path))
    net.setInput(images)
    return np.array(net.forward()).reshape(len(images), -1)


def _reference(path: Path, images: np.ndarray) -> np.ndarray:
    import onnx
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(onnx.load(str(path))).run(None, {"pixels": images})[0]


READERS = {"onnxruntime": _onnxruntime, "OpenCV DNN": _opencv, "onnx.reference": _reference}


def check(path: Path, images: np.ndarray) -> dict:
    row = {"file": str(path), "readers": {}}
    for name, run in READERS.items():
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
    row["identical"] = base is not None and all(r["same_top1_as_onnxruntime"] == len(images)
                                                for r in row["readers"].values())
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", nargs="+", type=Path)
    ap.add_argument("--samples", type=int, default=1000, help="test images per file (default 1,000)")
    ap.add_argument("--data", help="CIFAR-10 folder (default: EDGECIFAR_DATA, else the Keras download)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx_readers.md"))
    args = ap.parse_args()
    missing = [str(p) for p in args.onnx if not p.is_file()]
    if missing:
        raise SystemExit(f"no such file: {', '.join(missing)}; pass .onnx files written by `edgecifar export`")
    images = data.load(args.data, splits=("test",)).test.images[:args.samples].astype(np.float32)
    rows = []
    for path in args.onnx:
        print(f"{path}: ", end="", flush=True)
        rows.append(check(path, images))
        print("identical top-1 in every reader" if rows[-1]["identical"] else "READERS DIFFER")
    kernels = "exact (VNNI or ARM dot product): fused" if int8_products_exact() else "no VNNI: int8 run unfused"
    lines = ["# Every ONNX reader, same top-1?", "",
             f"Regenerate: `python benchmarks/onnx_readers.py {' '.join(str(p) for p in args.onnx)} --samples "
             f"{args.samples} --out {args.out}`", "",
             f"First {len(images):,} CIFAR-10 test images per file. onnxruntime as the device runtime runs it "
             f"(this CPU's int8 kernels: {kernels}). Cells: images whose top-1 equals onnxruntime's, or the reader's "
             "error. Seconds in brackets (onnx.reference is plain numpy, slow by design).", "",
             f"Machine: {cpu_model()}, {usable_cores()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             "| file | " + " | ".join(READERS) + " | identical |", "|---|" + "---:|" * len(READERS) + "---|"]
    for row in rows:
        cells = []
        for name in READERS:
            r = row["readers"][name]
            cells.append(f"error: `{r['error']}`" if r["error"] else
                         f"{r['same_top1_as_onnxruntime']:,} / {len(images):,} ({r['seconds']:.1f} s)")
        lines.append(f"| `{row['file']}` | " + " | ".join(cells) + f" | {'yes' if row['identical'] else '**no**'} |")
    lines.append("")
    write_text(args.out, "\n".join(lines))
    for row in rows:
        for r in row["readers"].values():
            r.pop("top1")
    write_json(args.out.with_suffix(".json"), {"samples": len(images), "rows": rows})
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Run every exported artifact on a folder of images through edgecifar.device.runtime.Classifier
and save the raw tensors, so two machines (x86-64 and emulated arm64) can be compared exactly.

Same code path as `edgecifar run`: cv2.imread → preprocess.frame_to_rgb → Classifier stages,
one image per invoke (batch 1, as a camera feeds frames). TFLite artifacts run once per kernel set
(`edgecifar run --kernels`: xnnpack, the default; builtin; reference). Saves per artifact and backend:
    <artifact>__<backend>[__<kernels>].npz   names, input (quantized input tensor), raw (output tensor), probs
and summary.json (platform, CPU features the process sees, runtime versions, load errors).
No timings: under emulation they mean nothing.

    python dump_outputs.py ARTIFACT_DIR IMAGE_DIR OUT_DIR [--tflite-backend litert|tflite_runtime] [--no-onnx]
                           [--kernels xnnpack,builtin,reference]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

from edgecifar.device import preprocess
from edgecifar.device.runtime import KERNELS, Classifier
from edgecifar.errors import UserError

# AT_HWCAP bits of arm64 Linux that decide which XNNPACK / MLAS kernels run.
_ARM64_HWCAPS = {1: "asimd", 3: "aes", 4: "pmull", 7: "crc32", 8: "atomics", 9: "fphp", 10: "asimdhp",
                 12: "asimdrdm", 20: "asimddp", 23: "sve"}


def cpu_features() -> str:
    if platform.machine() != "aarch64":
        return platform.machine()
    hwcap = ctypes.CDLL(None).getauxval
    hwcap.restype = ctypes.c_ulong
    bits = hwcap(16)  # AT_HWCAP
    return " ".join(name for bit, name in sorted(_ARM64_HWCAPS.items()) if bits >> bit & 1)


def load_images(folder: Path, size: tuple[int, int]) -> tuple[list[str], np.ndarray]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not paths:
        raise SystemExit(f"no PNG images in {folder}")
    frames = [preprocess.frame_to_rgb(cv2.imread(str(p), cv2.IMREAD_COLOR), size) for p in paths]
    return [p.name for p in paths], np.stack(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--tflite-backend", default="litert")
    ap.add_argument("--no-onnx", action="store_true", help="Skip .onnx artifacts (a venv without onnxruntime).")
    ap.add_argument("--kernels", default=",".join(KERNELS), help="TFLite kernel sets to run, comma-separated.")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    artifacts = sorted(p for p in args.artifacts.iterdir() if p.suffix in (".tflite", ".onnx"))
    if args.no_onnx:
        artifacts = [p for p in artifacts if p.suffix != ".onnx"]
    if not artifacts:
        raise SystemExit(f"no .tflite/.onnx artifacts in {args.artifacts}")
    summary = {"machine": platform.machine(), "cpu_features": cpu_features(), "python": platform.python_version(),
               "libc": " ".join(platform.libc_ver()), "numpy": np.__version__, "opencv": cv2.__version__, "runs": {}}
    print(f"{summary['machine']} ({summary['cpu_features']}), python {summary['python']}, {summary['libc']}, "
          f"numpy {summary['numpy']}, opencv {summary['opencv']}", flush=True)
    jobs = [(path, "onnxruntime", None) if path.suffix == ".onnx" else (path, args.tflite_backend, kernels)
            for path in artifacts for kernels in (args.kernels.split(",") if path.suffix == ".tflite" else [None])]
    for path, backend, kernels in jobs:
        key = f"{path.name}__{backend}" + (f"__{kernels}" if kernels else "")
        try:
            clf = Classifier(path, backend=backend, kernels=kernels or "xnnpack")
        except UserError as e:
            summary["runs"][key] = {"error": str(e)}
            print(f"  {key}: cannot load: {e}", flush=True)
            continue
        names, rgb = load_images(args.images, clf.input_size)
        inputs, raws = [], []
        for i in range(len(rgb)):
            x = clf.quantize_input(rgb[i : i + 1])
            inputs.append(x[0])
            raws.append(clf.infer(x)[0])
        raw = np.stack(raws)
        probs = clf.dequantize_output(raw)
        np.savez(args.out / f"{key}.npz", names=np.array(names), input=np.stack(inputs), raw=raw, probs=probs)
        summary["runs"][key] = {"runtime": clf.runtime, "kernels": kernels, "format": clf.meta.get("format"), "input_dtype": str(clf.input_dtype),
                                "output_dtype": str(clf.output_dtype), "images": len(names),
                                "caveat": clf.caveat}
        print(f"  {key}: {clf.runtime}, {len(names)} images, output {raw.dtype}", flush=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())

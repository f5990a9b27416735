"""What the ONNX int8 exporter's 7-bit weights (reduce_range=True) cost a model, on this host and as ARM computes it.

    python benchmarks/onnx_weight_bits_experiment.py RUN --out benchmarks/results/onnx_weight_bits_<model>.md

The exporter quantizes ONNX weights to 7 bits (edgecifar/export/onnx_export.py says why: onnxruntime's fused
int8 kernels on x86 CPUs without VNNI add pairs of 8-bit products in int16 and saturate). This script
quantizes RUN's model (the exporter's own softmax-less copy, calibration images and final float layer) with
7-bit and with 8-bit weights and measures top-1 on a class-stratified test subset two ways:
  fused:   onnxruntime with its default graph optimizations, i.e. the integer kernels of this host's CPU;
  unfused: optimizations off, so each QDQ pair runs as float: the integer result without int16
           saturation. Kernels that accumulate in int32 (onnxruntime's on ARM, per the exporter's
           measurements of 7-bit models) should land here, to rounding; that was not measured for 8 bits.
"""

import argparse
import platform
from pathlib import Path

import numpy as np

from edgecifar import data, defaults
from edgecifar.export import onnx_export
from edgecifar.export.logits import logits_copy
from edgecifar.files import write_text
from edgecifar.runs import load_model, read_manifest

CALIB_SAMPLES = defaults.CALIB_SAMPLES  # the exporter's default, same stratified selection (seed 0)

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("run", type=Path)
ap.add_argument("--samples", type=int, default=1000, help="class-stratified test images")
ap.add_argument("--data-dir", default=None)
ap.add_argument("--out", type=Path, required=True)
args = ap.parse_args()

import onnxruntime as ort  # noqa: E402  (after argparse: --help stays fast)

ds = data.load(args.data_dir)
calib = ds.train.images[data.stratified_indices(ds.train.labels, CALIB_SAMPLES, seed=0)]
idx = data.stratified_indices(ds.test.labels, args.samples, seed=0)
images, labels = ds.test.images[idx].astype(np.float32), ds.test.labels[idx]
model = logits_copy(load_model(args.run / "model.keras"))[0]
keras_top1 = np.argmax(model.predict(images, verbose=0), 1)
print(f"keras top-1 {np.mean(keras_top1 == labels):.2%} on {len(labels)} test images", flush=True)
float_proto = onnx_export.keras_to_onnx(model, defaults.ONNX_OPSET, "logits")


def top1(proto, fused: bool) -> np.ndarray:
    options = ort.SessionOptions()
    if not fused:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([np.argmax(session.run(None, {name: images[i:i + 100]})[0], 1)
                           for i in range(0, len(images), 100)])


rows = []
for bits, reduce_range in ((7, True), (8, False)):
    # The exporter's own quantizer and settings (per-channel, minmax, final layer in float) but for the weight bits.
    proto, _ = onnx_export.quantize_qdq(float_proto, calib, float_logits=True, reduce_range=reduce_range)
    for fused in (True, False):
        pred = top1(proto, fused)
        rows.append((bits, "fused (this host's kernels)" if fused else "unfused (QDQ in float: no saturation)",
                     np.mean(pred == labels), np.mean(pred == labels) - np.mean(keras_top1 == labels),
                     np.mean(pred == keras_top1)))
        print(f"{bits}-bit weights, {rows[-1][1]}: top-1 {rows[-1][2]:.2%} ({100 * rows[-1][3]:+.2f} pp), "
              f"agreement {rows[-1][4]:.2%}", flush=True)

lines = [f"# ONNX int8: 7-bit vs 8-bit weights — {read_manifest(args.run)['model']}", "",
         f"Command: `python benchmarks/onnx_weight_bits_experiment.py {args.run} --samples {args.samples} --out {args.out}`", "",
         f"{len(labels)} class-stratified CIFAR-10 test images; Keras top-1 {np.mean(keras_top1 == labels):.2%}. "
         f"Static QDQ int8, per-channel weights, minmax calibration on {CALIB_SAMPLES} training images, final layer "
         f"in float (the exporter's settings but for the weight bits). Host: {platform.machine()}, "
         f"onnxruntime {ort.__version__}.", "",
         "| weights | kernels | top-1 | Δ vs Keras | agreement with Keras |", "|---|---|---:|---:|---:|"]
lines += [f"| {b}-bit | {k} | {a:.2%} | {100 * d:+.2f} pp | {g:.2%} |" for b, k, a, d, g in rows]
write_text(args.out, "\n".join(lines) + "\n")
print(f"wrote {args.out}")

"""Where a model's int8 error comes from, and what each remedy buys: the study behind MobileNetV2's known limit.

    python benchmarks/int8_study.py runs/<run> --out benchmarks/results/int8_study_mobilenetv2.md

On the run's own model (its int8 source as the exporter prepares it: the logits copy, post-ReLU BatchNorms folded,
an offset input scaling folded into the first convolution), all on the same 500 calibration images
(edgecifar.export.calibration, seed 0) and checked on the test images against the Keras model:

  1. weights only: every int8-rounded kernel (edgecifar.export.bias_correction.round_kernel) in Keras, activations
     float, without and with bias correction: how much of the loss is weight rounding;
  2. the default int8 TFLite (float head) without and with bias correction, and with bias correction but without
     the input-scaling fold (what the exporter did before edgecifar/export/input_fold.py);
  3. remedies on top of bias correction: int16 activations (16x8) for the whole model; the projection convolutions
     (a linear conv feeding a BatchNorm with no activation after it) kept in float; quantization-aware fine-tuning
     (edgecifar/qat.py, towards the trained model's logits, as `edgecifar export --qat` does) at two strengths.
Latency: LiteRT, batch 1, 1 thread, median of 200 invokes after 20 warm-up ones, on the machine that ran this.
Takes about 15 minutes for MobileNetV2 on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgecifar import data as cifar
from edgecifar.quiet import import_tensorflow

QAT_SETTINGS = ((10_000, 1e-5), (40_000, 3e-5))  # (training images, learning rate), one epoch each


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--samples", type=int, default=10_000, help="test images to check on (stratified)")
    args = parser.parse_args(argv)

    import_tensorflow()
    import keras

    from edgecifar.export import bias_correction as bc
    from edgecifar.export import tflite_export
    from edgecifar.export.calibration import CalibrationSet
    from edgecifar.export.logits import int8_source

    t_start = time.perf_counter()
    model = keras.models.load_model(args.run / "model.keras")
    teacher, source, _, steps = int8_source(model)  # the teacher: what the exporter's QAT learns to agree with
    print("; ".join(steps), flush=True)
    ds = cifar.load(args.data_dir)
    calib = CalibrationSet.from_training_split(ds.train, 500, 0)
    idx = cifar.stratified_indices(ds.test.labels, args.samples, 0) if args.samples < len(ds.test.labels) \
        else np.arange(len(ds.test.labels))
    images, labels = ds.test.images[idx], ds.test.labels[idx]
    keras_pred = model.predict(images.astype(np.float32), batch_size=250, verbose=0).argmax(1)
    keras_acc = float(np.mean(keras_pred == labels))
    print(f"Keras top-1 {100 * keras_acc:.2f} % on {len(labels)} test images", flush=True)
    rows = []

    def row(name, pred, size=None, ms=None, note=""):
        r = {"variant": name, "agreement": float(np.mean(pred == keras_pred)),
             "delta_pp": 100 * (float(np.mean(pred == labels)) - keras_acc), "size_bytes": size, "latency_ms": ms,
             "note": note}
        rows.append(r)
        print(f"{name}: agreement {100 * r['agreement']:.2f} %, Δ {r['delta_pp']:+.2f} pp"
              + (f", {ms:.3f} ms" if ms else ""), flush=True)

    # 1. Weights only, in Keras.
    def rounded(m):
        copy = keras.models.clone_model(m)
        copy.set_weights(m.get_weights())
        for path, layer in bc.walk(copy):
            if bc.rounds(path, layer, copy):
                w = layer.get_weights()
                layer.set_weights([bc.round_kernel(w[0], type(layer).__name__), *w[1:]])
        return copy

    corrected, info = bc.correct(source, calib.images, echo=print)
    for name, m in (("weights only (Keras), plain", source), ("weights only (Keras), bias-corrected", corrected)):
        row(name, rounded(m).predict(images.astype(np.float32), batch_size=250, verbose=0).argmax(1),
            note="activations float")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def saved(m, tag):
            return tflite_export.saved_model(m, tmp / tag)

        # 2. The default int8 TFLite, without and with bias correction; and without the input-scaling fold.
        unfolded, _ = bc.correct(teacher, calib.images, echo=lambda *_: None)
        for name, m in (("int8 TFLite, plain", source), ("int8 TFLite, bias-corrected", corrected),
                        ("int8 TFLite, bias-corrected, input scaling not folded", unfolded)):
            b = tflite_export.convert(saved(m, name.replace(" ", "_")), "int8", calib)
            row(name, _predict(b, images), len(b), _latency(b))
        # 3a. int16 activations, whole model.
        b = _int16x8(saved(corrected, "bias-corrected"), calib)
        row("16x8 TFLite, bias-corrected", _predict(b, images.astype(np.float32)), len(b), _latency(b),
            note="int16 activations, int8 weights (reference kernels)")
        # 3b. Projection convolutions in float.
        base = tflite_export.convert(saved(corrected, "bias-corrected"), "int8", calib)
        keep = _projection_outputs(corrected, base)
        b = tflite_export.convert(saved(corrected, "bias-corrected"), "int8", calib, keep_float=keep)
        row(f"int8 TFLite, bias-corrected, {len(keep)} projection convs in float", _predict(b, images), len(b),
            _latency(b), note="their outputs are re-quantized for the next int8 op")
        # 3c. Quantization-aware fine-tuning after bias correction.
        from edgecifar import qat

        train, _ = cifar.train_val_split(ds.train, 5000, 0)
        for n, lr in QAT_SETTINGS:
            tuned, qinfo = qat.fine_tune(corrected, train.images[:n], calib.images, head=qat.float_head(corrected),
                                         epochs=1, lr=lr, echo=print, teacher_model=teacher)
            b = tflite_export.convert(saved(tuned, f"qat{n}"), "int8", calib)
            row(f"int8 TFLite, bias-corrected, QAT 1 epoch on {n:,} images, lr {lr:g}", _predict(b, images), len(b),
                _latency(b), note=f"{qinfo['seconds']:.0f} s fine-tuning")

    command = "python benchmarks/int8_study.py " + " ".join(str(a) for a in (argv if argv is not None else sys.argv[1:]))
    _write(args.out, command, args.run, keras_acc, len(labels), info, rows, time.perf_counter() - t_start)
    return 0


def _interpreter(model_bytes: bytes, threads: int):
    from edgecifar.device.runtime import tflite_interpreter_class

    Interpreter, _, _ = tflite_interpreter_class(None)
    return Interpreter(model_content=model_bytes, num_threads=threads)


def _predict(model_bytes: bytes, images: np.ndarray, batch: int = 500) -> np.ndarray:
    it = _interpreter(model_bytes, 2)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], [batch, *images.shape[1:]])
    it.allocate_tensors()
    pred = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        if len(chunk) < batch:  # the last, short batch: pad, then drop the padding
            chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        it.set_tensor(inp["index"], chunk.astype(inp["dtype"]))
        it.invoke()
        pred.append(it.get_tensor(out["index"]).argmax(1))
    return np.concatenate(pred)[:len(images)]


def _latency(model_bytes: bytes, warmup: int = 20, runs: int = 200) -> float:
    it = _interpreter(model_bytes, 1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = np.zeros(inp["shape"], inp["dtype"])
    times = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        it.set_tensor(inp["index"], x)
        it.invoke()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def _int16x8(saved_model_dir: Path, calib) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = calib.tflite_representative_dataset
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv.convert()


def _projection_outputs(model, model_bytes: bytes) -> list[str]:
    """TFLite output tensor names of the linear convolutions whose BatchNorm is not followed by an activation."""
    from edgecifar.export import bias_correction as bc
    from edgecifar.layer_graph import layer_at, readers

    bns = []
    for path, layer in bc.walk(model):
        if type(layer).__name__ != "BatchNormalization":
            continue
        after = readers(layer_at(model, path[:-1]))[layer.name]
        if not any(type(r).__name__ in ("ReLU", "Activation") for r in after):
            bns.append(layer.name)
    it = _interpreter(model_bytes, 1)
    names = [d["name"] for d in it.get_tensor_details() if len(d["quantization_parameters"]["scales"]) == 1]
    return sorted({n for n in names for bn in bns if f"/{bn}_1/batchnorm/" in n and ";" in n and n.endswith("sub1")})


def _write(out: Path, command: str, run: Path, keras_acc: float, n: int, info: dict, rows: list[dict], seconds: float):
    from edgecifar.files import human_size, write_json, write_text
    from edgecifar.machine import cpu_model, usable_cores

    lines = [f"# Int8 study: {run.name}", "", f"Regenerate: `{command}`", "",
             f"Keras top-1 {100 * keras_acc:.2f} % on {n:,} test images; agreement and Δ against it. Calibration: 500 "
             f"stratified training images (seed 0). Bias correction: {info['layers_corrected']} layers "
             f"({info['seconds']:.0f} s). Latency: LiteRT, batch 1, 1 thread, median of 200.", "",
             f"Measured on: {cpu_model()}, {usable_cores()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             f"{seconds / 60:.0f} min in all.", "",
             "| variant | agreement | Δ (pp) | size | ms (1 thread) | note |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        size = human_size(r["size_bytes"]) if r["size_bytes"] else "–"
        ms = f"{r['latency_ms']:.3f}" if r["latency_ms"] else "–"
        lines.append(f"| {r['variant']} | {100 * r['agreement']:.2f} % | {r['delta_pp']:+.2f} | {size} | {ms} | {r['note']} |")
    lines.append("")
    write_text(out, "\n".join(lines))
    write_json(out.with_suffix(".json"), {"command": command, "run": str(run), "keras_accuracy": keras_acc,
                                          "images": n, "bias_correction": info, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())

"""One cell of the benchmark matrix, in its own process: `python -m edgecifar.benchmark.worker SPEC.json`.

A fresh process per (format, thread setting) because
  * peak memory (see rss.py) must belong to one format alone, and
  * thread counts are fixed at load time (TFLite interpreter, onnxruntime session) or, for
    TensorFlow, once per process.

Order inside the process (the parent relies on it):
  import runtime → load model (timed) → batch-1 latency → batch-B throughput → read peak RSS
  → only then load the evaluation images and predict them (so RSS is load + run, not the test set).

Artifacts go through edgecifar.device.runtime.Classifier, exactly as on the device; this module
imports TensorFlow only for the Keras baseline.
"""

from __future__ import annotations

import json
import sys
import time
import traceback

import numpy as np

from ..errors import UserError
from ..quiet import import_tensorflow
from .rss import peak_rss_kb
from .timing import Plan, measure

# Candidate Keras inference paths at batch 1; the fastest is reported as "keras", and
# model.predict (what tutorials call) is always reported beside it as "keras_predict".
KERAS_METHODS = (
    "model.predict_on_batch(x)",
    "model(x, training=False)",
    "tf.function(model)(x)",
    "tf.function(model, jit_compile=True)(x)",
)
KERAS_PREDICT = "model.predict(x, verbose=0)"


def _batch_inputs(images: np.ndarray, batch: int) -> np.ndarray:
    reps = -(-batch // len(images))
    return np.concatenate([images] * reps)[:batch]


def run_artifact(spec: dict) -> dict:
    from ..device import runtime

    t = time.perf_counter()
    if spec["path"].endswith(".tflite"):
        runtime.tflite_interpreter_class(None)  # import the runtime outside the timed load
    else:
        import onnxruntime  # noqa: F401
    import_ms = (time.perf_counter() - t) * 1e3

    t = time.perf_counter()
    clf = runtime.Classifier(spec["path"], threads=spec["threads"])
    load_ms = (time.perf_counter() - t) * 1e3

    def classify(x):  # what `edgecifar run` does per frame after preprocessing
        return clf.dequantize_output(clf.infer(clf.quantize_input(x)))

    images = np.load(spec["timing_images"])
    singles = [images[i : i + 1] for i in range(len(images))]
    t = time.perf_counter()
    classify(singles[0])
    first_ms = (time.perf_counter() - t) * 1e3
    plan = Plan(spec["warmup"], spec["min_runs"], spec["min_seconds"])
    latency = measure(classify, singles, plan)

    batch, throughput, batch_note = spec["batch"], None, None
    xb = _batch_inputs(images, batch)
    try:
        classify(xb)
    except UserError as e:
        batch_note = f"batch {batch} unsupported: {e}"
    else:
        throughput = _throughput(classify, xb, plan, batch)
    rss_kb, rss_source = peak_rss_kb()

    preds = None
    if spec.get("eval_images"):
        x_eval = np.load(spec["eval_images"])
        try:
            probs = clf.predict(x_eval, batch_size=batch if throughput else 1)
        except UserError:
            probs = clf.predict(x_eval, batch_size=1)
        preds = probs.argmax(1)
    variant = {"method": "Classifier: quantize_input → infer → dequantize_output", "latency": latency,
               "first_ms": first_ms, "throughput": throughput, "batch_note": batch_note}
    return {
        "runtime": clf.runtime,
        "input_dtype": str(clf.input_dtype),
        "import_ms": import_ms,
        "load_ms": load_ms,
        "rss_kb": rss_kb,
        "rss_source": rss_source,
        "variants": {spec["format"]: variant},
        "preds": preds,
    }


def _throughput(fn, xb, plan: Plan, batch: int) -> dict:
    # Fewer runs than batch 1: each run is `batch` images, and the point is images per second.
    stats = measure(fn, [xb], Plan(max(2, plan.warmup // 5), max(3, plan.min_runs // 10), plan.min_seconds))
    return {"batch": batch, "images_per_s": batch / (stats["p50_ms"] / 1e3), **stats}


def run_keras(spec: dict) -> dict:
    t = time.perf_counter()
    import tensorflow as tf

    if spec["threads"]:
        # Must happen before TensorFlow runs anything; that is why every thread setting is its own process.
        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
        tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
    import keras

    import_ms = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    model = keras.models.load_model(spec["path"], compile=False)
    load_ms = (time.perf_counter() - t) * 1e3

    plain = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    jitted = tf.function(lambda x: model(x, training=False), jit_compile=True, reduce_retracing=True)
    calls = {
        "model.predict_on_batch(x)": lambda x: np.asarray(model.predict_on_batch(x.astype(np.float32))),
        "model(x, training=False)": lambda x: model(x.astype(np.float32), training=False).numpy(),
        "tf.function(model)(x)": lambda x: plain(x.astype(np.float32)).numpy(),
        "tf.function(model, jit_compile=True)(x)": lambda x: jitted(x.astype(np.float32)).numpy(),
        KERAS_PREDICT: lambda x: model.predict(x.astype(np.float32), verbose=0, batch_size=len(x)),
    }
    images = np.load(spec["timing_images"])
    singles = [images[i : i + 1] for i in range(len(images))]
    t = time.perf_counter()
    calls[KERAS_PREDICT](singles[0])
    first_ms = (time.perf_counter() - t) * 1e3
    plan = Plan(spec["warmup"], spec["min_runs"], spec["min_seconds"])

    # Pick the fastest path with a short trial each, then measure it properly.
    trial = Plan(max(3, plan.warmup), 10, min(0.5, plan.min_seconds))
    trials = {}
    for name in KERAS_METHODS:
        try:
            trials[name] = measure(calls[name], singles, trial)["p50_ms"]
        except Exception as e:  # a path this Keras/TF build cannot run (e.g. no XLA) is skipped, and said so
            trials[name] = f"failed: {type(e).__name__}"
    timed = {k: v for k, v in trials.items() if isinstance(v, float)}
    fastest = min(timed, key=timed.get)
    xb = _batch_inputs(images, spec["batch"])
    variants = {}
    for key, method in (("keras", fastest), ("keras_predict", KERAS_PREDICT)):
        variants[key] = {
            "method": method,
            "latency": measure(calls[method], singles, plan),
            "first_ms": first_ms if key == "keras_predict" else None,
            "throughput": _throughput(calls[method], xb, plan, spec["batch"]),
            "batch_note": None,
        }
    variants["keras"]["trials_p50_ms"] = trials
    rss_kb, rss_source = peak_rss_kb()

    preds = None
    if spec.get("eval_images"):
        from ..predict import predict_probs  # the same call training used to report test accuracy

        preds = predict_probs(model, np.load(spec["eval_images"])).argmax(1)
    return {
        "runtime": f"keras {keras.__version__} / tensorflow {tf.__version__}",
        "input_dtype": "float32",
        "import_ms": import_ms,
        "load_ms": load_ms,
        "rss_kb": rss_kb,
        "rss_source": rss_source,
        "variants": variants,
        "preds": preds,
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(open(argv[0]).read())
    try:
        if spec["format"] == "keras":
            import_tensorflow()
        result = run_keras(spec) if spec["format"] == "keras" else run_artifact(spec)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        traceback.print_exc()
        print(f"error: {type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}", file=sys.stderr)
        return 1
    preds = result.pop("preds")
    if preds is not None:
        np.save(spec["preds_out"], preds.astype(np.int16))
    with open(spec["result_out"], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run .tflite models with tflite-runtime (the Pi's runtime) in its own numpy<2 environment.

Kept standalone on purpose: this interpreter has neither edgecifar nor numpy 2, so it only
uses tflite_runtime and numpy. Usage:

    python run_models.py [--reference-kernels] IMAGES.npy OUT.npz MODEL.tflite [MODEL.tflite ...]

IMAGES.npy holds uint8 RGB NHWC pixels. For each model the raw output tensor (its own dtype,
not dequantized) is stored in OUT.npz under the model's index ("0", "1", ...), so the caller
can compare bit for bit with another runtime. --reference-kernels turns the default XNNPACK
delegate off: the built-in kernels are what two runtime versions should agree on exactly. Load or run failures are written as
"error_<i>" strings rather than raised, so one bad artifact does not hide the others.
"""

import sys

import numpy as np
import tflite_runtime
from tflite_runtime.interpreter import Interpreter, OpResolverType


def model_input(pixels, detail):
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return pixels.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(pixels.astype(np.float32) / scale + zero), info.min, info.max).astype(dtype)


def run(path, pixels, reference_kernels=False):
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if reference_kernels else OpResolverType.AUTO
    interp = Interpreter(model_path=path, num_threads=1, experimental_op_resolver_type=resolver)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(pixels.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], model_input(pixels, inp))
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).copy()


def main(argv):
    reference_kernels = argv[0] == "--reference-kernels"
    if reference_kernels:
        argv = argv[1:]
    images, out, models = argv[0], argv[1], argv[2:]
    pixels = np.load(images)
    results = {"tflite_runtime_version": np.array(tflite_runtime.__version__)}
    for i, path in enumerate(models):
        try:
            results[str(i)] = run(path, pixels, reference_kernels)
        except Exception as e:  # report every model, not just the first failure
            results[f"error_{i}"] = np.array(f"{type(e).__name__}: {str(e).strip()[:300]}")
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1:])

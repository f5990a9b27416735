"""Classifier: one small interface over the device runtimes, used by the runner, the export
check and the benchmark alike (so what we measure is what runs on the Pi).

    .tflite → ai_edge_litert (LiteRT 2.x), else tflite_runtime, else tensorflow.lite (last resort)
    .onnx   → onnxruntime

Stages are separate methods so callers can time them:
    x = clf.quantize_input(rgb_uint8_batch)   # model's input dtype (float32 / uint8 / int8), its color order
    raw = clf.infer(x)                        # runtime call
    probs = clf.dequantize_output(raw)        # float32 probabilities (softmax of int8 artifacts' logits)
``predict(rgb_uint8_batch)`` chains the three.

Input and output quantization are read from the model itself; the metadata's copy is
only cross-checked, so a stale sidecar cannot silently skew results. The whole artifact contract
(class count, input size, channels, layout, color order, dtypes, quantization) is enforced here,
in one place, for every caller: the runner, the export check, evaluate and the benchmark.
"""

from __future__ import annotations

import importlib.metadata as md
import math
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..machine import int8_products_exact, usable_cores
from ..quiet import native_stderr, replay
from . import metadata as meta_io

TFLITE_BACKENDS = ("litert", "tflite_runtime", "tensorflow")
BACKENDS = TFLITE_BACKENDS + ("onnxruntime",)
# Which TFLite kernels run the model. "xnnpack" is the runtimes' default and the fastest, but its
# int8 requantization rounds differently from TFLite's reference arithmetic, and differently on x86
# and ARM (a step or two on some outputs). "builtin" (TFLite's own optimized kernels, no delegate)
# is close to the reference; "reference" (the portable reference kernels, slowest) gave the same
# integers on x86-64 and emulated Pi 4 / Pi 5 (device/check_arm64.sh): pin it when outputs must
# match bit for bit across machines.
KERNELS = ("xnnpack", "builtin", "reference")
LAYOUT = "NHWC"                  # the only input layout this runtime feeds (images as N x H x W x C)
COLOR_ORDERS = ("RGB", "BGR")    # channel orders quantize_input can produce from RGB pixels
_RESOLVERS = {"xnnpack": "AUTO", "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "reference": "BUILTIN_REF"}
# A runtime/format pair whose outputs are known to depend on the CPU architecture, with every kernel set.
# tflite-runtime (2.14, its last release) quantizes a dynamic-range model's activations at run time with
# its own NEON / SSE code paths, which round differently; LiteRT 2.x does not (device/check_arm64.sh
# measured both). The runner warns, and the arm64 check reports the pair as a known difference.
DYNAMIC_RANGE_ON_TFLITE_RUNTIME = (
    "tflite-runtime's dynamic-range kernels round differently on ARM and x86 (device/check_arm64.sh: "
    "probabilities up to 0.023 apart, top-1 changed on 1 of 200 images), so results will not match an x86 "
    "benchmark exactly; for that use ai-edge-litert (pip install ai-edge-litert) or the int8 / float artifacts"
)

# How an ONNX model with 8-bit int8 weights runs on a CPU whose fused int8 kernels would saturate
# (x86 without VNNI; edgecifar.machine.int8_products_exact): the QDQ graph unfused, in float.
UNFUSED_QDQ = "unfused QDQ, float"  # the Classifier.kernels of such a model; its .runtime (in every report) says it


def needs_exact_int8(meta: dict) -> bool:
    """Whether an ONNX model's metadata says int8 QDQ with full 8-bit weights (reduce_range off), which the
    fused int8 kernels of an x86 CPU without VNNI saturate. 7-bit weights (older exports) never do."""
    quant = (meta or {}).get("quantization") or {}
    return quant.get("format") == "QDQ" and quant.get("weights") == "int8" and quant.get("reduce_range") is False


def onnx_session_options(meta: dict, threads: int | None = None):
    """(onnxruntime.SessionOptions, note) for an ONNX model with this metadata. With 8-bit int8 weights on a
    CPU whose fused int8 kernels would saturate them, graph optimization stops at "basic", so the QDQ graph
    runs unfused: float arithmetic on the quantized values, what ARM's int32 kernels compute to rounding.
    The note says so (None when the defaults apply). (The quantization debugger needs no such care:
    onnxruntime's qdq_loss_debug already runs with graph optimization off.)"""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if needs_exact_int8(meta) and not int8_products_exact():
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        return opts, UNFUSED_QDQ
    return opts, None


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "unknown"


def tflite_interpreter_class(backend: str | None):
    """(Interpreter class, backend name, version) for the first available TFLite runtime."""
    order = [backend] if backend else list(TFLITE_BACKENDS)
    missing = []
    for name in order:
        try:
            if name == "litert":
                from ai_edge_litert.interpreter import Interpreter

                return Interpreter, "litert", _version("ai-edge-litert")
            if name == "tflite_runtime":
                from tflite_runtime.interpreter import Interpreter

                return Interpreter, "tflite_runtime", _version("tflite-runtime")
            if name == "tensorflow":
                import tensorflow as tf

                return tf.lite.Interpreter, "tensorflow", tf.__version__
        except ImportError:
            missing.append(name)
    raise UserError(
        f"no TFLite runtime found (tried {', '.join(missing)}); install one: pip install ai-edge-litert "
        "(or pip install 'edgecifar[device]')"
    )


class Classifier:
    def __init__(self, path, backend: str | None = None, threads: int | None = None, kernels: str = "xnnpack",
                 class_names: list[str] | None = None, output_kind: str | None = None):
        """Open a model. class_names / output_kind: the user's own contract for a file without edgecifar metadata
        (they override the metadata's when both are given)."""
        self.path = Path(path)
        if kernels not in KERNELS:
            raise UserError(f"unknown kernels {kernels!r}; choose one of {', '.join(KERNELS)}")
        if not self.path.is_file():
            raise UserError(f"model file {self.path} does not exist; pass a .tflite or .onnx written by `edgecifar export`")
        if backend is not None and backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        suffix = self.path.suffix.lower()
        if suffix not in (".tflite", ".onnx"):
            raise UserError(f"{self.path}: unsupported model type {suffix or '(none)'}; pass a .tflite or .onnx file")
        if suffix == ".onnx" and backend not in (None, "onnxruntime"):
            raise UserError(f"{self.path} is ONNX; use --backend onnxruntime (or leave --backend out)")
        if suffix == ".tflite" and backend == "onnxruntime":
            raise UserError(f"{self.path} is TFLite; use --backend litert, tflite_runtime or tensorflow")
        if suffix == ".onnx" and kernels != "xnnpack":
            raise UserError(f"{self.path} is ONNX; --kernels applies to .tflite models only (leave it out)")
        self.threads = threads
        self.kernels = kernels if suffix == ".tflite" else None
        self.caveat: str | None = None  # a known limit of this runtime with this model, for the user to see
        if suffix == ".tflite":
            self.meta = meta_io.read(self.path)
            self._open_tflite(backend, threads, kernels)
        else:
            self._open_onnx(threads)  # reads the metadata from its own session: one load, not two
        self.class_names = list(class_names or self.meta.get("class_names") or [str(i) for i in range(self.num_classes)])
        self.output_kind = output_kind or meta_io.output_kind(self.meta, self.path)
        self._given = bool(class_names) or output_kind is not None
        self._unverified_probabilities = not self.meta and not self._given  # checked on the first outputs
        self.color_order = _color_order(self.meta, self.path)
        self._check_contract()

    def _check_contract(self) -> None:
        """The artifact contract against the model's own tensors: a stale or foreign description is refused."""
        where = self.path
        if len(self.class_names) != self.num_classes:
            raise UserError(f"{where}: {len(self.class_names)} class names for a model with {self.num_classes} outputs; "
                            "re-export the model (or pass one name per output)")
        shape = self.input_shape
        if len(shape) != 4 or shape[3] not in (3, -1):
            raise UserError(f"{where}: the model's input tensor has shape {list(shape)}, but this runtime feeds "
                            f"{LAYOUT} images with 3 channels (N x H x W x 3); export the model with `edgecifar export`")
        if not self.meta:
            if not self._given and (self.output_quant is not None or self.output_dtype.kind != "f"):
                raise UserError(f"{where} has no edgecifar metadata and a quantized {self.output_dtype.name} output, which "
                                "is not a probability vector; export it with `edgecifar export`, or pass --classes and --output-kind")
            return
        inp = self.meta.get("input") or {}
        if inp.get("height") and inp.get("width") and (int(inp["height"]), int(inp["width"])) != self.input_size:
            raise UserError(f"{where}: metadata says input {inp['height']}x{inp['width']} but the model takes "
                            f"{self.input_size[0]}x{self.input_size[1]}; the metadata is stale, re-export the model")
        if "channels" in inp and int(inp["channels"]) != 3:  # the model's own tensor takes 3 (checked above)
            raise UserError(f"{where}: metadata says {inp['channels']} input channels but the model's input is "
                            f"{list(shape)}; the metadata is stale, re-export the model")
        if "layout" in inp and str(inp["layout"]).upper() != LAYOUT:
            raise UserError(f"{where}: metadata says input layout {inp['layout']!r}; this runtime feeds {LAYOUT} "
                            f"images (the model's input is {list(shape)}): re-export the model")
        for side, dtype in (("input", self.input_dtype), ("output", self.output_dtype)):
            meta_dtype = (self.meta.get(side) or {}).get("dtype")
            if meta_dtype is not None and str(meta_dtype) != dtype.name:
                raise UserError(f"{where}: metadata says {side} dtype {meta_dtype} but the model's tensor is {dtype.name}; "
                                "the metadata is stale, re-export the model")
        if (inp.get("range", [0, 255]) != [0, 255] or float(inp.get("scale", 1.0)) != 1.0 or float(inp.get("offset", 0.0)) != 0.0):
            raise UserError(f"{where}: metadata asks for input range {inp.get('range')} scale {inp.get('scale')} offset "
                            f"{inp.get('offset')}; this runtime feeds raw 0..255 pixels (scale 1, offset 0): re-export the model")
        for side, q in (("input", self.input_quant), ("output", self.output_quant)):
            meta_q = (self.meta.get(side) or {}).get("quantization")
            same = (meta_q is None and q is None) or (
                meta_q is not None and q is not None and math.isclose(float(meta_q["scale"]), q[0], rel_tol=1e-6)
                and int(meta_q["zero_point"]) == q[1])
            if not same:
                raise UserError(f"{where}: metadata says {side} quantization {meta_q} but the model's tensor has {q}; "
                                "the metadata is stale, re-export the model")

    # --- opening ------------------------------------------------------------------------

    def _open_tflite(self, backend, threads, kernels):
        Interpreter, self.backend, self.backend_version = tflite_interpreter_class(backend)
        extra = {}
        if kernels != "xnnpack":
            # OpResolverType lives beside Interpreter in every runtime (litert, tflite_runtime, tf.lite).
            resolvers = __import__(Interpreter.__module__, fromlist=["OpResolverType"]).OpResolverType
            extra["experimental_op_resolver_type"] = getattr(resolvers, _RESOLVERS[kernels])
        try:
            with native_stderr() as log:  # LiteRT's C++ "Created ... XNNPACK delegate" line, on every load
                try:
                    self._interp = Interpreter(model_path=str(self.path), num_threads=threads, **extra)
                    self._interp.allocate_tensors()
                finally:
                    text = log.read()
            replay(text)
        except (ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise UserError(f"{self.path}: {self.backend} cannot load it ({first}); re-export the model") from None
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self.input_shape = tuple(int(d) for d in inp["shape"])
        self.input_dtype = np.dtype(inp["dtype"])
        self.output_dtype = np.dtype(out["dtype"])
        self.input_quant = tensor_quant(inp)
        self.output_quant = tensor_quant(out)
        self.num_classes = int(out["shape"][-1])
        self._batch = self.input_shape[0]
        if self.backend == "tflite_runtime" and self._is_dynamic_range():
            self.caveat = DYNAMIC_RANGE_ON_TFLITE_RUNTIME

    def _is_dynamic_range(self) -> bool:
        """Float input with int8 weights inside: read from the model, as the metadata may be absent."""
        if self.input_dtype.kind == "f":
            return any(np.dtype(t["dtype"]) == np.int8 for t in self._interp.get_tensor_details())
        return False

    def _open_onnx(self, threads):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed; pip install onnxruntime (or 'edgecifar[device]')") from None
        self.backend, self.backend_version = "onnxruntime", ort.__version__
        opts, _ = onnx_session_options({}, threads)
        try:
            self._sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            first = str(e).strip().splitlines()[0][:160]
            raise UserError(f"{self.path}: onnxruntime cannot load it ({first}); re-export the model") from None
        self.meta = meta_io.from_onnx_session(self._sess, self.path)
        unfused, note = onnx_session_options(self.meta, threads)
        if note:  # the metadata lives in the file, so the first session had to open before this was known
            self._sess = ort.InferenceSession(str(self.path), unfused, providers=["CPUExecutionProvider"])
            self.kernels = note
        inp, out = self._sess.get_inputs()[0], self._sess.get_outputs()[0]
        self._in_name, self._out_name = inp.name, out.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in inp.shape)
        self.input_dtype = np.dtype(_ONNX_TYPES.get(inp.type, "float32"))
        self.output_dtype = np.dtype(_ONNX_TYPES.get(out.type, "float32"))
        # QDQ models keep float32 I/O; quantization lives inside the graph.
        self.input_quant = self.output_quant = None
        self._batch = self.input_shape[0]
        last = out.shape[-1] if out.shape else None
        self.num_classes = int(last) if isinstance(last, int) else self._probe_classes()

    def _probe_classes(self) -> int:
        """The class count of an ONNX model whose output dimension is symbolic: one batch-1 inference on zeros
        (milliseconds for these models), so the class-count check compares with the model, not the metadata."""
        if any(d < 1 for d in self.input_shape[1:]):
            raise UserError(f"{self.path}: both the input size {list(self.input_shape)} and the number of outputs are "
                            "symbolic, so the model cannot be checked or fed; export it with a fixed input size")
        try:
            raw = self._sess.run([self._out_name], {self._in_name: np.zeros((1, *self.input_shape[1:]), self.input_dtype)})[0]
        except Exception as e:  # onnxruntime raises its own exception types
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise UserError(f"{self.path}: onnxruntime cannot run it ({first}); re-export the model") from None
        if raw.ndim != 2 or raw.shape[0] != 1:
            raise UserError(f"{self.path}: the model outputs shape {list(raw.shape)} for one image, not one score per "
                            "class; export it with `edgecifar export`")
        return int(raw.shape[1])

    # --- properties ---------------------------------------------------------------------

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.input_shape[1]), int(self.input_shape[2])

    @property
    def runtime(self) -> str:
        base = f"{self.backend} {self.backend_version}"
        return f"{base} ({self.kernels})" if self.backend == "onnxruntime" and self.kernels else base

    @property
    def is_integer(self) -> bool:
        return self.input_dtype.kind in "iu"

    # --- the three stages ---------------------------------------------------------------

    def quantize_input(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB pixels (N, H, W, 3) → the model's input tensor, its channels in the artifact's color order."""
        if self.color_order == "BGR":
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        if self.input_quant is None:
            return rgb.astype(np.float32)
        scale, zero = self.input_quant
        info = np.iinfo(self.input_dtype)
        q = np.round(rgb.astype(np.float32) / scale + zero)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def infer(self, x: np.ndarray) -> np.ndarray:
        if self.backend == "onnxruntime":
            return self._sess.run([self._out_name], {self._in_name: x})[0]
        if x.shape[0] != self._batch:
            self._resize(x.shape[0])
        self._interp.set_tensor(self._in_index, x)
        self._interp.invoke()
        return self._interp.get_tensor(self._out_index).copy()

    def dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        """The runtime's output → float32 probabilities.

        int8 artifacts output logits (metadata output kind "logits"): a quantized softmax would tie
        classes on its coarse 1/256 grid, so the softmax is applied here, in float. Without metadata
        the output is taken to be probabilities, the contract of every artifact written before logits.
        """
        out = raw.astype(np.float32)
        if self.output_quant is not None:
            scale, zero = self.output_quant
            out = (out - zero) * scale
        if self._unverified_probabilities:
            # A foreign model without metadata: showing raw scores as percentages ("611 %") would mislead.
            if out.size and (out.min() < -1e-4 or out.max() > 1 + 1e-4 or np.abs(out.sum(-1) - 1).max() > 1e-3):
                raise UserError(f"{self.path} has no edgecifar metadata and its outputs are not probabilities (they do not "
                                "sum to 1); pass --output-kind logits (and --classes), or export it with `edgecifar export`")
            self._unverified_probabilities = False
        return softmax(out) if self.output_kind == "logits" else out

    def predict(self, rgb: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities for a batch of uint8 RGB images at the model's input size."""
        out = []
        for i in range(0, len(rgb), batch_size):
            out.append(self.dequantize_output(self.infer(self.quantize_input(rgb[i : i + batch_size]))))
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

    def _resize(self, n: int) -> None:
        try:
            self._interp.resize_tensor_input(self._in_index, [n, *self.input_shape[1:]])
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise UserError(f"{self.path}: cannot run a batch of {n} ({e}); use batch 1") from None
        self._batch = n

    def describe(self) -> str:
        q = f", input quantization scale {self.input_quant[0]:.6g} zero point {self.input_quant[1]}" if self.input_quant else ""
        return f"{self.path.name}: {self.runtime}, input {self.input_shape} {self.input_dtype}{q}, threads {self.threads or 'default'}" + (
            f", {self.kernels} kernels" if self.kernels and self.backend != "onnxruntime" else "")


_ONNX_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(float16)": "float16"}


def tensor_quant(detail: dict):
    """(scale, zero_point) of a quantized TFLite tensor, else None."""
    if np.dtype(detail["dtype"]).kind not in "iu":
        return None
    scale, zero = detail.get("quantization", (0.0, 0))
    if not scale:
        return None
    return float(scale), int(zero)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, float32; subtracting the row maximum keeps exp() from overflowing."""
    z = np.asarray(logits, dtype=np.float32)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def default_threads() -> int:
    return usable_cores()


def _color_order(meta: dict, where) -> str:
    """The channel order the model expects (metadata input.color_order; "RGB" without metadata)."""
    order = str((meta.get("input") or {}).get("color_order") or "RGB").upper()
    if order not in COLOR_ORDERS:
        raise UserError(f"{where}: metadata says input color order {order!r}, not one of {', '.join(COLOR_ORDERS)}; "
                        "re-export the model")
    return order

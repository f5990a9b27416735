"""Accuracy-aware int8: when an int8 artifact misses its target, keep its most sensitive layers in float.

The target (defaults.INT8_TARGET_PP, INT8_TARGET_AGREEMENT): top-1 within 0.3 pp of Keras and the
same top-1 class on at least 98.5 % of images. When the default int8 artifact (TFLite with its float
head, or ONNX QDQ) misses it:

    1. rank the layers by sensitivity with the --debug-quant machinery (edgecifar.export.debug_quant:
       each layer's quantization SQNR on calibration images, worst first);
    2. convert again with the worst 1, 2, ... MAX_LAYERS layers left in float (TFLite: the
       converter's denylisted nodes; ONNX: quantize_static's nodes_to_exclude), checking each
       result exactly as every artifact is checked;
    3. stop at the first that meets the target within the size limit (float layers may add at most
       MAX_SIZE_GROWTH to the file: int8 that is float-sized is not int8); if none does, keep the all-int8 artifact (the report
       names the best try, so a user can still choose it: --plain-int8 plus the float layers by hand).

The report row gets an "accuracy_aware" block: the first result, every try (layers kept, Δ,
agreement, size, batch-1 latency), the layers finally kept and what they cost in size and time.

A 0.3 pp target needs a check set where one image is well under 0.3 pp: with fewer than
MIN_CHECK_IMAGES images the search is skipped and the report says why.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import defaults, zoo
from ..files import human_size

TARGET_PP = defaults.INT8_TARGET_PP
TARGET_AGREEMENT = defaults.INT8_TARGET_AGREEMENT
MAX_LAYERS = defaults.FALLBACK_MAX_LAYERS
MAX_SIZE_GROWTH = defaults.FALLBACK_MAX_SIZE_GROWTH  # a try may add at most this share to the int8 file
MIN_CHECK_IMAGES = 1000  # 1 image = 0.1 pp: a 0.3 pp target is measurable
FORMATS = ("tflite_int8", "onnx_int8")
LATENCY_RUNS = 200


def target_for(model_name: str | None) -> tuple[float, float]:
    """(Δ pp, top-1 agreement) an int8 artifact of `model_name` must meet: the zoo model's own target
    (edgecifar.zoo.int8_target: MobileNetV2 has issue 15's looser one), else TARGET_PP, TARGET_AGREEMENT."""
    return zoo.int8_target(model_name) or (TARGET_PP, TARGET_AGREEMENT)


def miss(row: dict, target_pp: float | None = None, target_agreement: float | None = None) -> str | None:
    """Why a checked artifact misses the target (default: TARGET_PP, TARGET_AGREEMENT), or None when it meets it."""
    target_pp = TARGET_PP if target_pp is None else target_pp
    target_agreement = TARGET_AGREEMENT if target_agreement is None else target_agreement
    if "accuracy" not in row:
        return None
    why = []
    if -row["delta_pp"] > target_pp + 1e-9:
        why.append(f"Δ {row['delta_pp']:+.2f} pp (target within {target_pp:g} pp)")
    if row["agreement"] < target_agreement:
        why.append(f"agreement {100 * row['agreement']:.2f} % (target {100 * target_agreement:g} %)")
    return "; ".join(why) or None


def ranked_layers(fmt: str, keras_path: Path, artifact: Path, calib, echo) -> list[str]:
    """Layer names to keep in float, most sensitive first: the quantization debugger's own ranking."""
    from ..files import scratch_dir
    from . import debug_quant

    quiet = lambda *_: None  # noqa: E731
    debug = debug_quant.debug_tflite if fmt == "tflite_int8" else debug_quant.debug_onnx
    with scratch_dir("fallback") as scratch:  # the debug reports are read here and not kept
        _, report = debug(keras_path, artifact, calib, scratch, echo=quiet)
        result = json.loads(report.read_text())
    if fmt == "tflite_int8":
        # The head is float already (not in the debug model); rank what was quantized.
        layers = [l for l in result["layers"] if l["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MEAN")]
        names = [l["tensor"] for l in debug_quant.worst_first(layers)]
    else:
        layers = [l for l in result["layers"] if l.get("compute_node")]
        names = [l["compute_node"] for l in debug_quant.worst_first(layers, "local_sqnr_db")]
    out = list(dict.fromkeys(n for n in names if n))  # one entry per layer, in rank order
    echo(f"    sensitivity ranking ({fmt}), worst first: {', '.join(out[:MAX_LAYERS])}")
    return out


def latency_ms(path: Path, runs: int = LATENCY_RUNS, min_seconds: float = 0.0) -> float:
    """Median batch-1 inference time in the device runtime at 1 thread (the Pi-like setting), ms:
    the benchmark's own timing loop (defaults.WARMUP warm-up calls, then `runs` timed ones, and more until
    `min_seconds` have passed: a table of sub-millisecond models wants that, the search does not)."""
    from ..benchmark.timing import Plan, measure
    from ..device.runtime import Classifier

    clf = Classifier(path, threads=1)
    x = clf.quantize_input(np.zeros((1, *clf.input_size, 3), np.uint8))
    return measure(clf.infer, [x], Plan(warmup=defaults.WARMUP, min_runs=runs, min_seconds=min_seconds))["p50_ms"]


def improve(fmt: str, path: Path, row: dict, checked_images: int, produce, rank, echo,
            target: tuple[float, float] | None = None) -> dict:
    """The accuracy-aware step for one checked artifact: left as it is (not an int8 format, failed, or the
    target met), skipped (too few check images to measure the target), or searched (`search`).
    `target`: (Δ pp, agreement) for this model (target_for), default TARGET_PP, TARGET_AGREEMENT."""
    if fmt not in FORMATS or "accuracy" not in row:
        return row
    target_pp, target_agreement = target or (TARGET_PP, TARGET_AGREEMENT)
    targets = {"target_pp": target_pp, "target_agreement": target_agreement}
    if miss(row, target_pp, target_agreement) is None:
        row["accuracy_aware"] = {"met": True, "kept_float": [], **targets}
        return row
    if checked_images < MIN_CHECK_IMAGES:
        row["accuracy_aware"] = {"met": False, "kept_float": [], **targets, "skipped": (
            f"checked on {checked_images} images, where 1 image is {100 / checked_images:.2g} pp: a "
            f"{target_pp:g} pp target needs at least {MIN_CHECK_IMAGES}")}
        return row
    return search(fmt, path, row, produce, rank, echo, target_pp, target_agreement)


@contextmanager
def kept_aside(path: Path):
    """The artifact at `path` and its sidecar, copied aside (hidden, same folder) for the duration; yields
    put_back(), which moves the copies back over whatever is at `path` then. The copies never outlive the block."""
    from ..device import metadata as meta_io

    aside = path.with_name(f".{path.name}.best")
    pairs = [(path, aside), (meta_io.sidecar_path(path), meta_io.sidecar_path(aside))]
    for src, dst in pairs:
        if src.is_file():
            shutil.copy2(src, dst)

    def put_back():
        for dst, src in pairs:
            if src.is_file():
                os.replace(src, dst)

    try:
        yield put_back
    finally:
        for _, src in pairs:
            src.unlink(missing_ok=True)


def better(row: dict, than: dict, target: tuple[float, float] | None = None) -> bool:
    """Whether checked artifact `row` is better than `than`: it meets the target and `than` does not, or both
    do or both miss and it agrees with Keras more often (then: a smaller drop)."""
    target_pp, target_agreement = target or (TARGET_PP, TARGET_AGREEMENT)

    def key(r):
        return ("accuracy" in r and miss(r, target_pp, target_agreement) is None, _score(r))

    return key(row) > key(than)


def summary(row: dict) -> dict:
    return {k: row.get(k) for k in ("status", "delta_pp", "agreement", "top1_ties", "size_bytes", "sha256", "reason")}


def search(fmt: str, path: Path, first: dict, produce, rank, echo, target_pp: float | None = None,
           target_agreement: float | None = None, max_layers: int | None = None) -> dict:
    """Try 1..max_layers float layers; returns the row of the artifact left at `path`, with its
    "accuracy_aware" block. `produce(keep_float) -> row` converts, checks and installs one try;
    `rank() -> [layer]` ranks the layers of the first artifact.

    The all-int8 artifact is kept aside with its sidecar: when no try meets the target, or anything in
    the search fails, it goes back in place byte for byte.
    """
    target_pp = TARGET_PP if target_pp is None else target_pp
    target_agreement = TARGET_AGREEMENT if target_agreement is None else target_agreement
    max_layers = MAX_LAYERS if max_layers is None else max_layers
    block = {"target_pp": target_pp, "target_agreement": target_agreement, "max_size_growth": MAX_SIZE_GROWTH,
             "first": summary(first),
             "miss": miss(first, target_pp, target_agreement), "tries": []}
    echo(f"    {fmt} misses the int8 target: {block['miss']}; keeping its most sensitive layers in float")
    best, best_keep, at_path = first, [], first
    with kept_aside(path) as put_back:  # the all-int8 artifact now at `path`
        try:
            block["first_latency_ms"] = latency_ms(path)
            ranking = rank()
            block["ranking"] = ranking[:max_layers]
            best, best_keep, at_path = _try_layers(block, ranking[:max_layers], produce, path, first, target_pp,
                                                   target_agreement, echo)
            if at_path is not best:
                # No try met the target: the all-int8 artifact goes back. Float layers that do not reach the target
                # would cost size and time for a partial gain; the report lists every try (and the best) instead.
                put_back()
        except Exception as e:  # the search is an improvement: it must never cost the artifact it started from
            put_back()  # the all-int8 artifact, exactly as checked
            block["error"] = f"{type(e).__name__}: {e}"[:300]
            echo(f"    accuracy-aware search failed ({block['error']}); the all-int8 artifact is kept")
    block.update(kept_float=best_keep, met="accuracy" in best and miss(best, target_pp, target_agreement) is None,
                 size_cost_bytes=(best.get("size_bytes") or 0) - (first.get("size_bytes") or 0))
    final_latency = block.get("first_latency_ms") if not best_keep else next(
        (t.get("latency_ms") for t in block["tries"] if t["kept_float"] == best_keep), None)
    first_latency = block.get("first_latency_ms")
    block["latency_cost_ms"] = (final_latency - first_latency) if None not in (final_latency, first_latency) else None
    verdict = "met" if block["met"] else "not met"
    echo(f"    accuracy-aware {fmt}: target {verdict} with {len(best_keep)} float layer(s)"
         + (f" ({', '.join(best_keep)})" if best_keep else ""))
    best["accuracy_aware"] = block
    return best


def _try_layers(block: dict, ranking: list, produce, path: Path, first: dict, target_pp, target_agreement, echo):
    """Float layers 1..len(ranking), most sensitive first, until a try meets the target; every try goes in
    block["tries"]. Returns (best row, its float layers, the row of the artifact now at `path`)."""
    best, best_keep, at_path = first, [], first
    for k in range(1, len(ranking) + 1):
        keep = ranking[:k]
        row = produce(keep)
        entry = {"kept_float": keep, **summary(row)}
        block["tries"].append(entry)
        if "accuracy" not in row:
            continue  # this try failed; `path` still holds the previous artifact
        at_path = row
        entry["latency_ms"] = latency_ms(path)
        echo(f"    {k} float layer(s): Δ {row['delta_pp']:+.2f} pp, agreement {100 * row['agreement']:.2f} %")
        limit = (first.get("size_bytes") or 0) * (1 + MAX_SIZE_GROWTH)
        if row.get("size_bytes") and first.get("size_bytes") and row["size_bytes"] > limit:
            # A float copy of a big layer (seed002's 512-unit Dense) would make "int8" a float model in size:
            # such a try is reported, never chosen.
            entry["over_size_limit"] = True
            echo(f"    {k} float layer(s): {human_size(row['size_bytes'], 'KiB')}, over the size limit "
                 f"(+{100 * MAX_SIZE_GROWTH:.0f} % of {human_size(first['size_bytes'], 'KiB')}): not taken")
            continue
        if _score(row) > _score(block.get("best_try") or first):
            block["best_try"] = entry
        if miss(row, target_pp, target_agreement) is None:
            return row, keep, at_path  # the first try that meets the target: fewest layers in float
    return best, best_keep, at_path


def _score(row: dict) -> tuple:
    """Better = higher agreement with Keras first (what the device shows), then smaller drop."""
    if row.get("agreement") is None:  # a failed try (a report row, or a try's summary)
        return (-1.0, -1e9)
    return (row["agreement"], row["delta_pp"])

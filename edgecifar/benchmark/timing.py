"""Latency measurement in the spirit of LiteRT's benchmark_model: warm-up runs first (first calls
allocate, trace and fill caches), then at least `min_runs` timed runs AND at least `min_seconds`,
with a hard cap so a pathological format cannot stall the whole matrix.

Pure numpy + time: used by the worker processes for every format, Keras included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import defaults

MAX_SECONDS = 60.0  # cap per measurement (benchmark_model caps at 150 s per model; we measure many cells)


@dataclass(frozen=True)
class Plan:
    warmup: int = defaults.WARMUP
    min_runs: int = defaults.MIN_RUNS
    min_seconds: float = 2.0
    max_seconds: float = MAX_SECONDS


def measure(fn, inputs: list, plan: Plan) -> dict:
    """Time `fn(x)` cycling over `inputs`; milliseconds per call, summarised."""
    n = len(inputs)
    for i in range(plan.warmup):
        fn(inputs[i % n])
    times = []
    start = time.perf_counter()
    i = 0
    while True:
        x = inputs[i % n]
        t0 = time.perf_counter_ns()
        fn(x)
        times.append(time.perf_counter_ns() - t0)
        i += 1
        elapsed = time.perf_counter() - start
        if (i >= plan.min_runs and elapsed >= plan.min_seconds) or elapsed >= plan.max_seconds:
            break
    summary = summarize(np.asarray(times, dtype=np.float64) / 1e6)
    summary["seconds"] = round(elapsed, 3)
    summary["capped"] = i < plan.min_runs  # stopped by MAX_SECONDS before reaching min_runs
    return summary


def summarize(ms: np.ndarray) -> dict:
    if ms.size == 0:
        raise ValueError("no timings to summarise")
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "runs": int(ms.size),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std()),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
    }

"""Stage 7 — benchmark: accuracy vs latency for every model and format, in their real runtimes.

    cli.py      `edgecifar benchmark RUN [RUN ...] --out DIR` (options, --floor, --compare, --export)
    cells.py    finds artifacts, runs one worker process per (format, thread setting), assembles results
    worker.py   one measurement in a fresh process: load, latency, throughput, peak RSS, predictions
    timing.py   benchmark_model-style timing loop: warm-up, then at least N runs and S seconds
    rss.py      peak resident memory of a process (and the bare-python baseline)
    metrics.py  top-1, agreement and per-class deltas vs Keras; the Pareto front
    report.py   report.md, results.csv, results.json, pareto.png, size.png; compare and floor
"""


def __getattr__(name):
    # Lazy, so `python -m edgecifar.benchmark.rss` (the memory baseline) imports nothing else.
    if name == "benchmark_cmd":
        from .cli import benchmark_cmd

        return benchmark_cmd
    raise AttributeError(name)

"""`edgecifar benchmark RUN [RUN ...] --out DIR`: accuracy vs latency for every model and format."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..echo import progress_echo
from .. import defaults
from ..errors import UserError
from ..files import ensure_writable_dir

DEFAULTS = {"warmup": defaults.WARMUP, "min_runs": defaults.MIN_RUNS, "min_seconds": defaults.MIN_SECONDS,
            "batch": defaults.THROUGHPUT_BATCH, "threads": defaults.BENCH_THREADS}


@click.command("benchmark")
@click.argument("runs_", metavar="[RUN ...]", nargs=-1, type=click.Path())
@click.option("--out", "out", type=click.Path(file_okay=False), default="benchmark", show_default=True,
              help="Folder for report.md, results.csv, results.json, pareto.png, size.png.")
@click.option("--samples", type=int, metavar="N", help="Evaluate on a stratified subset of N test images (default: all 10,000).")
@click.option("--formats", help="Comma-separated subset of: keras, tflite_float32, tflite_float16, tflite_dynamic, "
              "tflite_int8, tflite_int8_full, onnx_float32, onnx_int8 (default: all that were exported).")
@click.option("--threads", default=DEFAULTS["threads"], show_default=True, help="Thread settings to measure, e.g. 1,all or 1,2,4.")
@click.option("--warmup", type=int, default=DEFAULTS["warmup"], show_default=True, help="Untimed warm-up runs before timing.")
@click.option("--min-runs", type=int, default=DEFAULTS["min_runs"], show_default=True, help="Timed batch-1 runs, at least.")
@click.option("--min-seconds", type=float, default=DEFAULTS["min_seconds"], show_default=True, help="Timed seconds per measurement, at least.")
@click.option("--batch", type=int, default=DEFAULTS["batch"], show_default=True, help="Batch size for the throughput measurement.")
@click.option("--floor", type=float, metavar="PERCENT", help="Exit with status 1 if any format's top-1 accuracy is below "
              "PERCENT (e.g. 60 for 60 %), or if any format is missing or failed.")
@click.option("--json", "as_json", is_flag=True, help="Print results.json on stdout (progress goes to stderr).")
@click.option("--compare", "compare_path", metavar="OLD.json", type=click.Path(dir_okay=False), help="Print the change against an earlier results.json.")
@click.option("--export", "do_export", is_flag=True, help="Run `edgecifar export` first for runs that have no export/ folder.")
@click.option("--data-dir", type=click.Path(), help="CIFAR-10 folder or archive (else $EDGECIFAR_DATA).")
@click.option("--note", help="A sentence printed at the top of report.md (e.g. what is special about these runs).")
@click.option("--corruptions", is_flag=True, help="Also run the corruption suite on every format (robustness.md/.json/.png: "
              "mCA per format and its Δ against Keras per corruption; --samples applies).")
def benchmark_cmd(runs_, out, samples, formats, threads, warmup, min_runs, min_seconds, batch, floor, as_json, compare_path,
                  do_export, data_dir, note, corruptions):
    """Measure accuracy, latency, throughput, size and memory of each RUN's Keras model and exported formats.

    Without RUN, the latest finished run is measured.

    \b
    Each format runs in its real runtime (LiteRT, onnxruntime, TensorFlow for Keras) through the
    same Classifier the device uses, in its own process, at 1 thread and at all cores.
    Absolute times are machine-specific: the report leads with ratios.

    \b
    Examples:
      edgecifar benchmark                                   # the latest run, every exported format
      edgecifar benchmark runs/resnet8_w20-* runs/seed003_bn_cnn-* --out bench/ --threads 1
      edgecifar benchmark RUN --samples 2000 --floor 60     # quick CI gate: exit 1 below 60 % top-1
      edgecifar benchmark RUN --json | jq '.rows[] | {format, top1: .accuracy.top1}'
    """
    from .. import quiet

    quiet.import_tensorflow()
    from . import cells, report

    fmt_list, thread_list = check_options(samples, floor, warmup, min_runs, min_seconds, batch, formats, threads)
    echo = progress_echo(as_json)
    old = report.load(compare_path) if compare_path else None
    run_dirs = exported_runs(runs_, fmt_list, do_export, echo)
    if not runs_:
        runs_ = tuple(map(str, run_dirs))
    if not formats:
        # By default: Keras, the exporter's default formats, and any optional one (tflite_int8_full) that was exported.
        from ..export import DEFAULT_FORMATS

        fmt_list = [f for f in fmt_list if f == "keras" or f in DEFAULT_FORMATS
                    or any(cells.artifact_path(r, cells.model_name(r), f).is_file() for r in run_dirs)]

    ensure_writable_dir(Path(out))  # before any measurement: a read-only --out must not waste the whole run
    settings = {"samples": samples, "warmup": warmup, "min_runs": min_runs, "min_seconds": min_seconds, "batch": batch}
    command = _command(runs_, out, samples, formats and fmt_list, threads, warmup, min_runs, min_seconds, batch, data_dir, note,
                       corruptions)
    results = cells.benchmark(run_dirs, list(fmt_list), thread_list, settings, data_dir, echo, command)
    results["user_note"] = note
    written = report.write_all(results, Path(out))
    if corruptions:
        from . import robustness

        written += robustness.write(robustness.measure(run_dirs, list(fmt_list), samples, data_dir, echo), Path(out), command)
    echo(f"wrote {', '.join(str(p) for p in written)}")
    if old is not None:
        echo("\n".join(report.compare(old, results)))
    if as_json:
        click.echo(Path(out, "results.json").read_text().rstrip())
    if floor is not None:
        gate_floor(results, floor, echo)


def check_options(samples, floor, warmup, min_runs, min_seconds, batch, formats, threads):
    """(formats in canonical order, thread settings); every bad value is a one-line UserError before anything runs."""
    from . import cells

    if samples is not None and samples < 10:
        raise UserError(f"--samples must be at least 10 (one image per class), got {samples}")
    if floor is not None and not (floor == 0 or 1 < floor <= 100):
        # 0 < floor <= 1 is refused: it is almost surely a fraction from before --floor took percent.
        hint = f"; a fraction? --floor takes percent: --floor {100 * floor:g}" if 0 < floor <= 1 else ""
        raise UserError(f"--floor is a top-1 accuracy in percent, 0 or above 1 and at most 100 (e.g. 60), got {floor:g}{hint}")
    for name, value, low in (("--warmup", warmup, 0), ("--min-runs", min_runs, 1), ("--batch", batch, 1)):
        if value < low:
            raise UserError(f"{name} must be at least {low}, got {value}")
    if min_seconds < 0:
        raise UserError(f"--min-seconds must be 0 or more, got {min_seconds}")
    fmt_list = cells.FORMATS if not formats else [f.strip() for f in formats.split(",") if f.strip()]
    unknown = [f for f in fmt_list if f not in cells.FORMATS]
    if unknown or not fmt_list:
        raise UserError(f"--formats: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(cells.FORMATS)}")
    return [f for f in cells.FORMATS if f in fmt_list], cells.parse_threads(threads)


def exported_runs(runs_, fmt_list, do_export, echo) -> list[Path]:
    """The run directories to measure (default: the latest run), each exported (--export does it now)."""
    from .. import runs
    from . import cells

    if not runs_:
        runs_ = (str(runs.latest_run()),)  # like `edgecifar export`: right after train + export, no argument needed
        echo(f"no RUN given: benchmarking the latest run {runs_[0]}")
    run_dirs = []
    for r in runs_:
        path = runs.resolve_run(r)
        if path.is_file():
            raise UserError(f"{r} is a file; pass the run directory (the folder holding model.keras and export/)")
        run_dirs.append(path)
    unexported = cells.check_exported(run_dirs, fmt_list)
    if unexported and not do_export:
        first = unexported[0]
        raise UserError(f"{first} has no export/ folder; run `edgecifar export {first}` first, or add --export to do it now")
    for run_dir in unexported:
        from ..export import export_run

        echo(f"exporting {run_dir} (no export/ yet) ...")
        export_run(run_dir, formats=[f for f in fmt_list if f != "keras"], echo=echo)
    return run_dirs


def gate_floor(results, floor, echo) -> None:
    """--floor: exit 1 naming every format below `floor` percent top-1."""
    from . import report

    bad = report.below_floor(results, floor / 100)
    if bad:
        click.echo(f"edgecifar: accuracy floor {floor:g} % not met by {len(bad)} format(s):", err=True)
        for line in bad:
            click.echo(f"  {line}", err=True)
        # SystemExit, not click's Exit: with standalone_mode=False click returns Exit's code instead of exiting.
        sys.exit(1)
    echo(f"accuracy floor {floor:g} %: all {len(results['rows'])} formats pass")


def _command(runs_, out, samples, formats, threads, warmup, min_runs, min_seconds, batch, data_dir, note, corruptions=False) -> str:
    """The exact command that regenerates this report, with every measurement setting spelled out."""
    args = ["edgecifar", "benchmark", *map(str, runs_), "--out", str(out)]
    if samples is not None:
        args += ["--samples", str(samples)]
    if formats:
        args += ["--formats", ",".join(formats)]
    args += ["--threads", threads, "--warmup", str(warmup), "--min-runs", str(min_runs), "--min-seconds", f"{min_seconds:g}",
             "--batch", str(batch)]
    if data_dir:
        args += ["--data-dir", str(data_dir)]
    if note:
        args += ["--note", note]
    if corruptions:
        args += ["--corruptions"]
    return shlex.join(args)

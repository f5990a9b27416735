"""The benchmark matrix: find each run's artifacts, measure every (format, thread setting) in its
own worker process, and assemble one results dict (the content of results.json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .. import data as cifar
from .. import machine, runs
from ..device import metadata
from ..errors import UserError
from ..files import scratch_dir, sha256_file
from . import metrics

SCHEMA = "edgecifar.benchmark/1"
FORMATS = ("keras",) + metadata.FORMATS
CELL_TIMEOUT_S = 1800
TIMING_IMAGES = 64  # batch-1 runs cycle over these real test images


def artifact_path(run_dir: Path, model: str, fmt: str) -> Path:
    """Where `edgecifar export` writes a format: RUN/export/<model>_<precision>.<tflite|onnx>."""
    if fmt == "keras":
        return run_dir / "model.keras"
    from ..export import artifact_name  # the exporter's own naming: one definition

    return run_dir / "export" / artifact_name(model, fmt)


def model_name(run_dir: Path) -> str:
    return runs.read_manifest(run_dir).get("model") or run_dir.name.split("-")[0]


def check_exported(run_dirs: list[Path], formats: list[str]) -> list[Path]:
    """Runs that lack an export/ folder while artifact formats were asked for."""
    if formats == ["keras"]:
        return []
    return [r for r in run_dirs if not (r / "export").is_dir()]


def export_failures(run_dir: Path) -> dict:
    """format -> reason, from the exporter's report when it says a format failed."""
    path = run_dir / "export" / "export_report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    out = {}
    items = report.get("formats") or report.get("artifacts") or []
    if isinstance(items, dict):
        items = [{"format": k, **v} for k, v in items.items() if isinstance(v, dict)]
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("format") and not item.get("path"):
            out[item["format"]] = str(item.get("reason") or item.get("error") or item.get("status"))
    return out


class Progress:
    """One plain-text line per cell: a bar, the count, what ran, its headline numbers, time left.
    Plain lines (no carriage returns) so logs and CI without a TTY read the same as a terminal."""

    def __init__(self, kinds: list[str], echo, width: int = 20):
        # kinds: one entry per cell ("keras" or "artifact"); Keras cells cost far more (TensorFlow
        # import, model.predict), so time left is estimated per kind.
        self.kinds, self.total, self.echo, self.width = kinds, len(kinds), echo, width
        self.done = 0
        self.start = time.perf_counter()
        self.spent: dict[str, list[float]] = {}
        self._t0 = self.start

    def begin(self, label: str) -> None:
        self._t0 = time.perf_counter()
        filled = int(self.width * self.done / self.total) if self.total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        self.echo(f"[{bar}] {self.done + 1:>{len(str(self.total))}}/{self.total} {label} ...", nl=False)

    def end(self, summary: str) -> None:
        now = time.perf_counter()
        self.spent.setdefault(self.kinds[self.done], []).append(now - self._t0)
        self.done += 1
        elapsed = now - self.start
        overall = elapsed / self.done
        mean = {k: sum(v) / len(v) for k, v in self.spent.items()}
        left = sum(mean.get(k, overall) for k in self.kinds[self.done :])
        self.echo(f" {summary}  [{_mmss(elapsed)} elapsed, ~{_mmss(left)} left]")


def _mmss(s: float) -> str:
    return f"{int(s // 60)}:{int(s % 60):02d}"


def machine_info() -> dict:
    import platform

    return {"cpu": machine.cpu_model(), "cores": os.cpu_count(), "usable_cores": machine.usable_cores(),
            "memory_gb": machine.memory_gb(), "platform": platform.platform(), "libraries": runs.library_versions(),
            "git_commit": runs.git_commit()}


def parse_threads(text: str) -> list[int]:
    cores = machine.usable_cores()  # "all": the cores this process may use (its CPU affinity), not the machine's
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if part in ("all", "max"):
            n = cores
        elif part.isdigit() and int(part) >= 1:
            n = int(part)
        else:
            raise UserError(f"--threads: {part!r} is not a thread count; use e.g. 1,all or 1,2,4")
        if n not in out:
            out.append(n)
    return sorted(out)


def baseline_rss() -> dict:
    proc = subprocess.run([sys.executable, "-m", "edgecifar.benchmark.rss"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise UserError(f"cannot start a bare python to measure baseline memory: {proc.stderr.strip()[-200:]}")
    return json.loads(proc.stdout)


def run_cell(spec: dict, work: Path) -> tuple[dict | None, np.ndarray | None, str | None]:
    """Run one worker; (result, predictions or None, error line or None)."""
    tag = f"{spec['model']}_{spec['format']}_t{spec['threads']}"
    spec = {**spec, "result_out": str(work / f"{tag}.json"), "preds_out": str(work / f"{tag}.npy")}
    spec_path = work / f"{tag}.spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    try:
        proc = subprocess.run([sys.executable, "-m", "edgecifar.benchmark.worker", str(spec_path)], capture_output=True,
                              text=True, env=env, timeout=CELL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, None, f"timed out after {CELL_TIMEOUT_S} s"
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        return None, None, (lines[-1][7:] if lines else f"worker exited with {proc.returncode}: {proc.stderr.strip()[-200:]}")
    result = json.loads(Path(spec["result_out"]).read_text())
    preds_file = Path(spec["preds_out"])
    return result, (np.load(preds_file) if preds_file.is_file() else None), None


def benchmark(run_dirs: list[Path], formats: list[str], threads: list[int], settings: dict, data_dir, echo, command: str) -> dict:
    """Measure everything; return the results dict (see SCHEMA)."""
    load_start = os.getloadavg()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ds = cifar.load(data_dir, splits=("test",))
    test = ds.test
    samples = settings["samples"]
    idx = np.arange(len(test)) if samples is None or samples >= len(test) else cifar.stratified_indices(test.labels, samples, seed=0)
    labels = test.labels[idx]
    base = baseline_rss()
    plan, models = plan_cells(run_dirs, formats)
    kinds = [("keras" if fmt == "keras" else "artifact") for _, _, fmt, path, _ in plan if path is not None for _ in threads]
    cells = len(kinds)
    progress = Progress(kinds, echo)
    echo(f"benchmark: {len(run_dirs)} model(s) x {len(formats)} format(s) x threads {threads} = {cells} measurements, "
         f"{len(idx)} test images, load average {load_start[0]:.2f}")
    rows = []
    with scratch_dir("bench") as tmp:
        work = Path(tmp)
        np.save(work / "timing.npy", test.images[:TIMING_IMAGES])
        np.save(work / "eval.npy", test.images[idx])
        preds_by_model = {}
        for name, run_dir, fmt, path, reason in plan:
            if path is None:
                rows.append({**_row(name, run_dir, fmt, None, "missing", reason), "sha256": None})
                continue
            cell_rows, preds = measure_artifact(name, run_dir, fmt, path, threads, settings, work, progress, labels,
                                                base["rss_kb"], echo)
            rows += cell_rows
            if preds is not None:
                preds_by_model.setdefault(name, {})[fmt] = preds

    _add_accuracy(rows, preds_by_model, labels, ds.class_names)
    _add_speedups(rows, threads)
    return {
        "schema": SCHEMA,
        "command": command,
        "created": created,
        "note": "Absolute times are specific to this machine and its load at the time; compare ratios across machines.",
        "machine": machine_info(),
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "settings": {**settings, "threads": threads, "samples": int(len(idx)), "timing_images": TIMING_IMAGES,
                     "formats": formats, "data_fingerprint": ds.fingerprint.get("test")},
        "baseline_rss_kb": base["rss_kb"],
        "rss_source": base["rss_source"],
        "class_names": ds.class_names,
        "models": models,
        "rows": rows,
    }


def plan_cells(run_dirs: list[Path], formats: list[str]):
    """([(model, run_dir, format, artifact path or None, why it is missing)], {model: its run and recorded accuracy})."""
    plan, models = [], {}
    for run_dir in run_dirs:
        name = model_name(run_dir)
        if name in models:
            raise UserError(f"two runs of {name} given ({models[name]['run']} and {run_dir}); benchmark one run per model")
        manifest = runs.read_manifest(run_dir)
        models[name] = {"run": str(run_dir), "manifest_test_accuracy": manifest.get("metrics", {}).get("test_accuracy")}
        failed = export_failures(run_dir)
        for fmt in formats:
            path = artifact_path(run_dir, name, fmt)
            reason = None if path.is_file() else (f"export failed: {failed[fmt]}" if fmt in failed else f"not exported ({path.name} absent)")
            plan.append((name, run_dir, fmt, path if reason is None else None, reason))
    return plan, models


def measure_artifact(name, run_dir, fmt, path, threads, settings, work: Path, progress, labels, base_kb, echo):
    """One artifact at every thread setting, each cell in its own process; returns (its rows, its predictions or None)."""
    cell_results, preds, error = {}, None, None
    # Exporters may rewrite artifacts at any time; a row must describe one file, not two.
    sha = sha256_file(path)
    for t in threads:
        progress.begin(f"{name} {fmt} threads={t}")
        spec = {"model": name, "format": fmt, "path": str(path), "threads": t, "batch": settings["batch"],
                "warmup": settings["warmup"], "min_runs": settings["min_runs"], "min_seconds": settings["min_seconds"],
                "timing_images": str(work / "timing.npy"),
                "eval_images": str(work / "eval.npy") if t == threads[-1] else None}
        result, cell_preds, cell_error = run_cell(spec, work)
        if result is None:
            progress.end(f"FAILED: {cell_error}")
            error = error or cell_error
            continue
        cell_results[t] = result
        if cell_preds is not None:
            preds = cell_preds
        head = next(iter(result["variants"].values()))
        acc = f", top-1 {100 * (preds == labels).mean():.2f}%" if cell_preds is not None else ""
        progress.end(f"p50 {head['latency']['p50_ms']:.3f} ms{acc}")
    if sha256_file(path) != sha:
        error, preds = f"{path.name} changed while it was measured (re-exported?); run the benchmark again", None
        echo(f"  {error}")
    keys = ["keras", "keras_predict"] if fmt == "keras" else [fmt]
    rows = [{**_row(name, run_dir, key, path, "error" if error else "ok", error, cell_results, base_kb, preds), "sha256": sha}
            for key in keys]
    return rows, preds


def _row(model, run_dir, key, path, status, error, cells=None, base_kb=0, preds=None) -> dict:
    cells = cells or {}
    first = next(iter(cells.values()), {})
    variant = first.get("variants", {}).get(key, {})
    per_thread = {}
    for t, res in cells.items():
        v = res["variants"][key]
        per_thread[str(t)] = {
            "import_ms": res["import_ms"], "load_ms": res["load_ms"], "first_ms": v.get("first_ms"),
            "latency": v["latency"], "throughput": v.get("throughput"), "batch_note": v.get("batch_note"),
            "rss_kb": res["rss_kb"], "rss_delta_kb": res["rss_kb"] - base_kb, "method": v["method"],
            **({"trials_p50_ms": v["trials_p50_ms"]} if "trials_p50_ms" in v else {}),
        }
    return {
        "model": model, "run": str(run_dir), "format": key, "status": status, "error": error,
        "path": str(path) if path else None, "size_bytes": path.stat().st_size if path else None,
        "runtime": first.get("runtime"), "input_dtype": first.get("input_dtype"), "method": variant.get("method"),
        "accuracy": None, "threads": per_thread, "_has_preds": preds is not None,
    }


def _add_accuracy(rows, preds_by_model, labels, class_names) -> None:
    for row in rows:
        has = row.pop("_has_preds")
        if not has:
            continue
        fmt = "keras" if row["format"] == "keras_predict" else row["format"]
        model_preds = preds_by_model[row["model"]]
        row["accuracy"] = metrics.accuracy_block(model_preds[fmt], labels, class_names, model_preds.get("keras"))


def _add_speedups(rows, threads) -> None:
    index = {(r["model"], r["format"]): r for r in rows}
    for row in rows:
        fmt = row["format"]
        family = fmt.split("_")[0]
        for t, cell in row["threads"].items():
            p50 = cell["latency"]["p50_ms"]

            def ref(key):
                other = index.get((row["model"], key))
                return other["threads"].get(t, {}).get("latency", {}).get("p50_ms") if other else None

            cell["speedup_vs_keras"] = metrics.speedup(ref("keras"), p50)
            cell["speedup_vs_keras_predict"] = metrics.speedup(ref("keras_predict"), p50)
            # "vs float32" compares within one runtime: TFLite formats to TFLite float32, ONNX int8 to ONNX float32.
            same_runtime_float = f"{family}_float32" if family in ("tflite", "onnx") else None
            cell["speedup_vs_float32"] = metrics.speedup(ref(same_runtime_float), p50) if same_runtime_float else None

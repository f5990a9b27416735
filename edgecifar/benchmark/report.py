"""Everything the benchmark writes: report.md, results.csv, results.json, pareto.png, size.png,
plus the --compare text and the --floor gate. Reads only the results dict."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .. import defaults
from ..errors import UserError
from ..files import human_size, write_json, write_text
from ..machine import load_note
from . import metrics

FILES = ("report.md", "results.csv", "results.json", "pareto.png", "size.png")
LABELS = {
    "keras": "Keras (fastest batch-1 path)",
    "keras_predict": "Keras model.predict",
    "tflite_float32": "TFLite float32",
    "tflite_float16": "TFLite float16",
    "tflite_dynamic": "TFLite dynamic-range",
    "tflite_int8": "TFLite int8 (float head)",
    "tflite_int8_full": "TFLite int8 (fully integer)",
    "onnx_float32": "ONNX float32",
    "onnx_int8": "ONNX int8 (QDQ)",
}
CSV_COLUMNS = [
    "model", "format", "threads", "status", "error", "sha256", "runtime", "method", "input_dtype", "size_bytes", "samples",
    "top1", "top1_delta_pp", "agreement", "max_abs_class_delta_pp",
    "p50_ms", "p90_ms", "p99_ms", "mean_ms", "runs", "fps_batch1", "batch", "throughput_ips",
    "load_ms", "import_ms", "rss_mib", "rss_delta_mib", "speedup_vs_keras", "speedup_vs_keras_predict", "speedup_vs_float32",
]


def write_all(results: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    write_text(out / "results.csv", to_csv(results))
    write_text(out / "report.md", to_markdown(results))
    plot_pareto(results, out / "pareto.png")
    plot_size(results, out / "size.png")
    return [out / f for f in FILES]


def load(path) -> dict:
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"--compare {path}: cannot read it ({e}); pass a results.json written by `edgecifar benchmark`") from None
    if results.get("schema") != "edgecifar.benchmark/1":
        raise UserError(f"--compare {path}: not an edgecifar benchmark results.json (schema {results.get('schema')!r})")
    return results


# --- CSV -----------------------------------------------------------------------------------


def csv_rows(results: dict) -> list[dict]:
    names = results["class_names"]
    out = []
    for row in results["rows"]:
        acc = row["accuracy"] or {}
        common = {
            "model": row["model"], "format": row["format"], "status": row["status"], "error": row["error"] or "",
            "sha256": row.get("sha256") or "",
            "runtime": row["runtime"] or "", "method": row["method"] or "", "input_dtype": row["input_dtype"] or "",
            "size_bytes": row["size_bytes"], "samples": acc.get("samples"), "top1": acc.get("top1"),
            "top1_delta_pp": acc.get("top1_delta_pp"), "agreement": acc.get("agreement"),
            "max_abs_class_delta_pp": acc.get("max_abs_class_delta_pp"),
        }
        for n in names:
            common[f"acc_{n}"] = (acc.get("per_class") or {}).get(n)
            common[f"delta_pp_{n}"] = (acc.get("per_class_delta_pp") or {}).get(n)
        cells = row["threads"] or {"": None}
        for t, cell in cells.items():
            r = dict(common, threads=t)
            if cell:
                lat, thr = cell["latency"], cell["throughput"] or {}
                r.update({k: lat[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "runs")})
                r.update(fps_batch1=1000 / lat["p50_ms"], batch=thr.get("batch"), throughput_ips=thr.get("images_per_s"),
                         load_ms=cell["load_ms"], import_ms=cell["import_ms"], rss_mib=cell["rss_kb"] / 1024,
                         rss_delta_mib=cell["rss_delta_kb"] / 1024, speedup_vs_keras=cell["speedup_vs_keras"],
                         speedup_vs_keras_predict=cell["speedup_vs_keras_predict"], speedup_vs_float32=cell["speedup_vs_float32"],
                         method=cell["method"])
            out.append(r)
    return out


def csv_columns(results: dict) -> list[str]:
    names = results["class_names"]
    return CSV_COLUMNS + [f"acc_{n}" for n in names] + [f"delta_pp_{n}" for n in names]


def to_csv(results: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=csv_columns(results), lineterminator="\n")
    w.writeheader()
    for r in csv_rows(results):
        w.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in r.items()})
    return buf.getvalue()


# --- Markdown ------------------------------------------------------------------------------


def _f(v, fmt="{:.2f}", none="—"):
    return none if v is None else fmt.format(v)


def _x(v):
    """A ratio, readable from 0.003× to 4000×."""
    if v is None:
        return "—"
    return f"{v:.0f}×" if v >= 100 else f"{v:.2f}×" if v >= 0.1 else f"{v:.3f}×"


def _size(b):
    return "—" if b is None else human_size(b)


def to_markdown(results: dict) -> str:
    """report.md: ratios first, then one section per model, then method and machine."""
    threads = [str(t) for t in results["settings"]["threads"]]
    t1, tn = threads[0], threads[-1]
    m, s, la = results["machine"], results["settings"], results["load_average"]
    lines = [
        "# edgecifar benchmark: accuracy vs latency",
        "",
        "Regenerate this report (from the repository root):",
        "",
        "```",
        results["command"],
        "```",
        "",
        *([f"**Note:** {results['user_note']}", ""] if results.get("user_note") else []),
        f"> **Absolute times are for this machine only** ({m['cpu']}, {m['cores']} cores, measured {results['created']}, "
        f"{load_note(la['start'][0], la['end'][0], m['cores'])}). "
        "Ratios (speed-ups, size ratios) carry over between machines far better than milliseconds; read them first.",
        "",
        "## Ratios first",
        "",
        f"Speed-up = Keras fastest batch-1 p50 ÷ format p50 (>1 is faster); \"vs float32\" compares within one runtime "
        f"(TFLite to TFLite float32, ONNX int8 to ONNX float32). Accuracy on {s['samples']:,} CIFAR-10 test images.",
        "",
        f"| model | format | × Keras @{t1} thr |" + (f" × Keras @{tn} thr |" if tn != t1 else "")
        + f" × float32 @{t1} thr | × model.predict @{t1} thr | size vs Keras | Δ top-1 (pp) | agreement |",
        "|---|---|---:|" + ("---:|" if tn != t1 else "") + "---:|---:|---:|---:|---:|",
    ]
    by_model = {}
    for row in results["rows"]:
        by_model.setdefault(row["model"], []).append(row)
    lines[-2:-2] = _verdicts(by_model, t1) + [""]
    for model, rows in by_model.items():
        lines += _ratio_rows(model, rows, t1, tn)
    lines += ["", "![accuracy vs latency](pareto.png)", "", "![size on disk](size.png)", ""]

    for model, rows in by_model.items():
        lines += _model_section(model, rows, results, t1, tn)
    lines += _method_and_machine(results, tn)
    return "\n".join(lines)


def _ratio_rows(model: str, rows: list[dict], t1: str, tn: str) -> list[str]:
    """The "Ratios first" table's rows for one model."""
    lines = []
    keras_size = next((r["size_bytes"] for r in rows if r["format"] == "keras"), None)
    for r in rows:
        if r["format"].startswith("keras") or r["status"] != "ok":
            continue
        c1, cn = r["threads"].get(t1, {}), r["threads"].get(tn, {})
        acc = r["accuracy"] or {}
        ratio = r["size_bytes"] / keras_size if keras_size and r["size_bytes"] else None
        lines.append(
            f"| {model} | {LABELS[r['format']]} | {_x(c1.get('speedup_vs_keras'))} "
            + (f"| {_x(cn.get('speedup_vs_keras'))} " if tn != t1 else "")
            + f"| {_x(c1.get('speedup_vs_float32'))} | {_x(c1.get('speedup_vs_keras_predict'))} | {_x(ratio)} "
            f"| {_f(acc.get('top1_delta_pp'), '{:+.2f}')} | {_f(acc.get('agreement'), '{:.2%}')} |")
    return lines


def _model_section(model: str, rows: list[dict], results: dict, t1: str, tn: str) -> list[str]:
    """One model's section: every format's row, the files measured, Keras' batch-1 paths, per-class change."""
    s = results["settings"]
    lines = []
    info = results["models"][model]
    manifest_acc = info.get("manifest_test_accuracy")
    lines += [f"## {model}", "", f"Run: `{info['run']}`" + (f" — Keras test accuracy recorded at training: {100 * manifest_acc:.2f}%" if manifest_acc is not None else ""), ""]
    two = tn != t1  # one thread setting (--threads 1): its columns once, not twice
    lines += [
        f"| format | runtime | status | size | top-1 | Δ pp | agreement | max class Δ pp | ms p50 / p90 @{t1} thr "
        + (f"| ms p50 / p90 @{tn} thr | FPS @{t1} / @{tn} " if two else f"| FPS @{t1} ")
        + f"| img/s batch {s['batch']} @{tn} | peak RSS MiB (Δ python) | load ms | "
        + (f"× Keras @{t1} / @{tn}" if two else f"× Keras @{t1}") + f" | × float32 @{t1} |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if two else "") + "---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        acc = r["accuracy"] or {}
        c1, cn = r["threads"].get(t1), r["threads"].get(tn)
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['error']}"
        lat = lambda c: f"{c['latency']['p50_ms']:.3f} / {c['latency']['p90_ms']:.3f}" if c else "—"
        fps = lambda c: f"{1000 / c['latency']['p50_ms']:.0f}" if c else "—"
        thr = (cn or {}).get("throughput")
        lines.append(
            f"| {LABELS[r['format']]} | {r['runtime'] or '—'} | {status} | {_size(r['size_bytes'])} | {_f(acc.get('top1'), '{:.2%}')} "
            f"| {_f(acc.get('top1_delta_pp'), '{:+.2f}')} | {_f(acc.get('agreement'), '{:.2%}')} | {_f(acc.get('max_abs_class_delta_pp'), '{:.1f}')} "
            + (f"| {lat(c1)} | {lat(cn)} | {fps(c1)} / {fps(cn)} " if two else f"| {lat(c1)} | {fps(c1)} ")
            + f"| {_f(thr and thr['images_per_s'], '{:.0f}') if thr else ((cn or {}).get('batch_note') and 'n/a') or '—'} "
            f"| {_f(cn and cn['rss_kb'] / 1024, '{:.0f}')} ({_f(cn and cn['rss_delta_kb'] / 1024, '{:+.0f}')}) | {_f(cn and cn['load_ms'], '{:.1f}')} "
            + (f"| {_x(c1 and c1['speedup_vs_keras'])} / {_x(cn and cn['speedup_vs_keras'])} " if two
               else f"| {_x(c1 and c1['speedup_vs_keras'])} ")
            + f"| {_x(c1 and c1['speedup_vs_float32'])} |")
    files = [f"`{Path(r['path']).name}` {r['sha256'][:12]}" for r in rows if r.get("sha256") and r["format"] != "keras_predict"]
    if files:
        lines += ["", "Files measured (sha256, first 12 hex digits; `--compare` flags a re-exported file): " + ", ".join(files) + "."]
    keras = next((r for r in rows if r["format"] == "keras" and r["status"] == "ok"), None)
    if keras:
        methods = {t: c["method"] for t, c in keras["threads"].items()}
        trials = {t: c.get("trials_p50_ms") for t, c in keras["threads"].items()}
        lines += ["", "Keras batch-1 paths tried (short trial, p50 ms; the fastest is the \"Keras\" row):", ""]
        for t, tr in trials.items():
            shown = ", ".join(f"`{k}` {v:.3f}" if isinstance(v, float) else f"`{k}` {v}" for k, v in (tr or {}).items())
            lines.append(f"- {t} thread(s): {shown} → **`{methods[t]}`**")
    names = results["class_names"]
    with_delta = [r for r in rows if (r["accuracy"] or {}).get("per_class_delta_pp") and r["format"] not in ("keras", "keras_predict")]
    if with_delta:
        lines += ["", "Per-class top-1 change vs Keras (percentage points):", "",
                  "| format | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for r in with_delta:
            d = r["accuracy"]["per_class_delta_pp"]
            lines.append(f"| {LABELS[r['format']]} | " + " | ".join(_f(d[n], "{:+.1f}") for n in names) + " |")
    lines.append("")

    return lines


def _method_and_machine(results: dict, tn: str) -> list[str]:
    m, s, la = results["machine"], results["settings"], results["load_average"]
    return [
        "## Method",
        "",
        "- Every format runs in its real runtime through `edgecifar.device.runtime.Classifier` "
        "(`quantize_input → infer → dequantize_output`, what `edgecifar run` does per frame after the camera resize); "
        "Keras runs in TensorFlow. One fresh process per format and thread setting.",
        f"- Latency (batch 1): {s['warmup']} warm-up runs, then at least {s['min_runs']} runs and {s['min_seconds']} s "
        f"(cap 60 s), cycling over {s['timing_images']} real test images; p50 / p90 / p99 of the per-call wall time. "
        f"FPS = 1000 / p50. Throughput: batch {s['batch']} where the format accepts it, images/s at p50.",
        "- Keras: each batch-1 path is tried briefly and the fastest is measured in full (named above); "
        "`model.predict` is measured too, as tutorials call it. Keras accuracy uses `model.predict` at batch "
        f"{defaults.EVAL_BATCH} (edgecifar.predict.predict_probs), as training did.",
        f"- Top-1 on {s['samples']:,} test images" + (" (stratified subset)" if s["samples"] < 10000 else " (the full test set)")
        + f", evaluated in the {tn}-thread process. Agreement = share of images where the format's top-1 class equals Keras's.",
        f"- Peak RSS: the worker process's peak resident memory (VmHWM, i.e. ru_maxrss without the parent's inherited peak) "
        f"after loading and timing, before the test images are loaded; Δ python = minus a bare interpreter "
        f"({human_size(results['baseline_rss_kb'] * 1024, 'MiB', '.0f')}). Keras includes TensorFlow. Load = model load/initialisation "
        "(runtime import excluded; its time is in results.json as import_ms).",
        "- Size: the file on disk. For Keras that is `model.keras` as training saved it, optimizer state included "
        "(RMSprop doubles, Adam triples the float32 weights), so \"size vs Keras\" compares with what a user has, "
        "not with the weights alone (those are about the TFLite float32 size).",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['memory_gb']} GB RAM; {m['platform']}",
        f"- Load average (1/5/15 min): start {la['start']}, end {la['end']}",
        f"- Date: {results['created']}; edgecifar commit {m['git_commit']}",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()),
        "",
    ]




def _verdicts(by_model: dict, t1: str, max_loss_pp: float = 1.0) -> list[str]:
    """One line per model: the fastest and the smallest artifact that loses at most `max_loss_pp` top-1."""
    out = []
    for model, rows in by_model.items():
        good = [r for r in rows if r["status"] == "ok" and not r["format"].startswith("keras") and r["accuracy"]
                and r["accuracy"]["top1_delta_pp"] is not None and r["accuracy"]["top1_delta_pp"] >= -max_loss_pp
                and t1 in r["threads"]]
        if not good:
            out.append(f"- **{model}**: no exported format is within {max_loss_pp:g} pp of Keras.")
            continue
        fast = min(good, key=lambda r: r["threads"][t1]["latency"]["p50_ms"])
        small = min(good, key=lambda r: r["size_bytes"])
        # Run-to-run noise on a shared machine is easily 15 %: name the near-ties instead of crowning one.
        p50 = fast["threads"][t1]["latency"]["p50_ms"]
        ties = [LABELS[r["format"]] for r in good if r is not fast and r["threads"][t1]["latency"]["p50_ms"] <= 1.15 * p50]
        tied = f", within 15 % of: {', '.join(ties)}" if ties else ""
        out.append(f"- **{model}**: fastest within {max_loss_pp:g} pp of Keras: **{LABELS[fast['format']]}** "
                   f"({_x(fast['threads'][t1]['speedup_vs_keras'])} Keras at {t1} thread, {fast['accuracy']['top1_delta_pp']:+.2f} pp{tied}); "
                   f"smallest: **{LABELS[small['format']]}** ({_size(small['size_bytes'])}, {small['accuracy']['top1_delta_pp']:+.2f} pp).")
    return out


# --- plots ----------------------------------------------------------------------------------

_COLORS = {"keras": "#444444", "keras_predict": "#999999", "tflite_float32": "#1f77b4", "tflite_float16": "#17becf",
           "tflite_dynamic": "#2ca02c", "tflite_int8": "#d62728", "tflite_int8_full": "#8c564b", "onnx_float32": "#9467bd", "onnx_int8": "#ff7f0e"}
_MARKERS = "osD^vP*X"


def _points(results: dict, t: str) -> list[tuple]:
    pts = []
    for r in results["rows"]:
        cell = r["threads"].get(t)
        if r["status"] == "ok" and cell and r["accuracy"]:
            pts.append((r["model"], r["format"], cell["latency"]["p50_ms"], 100 * r["accuracy"]["top1"]))
    return pts


def plot_pareto(results: dict, path: Path) -> None:
    from ..plots import pyplot, save_png

    plt = pyplot()
    threads = [str(t) for t in results["settings"]["threads"]]
    models = list(results["models"])
    fig, axes = plt.subplots(1, len(threads), figsize=(6.5 * len(threads), 5.2), squeeze=False)
    for ax, t in zip(axes[0], threads):
        pts = _points(results, t)
        front = metrics.pareto_front([(p[2], p[3]) for p in pts])
        for i, (model, fmt, ms, acc) in enumerate(pts):
            ax.scatter(ms, acc, color=_COLORS[fmt], marker=_MARKERS[models.index(model) % len(_MARKERS)], s=60,
                       edgecolors="black" if i in front else "none", linewidths=1.2, zorder=3)
        if front:
            xs, ys = [pts[i][2] for i in front], [pts[i][3] for i in front]
            ax.plot(xs, ys, color="black", lw=1, ls="--", drawstyle="steps-post", zorder=2, label="Pareto front")
            # Front points get numbers (short, rarely overlapping) explained in a caption under the axes.
            caption = []
            for k, i in enumerate(front, 1):
                model, fmt, ms, acc = pts[i]
                ax.annotate(str(k), (ms, acc), fontsize=8, fontweight="bold", xytext=(5, 4), textcoords="offset points")
                caption.append(f"{k}: {model} {LABELS[fmt].replace(' (fastest batch-1 path)', '')} — {ms:.3g} ms, {acc:.2f}%")
            ax.text(0, -0.14, "Pareto front:\n" + "\n".join(caption), transform=ax.transAxes, fontsize=7.5, va="top")
        ax.set_xscale("log")
        ax.set_xlabel("batch-1 latency p50 (ms, log scale)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"{t} thread{'s' if t != '1' else ''}")
        ax.grid(alpha=0.3, which="both")
        # Legend: colours are formats, shapes are models, the dashed line is the front.
        handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=LABELS[f]) for f, c in _COLORS.items()
                   if any(p[1] == f for p in pts)]
        handles += [plt.Line2D([], [], color="black", marker=_MARKERS[k % len(_MARKERS)], ls="", mfc="white", label=m)
                    for k, m in enumerate(models)]
        handles += [plt.Line2D([], [], color="black", ls="--", label="Pareto front (outlined points)")]
        ax.legend(handles=handles, fontsize=7, loc="best")
    fig.suptitle(f"Accuracy vs latency, {results['settings']['samples']:,} test images — {results['machine']['cpu']}, "
                 f"times are machine-specific", fontsize=10)
    save_png(fig, path)


def plot_size(results: dict, path: Path) -> None:
    from ..plots import pyplot, save_png

    plt = pyplot()
    rows = [r for r in results["rows"] if r["size_bytes"] and r["format"] != "keras_predict"]
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(rows) + 1.4))
    labels, sizes, colors = [], [], []
    for r in rows:
        labels.append(f"{r['model']}  {LABELS[r['format']].replace(' (fastest batch-1 path)', ' (model.keras, optimizer incl.)')}")
        sizes.append(r["size_bytes"] / 2**20)
        colors.append(_COLORS[r["format"]])
    y = list(range(len(rows)))[::-1]
    ax.barh(y, sizes, color=colors)
    ax.set_yticks(y, labels, fontsize=8)
    for yi, s in zip(y, sizes):
        ax.text(s, yi, " " + human_size(s * 2**20), va="center", fontsize=7)
    ax.set_xlabel("size on disk (MiB)")
    ax.set_xlim(0, max(sizes, default=1) * 1.18)
    ax.set_title("Model size on disk by format")
    ax.grid(axis="x", alpha=0.3)
    save_png(fig, path)


# --- compare and floor ---------------------------------------------------------------------


def compare(old: dict, new: dict) -> list[str]:
    """One line per (model, format) in both reports: accuracy and latency change."""
    old_rows = {(r["model"], r["format"]): r for r in old["rows"]}
    lines = [f"change vs {old.get('created', '?')} (old → new):"]
    acc_deltas, ratios = [], []
    for r in new["rows"]:
        o = old_rows.get((r["model"], r["format"]))
        name = f"{r['model']} {r['format']}"
        if o is None:
            lines.append(f"  {name}: new (not in the old report)")
            continue
        if r["status"] != "ok" or o["status"] != "ok":
            lines.append(f"  {name}: status {o['status']} → {r['status']}")
            continue
        parts = []
        changed = o.get("sha256") != r.get("sha256")
        if changed:
            parts.append(f"DIFFERENT FILE (sha256 {str(o.get('sha256'))[:10]} → {str(r.get('sha256'))[:10]})")
        a0, a1 = (o["accuracy"] or {}).get("top1"), (r["accuracy"] or {}).get("top1")
        if a0 is not None and a1 is not None:
            parts.append(f"top-1 {100 * a0:.2f}% → {100 * a1:.2f}% ({100 * (a1 - a0):+.2f} pp)")
            if not changed:
                acc_deltas.append(100 * (a1 - a0))
        for t, cell in r["threads"].items():
            oc = o["threads"].get(t)
            if oc:
                p0, p1 = oc["latency"]["p50_ms"], cell["latency"]["p50_ms"]
                parts.append(f"p50@{t} {p0:.3f} → {p1:.3f} ms (×{p1 / p0:.2f})")
                ratios.append(p1 / p0)
        if o["size_bytes"] != r["size_bytes"]:
            parts.append(f"size {_size(o['size_bytes'])} → {_size(r['size_bytes'])}")
        lines.append(f"  {name}: " + "; ".join(parts))
    gone = set(old_rows) - {(r["model"], r["format"]) for r in new["rows"]}
    lines += [f"  {m} {f}: only in the old report" for m, f in sorted(gone)]
    if acc_deltas:
        same = sum(d == 0 for d in acc_deltas)
        lines.append(f"summary: top-1 identical for {same} of {len(acc_deltas)} unchanged artifacts (largest change "
                     f"{max(acc_deltas, key=abs):+.2f} pp)")
    if ratios:
        import statistics

        lines.append(f"summary: latency p50 new/old median ×{statistics.median(ratios):.2f}, range ×{min(ratios):.2f}–×{max(ratios):.2f} "
                     f"(load average then {old['load_average']['start'][0]:.1f}, now {new['load_average']['start'][0]:.1f})")
    return lines


def below_floor(results: dict, floor: float) -> list[str]:
    """Rows that fail a CI accuracy gate: below the floor, or not measurable (missing or failed).
    A gate that passes because an artifact is absent would not be a gate."""
    bad = []
    for r in results["rows"]:
        name = f"{r['model']} {r['format']}"
        if r["status"] != "ok":
            bad.append(f"{name}: {r['status']} ({r['error']})")
        elif r["accuracy"] is None:
            bad.append(f"{name}: no accuracy measured")
        elif r["accuracy"]["top1"] < floor:
            bad.append(f"{name}: top-1 {r['accuracy']['top1']:.4f} < {floor:.4f}")
    return bad

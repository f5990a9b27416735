"""Top-1 against int8 size, MACs and latency: every committed seed-model export against the edge model.

    python benchmarks/edge_pareto.py export/reports/resnet8_w20/export_report.json --out benchmarks/results/edge_model

The size and MACs views are machine-independent (accuracy on the full test set, bytes on disk, MACs
from the zoo registry), so the seed models' committed export reports and a new run's report can
share one plot. Latency is not: with --latency RESULTS.json (one `edgecifar benchmark` run that timed
every model's int8 TFLite, benchmarks/seed_latency.sh) a third view joins that run's batch-1
latency at 1 thread to the committed accuracies by model name.
A model is dominated when another is at least as accurate and at least as small (or cheap), and
strictly better in one of the two.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecifar import zoo
from edgecifar.files import human_size, write_text
from edgecifar.plots import pyplot, save_png


def zoo_name(report: dict) -> str:
    """The zoo model behind a report: its "zoo_model", else the name without a variant suffix (`_camera`)."""
    name = report.get("zoo_model") or report["model"]
    for variant in ("_camera", "_plain"):
        if name not in zoo.list_models() and name.endswith(variant):
            name = name[: -len(variant)]
    return name


SEED_REPORTS = ["seed000_shallow_cnn", "seed002_m1_cnn", "seed002_m2_cnn", "seed002_m3_cnn", "seed003_bn_cnn", "seed004_mlp",
                "seed004_mobilenetv2_transfer"]


def load_point(path: Path) -> dict:
    report = json.loads(Path(path).read_text())
    int8 = next(a for a in report["artifacts"] if a["format"] == "tflite_int8" and a.get("path"))
    return {"model": report["model"], "report": str(path), "keras_top1": 100 * report["check"]["keras_accuracy"],
            "int8_top1": 100 * int8["accuracy"], "int8_bytes": int8["size_bytes"], "macs": zoo.model_info(zoo_name(report)).macs,
            "head": "float head" if "head" in (int8.get("conversion") or {}) else "integer output"}


def add_latency(points: list[dict], results: dict) -> None:
    """Each point's int8 TFLite batch-1 p50 at 1 thread (ms) from one benchmark's results.json, by zoo model name."""
    timed = {}
    for row in results["rows"]:
        if row["format"] == "tflite_int8" and row.get("status") == "ok":
            timed[zoo_name(row)] = row["threads"]["1"]["latency"]["p50_ms"]
    for p in points:
        if zoo_name(p) not in timed:
            raise SystemExit(f"{p['model']} has no tflite_int8 row at 1 thread in the --latency results; "
                             "rerun benchmarks/seed_latency.sh")
        p["latency_ms"] = timed[zoo_name(p)]


def dominated(points: list[dict], x: str) -> dict[str, list[str]]:
    """model -> the models that dominate it on (int8 top-1 up, `x` down)."""
    out = {}
    for p in points:
        out[p["model"]] = [q["model"] for q in points if q is not p and q["int8_top1"] >= p["int8_top1"] and q[x] <= p[x]
                           and (q["int8_top1"] > p["int8_top1"] or q[x] < p[x])]
    return out


def plot(points: list[dict], x: str, label: str, path: Path, new: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, p in enumerate(sorted(points, key=lambda p: p[x])):
        mine = p["model"] == new
        xv = p[x] / {"int8_bytes": 1024, "macs": 1e6}.get(x, 1)
        ax.scatter(xv, p["int8_top1"], s=70 if mine else 40, color="tab:red" if mine else "tab:blue", zorder=3)
        # Alternate label offsets so neighbouring points do not overprint each other.
        ax.annotate(p["model"], (xv, p["int8_top1"]), textcoords="offset points", xytext=(6, 8 if i % 2 else -12),
                    fontsize=8, color="tab:red" if mine else "black")
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("int8 TFLite top-1 (%) on the 10,000 test images")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"{new} against the seed models (up and left is better)")
    save_png(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("new_report", type=Path, help="export_report.json of the new model")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/edge_model"))
    ap.add_argument("--latency", type=Path, metavar="RESULTS.json",
                    help="results.json of one benchmark run that timed every model's tflite_int8 at 1 thread")
    args = ap.parse_args()
    points = [load_point(Path("export/reports") / name / "export_report.json") for name in SEED_REPORTS]
    new = load_point(args.new_report)
    points.append(new)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(points, "int8_bytes", "int8 TFLite size (KiB, log scale)", args.out / "pareto_size.png", new["model"])
    plot(points, "macs", "MACs per image (millions, log scale; the Pi latency proxy)", args.out / "pareto_macs.png", new["model"])
    by_size, by_macs = dominated(points, "int8_bytes"), dominated(points, "macs")
    latency = None
    if args.latency:
        results = json.loads(args.latency.read_text())
        add_latency(points, results)
        plot(points, "latency_ms", "int8 TFLite batch-1 latency at 1 thread (ms, p50, log scale)", args.out / "pareto_latency.png",
             new["model"])
        latency = dominated(points, "latency_ms")
    regenerate = f"python benchmarks/edge_pareto.py {args.new_report}" + (f" --latency {args.latency}" if args.latency else "")
    lines = [f"# {new['model']} against every seed model: top-1 vs int8 size, MACs" + (" and latency" if latency else ""), "",
             f"Regenerate: `{regenerate} --out {args.out}`", "",
             "Accuracies and sizes come from the committed export reports (full 10,000-image test set, int8 TFLite in "
             "LiteRT); MACs from `edgecifar models`. The int8 output column says which reports predate the float "
             "head (integer output, with ties) and which have it."]
    if latency:
        machine = results["machine"]
        lines += ["", f"Latency: int8 TFLite batch-1 p50 at 1 thread, all models in one benchmark run ({args.latency}; "
                  f"{machine.get('cpu', '?')}, {results['created']}; command at the top of its report.md). Seed models "
                  "were timed through stand-ins of the same architecture (benchmarks/seed_latency.sh): latency "
                  "depends on the graph, not the weights."]
        s3 = next((p for p in points if zoo_name(p) == "seed003_bn_cnn"), None)
        if s3:
            lines += ["", f"{new['model']} int8 latency ÷ seed003_bn_cnn int8 latency: **{new['latency_ms'] / s3['latency_ms']:.2f}×** "
                      f"({new['latency_ms']:.3f} ms against {s3['latency_ms']:.3f} ms); MACs {new['macs'] / 1e6:.1f} M against "
                      f"{s3['macs'] / 1e6:.1f} M ({new['macs'] / s3['macs']:.2f}×, the Pi-class proxy)."]
    head = "| model | Keras top-1 | int8 top-1 | int8 size | MACs |" + (" int8 latency |" if latency else "")
    head += " int8 output | dominated (size) by | dominated (MACs) by |" + (" dominated (latency) by |" if latency else "")
    lines += ["", head, "|---|---:|---:|---:|---:|" + ("---:|" if latency else "") + "---|---|---|" + ("---|" if latency else "")]
    for p in sorted(points, key=lambda p: -p["int8_top1"]):
        row = (f"| {p['model']} | {p['keras_top1']:.2f} % | {p['int8_top1']:.2f} % | {human_size(p['int8_bytes'])} | "
               f"{p['macs'] / 1e6:.1f} M |" + (f" {p['latency_ms']:.3f} ms |" if latency else "")
               + f" {p['head']} | {', '.join(by_size[p['model']]) or '—'} | {', '.join(by_macs[p['model']]) or '—'} |")
        if latency:
            row += f" {', '.join(latency[p['model']]) or '—'} |"
        lines.append(row)
    lines += ["", "![size](pareto_size.png)", "![macs](pareto_macs.png)"] + (["![latency](pareto_latency.png)"] if latency else [])
    lines.append("")
    write_text(args.out / "pareto.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

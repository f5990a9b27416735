"""Top-1 against int8 size and against MACs: every committed seed-model export against the edge model.

    python benchmarks/edge_pareto.py export/reports/resnet8_w20/export_report.json --out benchmarks/results/edge_model

Both views are machine-independent (accuracy on the full test set, bytes on disk, MACs from the zoo
registry), so the seed models' committed export reports and a new run's report can share one plot.
Latency is not: it is measured in one benchmark run (benchmarks/results/edge_model/), not here.
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
        xv = p[x] / (1024 if x == "int8_bytes" else 1e6)
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
    args = ap.parse_args()
    points = [load_point(Path("export/reports") / name / "export_report.json") for name in SEED_REPORTS]
    new = load_point(args.new_report)
    points.append(new)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(points, "int8_bytes", "int8 TFLite size (KiB, log scale)", args.out / "pareto_size.png", new["model"])
    plot(points, "macs", "MACs per image (millions, log scale; the Pi latency proxy)", args.out / "pareto_macs.png", new["model"])
    by_size, by_macs = dominated(points, "int8_bytes"), dominated(points, "macs")
    lines = [f"# {new['model']} against every seed model: top-1 vs int8 size and vs MACs", "",
             f"Regenerate: `python benchmarks/edge_pareto.py {args.new_report} --out {args.out}`", "",
             "Accuracies and sizes come from the committed export reports (full 10,000-image test set, int8 TFLite in "
             "LiteRT); MACs from `edgecifar models`. Seed-model int8 artifacts were exported before the float head "
             "existed (integer output); the new model's int8 has the float head.", "",
             "| model | Keras top-1 | int8 top-1 | int8 size | MACs | int8 output | dominated (size) by | dominated (MACs) by |",
             "|---|---:|---:|---:|---:|---|---|---|"]
    for p in sorted(points, key=lambda p: -p["int8_top1"]):
        lines.append(f"| {p['model']} | {p['keras_top1']:.2f} % | {p['int8_top1']:.2f} % | {human_size(p['int8_bytes'])} | "
                     f"{p['macs'] / 1e6:.1f} M | {p['head']} | {', '.join(by_size[p['model']]) or '—'} | "
                     f"{', '.join(by_macs[p['model']]) or '—'} |")
    lines += ["", f"![size]({'pareto_size.png'})", f"![macs]({'pareto_macs.png'})", ""]
    write_text(args.out / "pareto.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

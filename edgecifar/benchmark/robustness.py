"""`edgecifar benchmark --corruptions`: the corruption suite on every benchmarked format of every run.

Each format is scored on the same corrupted images (generated once per run, edgecifar.corruptions):
Keras through predict_probs, each artifact through the device's Classifier. The report sets each
format's mCA against Keras of the same run, per corruption too, so a quantized artifact that holds
up on clean images but not under blur or noise shows here. Writes into the benchmark folder:
robustness.md, robustness.json and robustness.png.
"""

from __future__ import annotations

from pathlib import Path

from .. import data
from ..evaluate import MCA_DEFINITION, corruption_accuracies, corruption_subset, predictor
from ..files import write_json, write_text
from . import cells


def measure(run_dirs: list[Path], formats: list[str], samples: int | None, data_dir, echo) -> dict:
    """{run: {"model": name, "results": {format: corruption_accuracy result}}}."""
    test = data.load(data_dir, splits=("test",)).test
    # --samples as the benchmark reads it: N >= the test set means all of it.
    images, labels = corruption_subset(test, samples if samples is not None and samples < len(test) else None, seed=0)
    out = {}
    for run in run_dirs:
        name = cells.model_name(run)
        paths = {fmt: cells.artifact_path(run, name, fmt) for fmt in formats}
        predicts = {fmt: predictor(path)[0] for fmt, path in paths.items() if path.is_file()}
        if not predicts:
            continue  # none of the asked formats exists for this run: nothing to score
        echo(f"corruption suite: {name}, {len(predicts)} format(s), {len(labels):,} test images")
        out[str(run)] = {"model": name, "results": corruption_accuracies(predicts, images, labels, echo=echo)}
    return out


def markdown(rob: dict, command: str) -> str:
    lines = ["# Robustness: every format under the corruption suite", "", f"Regenerate: `{command}`", "",
             f"{MCA_DEFINITION}. Δ: the format minus Keras of the same run on the same images, in percentage points. "
             "Corruptions and parameters: `edgecifar/corruptions.py`.", ""]
    for run, entry in rob.items():
        res = entry["results"]
        keras = res.get("keras")
        lines += [f"## {entry['model']} (`{run}`)", "",
                  "| format | clean top-1 | mCA | Δ clean (pp) | Δ mCA (pp) | largest per-corruption Δ (pp) |",
                  "|---|---:|---:|---:|---:|---|"]
        for fmt, r in res.items():
            if keras is None or fmt == "keras":
                lines.append(f"| {fmt} | {100 * r['clean_accuracy']:.2f} % | **{100 * r['mca']:.2f} %** | – | – | – |")
                continue
            per = {c: 100 * (r["corruption_mean"][c] - keras["corruption_mean"][c]) for c in r["corruption_mean"]}
            worst = min(per, key=per.get)
            lines.append(f"| {fmt} | {100 * r['clean_accuracy']:.2f} % | **{100 * r['mca']:.2f} %** | "
                         f"{100 * (r['clean_accuracy'] - keras['clean_accuracy']):+.2f} | "
                         f"{100 * (r['mca'] - keras['mca']):+.2f} | {worst} {per[worst]:+.2f} |")
        if res:
            first = next(iter(res.values()))
            names = list(first["corruption_mean"])
            lines += ["", "Per corruption (mean over severities, top-1 %):", "",
                      "| format | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
            lines += [f"| {fmt} | " + " | ".join(f"{100 * r['corruption_mean'][c]:.2f}" for c in names) + " |"
                      for fmt, r in res.items()]
            lines.append("")
    return "\n".join(lines) + "\n"


def plot(rob: dict, path: Path) -> None:
    from ..plots import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * sum(len(e["results"]) for e in rob.values())), 4))
    labels, clean, mca = [], [], []
    for entry in rob.values():
        for fmt, r in entry["results"].items():
            labels.append(f"{entry['model']}\n{fmt}")
            clean.append(100 * r["clean_accuracy"])
            mca.append(100 * r["mca"])
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], clean, 0.4, label="clean top-1")
    ax.bar([x + 0.2 for x in xs], mca, 0.4, label="mCA (corrupted)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    ax.set_title("Clean top-1 against mean corruption accuracy, per format")
    fig.tight_layout()
    save_png(fig, path)


def write(rob: dict, out_dir: Path, command: str) -> list[Path]:
    paths = [out_dir / "robustness.md", out_dir / "robustness.json", out_dir / "robustness.png"]
    write_text(paths[0], markdown(rob, command))
    write_json(paths[1], {"command": command, "runs": rob})
    plot(rob, paths[2])
    return paths

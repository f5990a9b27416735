"""Seed reproduction table: one row per trained run, against the write-up's number.

    python benchmarks/training_table.py RUN [RUN ...] --out benchmarks/results/training.md

Copies each run's manifest.json, history.csv and curves.png (not the weights) into
benchmarks/results/training/<run name>/ and writes the markdown table, with the command that
made it at the top. When a run has been exported, its int8 artifacts' deltas are listed too;
multi-phase runs (seed 003) show the test accuracy after each phase. The analysis of shortfalls
and recipe choices lives beside it in training_notes.md (hand-written, never overwritten).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

from edgecifar import zoo
from edgecifar.files import write_text

_RECIPE_KEYS = ("optimizer", "optimizer_args", "batch_size", "phases", "kind")


def _is_zoo_recipe(manifest: dict) -> bool:
    """Did this run use the zoo's current recipe? Earlier choices and experiments stay in the table as evidence."""
    if manifest["model"] not in zoo.list_models():  # an experiment's own name (benchmarks/m1_dropout_experiment.py)
        return False
    current = json.loads(json.dumps(zoo.model_info(manifest["model"]).recipe.to_dict()))  # tuples → lists, as stored
    return all(current[k] == manifest["recipe"].get(k) for k in _RECIPE_KEYS)


def _export_deltas(run: Path) -> str:
    report = run / "export" / "export_report.json"
    if not report.is_file():
        return "not exported"
    data = json.loads(report.read_text())
    parts = []
    for art in data.get("artifacts", []):
        fmt = art.get("format", "")
        if fmt.endswith("int8") and art.get("delta_pp") is not None:
            parts.append(f"{fmt} {art['delta_pp']:+.2f} pp")
    return ", ".join(parts) or "no int8 artifact"


def row(run: Path) -> dict:
    m = json.loads((run / "manifest.json").read_text())
    metrics = m["metrics"]
    acc = 100 * metrics["test_accuracy"]
    doc = metrics.get("documented_test_accuracy")
    return {
        "model": m["model"],
        "run": run.name,
        "params": m["params"],
        "recipe": m["recipe"]["description"],
        "zoo_recipe": _is_zoo_recipe(m),
        "epochs": m["recipe"]["epochs"],
        "train_images": m["data"]["train_images"],
        "minutes": metrics.get("train_seconds_total", 0) / 60,
        "test_acc": acc,
        "phases": [100 * p["test_accuracy"] for _, p in sorted((metrics.get("phase_test_accuracy") or {}).items(),
                                                                key=lambda kv: int(kv[0]))],
        "test_images": metrics.get("test_images", 10000),
        "documented": doc,
        "diff": None if doc is None else acc - doc,
        "int8": _export_deltas(run),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/training.md"))
    ap.add_argument("--title", default="Seed reproduction on CIFAR-10")
    args = ap.parse_args(argv)
    runs = [r for r in args.runs if (r / "manifest.json").is_file()]
    if not runs:
        print("training_table: no finished run (a folder with manifest.json) among the arguments", file=sys.stderr)
        return 2
    rows = sorted((row(r) for r in runs), key=lambda r: r["model"])  # stable: a model's runs keep their order
    copies = args.out.parent / "training"
    for run in runs:
        dest = copies / run.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("manifest.json", "history.csv", "curves.png", "evaluation.json", "confusion.png"):
            if (run / name).is_file():
                shutil.copy2(run / name, dest / name)
    command = "python benchmarks/training_table.py " + " ".join(shlex.quote(str(r)) for r in args.runs) + f" --out {args.out}" + (f" --title {shlex.quote(args.title)}" if args.title != ap.get_default("title") else "")
    lines = [
        f"# {args.title}",
        "",
        f"Regenerate: `{command}`",
        "",
        "Each run trained with `edgecifar train MODEL` (documented recipe) on this 2-core CPU; validation is a stratified",
        "5,000-image slice held out of the 50,000 training images (rows with 50,000 train images: `--val-size 0`, no",
        "validation), the test set (10,000) is used once at the end (after each phase for multi-phase recipes, as their",
        "write-ups report).",
        "Wall time is the sum of epoch times and depends on what else the machine was doing. \"zoo recipe\": the run used",
        "the recipe `edgecifar train MODEL` runs today; the other rows are earlier choices and experiments, kept as evidence.",
        "",
        "| model | params | recipe | zoo recipe | epochs | train images | wall time | test top-1 | write-up | difference | int8 export |",
        "|---|---:|---|:---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        doc = f"{r['documented']:.2f} %" if r["documented"] is not None else "—"
        diff = f"{r['diff']:+.2f} pp" if r["diff"] is not None else "—"
        phases = " → ".join(f"{a:.2f} %" for a in r["phases"][:-1]) + " → " if len(r["phases"]) > 1 else ""
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['recipe']} | {'yes' if r['zoo_recipe'] else 'no'} | {r['epochs']} | {r['train_images']:,} | "
            f"{r['minutes']:.1f} min | {phases}{r['test_acc']:.2f} % ({r['test_images']:,}) | {doc} | {diff} | {r['int8']} |"
        )
    lines += ["", "Per-run manifest, history and curves: `training/<run>/`. Why a model falls short of its write-up, and how",
              "unstated recipe details were chosen: [training_notes.md](training_notes.md)."]
    write_text(args.out, "\n".join(lines) + "\n")  # atomic: a failed run never leaves half a report
    print(f"wrote {args.out} ({len(rows)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

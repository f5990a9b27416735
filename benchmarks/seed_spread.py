"""One recipe over several seeds: mean ± standard deviation of test top-1 (what "same seed, same result" leaves out).

    edgecifar train seed002_m1_cnn --seed 1      # and --seed 2; seed 0 is the README's main command
    python benchmarks/seed_spread.py runs/seed002_m1_cnn-A runs/seed002_m1_cnn-B runs/seed002_m1_cnn-C \
        --out benchmarks/results/seed_spread.md

A run reproduces bit for bit only on the same CPU kind with the same oneDNN setting
(benchmarks/results/reproducibility.md); across seeds, or across CPU kinds, this spread is what a
user should expect. The runs must share the model and the recipe and differ in seed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

from edgecifar.files import write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/seed_spread.md"))
    ap.add_argument("--note", help="A sentence under the table (e.g. what else shared the machine).")
    args = ap.parse_args()
    manifests = [(run, json.loads((run / "manifest.json").read_text())) for run in args.runs]
    first = manifests[0][1]
    for run, m in manifests:
        if (m["model"], m["recipe"]["description"]) != (first["model"], first["recipe"]["description"]):
            raise SystemExit(f"{run} is {m['model']} ({m['recipe']['description']}), not the same model and recipe as "
                             f"{args.runs[0]}")
    seeds = [m["data"]["seed"] for _, m in manifests]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"two runs share a seed ({seeds}); the spread needs one run per seed")
    acc = [100 * m["metrics"]["test_accuracy"] for _, m in manifests]
    lines = [f"# {first['model']}: test top-1 over {len(acc)} seeds", "",
             f"Regenerate: `python benchmarks/seed_spread.py {' '.join(str(r) for r in args.runs)} --out {args.out}"
             + (f" --note {shlex.quote(args.note)}" if args.note else "") + "`", "",
             f"Each run: `edgecifar train {first['model']} --seed S` ({first['recipe']['description']}), "
             f"{first['metrics']['test_images']:,} test images.", "",
             "| run | seed | test top-1 | training time | CPU | TF_ENABLE_ONEDNN_OPTS |", "|---|---:|---:|---:|---|---|"]
    for (run, m), a in zip(manifests, acc):
        mach = m.get("machine") or {}
        lines.append(f"| `{run.name}` | {m['data']['seed']} | {a:.2f} % | {m['metrics']['train_seconds_total'] / 60:.1f} min | "
                     f"{mach.get('cpu', 'not recorded')} | {mach.get('TF_ENABLE_ONEDNN_OPTS') or 'unset (CPU default)'} |")
    spread = statistics.stdev(acc) if len(acc) > 1 else 0.0
    lines += ["", f"**Mean ± sample standard deviation: {statistics.mean(acc):.2f} ± {spread:.2f} %** "
              f"(min {min(acc):.2f}, max {max(acc):.2f})."] + (["", args.note] if args.note else []) + [""]
    write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

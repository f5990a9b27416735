"""What is bit-reproducible: the same short training three times, twice with this CPU's default TensorFlow kernels and
once with oneDNN's custom ops switched the other way, each in a fresh process; weights hashed, test top-1 compared.

    python benchmarks/reproducibility.py --out benchmarks/results/reproducibility.md

Each run: `edgecifar train seed002_m1_cnn --epochs 2 --limit 5000 --samples 2000` (short on purpose: it shows where
results part, not a final accuracy). TF_ENABLE_ONEDNN_OPTS is what differs between CPU kinds: TensorFlow turns
oneDNN's custom ops on by default where the CPU has AVX-512 VNNI, AVX-512 BF16 or AMX (the Intel Xeon and the AMD EPYC
of our sessions) and off without them (the AVX2-only AMD); setting it reproduces the other side's kernels on the same
machine (not bit for bit the other CPU: its SIMD code differs too; measured: Intel and AMD EPYC, both oneDNN on, part).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgecifar import machine
from edgecifar.cli import command_line

ARGS = ["train", "seed002_m1_cnn", "--epochs", "2", "--limit", "5000", "--samples", "2000"]


def one_run(onednn: str | None, runs_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if onednn is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    proc = subprocess.run(command_line(*ARGS, "--runs-dir", runs_dir), env=env,
                          capture_output=True, text=True, check=True)
    run = next(runs_dir.iterdir())
    code = ("import hashlib, sys, numpy as np\nfrom edgecifar.quiet import import_tensorflow\nimport_tensorflow()\n"
            "from edgecifar import runs\nw = runs.load_model(sys.argv[1]).get_weights()\n"
            "print(hashlib.sha256(b''.join(np.ascontiguousarray(x).tobytes() for x in w)).hexdigest())")
    sha = subprocess.run([sys.executable, "-c", code, str(run / "model.keras")], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    manifest = json.loads((run / "manifest.json").read_text())
    return {"TF_ENABLE_ONEDNN_OPTS": onednn or "(unset: the CPU's default)", "test_top1": manifest["metrics"]["test_accuracy"],
            "weights_sha256": sha, "stdout_tail": proc.stdout.strip().splitlines()[-3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/reproducibility.md"))
    args = ap.parse_args()
    cpu, flags = machine.cpu_model(), machine.cpu_flags()
    default = "1" if "avx512_vnni" in flags or "amx_int8" in flags else "0"
    other = "0" if default == "1" else "1"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, setting in enumerate((None, None, other)):
            rows.append(one_run(setting, Path(tmp) / str(i)))
    same = rows[0]["weights_sha256"] == rows[1]["weights_sha256"]
    lines = ["# Reproducibility of training on one machine and across CPU kinds", "",
             f"Regenerate: `python benchmarks/reproducibility.py --out {args.out}`", "",
             f"Machine: {cpu}, {os.cpu_count()} cores ({'AVX-512 VNNI' if 'avx512_vnni' in flags else 'no VNNI'}); "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Each row is a fresh process running "
             f"`edgecifar {' '.join(ARGS)}`; TensorFlow's oneDNN default on this CPU: {'on' if default == '1' else 'off'}.", "",
             "| run | TF_ENABLE_ONEDNN_OPTS | test top-1 (2,000 images) | weights sha256 |", "|---|---|---:|---|"]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r['TF_ENABLE_ONEDNN_OPTS']} | {100 * r['test_top1']:.2f} % | `{r['weights_sha256'][:16]}` |")
    lines += ["", f"Runs 1 and 2 (same settings, same machine): weights {'bit-identical' if same else 'DIFFERENT'}. "
              f"Run 3 (oneDNN {'off' if other == '0' else 'on'}, as on a CPU {'without' if other == '0' else 'with'} those features): weights "
              f"{'identical' if rows[2]['weights_sha256'] == rows[0]['weights_sha256'] else 'different'}, "
              f"top-1 {100 * (rows[2]['test_top1'] - rows[0]['test_top1']):+.2f} pp. Different float summation orders "
              "change the first steps slightly and training amplifies it, so a run reproduces bit for bit only on the "
              "same kind of CPU with the same TensorFlow settings and library versions (constraints.txt).", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

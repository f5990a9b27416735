"""The bad-input and fault matrix: each case run as a user would, with its exit code, stderr lines and leftovers.

    python benchmarks/fault_matrix.py RUN --out benchmarks/results/fault_matrix.md

RUN is a finished run directory (model.keras + manifest.json) to export from; every case works in a fresh
temporary folder. A case passes when it exits 2 (bad input) or 1 (a failed job), prints exactly one stderr line
(no traceback) and leaves no new or changed file beyond what it is documented to keep. Disk-full cases mount a
256 KiB tmpfs and need root; they are reported as skipped otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgecifar.cli import command_line
from edgecifar.files import write_text


def cli(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(command_line(*args), cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def tmpfs(path: Path) -> bool:
    path.mkdir()
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)],
                                               capture_output=True).returncode == 0


def cases(run: Path, work: Path):
    """(name, argv, expected exit, prepare) — prepare(work) runs before the command; False from it skips the case."""
    copy = lambda: shutil.copytree(run, work / "run", ignore=shutil.ignore_patterns("export"), dirs_exist_ok=True)
    photos = work / "photos"

    def photo_dir(_):
        import cv2

        photos.mkdir(exist_ok=True)
        cv2.imwrite(str(photos / "a.png"), np.full((32, 32, 3), 90, np.uint8))

    def full_disk(w):
        copy()
        return tmpfs(w / "full")  # False: no tmpfs here (not root), the case is skipped

    def corrupt_state(_):
        copy()
        (work / "run2" / "checkpoint").mkdir(parents=True)
        shutil.copy2(work / "run" / "model.keras", work / "run2" / "checkpoint" / "last.keras")
        (work / "run2" / "checkpoint" / "state.json").write_text("{not json")

    def bad_pickle(_):
        import _codecs
        import pickle

        class BadCodec:  # an allowed global, called so that it raises LookupError
            def __reduce__(self):
                return (_codecs.encode, ("a", "no-such-codec"))

        data = work / "data"
        data.mkdir()
        src = Path(os.environ["EDGECIFAR_DATA"])
        for f in src.iterdir():
            os.symlink(f, data / f.name)
        (data / "test_batch").unlink()
        (data / "test_batch").write_bytes(pickle.dumps({b"data": BadCodec(), b"labels": []}, protocol=2))

    yield "train --lr nan", ["train", "--lr", "nan", "--runs-dir", work / "runs"], 2, None
    yield "train --val-size 50000", ["train", "--val-size", "50000", "--runs-dir", work / "runs"], 2, None
    yield "train --batch-size 0", ["train", "--batch-size", "0", "--runs-dir", work / "runs"], 2, None
    yield "train --seed -1", ["train", "--seed", "-1", "--runs-dir", work / "runs"], 2, None
    yield "train unknown model", ["train", "resnet9000"], 2, None
    yield "train --resume, corrupt state.json", ["train", "--epochs", "2", "--limit", "256", "--run-dir", work / "run2"], 2, corrupt_state
    yield "evaluate, crafted pickle (LookupError)", ["evaluate", work / "run", "--data-dir", work / "data"], 2, lambda w: (copy(), bad_pickle(w))
    yield "export, missing run", ["export", work / "nope"], 2, None
    yield "export --calib-samples 0", ["export", work / "run", "--calib-samples", "0"], 2, lambda _: copy()
    yield "export --formats tflite_int4", ["export", work / "run", "--formats", "tflite_int4"], 2, lambda _: copy()
    yield "benchmark --floor 0.6 (a fraction)", ["benchmark", work / "run", "--floor", "0.6"], 2, lambda _: copy()
    yield "run, missing model", ["run", work / "nope.tflite", "--source", photos], 2, photo_dir
    yield "run --serve 0.0.0.0 without token", ["run", "--source", photos, "--serve", "0.0.0.0:0"], 2, photo_dir
    yield "run --serve [::] without token", ["run", "--source", photos, "--serve", "[::]:0"], 2, photo_dir
    yield "run --serve 0.0.0.0 --token ''", ["run", "--source", photos, "--serve", "0.0.0.0:0", "--token", ""], 2, photo_dir
    yield "run --show without display", ["run", "--source", photos, "--show"], 2, photo_dir
    yield "export to a full disk (256 KiB tmpfs)", ["export", work / "run", "--formats", "tflite_float32", "--samples", "100",
                                                    "--out", work / "full"], 1, full_disk


def case_names() -> list[str]:
    """Every case's name, in matrix order (tests/test_bad_input.py parametrises over them)."""
    return [name for name, *_ in cases(Path("/nonexistent"), Path("/nonexistent"))]


def run_case(run: Path, name: str) -> tuple[str, str, str, str, str]:
    """Run case `name` against `run` in a fresh temporary folder: (name, exit, stderr lines, leftovers, verdict).
    The verdict starts with "ok", "FAIL" or "skipped"; EDGECIFAR_DATA must be absolute (the case runs elsewhere)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _, argv, expected, prepare = next(c for c in cases(run, work) if c[0] == name)
        if prepare and prepare(work) is False:
            return name, "", "", "", "skipped (mounting a tmpfs needs root)"
        before = snapshot(work)
        try:
            res = cli(*argv, cwd=work, env={"DISPLAY": ""} if "--show" in argv else None)
        finally:
            if os.path.ismount(work / "full"):
                subprocess.run(["umount", str(work / "full")], capture_output=True)
        after = snapshot(work)
        new = sorted(set(after) - set(before))
        changed = sorted(k for k in before if k in after and before[k] != after[k])
        leftovers = [p for p in new if not p.endswith(("export_report.json", "export_report.md"))] + changed
        lines = [line.replace(str(work), "WORK") for line in res.stderr.strip().splitlines()]  # no machine paths
        ok = res.returncode == expected and len(lines) == 1 and "Traceback" not in res.stderr and not leftovers
        return (name, str(res.returncode), str(len(lines)), ", ".join(leftovers) or "none",
                ("ok" if ok else "FAIL") + f": {lines[-1][:110] if lines else ''}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fault_matrix.md"))
    args = ap.parse_args()
    run = args.run.resolve()
    if os.environ.get("EDGECIFAR_DATA"):  # every case runs in its own temporary folder: a relative path would not resolve
        os.environ["EDGECIFAR_DATA"] = str(Path(os.environ["EDGECIFAR_DATA"]).resolve())
    rows = [run_case(run, name) for name in case_names()]
    md = ["# Bad-input and fault matrix", "", f"Regenerate: `python benchmarks/fault_matrix.py {args.run} --out {args.out}`", "",
          "Each case runs `edgecifar ...` in a fresh temporary folder (WORK below). Expected: exit 2 for bad input, 1 for a failed job; "
          "exactly one stderr line; no traceback; no leftover or changed file (a failed export keeps writing its report).", "",
          "| case | exit | stderr lines | leftovers | verdict: the line |", "|---|---:|---:|---|---|"]
    md += [f"| {' | '.join(r)} |" for r in rows]
    write_text(args.out, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

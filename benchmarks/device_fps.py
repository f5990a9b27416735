"""End-to-end FPS and per-stage latency of `edgecifar run` on a 640x480 video, at 1 and 2 threads.

    python benchmarks/device_fps.py MODEL [MODEL ...] --out benchmarks/results/device_fps.md

The video holds CIFAR-10 test images upscaled into 640x480 frames (mp4v, what a USB camera pipeline
decodes); each model runs through the real runner (`edgecifar run --json`) in its own process, a few
times per thread setting, and the median run is reported. Per-stage numbers are the median / p90 of
the per-frame milliseconds the runner prints. Absolute numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgecifar.cli import command_line
from edgecifar.files import write_text
from edgecifar.machine import load_note

STAGES = ("capture", "preprocess", "inference", "postprocess")


def make_video(path: Path, frames: int, data_dir=None) -> Path:
    from edgecifar import data

    test = data.load(data_dir, splits=("test",)).test
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    for rgb in test.images[:frames]:
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[:, 80:560] = cv2.resize(rgb[:, :, ::-1], (480, 480), interpolation=cv2.INTER_NEAREST)
        writer.write(frame)
    writer.release()
    return path


def run_once(model: Path, video: Path, threads: int) -> dict:
    cmd = command_line("run", model, "--source", video, "--threads", threads, "--json")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"device_fps: {model.name} failed: {res.stderr.strip().splitlines()[-1]}")
    records = [json.loads(line) for line in res.stdout.splitlines()]
    fps = float(re.search(r"end-to-end ([0-9.]+) FPS", res.stderr).group(1))
    ms = {s: np.array([r["ms"][s] for r in records]) for s in STAGES}
    return {"fps": fps, "frames": len(records),
            **{f"{s}_p50": float(np.median(v)) for s, v in ms.items()},
            **{f"{s}_p90": float(np.percentile(v, 90)) for s, v in ms.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/device_fps.md"))
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    load0 = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "cifar_640x480.mp4", args.frames)
        for model in args.models:
            for t in threads:
                runs = []
                for k in range(args.repeats):
                    runs.append(run_once(model, video, t))
                    print(f"{model.name} threads={t} run {k + 1}/{args.repeats}: {runs[-1]['fps']:.1f} FPS", flush=True)
                median = sorted(runs, key=lambda r: r["fps"])[len(runs) // 2]
                rows.append({"model": model.name, "threads": t, **median, "fps_all": [r["fps"] for r in runs]})
    load1 = os.getloadavg()[0]
    command = "python benchmarks/device_fps.py " + " ".join(shlex.quote(str(m)) for m in args.models) + \
        f" --out {args.out} --frames {args.frames} --repeats {args.repeats} --threads {args.threads}"
    lines = [
        "# `edgecifar run` on a 640x480 video: end-to-end FPS and per-stage latency", "",
        f"Regenerate: `{command}`", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {load_note(load0, load1)}; a Raspberry Pi is several "
        "times slower.", "",
        f"Video: {args.frames} CIFAR-10 test images upscaled into 640x480 mp4v frames. Each row is the median of "
        f"{args.repeats} runs by FPS (all runs listed); stage times are median / p90 ms per frame.", "",
        "| model | threads | end-to-end FPS | runs (FPS) | capture | preprocess | inference | postprocess |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        stages = " | ".join(f"{r[s + '_p50']:.2f} / {r[s + '_p90']:.2f}" for s in STAGES)
        lines.append(f"| {r['model']} | {r['threads']} | {r['fps']:.0f} | {', '.join(f'{f:.0f}' for f in r['fps_all'])} | {stages} |")
    write_text(args.out, "\n".join(lines) + "\n")  # atomic: a failed run never leaves half a report
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

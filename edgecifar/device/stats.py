"""Per-stage latency and end-to-end FPS of a run: what the summary prints at the end and on Ctrl-C.

Stages (milliseconds per frame):
    capture      source.read(): waiting for the camera, decoding a video frame or an image file
    preprocess   center-crop, INTER_AREA resize, BGR→RGB, input quantization
    inference    the runtime call
    postprocess  output dequantization, smoothing, top-k
End-to-end FPS counts everything, including drawing, saving, showing and printing.
"""

from __future__ import annotations

import time

import numpy as np

STAGES = ("capture", "preprocess", "inference", "postprocess")


class RunStats:
    def __init__(self, fps_window: float = 0.9):
        self.times: dict[str, list[float]] = {s: [] for s in STAGES}
        self.frames = 0          # frames classified
        self.failed = 0          # frames that could not be decoded, skipped
        self.failed_names: list[str] = []
        self.started = time.perf_counter()
        self.first_frame_at: float | None = None
        self.stopped = None
        self._fps_window = fps_window
        self._last = None
        self.live_fps = 0.0      # exponential moving average of instantaneous FPS: for the overlay and status line

    def add(self, ms: dict[str, float]) -> None:
        now = time.perf_counter()
        for s in STAGES:
            self.times[s].append(ms[s])
        self.frames += 1
        if self.first_frame_at is None:
            self.first_frame_at = now - ms["capture"] / 1000
        if self._last is not None and now > self._last:
            inst = 1.0 / (now - self._last)
            self.live_fps = inst if self.live_fps == 0 else self._fps_window * self.live_fps + (1 - self._fps_window) * inst
        self._last = now

    def fail(self, name: str | None) -> None:
        self.failed += 1
        if name and len(self.failed_names) < 20:
            self.failed_names.append(name)

    def stop(self) -> None:
        if self.stopped is None:
            self.stopped = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Wall time from the first frame's capture to the end (model loading and source opening excluded)."""
        end = self.stopped or time.perf_counter()
        start = self.first_frame_at if self.first_frame_at is not None else self.started
        return max(end - start, 1e-9)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.frames else 0.0

    def summary(self) -> dict:
        stages = {}
        for s in STAGES:
            arr = np.asarray(self.times[s], dtype=np.float64)
            stages[s] = ({"median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)), "mean_ms": float(arr.mean())}
                         if arr.size else None)
        return {"frames": self.frames, "failed": self.failed, "failed_names": list(self.failed_names),
                "seconds": round(self.seconds, 3), "fps": round(self.fps, 2), "stages": stages}

    def format_summary(self, reason: str) -> str:
        s = self.summary()
        head = f"{reason}: {s['frames']} frames in {s['seconds']:.2f} s, end-to-end {s['fps']:.1f} FPS"
        if s["failed"]:
            head += f", {s['failed']} undecodable frame(s) skipped"
        lines = [head]
        if s["failed_names"]:
            lines.append("  skipped: " + ", ".join(s["failed_names"]) + (" ..." if s["failed"] > len(s["failed_names"]) else ""))
        if s["frames"]:
            lines.append(f"  {'stage':<12} {'median ms':>10} {'p90 ms':>10}")
            for name, v in s["stages"].items():
                lines.append(f"  {name:<12} {v['median_ms']:>10.2f} {v['p90_ms']:>10.2f}")
        return "\n".join(lines)

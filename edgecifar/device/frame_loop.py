"""The live loop of `edgecifar run`: frames from a Source → Classifier → top-k → outputs.

One frame at a time, timed per stage (stats.STAGES):
    capture → preprocess (crop, INTER_AREA resize, BGR→RGB, Classifier.quantize_input: the artifact's color
    order and input quantization) → inference
    → postprocess (dequantize, optional EMA smoothing, top-k) → outputs
Outputs: a JSON line or a status line per frame, and optionally an annotated video (--save),
a window (--show) and a live browser view (--serve, edgecifar.device.serve).

Stopping: end of stream, --max-frames, --duration, Ctrl-C (SIGINT) or SIGTERM (systemd) — all
print the summary; a signal takes effect between frames (a second one at once). A frame that fails to decode is counted and skipped.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import OWNER_PATTERN, dumps, owner_tag, sweep_dead
from .overlay import annotate
from .preprocess import frame_to_rgb
from .stats import RunStats

VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
STATUS_INTERVAL_TTY = 0.2      # seconds between carriage-return updates on a terminal
STATUS_INTERVAL_PLAIN = 5.0    # seconds between status lines in a log (systemd journal, a pipe)


@dataclass
class RunOptions:
    top_k: int = 3
    smooth: float | None = None     # EMA weight of the past: p = smooth * p_prev + (1 - smooth) * p_frame
    max_frames: int | None = None
    duration: float | None = None
    json_lines: bool = False
    save: Path | None = None
    show: bool = False
    serve: tuple[str, int] | None = None
    token: str | None = None


def import_serve():
    """edgecifar.device.serve (the --serve live view), imported only when asked for."""
    try:
        from . import serve
    except ImportError as e:
        if e.name and e.name.startswith("edgecifar"):
            raise UserError("--serve is not available in this edgecifar build (edgecifar.device.serve is missing)") from None
        raise UserError(f"--serve needs {e.name}; pip install 'edgecifar[device]'") from None
    return serve


def check_display() -> None:
    """--show needs a display: cv2.imshow without one aborts the whole process (no exception to catch)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("--show needs a display but neither DISPLAY nor WAYLAND_DISPLAY is set (ssh or a service?); "
                        "use --save out.mp4 or --serve 8080 instead")
    import cv2

    build = cv2.getBuildInformation()
    gui = build.split("GUI:", 1)[1].splitlines()[0].strip() if "GUI:" in build else ""
    if gui.upper() in ("", "NONE", "NO"):
        raise UserError("--show needs an OpenCV with a GUI, but this one is headless (opencv-python-headless); "
                        "pip install opencv-python (instead of the headless wheel), or use --save / --serve")


class VideoSink:
    """--save: annotated frames to a video file, written under a temporary name and renamed when the run ends."""

    def __init__(self, path: Path, fps: float):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in VIDEO_FOURCC:
            raise UserError(f"--save {self.path}: use one of {', '.join(sorted(VIDEO_FOURCC))}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"--save {self.path}: cannot create {self.path.parent} ({e.strerror})") from None
        if not os.access(self.path.parent, os.W_OK):
            raise UserError(f"--save {self.path}: {self.path.parent} is not writable")
        # The temporary name keeps the extension: OpenCV picks the container from it.
        self.tmp = self.path.with_name(f".{self.path.stem}.{owner_tag()}.partial{ext}")
        # A run killed with -9 leaves its .partial file: clear those of dead processes.
        sweep_dead(self.path.parent, rf"^\.{re.escape(self.path.stem)}\.{OWNER_PATTERN}\.partial")
        self.fourcc = VIDEO_FOURCC[ext]
        self.fps = fps
        self._writer = None
        self._size = None

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            h, w = frame.shape[:2]
            self._size = (w, h)
            # A failing frame write (full disk) is checked once at the end (_playable), not warned about per frame.
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self._size)
            if not self._writer.isOpened():
                self._writer = None
                self.tmp.unlink(missing_ok=True)
                raise UserError(f"--save {self.path}: OpenCV cannot write {self.fourcc} video here; try --save out.avi")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)  # images of a folder differ in size
        self._writer.write(frame)

    def finish(self, keep: bool) -> Path | None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if keep and self.tmp.exists():
            if not _playable(self.tmp):
                # OpenCV's writer fails silently (a full disk leaves a file without its index): never call it saved.
                self.tmp.unlink(missing_ok=True)
                raise UserError(f"--save {self.path}: the video could not be written completely (disk full?); "
                                "nothing was saved, free some space or save elsewhere")
            os.replace(self.tmp, self.path)
            return self.path
        self.tmp.unlink(missing_ok=True)
        return None


def _playable(path: Path) -> bool:
    """Whether OpenCV can open the written video and read its first frame."""
    import cv2

    from ..quiet import native_stderr

    with native_stderr():  # FFmpeg prints "moov atom not found" on a truncated file: the caller says it in one line
        cap = cv2.VideoCapture(str(path))
        try:
            return bool(cap.isOpened() and cap.read()[0])
        finally:
            cap.release()


class Window:
    """--show: an OpenCV window; q or Esc or closing it stops the run."""

    NAME = "edgecifar"

    def __init__(self):
        check_display()

    def show(self, frame: np.ndarray) -> bool:
        import cv2

        cv2.imshow(self.NAME, frame)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        return cv2.getWindowProperty(self.NAME, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        import cv2

        cv2.destroyAllWindows()


class StatusLine:
    """Human output: one line rewritten in place on a terminal, a line every few seconds in a log."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = STATUS_INTERVAL_TTY if self.tty else STATUS_INTERVAL_PLAIN
        self._last = -1e9
        self._width = 0

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self.tty:
            pad = max(0, self._width - len(text))
            self._width = len(text)
            self.stream.write("\r" + text + " " * pad)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        """A permanent line (over any in-place status on a terminal)."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


def top_k(probs: np.ndarray, k: int, class_names: list[str]) -> list[tuple[int, str, float]]:
    idx = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), class_names[i], float(probs[i])) for i in idx]


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM (systemd's `stop`) ask the loop to stop at the next frame boundary, so every
    frame that was printed is also saved and published. A second signal stops at once, even inside a frame
    (e.g. a network stream that hangs in read())."""

    NAMES = {signal.SIGINT: "stopped by Ctrl-C", signal.SIGTERM: "stopped by SIGTERM"}

    def __init__(self):
        self.reason: str | None = None
        self._previous: dict = {}

    def _handler(self, signum, frame):
        if self.reason is not None:
            raise KeyboardInterrupt
        self.reason = self.NAMES.get(signum, f"stopped by signal {signum}")

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            self._previous = {sig: signal.signal(sig, self._handler) for sig in self.NAMES}

    def ignore(self) -> None:
        """During cleanup (milliseconds): a further Ctrl-C would lose the video and the summary."""
        if self._previous:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def run(clf, source, opts: RunOptions, out=None, err=None) -> RunStats:
    """Classify every frame of `source` with `clf` until a stop condition; returns the stats (already printed)."""
    out = out or sys.stdout
    err = err or sys.stderr
    info_stream = err if opts.json_lines else out  # keep stdout pure JSON lines for scripts
    k = max(1, min(opts.top_k, len(clf.class_names)))
    sink, window, server = _open_outputs(clf, source, opts, k, info_stream)

    # One untimed warm-up call: the first invocation allocates and packs weights (XNNPACK) and would skew the stats.
    clf.infer(clf.quantize_input(np.zeros((1, *clf.input_size, 3), np.uint8)))
    status = None if opts.json_lines else StatusLine(out)
    stats = RunStats()
    classify = FrameClassifier(clf, k, opts.smooth)
    position = -1          # index of the frame in the source, undecodable ones included
    reason = "end of stream"
    keep_video = True
    stop = StopRequest()
    stop.install()
    deadline = None
    try:
        while True:
            t0 = time.perf_counter()
            if deadline is None and opts.duration is not None:
                deadline = t0 + opts.duration
            reason = _stop_reason(opts, stats, stop, deadline, t0)
            if reason:
                break
            ok, frame, name = source.read()
            t1 = time.perf_counter()
            if not ok:
                if name is None:
                    reason = "end of stream"
                    break
                position += 1
                stats.fail(name)
                print(f"warning: skipped {name}: cannot decode it", file=err, flush=True)
                continue
            position += 1
            top, ms = classify(frame)
            ms["capture"] = (t1 - t0) * 1e3
            stats.add(ms)
            record = frame_record(position, name, top, ms)
            _print_frame(out, status, opts.json_lines, record, top, stats)
            if sink or window or server:
                annotated = annotate(frame, [(lb, c) for _, lb, c in top], stats.live_fps, note=name)
                if sink:
                    sink.write(annotated)
                if server:
                    server.publish(annotated, {**record, "fps": round(stats.live_fps, 2)})
                if window and not window.show(annotated):
                    reason = "window closed"
                    break
    except KeyboardInterrupt:
        reason = stop.reason or "stopped by Ctrl-C"
    except BrokenPipeError:
        # `edgecifar run ... --json | head`: the reader is gone; stop like end of stream.
        reason = "output closed"
        _silence_stdout()
    except BaseException:
        keep_video = False
        raise
    finally:
        stats.stop()
        stop.ignore()
        if status:
            status.end()
        saved = sink.finish(keep_video and stats.frames > 0) if sink else None
        if window:
            window.close()
        if server:
            server.close()
        summary = stats.format_summary(reason if keep_video else "stopped by an error")
        print(summary, file=info_stream, flush=True)
        if saved:
            print(f"saved {saved}", file=info_stream, flush=True)
        stop.restore()
    if reason == "end of stream" and stats.frames == 0:
        what = f"none of its {stats.failed} frame(s) could be decoded" if stats.failed else "it delivered no frame"
        raise UserError(f"{source.description}: {what}; check that it is a readable image or video")
    return stats


class FrameClassifier:
    """One BGR camera frame → (top-k [(index, label, confidence)], {stage: ms}), as the export check
    classifies test images: the runner's preprocessing, the artifact's own input quantization."""

    def __init__(self, clf, k: int, smooth: float | None):
        self.clf, self.k, self.smooth, self.smoothed = clf, k, smooth, None

    def __call__(self, frame):
        clf = self.clf
        t1 = time.perf_counter()
        rgb = frame_to_rgb(frame, clf.input_size, "BGR")
        x = clf.quantize_input(rgb[None])  # the artifact's color order is applied there, for every caller alike
        t2 = time.perf_counter()
        raw = clf.infer(x)
        t3 = time.perf_counter()
        probs = clf.dequantize_output(raw)[0]
        if self.smooth:
            self.smoothed = probs if self.smoothed is None else self.smooth * self.smoothed + (1 - self.smooth) * probs
            probs = self.smoothed
        top = top_k(probs, self.k, clf.class_names)
        t4 = time.perf_counter()
        return top, {"preprocess": (t2 - t1) * 1e3, "inference": (t3 - t2) * 1e3, "postprocess": (t4 - t3) * 1e3}


def _open_outputs(clf, source, opts: RunOptions, k: int, info_stream):
    """(video sink, window, live server): each None unless asked for."""
    sink = VideoSink(opts.save, source.fps or 15.0) if opts.save else None
    window = Window() if opts.show else None
    server = None
    if opts.serve:
        host, port = opts.serve
        server = import_serve().LiveServer(host, port, opts.token, {"model": clf.path.name, "format": clf.meta.get("format"),
                                                      "backend": clf.runtime, "source": source.description,
                                                      "classes": list(clf.class_names), "top_k": k})
        server.start()
        print(f"live view: {server.url}", file=info_stream, flush=True)
    return sink, window, server


def _stop_reason(opts: RunOptions, stats: RunStats, stop, deadline, now) -> str | None:
    """Why the loop stops before reading another frame (a signal, --max-frames, --duration), or None."""
    if stop.reason:
        return stop.reason
    if opts.max_frames is not None and stats.frames >= opts.max_frames:
        return f"--max-frames {opts.max_frames} reached"
    if deadline is not None and now >= deadline:
        return f"--duration {opts.duration:g} s reached"
    return None


def frame_record(position: int, name, top, ms: dict) -> dict:
    """One frame's --json line: position, file (photos), Unix time, top-k, per-stage milliseconds."""
    record = {"frame": position}
    if name is not None:
        record["file"] = name
    record["timestamp"] = round(time.time(), 3)  # Unix time, seconds
    record["top"] = [{"label": label, "index": i, "confidence": round(conf, 4)} for i, label, conf in top]
    order = ("capture", "preprocess", "inference", "postprocess")
    record["ms"] = {key: round(ms[key], 3) for key in order}
    return record


def _print_frame(out, status, json_lines: bool, record: dict, top, stats: RunStats) -> None:
    if json_lines:
        out.write(dumps(record) + "\n")
        out.flush()
        return
    labels = "  ".join(f"{lb} {100 * c:.0f}%" for _, lb, c in top)
    if "file" in record:
        # Photos: every file gets its own line (a camera gets a throttled status line instead).
        status.line(f"{record['file']}: {labels}")
    else:
        status.update(f"frame {record['frame']}: {labels}  | {stats.live_fps:.1f} FPS, "
                      f"inference {record['ms']['inference']:.1f} ms")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass

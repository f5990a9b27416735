"""What live-view viewers cost `edgecifar run`: its FPS with 0 vs 5 MJPEG stream clients, interleaved.

    python benchmarks/live_view_cost.py edgecifar/assets/default_int8.tflite --repeats 5 \\
        --out benchmarks/results/live_view_cost_amd_zen4.md

The live-view issue's target: five viewers of `edgecifar run --serve` cost the runner at most 10 % of its FPS.

How one measurement goes (`measure`):
    1. `edgecifar run MODEL --source VIDEO --json --threads 1 --serve 127.0.0.1:0` classifies a long 640x480 video
       of CIFAR-10 test images; its JSON lines (frame number, timestamp) go to a file, read live.
    2. After WARMUP_FRAMES frames, phases of PHASE_FRAMES frames alternate: no client, CLIENTS clients, no client...
       Each client reads /stream.mjpg part by part, as a browser <img> does.
    3. Each phase's FPS comes from the runner's own timestamps, leaving out SETTLE_FRAMES at its start (clients
       connecting or hanging up). Each client phase is divided by the mean of the no-client phases on either side,
       so drift in the machine's load cancels; the cost is 1 - the median of those ratios.
    4. Where the user may (root or CAP_SYS_NICE), the runner and the clients run under SCHED_FIFO, so other processes
       on a shared machine cannot decide the result, while the serving threads still compete with inference as on a
       device.
A measurement is refused (MeasurementError) when the clients did not really load the server: each must receive at
least half of the stream's rate cap (12 fps).

The repeats are separate runner processes; the report gives each one's cost and their median, against the target.
tests/test_live_view.py uses the same code, on a tiny model, with a looser bound: timed targets live here.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edgecifar.cli import command_line
from edgecifar.device.serve import DEFAULT_MAX_FPS  # the stream's JPEG rate cap

# --- knobs ---------------------------------------------------------------------------------------
TARGET_COST = 0.10        # the live-view issue: five viewers cost at most 10 % FPS
CLIENTS = 5
WARMUP_FRAMES = 500
PHASE_FRAMES = 1000
SETTLE_FRAMES = 60        # frames at a phase start left out: clients connecting or hanging up
CLIENT_PAIRS = 8          # client phases per measurement (each between two no-client phases)
REALTIME_PRIORITY = 10    # SCHED_FIFO priority of the runner and the clients
SEGMENT_IMAGES = 20       # CIFAR-10 test images in one video segment
VIDEO_HOLD = 120          # frames per image: at several hundred FPS the label changes a few times a second


class MeasurementError(RuntimeError):
    """The measurement itself went wrong (runner stopped, clients idle): no cost can be read from it. `code`: the exit
    status main() returns, the runner's own where it refused its input (2: a bad model file)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def make_long_video(folder: Path, images: np.ndarray, frames: int, hold: int = VIDEO_HOLD) -> Path:
    """A 640x480 camera-like video of at least `frames` frames, each image held `hold` frames. MPEG-TS is made to be
    concatenated, so one encoded segment repeated byte for byte is a valid long video: minutes of frames for seconds
    of encoding."""
    import cv2

    from edgecifar.corruptions import camera_frame

    segment = folder / "segment.ts"
    writer = cv2.VideoWriter(str(segment), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    if not writer.isOpened():
        raise MeasurementError("OpenCV cannot write an mp4v video here")
    for img in images[:SEGMENT_IMAGES]:
        frame = camera_frame(img, 480)
        for _ in range(hold):
            writer.write(frame)
    writer.release()
    per_segment = min(len(images), SEGMENT_IMAGES) * hold
    path = folder / "cifar_long.ts"
    path.write_bytes(segment.read_bytes() * -(-frames // per_segment))
    return path


def frames_needed(pairs: int = CLIENT_PAIRS) -> int:
    """Video frames for `pairs` client phases: warm-up, 2 * pairs + 1 phases, and a margin for the last phase."""
    return WARMUP_FRAMES + (2 * pairs + 1) * PHASE_FRAMES + PHASE_FRAMES


def realtime_allowed() -> bool:
    """SCHED_FIFO needs root or CAP_SYS_NICE (and the chrt tool)."""
    try:
        return subprocess.run(["chrt", "--fifo", str(REALTIME_PRIORITY), "true"], capture_output=True).returncode == 0
    except OSError:
        return False


class StreamClient(threading.Thread):
    """Reads /stream.mjpg part by part, like a browser <img>; `delay` seconds between parts makes it a slow client."""

    def __init__(self, port: int, query: str = "", delay: float = 0.0, realtime: bool = False):
        super().__init__(daemon=True)
        self.port, self.query, self.delay, self.realtime = port, query, delay, realtime
        self.frames, self.last_jpeg, self.error = 0, None, None
        self.connected = threading.Event()
        self._halt = threading.Event()
        self._sock = None

    def run(self):
        if self.realtime:  # this thread only (Linux): a starved client would pull fewer frames and flatter the server
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.connect()
            self._sock = conn.sock  # http.client hands the socket to the response and forgets it
            conn.request("GET", "/stream.mjpg" + self.query)
            resp = conn.getresponse()
            if resp.status != 200:
                raise MeasurementError(f"/stream.mjpg answered {resp.status}")
            boundary = re.search(r"boundary=(\S+)", resp.getheader("Content-Type")).group(1).encode()
            self.connected.set()
            while not self._halt.is_set():
                line = resp.fp.readline()
                if not line:
                    break
                if line.strip() != b"--" + boundary:
                    continue
                length = None
                while (header := resp.fp.readline().strip()):
                    name, _, value = header.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                self.last_jpeg = resp.fp.read(length)
                self.frames += 1
                if self.delay:
                    self._halt.wait(self.delay)
        except Exception as e:  # noqa: BLE001 - reported to the caller through .error
            if not self._halt.is_set():
                self.error = e
        finally:
            self.connected.set()
            conn.close()

    def stop(self):
        """Hang up now, like a closed browser tab (without waiting for the next frame)."""
        self._halt.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.join(timeout=10)


class Runner:
    """`edgecifar run MODEL --source VIDEO --json --threads 1 --serve 127.0.0.1:0 EXTRA` in a subprocess, read live.

    Its JSON lines go to a file, not a pipe: a reader that reads a pipe slowly would throttle the runner it measures."""

    def __init__(self, model, video, out_dir: Path, *extra, realtime=False):
        cmd = command_line("run", Path(model).resolve(), "--source", Path(video).name, "--json", "--threads", "1",
                           "--serve", "127.0.0.1:0", *extra)
        if realtime:
            cmd = ["chrt", "--fifo", str(REALTIME_PRIORITY), *cmd]
        self.out_path = out_dir / f"runner-{time.monotonic_ns()}.jsonl"
        self._out = open(self.out_path, "wb")
        # Run beside the video and name it relatively: the page then shows "video cifar_long.ts", not a temp path.
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.PIPE, text=True, cwd=Path(video).parent,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.records, self.stderr = [], []
        self.url = None
        self._url_seen = threading.Event()
        self._tail = open(self.out_path, "rb")
        self._partial = b""
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line)
            m = re.search(r"live view: (http://\S+)", line)
            if m:
                self.url = m.group(1)
                self._url_seen.set()
        self._url_seen.set()

    def poll_records(self) -> list:
        data = self._partial + self._tail.read()
        *lines, self._partial = data.split(b"\n")
        self.records.extend(json.loads(line) for line in lines if line.strip())
        return self.records

    @property
    def port(self) -> int:
        return int(re.match(r"http://[^/]+:(\d+)/", self.url).group(1))

    @property
    def frame(self) -> int:
        records = self.poll_records()
        return records[-1]["frame"] if records else -1

    def wait_url(self, timeout=60) -> str:
        if not (self._url_seen.wait(timeout) and self.url):
            code = self.proc.wait(timeout=10) if self._url_seen.is_set() else None  # stderr closed: the runner ended
            last = self.stderr[-1].strip() if self.stderr else "(nothing on stderr)"
            # The runner's own status where it refused its input (2); 1 for a hang, a crash or a signal.
            raise MeasurementError(f"the runner printed no 'live view:' line: {last}", 2 if code == 2 else 1)
        return self.url

    def wait_frame(self, n, timeout=60) -> bool:
        end = time.monotonic() + timeout
        while self.frame < n and self.proc.poll() is None and time.monotonic() < end:
            time.sleep(0.01)
        return self.frame >= n

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)
        self._out.close()
        self.poll_records()
        self._tail.close()


def measure(model, video: Path, out_dir: Path, pairs: int = CLIENT_PAIRS, realtime: bool | None = None) -> dict:
    """One runner process, `pairs` client phases between no-client phases (see the module docstring).

    Returns {"realtime", "phases": [{"kind", "start", "end", "fps", "client_frames"}], "ratios", "cost"}."""
    realtime = realtime_allowed() if realtime is None else realtime
    runner = Runner(model, video, out_dir, realtime=realtime)
    phases = []
    try:
        runner.wait_url()
        if not runner.wait_frame(WARMUP_FRAMES):
            raise MeasurementError(f"runner stopped early: {''.join(runner.stderr[-5:])}")
        kind = "none"
        while len(phases) < 2 * pairs + 1:
            start = runner.frame
            clients = [StreamClient(runner.port, realtime=realtime) for _ in range(CLIENTS if kind == "clients" else 0)]
            for c in clients:
                c.start()
            ok = runner.wait_frame(start + PHASE_FRAMES)
            end = runner.frame
            for c in clients:
                c.stop()
            if not ok:
                raise MeasurementError(f"runner stopped in a phase (video too short?): {''.join(runner.stderr[-5:])}")
            errors = [c.error for c in clients if c.error is not None]
            if errors:
                raise MeasurementError(f"a stream client failed: {errors[0]!r}")
            phases.append({"kind": kind, "start": start, "end": end, "client_frames": [c.frames for c in clients]})
            kind = "clients" if kind == "none" else "none"
    finally:
        runner.close()

    times = {r["frame"]: r["timestamp"] for r in runner.records}
    for p in phases:
        first = p["start"] + SETTLE_FRAMES
        p["seconds"] = times[p["end"]] - times[p["start"]]
        p["fps"] = (p["end"] - first) / (times[p["end"]] - times[first])
        if p["kind"] == "clients" and min(p["client_frames"]) < 0.5 * DEFAULT_MAX_FPS * p["seconds"]:
            raise MeasurementError(f"clients received {p['client_frames']} frames in {p['seconds']:.2f} s: no real load")
    ratios = [phases[i]["fps"] / ((phases[i - 1]["fps"] + phases[i + 1]["fps"]) / 2) for i in range(1, len(phases), 2)]
    return {"realtime": realtime, "phases": phases, "ratios": ratios, "cost": 1 - statistics.median(ratios)}


def phase_table(result: dict) -> str:
    """'n:812 c:790 n:805 ...': each phase's FPS, n = no client, c = CLIENTS clients."""
    return "  ".join(f"{p['kind'][0]}:{p['fps']:.0f}" for p in result["phases"])


# --- the report ----------------------------------------------------------------------------------

def pct(x: float) -> str:
    """A cost in percent, one decimal, without a '-0.0'."""
    text = f"{100 * x:.1f}"
    return "0.0" if text == "-0.0" else text


def pooled_cost(results: list[dict], resamples: int = 2000) -> tuple[float, float, float]:
    """1 - the median of every repeat's ratios pooled, and its 95 % bootstrap interval (seeded: the same report for the
    same measurements). The phase-to-phase noise is far larger than the cost, so the interval is what to read."""
    ratios = np.array([x for r in results for x in r["ratios"]])
    rng = np.random.default_rng(0)
    boot = np.median(rng.choice(ratios, (resamples, len(ratios))), axis=1)
    return 1 - float(np.median(ratios)), 1 - float(np.percentile(boot, 97.5)), 1 - float(np.percentile(boot, 2.5))


def markdown(model: str, results: list[dict], command: str, machine: str) -> str:
    costs = [r["cost"] for r in results]
    median = statistics.median(costs)
    pooled, low, high = pooled_cost(results)
    verdict = "met" if median <= TARGET_COST else "missed"
    lines = [
        f"# Live view: what {CLIENTS} stream viewers cost `edgecifar run`", "",
        f"Regenerate: `{command}`", "",
        machine, "",
        f"Model `{model}`, 1 thread, a 640x480 video of CIFAR-10 test images. Each repeat is its own runner process: "
        f"{WARMUP_FRAMES} warm-up frames, then phases of {PHASE_FRAMES} frames alternating no client / {CLIENTS} "
        f"clients; a client phase's FPS is divided by the mean of its two neighbours, and the repeat's cost is 1 - "
        f"the median of those ratios (benchmarks/live_view_cost.py says why).", "",
        f"**Median cost over {len(results)} repeats: {pct(median)} % FPS (range {pct(min(costs))} to "
        f"{pct(max(costs))} %), target at most {100 * TARGET_COST:.0f} %: {verdict}.** All "
        f"{sum(len(r['ratios']) for r in results)} client phases pooled: {pct(pooled)} % (95 % bootstrap interval "
        f"{pct(low)} to {pct(high)} %).", "",
        "| repeat | SCHED_FIFO | no-client FPS (median) | client FPS (median) | client/no-client ratios | cost |",
        "|---:|---|---:|---:|---|---:|",
    ]
    for i, r in enumerate(results, 1):
        none = statistics.median(p["fps"] for p in r["phases"] if p["kind"] == "none")
        with_clients = statistics.median(p["fps"] for p in r["phases"] if p["kind"] == "clients")
        ratios = " ".join(f"{x:.3f}" for x in r["ratios"])
        lines.append(f"| {i} | {'yes' if r['realtime'] else 'no'} | {none:.0f} | {with_clients:.0f} | {ratios} | "
                     f"{pct(r['cost'])} % |")
    lines += ["", "A negative cost means the client phases ran faster than their neighbours: noise of that size is "
              "in every figure above."]
    return "\n".join(lines) + "\n"


def plot(model: str, results: list[dict], path: Path) -> None:
    from edgecifar.plots import pyplot, save_png

    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 1]})
    for i, r in enumerate(results):
        xs = np.arange(len(r["phases"]))
        fps = [p["fps"] for p in r["phases"]]
        line, = ax.plot(xs, fps, "-", alpha=0.5, label=f"repeat {i + 1}")
        ax.plot(xs[1::2], fps[1::2], "o", color=line.get_color())
    ax.set_xlabel(f"phase ({PHASE_FRAMES} frames each; dots: {CLIENTS} viewers)")
    ax.set_ylabel("runner FPS (frames per second)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    bx.bar(np.arange(1, len(results) + 1), [100 * r["cost"] for r in results])
    bx.axhline(100 * TARGET_COST, color="red", linestyle="--", label="target")
    bx.set_xlabel("repeat")
    bx.set_ylabel("FPS cost of the viewers (%)")
    bx.legend(fontsize=7)
    fig.suptitle(f"{model}: {CLIENTS} live-view viewers vs none, interleaved")
    save_png(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="a .tflite or .onnx the device runner loads")
    ap.add_argument("--repeats", type=int, default=5, help="runner processes (default 5)")
    ap.add_argument("--pairs", type=int, default=CLIENT_PAIRS, help=f"client phases per repeat (default {CLIENT_PAIRS})")
    ap.add_argument("--out", type=Path, required=True, help="report .md (the .json and .png go beside it)")
    ap.add_argument("--data-dir", default=None, help="CIFAR-10 folder or archive (else $EDGECIFAR_DATA)")
    args = ap.parse_args(argv)

    from edgecifar import data
    from edgecifar.errors import UserError
    from edgecifar.evaluate import relative
    from edgecifar.files import write_json, write_text
    from edgecifar.machine import cpu_model, load_note, usable_cores

    def refuse(message: str, code: int = 2) -> int:  # one line, as the runner's own errors are; no report
        print(f"live_view_cost: {message}", file=sys.stderr)
        return code

    if args.repeats < 1 or args.pairs < 1:
        return refuse(f"--repeats {args.repeats} --pairs {args.pairs}: pass at least 1 of each")

    command = (f"python benchmarks/live_view_cost.py {shlex.quote(relative(args.model))} --repeats {args.repeats}"
               + (f" --pairs {args.pairs}" if args.pairs != CLIENT_PAIRS else "") + f" --out {relative(args.out)}")
    if not args.model.is_file():
        return refuse(f"{args.model} does not exist; pass a .tflite or .onnx written by `edgecifar export`")
    try:
        images = data.load(args.data_dir, splits=("test",)).test.images
    except UserError as e:
        return refuse(str(e))
    load0 = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            video = make_long_video(Path(tmp), images, frames_needed(args.pairs))
            for k in range(args.repeats):
                results.append(measure(args.model, video, Path(tmp), pairs=args.pairs))
                print(f"repeat {k + 1}/{args.repeats}: cost {pct(results[-1]['cost'])} %  ({phase_table(results[-1])})",
                      file=sys.stderr, flush=True)
        except MeasurementError as e:
            return refuse(str(e), e.code)
    load1 = os.getloadavg()[0]
    machine = (f"Machine: {cpu_model()}, {usable_cores()} usable cores; "
               f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {load_note(load0, load1)}.")
    write_text(args.out, markdown(args.model.name, results, command, machine))
    write_json(args.out.with_suffix(".json"), {"command": command, "model": args.model.name, "target_cost": TARGET_COST,
                                               "machine": machine, "results": results,
                                               "pooled_cost": dict(zip(("cost", "low", "high"), pooled_cost(results)))})
    plot(args.model.name, results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} (+ .json, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

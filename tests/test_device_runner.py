"""`edgecifar run`: frames from files, videos and cameras classified exactly like the exporter's check.

Artifacts are a real int8 export (edgecifar.export.export_run) of the `tiny_run` fixture: a weak model
(about 25 % top-1), which is fine here — what is tested is that the device path reproduces the
runtime's own predictions, not that the model is good.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from .conftest import cli_argv, run_cli

N_IMAGES = 200          # CIFAR-10 test images fed as files and as video frames (the issue asks for at least 200)
FORMATS = ("tflite_int8", "onnx_int8")


def export_artifacts(tiny_run: Path) -> dict[str, Path]:
    """int8 .tflite and .onnx of tiny_run from the real exporter; cached in the run so every test module shares it."""
    out = tiny_run / "export"
    paths = {"tflite_int8": out / "seed002_m1_cnn_int8.tflite", "onnx_int8": out / "seed002_m1_cnn_int8.onnx"}
    if not all(p.is_file() for p in paths.values()):
        from edgecifar.export import export_run

        report = export_run(tiny_run, formats=list(FORMATS), calib_samples=100, check_samples=200, echo=lambda *_: None)
        failed = {a["format"]: a.get("reason") for a in report["artifacts"] if not a.get("path")}
        assert not failed, f"export of the test artifacts failed: {failed}"
    return paths


@pytest.fixture(scope="module")
def artifacts(tiny_run) -> dict[str, Path]:
    return export_artifacts(tiny_run)


@pytest.fixture(scope="module")
def images(cifar):
    return cifar.test.images[:N_IMAGES], cifar.test.labels[:N_IMAGES]


def _bgr(rgb):
    return np.ascontiguousarray(rgb[..., ::-1])


def camera_frame(rgb32: np.ndarray) -> np.ndarray:
    """A 640x480 BGR frame holding the 32x32 image upscaled to 480x480 (nearest) and centred: the center crop recovers it."""
    import cv2

    big = cv2.resize(_bgr(rgb32), (480, 480), interpolation=cv2.INTER_NEAREST)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 80:560] = big
    return frame


def write_video(path: Path, rgb_images, fps: float = 30.0) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    assert writer.isOpened()
    for img in rgb_images:
        writer.write(camera_frame(img))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(images, tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "cifar_test.mp4", images[0])


@pytest.fixture(scope="module")
def png_dir(images, tmp_path_factory) -> Path:
    """First half: the raw 32x32 images; second half: upscaled 3x and padded to 128x96 (exercises crop + INTER_AREA)."""
    import cv2

    folder = tmp_path_factory.mktemp("png")
    for i, img in enumerate(images[0]):
        bgr = _bgr(img)
        if i >= N_IMAGES // 2:
            canvas = np.full((96, 128, 3), 127, np.uint8)
            canvas[:, 16:112] = cv2.resize(bgr, (96, 96), interpolation=cv2.INTER_NEAREST)
            bgr = canvas
        assert cv2.imwrite(str(folder / f"test_{i:05d}.png"), bgr)
    return folder


def json_lines(stdout: str) -> list[dict]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line must parse


def reference_top1(path, rgb_images) -> np.ndarray:
    """The exporter's check: Classifier.predict on the raw 32x32 test images."""
    from edgecifar.device.runtime import Classifier

    return Classifier(path).predict(rgb_images).argmax(1)


# --- acceptance: same top-1 as the exporter's check -------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_png_files_match_the_exporters_check(fmt, artifacts, images, png_dir):
    rgb, _ = images
    ref = reference_top1(artifacts[fmt], rgb)
    res = run_cli("run", artifacts[fmt], "--source", png_dir, "--json", "--top-k", "1")
    assert res.returncode == 0, res.stderr
    records = json_lines(res.stdout)
    assert len(records) == N_IMAGES
    got = {int(r["file"][5:10]): r["top"][0]["index"] for r in records}
    assert sorted(got) == list(range(N_IMAGES))
    agreement = np.mean([got[i] == ref[i] for i in range(N_IMAGES)])
    print(f"{fmt}: PNG top-1 agreement with Classifier.predict {100 * agreement:.2f}% on {N_IMAGES} images")
    assert agreement >= 0.995


@pytest.mark.parametrize("fmt", FORMATS)
def test_video_frames_accuracy_within_1pp_of_the_exporters_check(fmt, artifacts, images, video):
    """200 CIFAR-10 test images as 640x480 mp4v frames, classified by `edgecifar run --json`.

    mp4v (4:2:0 chroma, DCT quantization) changes the recovered 32x32 pixels by about 2 levels on average.
    The int8 models output probabilities in steps of 1/256, and this near-chance test model often has
    its top two classes tied or one step apart: codec noise then decides the argmax (about 95 % of the
    flips measured with it). So accuracy and agreement are asserted on the images whose reference top-1
    leads by more than DECISIVE; the whole-set numbers are printed (and reported for a trained model).
    """
    DECISIVE = 0.01
    rgb, labels = images
    from edgecifar.device.runtime import Classifier

    ref_probs = Classifier(artifacts[fmt]).predict(rgb)
    ref = ref_probs.argmax(1)
    res = run_cli("run", artifacts[fmt], "--source", video, "--json")
    assert res.returncode == 0, res.stderr
    records = json_lines(res.stdout)
    assert [r["frame"] for r in records] == list(range(N_IMAGES))
    for r in records:
        assert len(r["top"]) == 3 and set(r["ms"]) == {"capture", "preprocess", "inference", "postprocess"}
        assert all(0.0 <= t["confidence"] <= 1.0 for t in r["top"])
    pred = np.array([r["top"][0]["index"] for r in records])
    top2 = np.sort(ref_probs, axis=1)[:, -2:]
    decisive = top2[:, 1] - top2[:, 0] > DECISIVE

    def acc(p, mask):
        return float((p[mask] == labels[mask]).mean())

    everything = np.ones(N_IMAGES, bool)
    print(f"{fmt}: all {N_IMAGES} frames: accuracy {100 * acc(pred, everything):.2f}% vs check {100 * acc(ref, everything):.2f}%, "
          f"agreement {100 * (pred == ref).mean():.2f}%; decisive {decisive.sum()}: accuracy {100 * acc(pred, decisive):.2f}% "
          f"vs {100 * acc(ref, decisive):.2f}%, agreement {100 * (pred == ref)[decisive].mean():.2f}%")
    assert decisive.sum() >= N_IMAGES // 3  # enough images for the comparison to mean something
    assert abs(acc(pred, decisive) - acc(ref, decisive)) <= 0.01
    assert (pred == ref)[decisive].mean() >= 0.97
    assert (pred == ref).mean() >= 0.85  # a channel swap or a crop error would fall far below (measured: ~30-45 %)
    assert "end-to-end" in res.stderr and "inference" in res.stderr  # the summary went to stderr, stdout is pure JSON


TRAINED_EXPORT = os.environ.get("EDGECIFAR_DEVICE_EXPORT")  # e.g. runs/seed002_m1_cnn-*/export
TRAINED_FRAMES = 1000


def _trained_artifact(fmt: str) -> Path:
    """A trained model's artifact: EDGECIFAR_DEVICE_EXPORT's, else the int8 TFLite bundled in the package."""
    if TRAINED_EXPORT:
        from edgecifar.export import artifact_name

        export = Path(TRAINED_EXPORT)
        model_name = json.loads((export / "export_report.json").read_text())["model"]
        return export / artifact_name(model_name, fmt)
    if fmt == "tflite_int8":
        from edgecifar.device.cli import default_model

        return default_model()
    pytest.skip("no trained onnx_int8 in the package; set EDGECIFAR_DEVICE_EXPORT=RUN/export to check one")


@pytest.mark.parametrize("fmt", FORMATS)
def test_video_accuracy_of_a_trained_export_within_1pp(fmt, cifar, tmp_path_factory):
    """The issue's acceptance on every frame, for a real (trained) model.

    1,000 frames rather than 200: mp4v flips about 5 % of this model's top-1 predictions, and at 200 frames the
    net accuracy change of those flips alone spreads over about ±1.5 pp (measured: +1.5 and -3.0 pp).
    """
    path = _trained_artifact(fmt)
    rgb, labels = cifar.test.images[:TRAINED_FRAMES], cifar.test.labels[:TRAINED_FRAMES]
    video = tmp_path_factory.getbasetemp() / f"cifar_test_{TRAINED_FRAMES}.mp4"
    if not video.exists():
        write_video(video, rgb)
    from edgecifar.device.runtime import Classifier

    ref_probs = Classifier(path).predict(rgb)
    ref = ref_probs.argmax(1)
    res = run_cli("run", path, "--source", video, "--json")
    assert res.returncode == 0, res.stderr
    records = json_lines(res.stdout)
    assert [r["frame"] for r in records] == list(range(TRAINED_FRAMES))
    pred = np.array([r["top"][0]["index"] for r in records])
    acc_video, acc_ref = float((pred == labels).mean()), float((ref == labels).mean())
    first = slice(0, N_IMAGES)
    top2 = np.sort(ref_probs, axis=1)[:, -2:]
    tied = top2[:, 1] == top2[:, 0]
    decisive = top2[:, 1] - top2[:, 0] > 0.01
    acc_dv, acc_dr = float((pred == labels)[decisive].mean()), float((ref == labels)[decisive].mean())
    print(f"{path.name}: video accuracy {100 * acc_video:.2f}% vs check {100 * acc_ref:.2f}% on {TRAINED_FRAMES} frames, "
          f"agreement {100 * (pred == ref).mean():.2f}%; first {N_IMAGES}: {100 * (pred[first] == labels[first]).mean():.2f}% "
          f"vs {100 * (ref[first] == labels[first]).mean():.2f}%; exact top-2 ties in the check {100 * tied.mean():.1f}% "
          f"({100 * tied[pred != ref].mean():.0f}% of the flips); decisive {decisive.sum()}: {100 * acc_dv:.2f}% vs "
          f"{100 * acc_dr:.2f}%, agreement {100 * (pred == ref)[decisive].mean():.2f}%")
    assert abs(acc_dv - acc_dr) <= 0.01
    assert abs(acc_video - acc_ref) <= 0.01


# --- options --------------------------------------------------------------------------------


def test_smooth_is_an_ema_of_the_per_frame_probabilities(artifacts, video):
    model = artifacts["tflite_int8"]
    raw = json_lines(run_cli("run", model, "--source", video, "--json", "--top-k", "10", "--max-frames", "30").stdout)
    smooth = json_lines(run_cli("run", model, "--source", video, "--json", "--top-k", "10", "--max-frames", "30",
                                "--smooth", "0.6").stdout)
    assert len(raw) == len(smooth) == 30

    def probs(r):
        p = np.zeros(10)
        for t in r["top"]:
            p[t["index"]] = t["confidence"]
        return p

    ema = None
    for r_raw, r_smooth in zip(raw, smooth):
        ema = probs(r_raw) if ema is None else 0.6 * ema + 0.4 * probs(r_raw)
        np.testing.assert_allclose(probs(r_smooth), ema, atol=5e-4)
    # Consecutive frames are different images, so smoothing must visibly change the output.
    assert max(np.abs(probs(a) - probs(b)).max() for a, b in zip(raw[1:], smooth[1:])) > 0.01


def test_save_writes_an_annotated_video_atomically(artifacts, video, tmp_path):
    import cv2

    out = tmp_path / "out" / "annotated.mp4"
    res = run_cli("run", artifacts["tflite_int8"], "--source", video, "--max-frames", "25", "--save", out)
    assert res.returncode == 0, res.stderr
    assert f"saved {out}" in res.stdout and "--max-frames 25 reached: 25 frames" in res.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["annotated.mp4"]  # no temporary file left behind
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 25 and frames[0].shape == (480, 640, 3)
    # The overlay is drawn: the top-left corner differs from the source frame (which is black there).
    assert frames[0][:60, :60].mean() > 5


def test_corrupt_image_in_folder_is_counted_and_skipped(artifacts, png_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("test_00000.png", "test_00001.png", "test_00002.png"):
        (folder / name).write_bytes((png_dir / name).read_bytes())
    (folder / "test_00001b.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    res = run_cli("run", artifacts["onnx_int8"], "--source", folder, "--json")
    assert res.returncode == 0, res.stderr
    records = json_lines(res.stdout)
    assert [r["file"] for r in records] == ["test_00000.png", "test_00001.png", "test_00002.png"]
    assert [r["frame"] for r in records] == [0, 1, 3]  # frame = position in the source, the skipped file included
    assert "skipped test_00001b.png" in res.stderr and "1 undecodable frame(s) skipped" in res.stderr
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "broken.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    res = run_cli("run", artifacts["onnx_int8"], "--source", only_bad)
    assert res.returncode == 2 and "none of its 1 frame(s) could be decoded" in res.stderr


def test_photos_get_one_line_each_with_their_file_name(artifacts, images, png_dir, tmp_path):
    """A folder of photos in human mode: every file is reported (a camera gets a throttled status line)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    names = [f"test_{i:05d}.png" for i in range(5)]
    for name in names:
        (folder / name).write_bytes((png_dir / name).read_bytes())
    res = run_cli("run", artifacts["tflite_int8"], "--source", folder, "--top-k", "2")
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("test_")]
    assert [line.split(":")[0] for line in lines] == names
    ref = reference_top1(artifacts["tflite_int8"], images[0][:5])
    from edgecifar.data import DEFAULT_CLASS_NAMES

    for line, want in zip(lines, ref):
        labels = line.split(": ", 1)[1].split("  ")
        assert len(labels) == 2 and labels[0].rsplit(" ", 1)[0] == DEFAULT_CLASS_NAMES[want], line


def test_save_on_a_full_disk_is_one_line_and_leaves_nothing(artifacts, tmp_path, small_tmpfs):
    import cv2

    """OpenCV's video writer fails silently on a full disk: the runner must not print "saved" for an unplayable file."""
    rng = np.random.default_rng(0)
    src = tmp_path / "noise.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    for _ in range(60):  # noise compresses badly: far more than 256 KiB
        writer.write(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    writer.release()
    res = run_cli("run", artifacts["tflite_int8"], "--source", src, "--save", small_tmpfs / "out.mp4")
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and "could not be written completely" in err[0], res.stderr
    assert "saved" not in res.stdout and not list(small_tmpfs.iterdir())


def test_show_without_a_display_is_refused(artifacts, video):
    res = run_cli("run", artifacts["tflite_int8"], "--source", video, "--show", env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    assert res.returncode == 2
    assert res.stderr.strip().startswith("edgecifar: error: --show needs a display") and "Traceback" not in res.stderr


def test_missing_camera_is_a_clear_error(artifacts):
    index = next(i for i in range(7, 64) if not Path(f"/dev/video{i}").exists())
    res = run_cli("run", artifacts["tflite_int8"], "--source", index)
    assert res.returncode == 2
    assert f"cannot open camera {index}: it is absent or busy" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("case", ["truncated_tflite", "garbage_onnx", "missing"])
def test_unreadable_model_is_a_one_line_error(case, artifacts, video, tmp_path):
    if case == "truncated_tflite":
        model = tmp_path / "m.tflite"
        model.write_bytes(artifacts["tflite_int8"].read_bytes()[:2000])
    elif case == "garbage_onnx":
        model = tmp_path / "m.onnx"
        model.write_bytes(b"not a protobuf at all" * 10)
    else:
        model = tmp_path / "absent.tflite"
    res = run_cli("run", model, "--source", video)
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("edgecifar: error:")]
    assert len(errors) == 1 and str(model.name) in errors[0] and "Traceback" not in res.stderr


def test_duration_stops_a_run(artifacts, slow_images):
    res = run_cli("run", artifacts["tflite_int8"], "--source", str(slow_images / "*.jpg"), "--json", "--duration", "0.5")
    assert res.returncode == 0, res.stderr
    n = len(json_lines(res.stdout))
    assert 0 < n < 150 and f"--duration 0.5 s reached: {n} frames" in res.stderr


# --- Ctrl-C and SIGTERM on a real subprocess ---------------------------------------------------


@pytest.fixture(scope="module")
def slow_images(tmp_path_factory) -> Path:
    """150 large JPEGs (hard links to one 3000x2000 file): decoding each takes tens of ms, so a run lasts seconds."""
    import cv2

    folder = tmp_path_factory.mktemp("slow")
    yy, xx = np.mgrid[0:2000, 0:3000]
    img = np.stack([(xx * 255 // 3000), (yy * 255 // 2000), ((xx + yy) % 256)], axis=-1).astype(np.uint8)
    first = folder / "img_000.jpg"
    assert cv2.imwrite(str(first), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    for i in range(1, 150):
        os.link(first, folder / f"img_{i:03d}.jpg")
    return folder


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly_with_summary_and_keeps_the_video(sig, artifacts, slow_images, tmp_path):
    out = tmp_path / "live.avi"
    cmd = cli_argv("run", artifacts["tflite_int8"], "--source", slow_images / "*.jpg", "--json", "--save", out)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # wait until frames flow
        assert first, proc.stderr.read()
        time.sleep(0.3)
        proc.send_signal(sig)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    records = json_lines(first + rest)
    name = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}[sig]
    assert proc.returncode == 0, err
    assert f"stopped by {name}: {len(records)} frames" in err and "Traceback" not in err
    assert 0 < len(records) < 150
    for stage in ("capture", "preprocess", "inference", "postprocess"):
        assert f"  {stage}" in err
    import cv2

    cap = cv2.VideoCapture(str(out))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == len(records)


# --- in-process: the source classes, the live-view hook, stats -----------------------------------


class ListSource:
    kind, is_live, fps, description = "test", False, 0.0, "frames in memory"

    def __init__(self, frames):
        self.frames = list(frames)

    def read(self):
        return (True, self.frames.pop(0), None) if self.frames else (False, None, None)

    def close(self):
        pass


def test_live_server_hook_gets_every_annotated_frame_and_record(artifacts, images, monkeypatch, capsys):
    from edgecifar.device import frame_loop as runner
    from edgecifar.device.runtime import Classifier

    events = []

    class FakeServer:
        def __init__(self, host, port, token, info):
            events.append(("init", host, port, token, info["model"]))
            self.url = f"http://{host}:{port}/"

        def start(self):
            events.append(("start",))

        def publish(self, frame, record):
            events.append(("publish", frame, record))

        def close(self):
            events.append(("close",))

    monkeypatch.setattr(runner, "import_serve", lambda: types.SimpleNamespace(LiveServer=FakeServer))
    frames = [camera_frame(img) for img in images[0][:5]]
    clf = Classifier(artifacts["tflite_int8"])
    runner.run(clf, ListSource(frames), runner.RunOptions(top_k=2, serve=("127.0.0.1", 8123), token="s3cret", json_lines=True))
    assert events[0] == ("init", "127.0.0.1", 8123, "s3cret", clf.path.name) and events[1] == ("start",)
    assert events[-1] == ("close",)
    published = [e for e in events if e[0] == "publish"]
    printed = json_lines(capsys.readouterr().out)
    assert len(published) == 5 == len(printed)
    for (_, frame, record), line, src in zip(published, printed, frames):
        assert frame.shape == src.shape and not np.array_equal(frame, src)  # annotated copy, source untouched
        assert {k: v for k, v in record.items() if k != "fps"} == line and record["fps"] >= 0


def test_real_live_server_starts_and_stops(artifacts, video):
    pytest.importorskip("edgecifar.device.serve")
    res = run_cli("run", artifacts["tflite_int8"], "--source", video, "--max-frames", "10", "--serve", "127.0.0.1:0")
    assert res.returncode == 0, res.stderr
    assert "live view: http://127.0.0.1:" in res.stdout and "--max-frames 10 reached" in res.stdout


def test_source_selection(png_dir, video, tmp_path):
    from edgecifar.device.sources import Capture, ImageFiles, open_source
    from edgecifar.errors import UserError

    assert isinstance(open_source(str(png_dir)), ImageFiles)
    src = open_source(str(png_dir / "test_0000*.png"))
    assert isinstance(src, ImageFiles) and [n for _, _, n in src] == [f"test_{i:05d}.png" for i in range(10)]
    one = open_source(str(png_dir / "test_00007.png"))
    ok, frame, name = one.read()
    assert ok and frame.shape == (32, 32, 3) and name == "test_00007.png" and one.read() == (False, None, None)
    with open_source(str(video)) as v:
        assert isinstance(v, Capture) and v.kind == "video" and v.fps == 30.0
        assert sum(1 for _ in v) == N_IMAGES
    for bad in (tmp_path / "nope.mp4", str(tmp_path / "*.png"), tmp_path):
        with pytest.raises(UserError):
            open_source(str(bad))
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="cannot open video"):
        open_source(str(tmp_path / "bad.mp4"))


def _padded_i420(i420: np.ndarray, pad: int) -> np.ndarray:
    """An I420 buffer laid out with a row stride of w + pad, as libcamera does for widths it must align."""
    h, w = i420.shape[0] * 2 // 3, i420.shape[1]
    stride = w + pad
    y = np.zeros((h, stride), np.uint8)
    y[:, :w] = i420[:h]
    planes = []
    for k in range(2):
        plane = np.zeros((h // 2, stride // 2), np.uint8)
        plane[:, : w // 2] = i420[h:].reshape(-1)[k * (h // 2) * (w // 2) : (k + 1) * (h // 2) * (w // 2)].reshape(h // 2, w // 2)
        planes.append(plane.reshape(-1))
    return np.concatenate([y.reshape(-1), *planes]).reshape(h * 3 // 2, stride)


def _fake_picamera2(monkeypatch, bgr: np.ndarray, pad: int = 0):
    import cv2

    calls = {}

    class Picamera2:
        def __init__(self, camera_num=0):
            calls["camera_num"] = camera_num

        def create_video_configuration(self, main, lores=None):
            return {"main": main, "lores": lores}

        def configure(self, config):
            calls["config"] = config

        def start(self):
            calls["started"] = True

        def capture_array(self, stream="main"):
            calls.setdefault("streams", []).append(stream)
            if stream == "lores":
                return _padded_i420(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), pad)  # like picamera2's YUV420
            return bgr.copy()  # RGB888 is laid out B, G, R in memory

        def stop(self):
            calls["stopped"] = True

        def close(self):
            calls["closed"] = True

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=Picamera2))
    return calls


def test_picamera2_source_against_a_fake_module(monkeypatch, images):
    from edgecifar.device.sources import open_source

    bgr = _bgr(np.ascontiguousarray(np.kron(images[0][0], np.ones((10, 10, 1), np.uint8))))[:240, :320].copy()
    calls = _fake_picamera2(monkeypatch, bgr)
    with open_source("picamera2:320x240") as cam:
        ok, frame, name = cam.read()
    assert ok and name is None and np.array_equal(frame, bgr)
    assert calls["config"]["main"] == {"size": (320, 240), "format": "RGB888"} and calls["stopped"] and calls["closed"]

    for pad in (0, 64):
        calls = _fake_picamera2(monkeypatch, bgr, pad)
        with open_source("picamera2:lores") as cam:
            ok, frame, _ = cam.read()
        assert calls["config"]["lores"] == {"size": (320, 240), "format": "YUV420"} and calls["streams"] == ["lores"]
        assert frame.shape == bgr.shape and np.abs(frame.astype(int) - bgr).mean() < 3  # YUV 4:2:0 round trip


def test_picamera2_absent_is_a_clear_error(monkeypatch):
    from edgecifar.device.sources import open_source
    from edgecifar.errors import UserError

    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 → ImportError
    with pytest.raises(UserError, match="apt install python3-picamera2"):
        open_source("picamera2")


def test_stats_median_and_p90():
    from edgecifar.device.stats import STAGES, RunStats

    st = RunStats()
    for v in range(1, 11):
        st.add({s: float(v) for s in STAGES})
    st.fail("broken.png")
    st.stop()
    s = st.summary()
    assert s["frames"] == 10 and s["failed"] == 1 and s["failed_names"] == ["broken.png"]
    assert s["stages"]["inference"]["median_ms"] == 5.5 and s["stages"]["inference"]["p90_ms"] == pytest.approx(9.1)


def test_kernels_choice_takes_effect_and_changes_little(images):
    """The three TFLite kernel sets round int8 requantization slightly differently. Measured on the bundled seed003
    model and these 200 images on x86-64: xnnpack vs reference differ in 27 % of logits, by at most 2 steps, top-1
    99.5 % the same; builtin vs reference in 0.15 %, by 1 step. That the outputs differ at all proves --kernels is
    applied; the bounds below leave room for other CPUs without letting a real fault through."""
    from edgecifar.device.cli import default_model
    from edgecifar.device.runtime import Classifier

    raws = {}
    for kernels in ("xnnpack", "builtin", "reference"):
        clf = Classifier(default_model(), kernels=kernels)
        assert clf.kernels == kernels and f"{kernels} kernels" in clf.describe()
        x = clf.quantize_input(images[0])
        raws[kernels] = np.concatenate([clf.infer(x[i : i + 1]) for i in range(len(x))]).astype(np.int64)
    assert not np.array_equal(raws["xnnpack"], raws["reference"])
    for kernels in ("xnnpack", "builtin"):
        assert np.abs(raws[kernels] - raws["reference"]).max() <= 3
        assert (raws[kernels].argmax(1) == raws["reference"].argmax(1)).mean() >= 0.98


def test_kernels_choice_is_checked(artifacts, video):
    res = run_cli("run", artifacts["onnx_int8"], "--source", video, "--kernels", "builtin")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == (f"edgecifar: error: {artifacts['onnx_int8']} is ONNX; --kernels applies to .tflite "
                                  "models only (leave it out)")
    res = run_cli("run", artifacts["tflite_int8"], "--source", video, "--kernels", "builtin", "--max-frames", "5", "--json")
    assert res.returncode == 0, res.stderr
    assert "builtin kernels" in res.stderr and len(json_lines(res.stdout)) == 5


# --- the artifact contract, enforced in Classifier (small hand-built models: no training, no TensorFlow) ----------

TINY_CLASSES = [f"class{i}" for i in range(10)]


def tiny_meta(**input_fields) -> dict:
    """What export writes for a float ONNX artifact (metadata.build), with `input_fields` changed."""
    from edgecifar.device import metadata

    meta = metadata.build(model="tiny", fmt="onnx_float32", class_names=TINY_CLASSES, input_shape=(32, 32, 3),
                          preprocessing={}, input_dtype="float32", input_quant=None, output_dtype="float32",
                          output_quant=None, source_model={}, calibration=None, tool={}, output_kind="logits")
    meta["input"].update(input_fields)
    return meta


def tiny_onnx(path: Path, meta: dict | None, classes: int = 10, out_shape=None) -> Path:
    """A float32 NHWC 32x32x3 → logits ONNX model (mean of each channel times a fixed 3 x classes matrix): its
    output depends on the channel order. out_shape: the declared output shape (["N", "C"] makes it symbolic)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).normal(0, 0.05, (3, classes)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0), helper.make_node("MatMul", ["m", "w"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape or ["N", classes])],
        [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if meta is not None:
        helper.set_model_props(model, {"edgecifar": json.dumps(meta)})
    onnx.save(model, str(path))
    return path


def coloured_images(n: int = 6) -> np.ndarray:
    """uint8 RGB images whose three channels have clearly different means (a channel swap changes the output)."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (n, 1, 1, 3))
    return np.clip(base + rng.integers(-20, 21, (n, 32, 32, 3)), 0, 255).astype(np.uint8)


def _patched_bundled_meta(monkeypatch, **changes):
    """The bundled default .tflite with its metadata changed as a stale or foreign description would be."""
    from edgecifar.device import metadata
    from edgecifar.device.cli import default_model

    real = metadata.read(default_model())
    meta = json.loads(json.dumps(real))
    for key, value in changes.items():
        side, field = key.split("__")
        meta[side][field] = value
    monkeypatch.setattr(metadata, "read", lambda path: meta)
    return default_model()


@pytest.mark.parametrize("field, value, message", [
    ("channels", 1, "metadata says 1 input channels"),
    ("dtype", "uint8", "metadata says input dtype uint8 but the model's tensor is float32"),
    ("layout", "NCHW", "metadata says input layout 'NCHW'"),
    ("color_order", "YUV", "input color order 'YUV'"),
])
def test_onnx_metadata_disagreeing_with_the_model_is_refused(field, value, message, tmp_path):
    from edgecifar.device.runtime import Classifier
    from edgecifar.errors import UserError

    model = tiny_onnx(tmp_path / "tiny.onnx", tiny_meta(**{field: value}))
    with pytest.raises(UserError, match=message):
        Classifier(model)


def test_output_dtype_disagreeing_with_the_model_is_refused_in_one_line(tmp_path):
    meta = tiny_meta()
    meta["output"]["dtype"] = "int8"
    model = tiny_onnx(tmp_path / "tiny.onnx", meta)
    res = run_cli("run", model, "--source", tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip() == (f"edgecifar: error: {model}: metadata says output dtype int8 but the model's tensor is "
                                  "float32; the metadata is stale, re-export the model")


@pytest.mark.parametrize("changes, message", [
    ({"input__channels": 4}, "metadata says 4 input channels"),
    ({"input__dtype": "int8"}, "metadata says input dtype int8 but the model's tensor is uint8"),
    ({"output__dtype": "uint8"}, "metadata says output dtype uint8 but the model's tensor is float32"),
])
def test_tflite_metadata_disagreeing_with_the_model_is_refused(changes, message, monkeypatch):
    from edgecifar.device.runtime import Classifier
    from edgecifar.errors import UserError

    with pytest.raises(UserError, match=message):
        Classifier(_patched_bundled_meta(monkeypatch, **changes))


def test_a_bgr_artifact_is_honoured_by_classifier_and_frame_classifier_alike(tmp_path, monkeypatch):
    """color_order is applied in Classifier.quantize_input: predict (export check, evaluate, benchmark) and the
    runner's FrameClassifier feed the model the same BGR tensor."""
    from edgecifar.device.frame_loop import FrameClassifier
    from edgecifar.device.runtime import Classifier

    rgb = coloured_images()
    as_rgb = Classifier(tiny_onnx(tmp_path / "rgb.onnx", tiny_meta()))
    as_bgr = Classifier(tiny_onnx(tmp_path / "bgr.onnx", tiny_meta(color_order="BGR")))
    assert (as_rgb.color_order, as_bgr.color_order) == ("RGB", "BGR")
    p_bgr = as_bgr.predict(rgb)
    np.testing.assert_allclose(p_bgr, as_rgb.predict(_bgr(rgb)), atol=1e-6)  # the model saw B, G, R
    assert np.abs(p_bgr - as_rgb.predict(rgb)).max() > 0.01                 # and that made a difference
    frames = FrameClassifier(as_bgr, k=10, smooth=None)
    for img, want in zip(rgb, p_bgr):
        top, _ = frames(camera_frame(img))  # a 640x480 camera frame: crop + INTER_AREA recover the 32x32 image
        got = np.zeros(10)
        for i, _, conf in top:
            got[i] = conf
        np.testing.assert_allclose(got, want, atol=1e-5)

    # TFLite: the same single place (the bundled int8 model, its metadata saying BGR).
    plain = Classifier(_patched_bundled_meta(monkeypatch))
    swapped = Classifier(_patched_bundled_meta(monkeypatch, input__color_order="bgr"))
    assert swapped.color_order == "BGR"
    np.testing.assert_array_equal(swapped.quantize_input(rgb), plain.quantize_input(_bgr(rgb)))
    np.testing.assert_array_equal(swapped.predict(rgb), plain.predict(_bgr(rgb)))


def test_old_artifacts_with_resize_and_layout_still_load(tmp_path):
    """build() no longer writes input.resize (nobody read it); artifacts exported with it load unchanged."""
    from edgecifar.device.cli import default_model
    from edgecifar.device.runtime import Classifier

    bundled = Classifier(default_model())  # exported before the change: carries resize and layout
    assert bundled.meta["input"]["resize"] and bundled.meta["input"]["layout"] == "NHWC"
    assert "resize" not in tiny_meta()["input"] and tiny_meta()["input"]["layout"] == "NHWC"
    old = tiny_onnx(tmp_path / "old.onnx", tiny_meta(resize="center-crop to square, cv2.INTER_AREA", layout="NHWC"))
    new = tiny_onnx(tmp_path / "new.onnx", tiny_meta())
    rgb = coloured_images()
    np.testing.assert_array_equal(Classifier(old).predict(rgb), Classifier(new).predict(rgb))


def test_onnx_symbolic_output_dimension_is_checked_against_the_model(tmp_path):
    """With a symbolic output dimension the class count comes from one probe inference, not from the class names."""
    from edgecifar.device.runtime import Classifier
    from edgecifar.errors import UserError

    meta = tiny_meta()
    clf = Classifier(tiny_onnx(tmp_path / "ok.onnx", meta, out_shape=["N", "C"]))
    assert clf.num_classes == 10 and clf.predict(coloured_images()).shape == (6, 10)
    meta["class_names"] = TINY_CLASSES[:5]
    with pytest.raises(UserError, match="5 class names for a model with 10 outputs"):
        Classifier(tiny_onnx(tmp_path / "stale.onnx", meta, out_shape=["N", "C"]))

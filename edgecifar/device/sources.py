"""Frame sources for `edgecifar run`: one small interface over cameras, videos, streams and images.

Every source has
    read() -> (ok, frame_bgr, name)
        ok=True:                   a uint8 HxWx3 BGR frame; name is the file name for images, else None
        ok=False, frame=None, name=str:  this frame could not be decoded (counted and skipped by the runner)
        ok=False, frame=None, name=None: end of stream
    iteration (yields the same triples until end of stream), close(), and context-manager use.
    .kind, .description, .fps (frames per second the source advertises, 0.0 if unknown), .is_live.

`open_source(spec)` picks the class from the --source string:
    0, 1, /dev/video0      camera (V4L2 on Linux: USB webcams; not the Pi CSI camera under libcamera)
    picamera2[:lores][:WxH] Pi CSI camera through picamera2 (imported only here)
    rtsp://..., http://...  network stream (FFmpeg)
    "... ! appsink"         GStreamer pipeline (needs an OpenCV built with GStreamer)
    photo.jpg               one image
    folder/, "imgs/*.png"   images of a folder or glob, in sorted order
    clip.mp4                video file
"""

from __future__ import annotations

import glob as globlib
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import UserError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm"}
END = (False, None, None)
# A camera that delivers nothing for this long has gone away (unplugged, taken by another program).
CAMERA_STALL_SECONDS = 5.0


def _cv2():
    # OpenCV's own warnings ("can't open camera by index") would repeat our clearer error messages.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    import cv2

    return cv2


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    """Gray or BGRA frames (some cameras and capture backends) → 3-channel BGR."""
    cv2 = _cv2()
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


class Source:
    kind = "source"
    is_live = False
    fps = 0.0
    description = ""

    def read(self):
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __iter__(self):
        while True:
            item = self.read()
            if item[0] is False and item[2] is None:
                return
            yield item

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ImageFiles(Source):
    """A list of image files, read one by one; a file that does not decode is reported, not fatal."""

    kind = "images"

    def __init__(self, paths: list[Path], description: str):
        self.paths = list(paths)
        self.description = f"{description} ({len(self.paths)} image{'s' if len(self.paths) != 1 else ''})"
        self._i = 0

    def read(self):
        if self._i >= len(self.paths):
            return END
        path = self.paths[self._i]
        self._i += 1
        try:
            # imdecode(fromfile) instead of imread: works with any path encoding and never prints to stderr.
            # IMREAD_COLOR: 8-bit BGR whatever the file holds (gray, alpha, 16-bit), EXIF orientation applied.
            raw = np.fromfile(path, dtype=np.uint8)
            frame = _cv2().imdecode(raw, _cv2().IMREAD_COLOR) if raw.size else None
        except (OSError, _cv2().error):
            frame = None
        if frame is None:
            return False, None, path.name
        return True, frame, path.name


class Capture(Source):
    """Anything cv2.VideoCapture opens: camera index or device, video file, RTSP/HTTP URL, GStreamer pipeline."""

    def __init__(self, target, kind: str, description: str, api: int | None = None):
        cv2 = _cv2()
        self.kind = kind
        self.description = description
        self.is_live = kind in ("camera", "stream", "gstreamer")
        self._cap = cv2.VideoCapture(target, api) if api is not None else cv2.VideoCapture(target)
        if not self._cap.isOpened():
            self._cap.release()
            raise UserError(_open_failure(kind, target))
        if kind == "camera":
            # Some drivers open a device that another program is streaming from, then deliver nothing.
            ok, frame = self._cap.read()
            if not ok or frame is None:
                self._cap.release()
                raise UserError(f"camera {target} opened but gives no frames: it is probably in use by another program "
                                "(close it, or check `fuser /dev/video*`); a Pi CSI camera needs --source picamera2")
            self._first = frame
        else:
            self._first = None
        # An http:// URL can point at a file (a frame count) rather than a live camera (none).
        self._finite = kind == "video" or float(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) > 0
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 0.0
        self._index = 0

    def read(self):
        if self._first is not None:
            frame, self._first = self._first, None
            return True, _to_bgr(frame), None
        if self.kind != "camera":
            ok, frame = self._cap.read()
            if ok and frame is not None:
                self._index += 1
                return True, _to_bgr(frame), None
            if self.kind == "video" or self._finite:
                return END
            # A live stream has no end: it broke. An error (exit 2) lets systemd's Restart=on-failure reconnect.
            raise UserError(f"{self.description} stopped delivering frames after {self._index}; "
                            "the camera or the network went away")
        start = time.monotonic()
        while True:
            ok, frame = self._cap.read()
            if ok and frame is not None:
                return True, _to_bgr(frame), None
            if time.monotonic() - start > CAMERA_STALL_SECONDS:
                raise UserError(f"{self.description}: no frame for {CAMERA_STALL_SECONDS:.0f} s; "
                                "the camera was unplugged or taken by another program")
            time.sleep(0.05)

    def close(self) -> None:
        self._cap.release()


class Picamera2Source(Source):
    """The Raspberry Pi CSI camera through picamera2 (libcamera); cv2.VideoCapture cannot open it.

    main: RGB888 frames, which picamera2 lays out as B, G, R bytes: OpenCV order already.
    lores: the ISP's second, small YUV420 stream: downscaled in hardware, so inference on it costs no CPU
    for the resize; converted to BGR here.
    """

    kind = "picamera2"
    is_live = True

    def __init__(self, size=(640, 480), lores: bool = False, camera_num: int = 0):
        try:
            from picamera2 import Picamera2
        except ImportError as e:
            raise UserError(
                f"--source picamera2 needs the picamera2 package ({e.name or 'picamera2'} is not importable): "
                "on Raspberry Pi OS run `sudo apt install python3-picamera2` and create the venv with "
                "--system-site-packages (see device/install_pi.sh)"
            ) from None
        w, h = size
        self._stream = "lores" if lores else "main"
        try:
            self._cam = Picamera2(camera_num)
        except Exception as e:  # picamera2 raises IndexError/RuntimeError when no camera is attached
            raise UserError(f"picamera2 found no camera {camera_num} ({type(e).__name__}: {e}); check the ribbon cable "
                            "and `rpicam-hello --list-cameras`") from None
        try:
            if lores:
                # lores must not be larger than main; main stays at the sensor-friendly 640x480 or above.
                main = (max(w, 640), max(h, 480))
                config = self._cam.create_video_configuration(main={"size": main, "format": "RGB888"},
                                                              lores={"size": (w, h), "format": "YUV420"})
            else:
                config = self._cam.create_video_configuration(main={"size": (w, h), "format": "RGB888"})
            self._cam.configure(config)
            self._cam.start()
        except Exception as e:
            self._cam.close()
            raise UserError(f"picamera2 cannot start the camera at {w}x{h} ({type(e).__name__}: {e}); "
                            "it may be in use by another program (rpicam-*, another edgecifar)") from None
        self.description = f"picamera2 camera {camera_num}, {self._stream} stream {w}x{h}"
        self._size = (w, h)

    def read(self):
        try:
            arr = self._cam.capture_array(self._stream)
        except Exception as e:
            raise UserError(f"picamera2 stopped delivering frames ({type(e).__name__}: {e})") from None
        if self._stream == "lores":
            return True, _i420_to_bgr(arr, *self._size), None
        return True, _to_bgr(arr[..., :3]), None

    def close(self) -> None:
        try:
            self._cam.stop()
        finally:
            self._cam.close()


def _i420_to_bgr(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    """picamera2's YUV420 buffer → BGR. The buffer is I420 (Y plane, then U, then V), shape (h * 3/2, stride):
    when the stride is padded past w, each chroma row is stride/2 long, so the planes are cut out one by one.
    (OpenCV's COLOR_YUV420p2* codes mean YV12, with U and V swapped: the I420 code is the right one.)"""
    cv2 = _cv2()
    stride = arr.shape[1]
    y = arr[:h, :w]
    chroma = arr[h : h * 3 // 2].reshape(-1)
    plane = (h // 2) * (stride // 2)
    u = chroma[:plane].reshape(h // 2, stride // 2)[:, : w // 2]
    v = chroma[plane : 2 * plane].reshape(h // 2, stride // 2)[:, : w // 2]
    i420 = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(h * 3 // 2, w)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)


def _open_failure(kind: str, target) -> str:
    if kind == "camera":
        where = "" if sys.platform != "linux" else "; `ls /dev/video*` lists the cameras V4L2 sees"
        return (f"cannot open camera {target}: it is absent or busy (another program may hold it){where}; "
                "a Raspberry Pi CSI camera needs --source picamera2")
    if kind == "video":
        return f"cannot open video {target}: not a video file OpenCV can decode (corrupt, or an unsupported codec)"
    if kind == "stream":
        return f"cannot open stream {_redact(target)}: unreachable, wrong URL or credentials, or a protocol FFmpeg does not speak"
    return (f"cannot open GStreamer pipeline {target!r}: check it with gst-launch-1.0 and end it in appsink")


def _has_gstreamer() -> bool:
    info = _cv2().getBuildInformation()
    m = re.search(r"GStreamer:\s*(\S+)", info)
    return bool(m) and m.group(1).upper() != "NO"


_PICAMERA = re.compile(r"^picamera2(?::(lores))?(?::(\d+)x(\d+))?$", re.IGNORECASE)


def open_source(spec: str) -> Source:
    """The Source for a --source string (see the module docstring)."""
    spec = str(spec).strip()
    if not spec:
        raise UserError("--source is empty; pass a camera index (0), a file, a folder, a URL or picamera2")
    cv2 = _cv2()
    m = _PICAMERA.match(spec)
    if m:
        lores = bool(m.group(1))
        size = (int(m.group(2)), int(m.group(3))) if m.group(2) else ((320, 240) if lores else (640, 480))
        return Picamera2Source(size=size, lores=lores)
    if spec.startswith("picamera"):
        raise UserError(f"--source {spec}: write picamera2, picamera2:WxH, picamera2:lores or picamera2:lores:WxH")
    if spec.isdigit():
        api = cv2.CAP_V4L2 if sys.platform == "linux" else cv2.CAP_ANY
        return Capture(int(spec), "camera", f"camera {spec}", api)
    if re.fullmatch(r"/dev/video\d+", spec):
        return Capture(spec, "camera", f"camera {spec}", cv2.CAP_V4L2)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec):
        return Capture(spec, "stream", f"stream {_redact(spec)}", cv2.CAP_FFMPEG)
    if " ! " in spec:
        if not _has_gstreamer():
            raise UserError("this OpenCV has no GStreamer support (the pip wheels never do); install the distribution's "
                            "python3-opencv and use a venv with --system-site-packages, or pass a camera index or URL")
        return Capture(spec, "gstreamer", "GStreamer pipeline", cv2.CAP_GSTREAMER)
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise UserError(f"folder {path} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return ImageFiles(files, f"folder {path}")
    if globlib.has_magic(spec):
        files = sorted(Path(p) for p in globlib.glob(os.path.expanduser(spec)) if Path(p).is_file())
        if not files:
            raise UserError(f"no file matches {spec}")
        return ImageFiles(files, f"glob {spec}")
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return ImageFiles([path], f"image {path}")
        return Capture(str(path), "video", f"video {path}", cv2.CAP_FFMPEG)
    raise UserError(f"--source {spec}: no such file or folder; pass a camera index (0), an image, a folder, a glob, "
                    "a video, a URL, a GStreamer pipeline or picamera2")


def _redact(url: str) -> str:
    """rtsp://user:secret@host → rtsp://user:***@host, so passwords do not land in logs."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)

"""Live view for headless devices: the annotated camera stream and the classifier's state in a browser.

    server = LiveServer(host, port, token, info)    # info: model, backend, format, classes, source
    server.start(); print(server.url)
    server.publish(frame_bgr, record)               # per frame, from the inference loop
    server.close()

Routes: ``/`` (the page, static/live.html), ``/stream.mjpg`` (multipart MJPEG), ``/stats.json``.

Serving must not slow inference, so the work is split three ways:
    * ``publish()`` only swaps two references under a lock (no copy, no encoding);
    * one encoder thread JPEG-encodes the latest frame at most ``max_fps`` times a second, and only
      while someone is watching, so the cost is the same for one client or fifty;
    * each client thread sends the newest JPEG whenever its socket is ready for one: a slow client
      skips frames instead of queueing them, and never holds anything the others need.

Standard library only (http.server's ThreadingHTTPServer) plus OpenCV for the JPEG, both already on the device.
"""

from __future__ import annotations

import hmac
import importlib.resources
import ipaddress
import math
import numbers
import socket
import statistics
import sys
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from ..errors import UserError
from ..files import dumps

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_FPS = 12.0
DEFAULT_JPEG_QUALITY = 80
BOUNDARY = "edgecifarframe"
RECENT_FRAMES = 128   # the page shows FPS and stage latencies as medians over this many frames, not one noisy frame
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def parse_address(spec: str) -> tuple[str, int]:
    """``--serve [HOST:]PORT`` → (host, port). No host means 127.0.0.1; IPv6 hosts go in brackets."""
    text = str(spec).strip()
    host, port_text = DEFAULT_HOST, text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise UserError(f"--serve {spec!r}: write an IPv6 address as [ADDR]:PORT, e.g. [::1]:8080")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, port_text = text.rsplit(":", 1)
        if not host or ":" in host:
            raise UserError(f"--serve {spec!r}: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080 ([ADDR]:PORT for IPv6)")
    try:
        port = int(port_text)
    except ValueError:
        raise UserError(f"--serve {spec!r}: port {port_text!r} is not a number; expected [HOST:]PORT, e.g. 8080") from None
    if not 0 <= port <= 65535:
        raise UserError(f"--serve {spec!r}: port {port} is out of range 0-65535 (0 picks a free port)")
    return host, port


def check_access(host: str, port: int, token: str | None) -> None:
    """Refuse what would expose the camera: an empty token, or a bind beyond loopback without a token.

    Called by `edgecifar run` before the model or the source is opened, and again by LiveServer."""
    if token is not None and not token.strip():
        raise UserError("--token is empty; give a real secret, e.g. --token \"$(openssl rand -hex 16)\", "
                        "or leave --token out on a loopback address")
    if not token and not is_loopback(host):
        shown = f"[{host}]" if ":" in host else host
        raise UserError(f"--serve {shown}:{port} would let anyone on the network watch the camera without a token; "
                        f"add --token \"$(openssl rand -hex 16)\", or bind to this machine only with "
                        f"--serve 127.0.0.1:{port}")


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LiveServer:
    """Serves the page, the MJPEG stream and the stats of one running classifier."""

    def __init__(self, host: str | None, port: int, token: str | None, info: dict, *,
                 max_fps: float = DEFAULT_MAX_FPS, jpeg_quality: int = DEFAULT_JPEG_QUALITY, echo=None):
        if max_fps <= 0:
            raise UserError(f"stream frame rate cap must be positive, got {max_fps}")
        self.host = host or DEFAULT_HOST
        self.port = int(port)
        check_access(self.host, self.port, token)
        self.token = token or None
        self.info = _page_info(info)
        self.max_fps = float(max_fps)
        self.jpeg_quality = int(jpeg_quality)
        self._echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._page = importlib.resources.files(__package__).joinpath("static", "live.html").read_bytes()

        # The latest published frame; guarded by _frame_cond (publish → encoder).
        self._frame_cond = threading.Condition()
        self._frame = None
        self._record = None
        self._published = 0
        self._recent = deque(maxlen=RECENT_FRAMES)  # (monotonic time, record) of the last frames
        # The latest JPEG; guarded by _jpeg_cond (encoder → client threads).
        self._jpeg_cond = threading.Condition()
        self._jpeg = None
        self._jpeg_seq = 0
        self._jpeg_record = None  # the record of the frame the JPEG shows, so the page can match it
        self._encode_ms = 0.0
        self._clients = 0

        self._closed = threading.Event()
        self._httpd = None
        self._threads: list[threading.Thread] = []

    # --- the runner's side ----------------------------------------------------------------

    def start(self) -> "LiveServer":
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        handler = _handler_for(self)
        server_cls = type("_LiveHTTPServer", (_QuietHTTPServer,), {"address_family": family, "echo": staticmethod(self._echo)})
        try:
            self._httpd = server_cls((self.host, self.port), handler)
        except OSError as e:
            raise UserError(f"cannot serve on {self.host}:{self.port} ({e.strerror or e}); "
                            "pick another port with --serve [HOST:]PORT (0 picks a free one)") from None
        self.port = self._httpd.server_address[1]
        if not is_loopback(self.host):  # check_access made sure there is a token
            self._echo(f"warning: live view bound to {self.host}:{self.port}, reachable beyond this machine; "
                       "every request must carry the token")
        for target, name in ((self._httpd.serve_forever, "live-http"), (self._encode_loop, "live-jpeg")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()  # a wildcard bind is not an address a browser can open
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/" + (f"?token={quote(self.token, safe='')}" if self.token else "")

    def publish(self, frame_bgr, record: dict) -> None:
        """Hand over the newest annotated frame and its per-frame record. Cheap: no copy, no encoding,
        so the caller must not write into ``frame_bgr`` afterwards (a fresh array per frame is fine)."""
        now = time.monotonic()
        with self._frame_cond:
            self._frame = frame_bgr
            self._record = record
            self._published += 1
            self._recent.append((now, record))
            if self._clients:  # with nobody watching, waking the encoder per frame would only cost the GIL
                self._frame_cond.notify()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._frame_cond:
            self._frame_cond.notify_all()
        with self._jpeg_cond:
            self._jpeg_cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # --- encoding -------------------------------------------------------------------------

    def _encode_loop(self) -> None:
        import cv2

        params = [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg_quality]
        interval = 1.0 / self.max_fps
        last_encoded, next_time = 0, 0.0
        while not self._closed.is_set():
            # Sleep out the rest of the frame interval first, so the frame we then take is the newest.
            delay = next_time - time.monotonic()
            if delay > 0 and self._closed.wait(delay):
                break
            with self._frame_cond:
                self._frame_cond.wait_for(
                    lambda: self._closed.is_set() or (self._clients > 0 and self._published != last_encoded), timeout=1.0)
                if self._closed.is_set():
                    break
                if self._clients == 0 or self._published == last_encoded:
                    continue
                frame, shown, last_encoded = self._frame, self._record, self._published
            started = time.monotonic()
            ok, buf = cv2.imencode(".jpg", frame, params)
            if not ok:
                continue
            done = time.monotonic()
            next_time = started + interval
            with self._jpeg_cond:
                self._jpeg = buf.tobytes()
                self._jpeg_seq += 1
                self._jpeg_record = shown
                self._encode_ms = 1000.0 * (done - started)
                self._jpeg_cond.notify_all()

    def _next_jpeg(self, after_seq: int, timeout: float = 1.0):
        """(seq, jpeg) newer than after_seq, or (after_seq, None) on timeout/close."""
        with self._jpeg_cond:
            self._jpeg_cond.wait_for(lambda: self._closed.is_set() or self._jpeg_seq != after_seq, timeout=timeout)
            if self._closed.is_set() or self._jpeg_seq == after_seq:
                return after_seq, None
            return self._jpeg_seq, self._jpeg

    def _client_joined(self, delta: int) -> None:
        with self._frame_cond:
            self._clients += delta
            self._frame_cond.notify()  # wake the encoder: a first viewer needs a frame now

    # --- what the page reads --------------------------------------------------------------

    def stats(self) -> dict:
        with self._frame_cond:
            record, published, clients, recent = self._record, self._published, self._clients, list(self._recent)
        with self._jpeg_cond:
            encoded, shown, encode_ms = self._jpeg_seq, self._jpeg_record, self._encode_ms
        return {
            "info": self.info,
            "latest": record,         # the newest classified frame
            "shown": shown,           # the frame in the stream right now (null until someone watches)
            "recent": _summary(recent),
            "published": published,
            "stream": {"clients": clients, "max_fps": self.max_fps, "encoded": encoded, "encode_ms": round(encode_ms, 3)},
        }


# A viewer that hangs up mid-request (closed tab, dropped Wi-Fi, a port scanner) is routine, not an error.
_CLIENT_GONE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError, socket.timeout)


class _QuietHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that stays silent when a client goes away and reports anything else in one line
    (socketserver's default prints a full traceback to stderr for every failed request)."""

    daemon_threads = True
    echo = None

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, _CLIENT_GONE):
            return
        where = client_address[0] if isinstance(client_address, tuple) and client_address else "a client"
        what = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"
        line = f"warning: live view: request from {where} failed ({what})".replace("\n", " ")
        try:
            (self.echo or (lambda msg: print(msg, file=sys.stderr, flush=True)))(line)
        except Exception:  # noqa: BLE001 - reporting must never take the server down
            pass


def _summary(recent: list) -> dict:
    """FPS and median per-stage latency over the last frames: one frame's numbers jump with every hiccup."""
    fps = None
    if len(recent) > 1 and recent[-1][0] > recent[0][0]:
        fps = round((len(recent) - 1) / (recent[-1][0] - recent[0][0]), 2)
    ms = {}
    for _, rec in recent:
        for stage, value in (rec.get("ms") or {}).items():
            if isinstance(value, numbers.Real) and math.isfinite(value):
                ms.setdefault(stage, []).append(float(value))
    return {"frames": len(recent), "fps": fps, "ms": {k: round(statistics.median(v), 3) for k, v in ms.items()}}


def _page_info(info: dict) -> dict:
    """What the page's header shows. Accepts the runner's names for the same things (runtime, class_names)."""
    info = dict(info or {})
    backend = info.pop("backend", None) or info.pop("runtime", None)
    classes = info.pop("classes", None) or info.pop("class_names", None) or []
    return {"model": info.pop("model", None), "format": info.pop("format", None), "backend": backend,
            "source": info.pop("source", None), "classes": list(classes), **info}


class LiveHandler(BaseHTTPRequestHandler):
    """One HTTP request to the live view: the page, the MJPEG stream or the stats, behind the access check."""

    live: "LiveServer"  # set per server by handler_for
    server_version = "edgecifar-live"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a stalled client may block its own thread before it is dropped

    def handle(self):
        try:
            super().handle()
        except _CLIENT_GONE:
            self.close_connection = True  # the client hung up mid-request: nothing to answer

    def finish(self):
        try:
            super().finish()  # flushes what is left for a client that may be gone
        except _CLIENT_GONE:
            pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not self._allowed(query):
            return
        route = {"/": self._page, "/index.html": self._page, "/stream.mjpg": self._stream,
                 "/stats.json": self._stats, "/favicon.ico": self._no_icon}.get(parts.path)
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found: try / , /stream.mjpg or /stats.json\n", "text/plain")
            return
        route()

    def do_HEAD(self):  # noqa: N802
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)

    # --- access ---

    def _allowed(self, query) -> bool:
        if is_loopback(self.live.host) and not _host_is_loopback(self.headers.get("Host", "")):
            # A page from elsewhere can point a DNS name at 127.0.0.1; a loopback server only answers loopback names.
            self._send(HTTPStatus.FORBIDDEN, b"forbidden: this server only answers requests for localhost\n", "text/plain")
            return False
        if self.live.token is None:
            return True
        given = None
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif "token" in query:
            given = query["token"][0]
        if given is None:
            self._send(HTTPStatus.UNAUTHORIZED, b"token required: add ?token=... or an Authorization: Bearer header\n",
                       "text/plain", {"WWW-Authenticate": 'Bearer realm="edgecifar"'})
            return False
        if not hmac.compare_digest(given.encode(), self.live.token.encode()):
            self._send(HTTPStatus.FORBIDDEN, b"wrong token\n", "text/plain")
            return False
        return True

    # --- routes ---

    def _page(self):
        self._send(HTTPStatus.OK, self.live._page, "text/html; charset=utf-8", {
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; connect-src 'self'; "
                                       "style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                                       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        })

    def _stats(self):
        body = dumps(self.live.stats()).encode()
        self._send(HTTPStatus.OK, body, "application/json")

    def _no_icon(self):
        self._send(HTTPStatus.NO_CONTENT, b"", None)

    def _stream(self):
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self._common_headers()
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.live._client_joined(+1)
        seq = 0
        try:
            while not self.live._closed.is_set():
                seq, jpeg = self.live._next_jpeg(seq)
                if jpeg is None:
                    continue
                # Blocks while this client's socket is full; meanwhile newer frames replace older ones
                # upstream, so the next write sends the newest frame, never a backlog.
                self.wfile.write(b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                 % (BOUNDARY.encode(), len(jpeg)) + jpeg + b"\r\n")
                self.wfile.flush()
        except _CLIENT_GONE:
            pass  # the viewer went away
        finally:
            self.live._client_joined(-1)

    # --- plumbing ---

    def _common_headers(self):
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # the token may be in the URL

    def _send(self, status, body: bytes, ctype, extra=None):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers()
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002
        pass  # the runner's output is per-frame results; access logs would drown it


def _handler_for(live: "LiveServer"):
    """LiveHandler bound to one server (http.server builds a handler per request from a class)."""
    return type("Handler", (LiveHandler,), {"live": live})


def _host_is_loopback(host_header: str) -> bool:
    host = host_header.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return is_loopback(host.lower())

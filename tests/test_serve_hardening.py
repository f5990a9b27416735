"""`edgecifar run --serve` hardening (issue 14): no camera on the network without a token, and no tracebacks
when viewers hang up mid-request.

Fast: the bundled default model, a tiny synthetic video, 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgecifar.device.serve import LiveServer, check_access
from edgecifar.errors import UserError

from .conftest import ROOT, cli_argv, run_cli

DEFAULT_MODEL = ROOT / "edgecifar" / "assets" / "default_int8.tflite"
INFO = {"model": "m_int8.tflite", "backend": "litert", "format": "tflite_int8", "classes": ["cat", "dog"], "source": "test"}
RESETS = 20


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("edgecifar: error:"), stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- refusing to expose the camera ---------------------------------------------------------

@pytest.mark.parametrize("serve", ["0.0.0.0:0", "[::]:0"])
@pytest.mark.parametrize("token", [None, "", "   "], ids=["no-token", "empty", "blank"])
def test_serving_beyond_loopback_without_a_token_is_refused_before_anything_opens(serve, token, tmp_path):
    # Neither the model nor the source exists: the refusal must come first, not a model or camera error.
    args = ["run", tmp_path / "missing.tflite", "--source", tmp_path / "missing.mp4", "--serve", serve]
    if token is not None:
        args += ["--token", token]
    res = run_cli(*args, timeout=120)
    assert res.returncode == 2, (res.stdout, res.stderr)
    line = one_error_line(res.stderr)
    assert "token" in line and "missing" not in line, line
    if token is None:
        assert "openssl rand" in line and "127.0.0.1" in line, line
    assert res.stdout == ""


@pytest.mark.parametrize("serve", ["127.0.0.1:0", "localhost:0", "[::1]:0", "0"])
def test_empty_token_is_refused_on_loopback_too(serve, tmp_path):
    res = run_cli("run", tmp_path / "missing.tflite", "--source", tmp_path / "missing.mp4", "--serve", serve,
                  "--token", " ", timeout=120)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "--token is empty" in one_error_line(res.stderr)


def test_token_without_serve_is_refused_even_when_empty(tmp_path):
    res = run_cli("run", tmp_path / "missing.tflite", "--source", tmp_path / "missing.mp4", "--token", "", timeout=120)
    assert res.returncode == 2
    assert "--token only applies to --serve" in one_error_line(res.stderr)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host):
    check_access(host, 8080, None)
    check_access(host, 8080, "s3cret")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "fe80::1", "raspberrypi.local"])
def test_beyond_loopback_needs_a_non_empty_token(host):
    for token in (None, "", " \t"):
        with pytest.raises(UserError, match="token"):
            check_access(host, 8080, token)
        with pytest.raises(UserError, match="token"):
            LiveServer(host, 0, token, INFO)  # the server itself refuses too, whoever calls it
    check_access(host, 8080, "s3cret")


def test_loopback_run_without_a_token_still_serves(tmp_path):
    import cv2

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        cv2.imwrite(str(photos / f"p{i}.png"), np.full((40, 40, 3), 60 * i, np.uint8))
    res = run_cli("run", DEFAULT_MODEL, "--source", photos, "--serve", "127.0.0.1:0", timeout=120)
    assert res.returncode == 0, res.stderr
    assert re.search(r"live view: http://127\.0\.0\.1:\d+/\n", res.stdout), res.stdout
    assert "Traceback" not in res.stderr


# --- clients that hang up -------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """A small video that outlasts the test: one short MPEG-TS segment repeated byte for byte."""
    import cv2

    folder = tmp_path_factory.mktemp("clip")
    segment = folder / "segment.ts"
    writer = cv2.VideoWriter(str(segment), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (96, 96))
    assert writer.isOpened()
    for i in range(30):
        frame = np.zeros((96, 96, 3), np.uint8)
        frame[:, : 3 * i + 3] = (40, 120, 200)
        writer.write(frame)
    writer.release()
    path = folder / "clip.ts"
    path.write_bytes(segment.read_bytes() * 2000)  # 60,000 frames; --duration bounds the run anyway
    return path


def rst_close(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER on, 0 s), like a crashed browser or a dropped link."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def hang_up(port: int, kind: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        host = f"Host: 127.0.0.1:{port}\r\n".encode()
        if kind == 0:    # connects, says nothing, resets
            pass
        elif kind == 1:  # half a request line, then resets
            sock.sendall(b"GET /stream.mj")
        elif kind == 2:  # request line and half the headers
            sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\n" + host[:8])
        elif kind == 3:  # the stream, read a little of it, then reset while frames are being written
            sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\n" + host + b"\r\n")
            got = b""
            while b"image/jpeg" not in got and len(got) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                got += chunk
        else:            # a full request for the page or the stats, reset before reading the answer
            path = b"/" if kind == 4 else b"/stats.json"
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\n" + host + b"\r\n")
        time.sleep(0.02)
    finally:
        rst_close(sock)


def test_clients_hanging_up_mid_request_print_no_traceback(long_clip):
    cmd = cli_argv("run", DEFAULT_MODEL, "--source", long_clip, "--json", "--threads", "1", "--serve", "127.0.0.1:0",
                   "--duration", "120")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    stderr, url_seen, url = [], threading.Event(), []

    def read_stderr():
        for line in proc.stderr:
            stderr.append(line)
            m = re.search(r"live view: http://127\.0\.0\.1:(\d+)/", line)
            if m and not url:
                url.append(int(m.group(1)))
                url_seen.set()
        url_seen.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert url_seen.wait(60) and url, "".join(stderr)
        port = url[0]
        for i in range(RESETS):
            hang_up(port, i % 6)
        time.sleep(0.5)  # let the handler threads notice and finish
        assert proc.poll() is None, "".join(stderr)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats.json", timeout=10) as r:
            assert r.status == 200  # still serving after all that
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        reader.join(timeout=10)
    text = "".join(stderr)
    assert rc == 0, text
    assert "stopped by SIGTERM" in text, text
    assert "Traceback" not in text and "Exception occurred" not in text, text


def test_unexpected_handler_errors_are_one_line(monkeypatch):
    said = []
    server = LiveServer("127.0.0.1", 0, None, INFO, echo=said.append).start()
    try:
        def broken_stats():
            raise ValueError("boom\nsecond line")

        monkeypatch.setattr(server, "stats", broken_stats)
        with pytest.raises(OSError):  # the connection is dropped without an answer (RemoteDisconnected)
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/stats.json", timeout=10).read()
        end = time.monotonic() + 5
        while not said and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        server.close()
    assert len(said) == 1 and "\n" not in said[0], said
    assert "ValueError: boom" in said[0] and said[0].startswith("warning: live view:"), said

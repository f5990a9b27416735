"""Live view (`edgecifar run --serve`): the page, the MJPEG stream, /stats.json, access control, and its cost.

Three layers:
    * LiveServer in-process with synthetic frames: routes, token, binding, encoder cap, slow clients;
    * a real `edgecifar run --serve` subprocess classifying a video, watched by headless Chromium
      (Debian's chromium + chromium-driver, driven by selenium);
    * the same runner with 0 vs 5 stream clients, interleaved, to bound what serving costs in FPS.

The browser tests skip only when Chromium, ChromeDriver or selenium is missing outside CI; with CI=true
they fail instead. To refresh the README screenshot with a fully trained model:
    EDGECIFAR_LIVE_VIEW_MODEL=RUN/export/seed002_m1_cnn_int8.tflite \\
    EDGECIFAR_LIVE_VIEW_SCREENSHOT=docs/live_view.png pytest tests/test_live_view.py -k browser
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgecifar.device.serve import LiveServer, parse_address
from edgecifar.errors import UserError

from .conftest import load_benchmark, run_cli
from .test_device_runner import export_artifacts

TOKEN = "s3cret-token"
INFO = {"model": "m_int8.tflite", "backend": "litert 2.3.0", "format": "tflite_int8",
        "classes": ["cat", "dog"], "source": "video clip.mp4"}
STAGES = ("capture", "preprocess", "inference", "postprocess")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,900", "--hide-scrollbars")
VIEWPORT = {"width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": False}  # the screenshot's size
LVC = load_benchmark("live_view_cost")  # the runner, the stream clients and the FPS-cost measurement
StreamClient, Runner, realtime_allowed = LVC.StreamClient, LVC.Runner, LVC.realtime_allowed
TEST_PAIRS = 10          # client phases in the cost test
VIDEO_FRAMES = LVC.frames_needed(TEST_PAIRS)  # the long video outlasts the cost test and the browser checks
# A bound a regression would break (a server that encoded in the frame loop, or per viewer, costs far more), not the
# live-view issue's 10 % target: on 2 shared cores the cost swings between phases, and AMD Zen 4 measured 6.1 %
# alone and 10.1 % inside the full suite (session 32). That target is measured by benchmarks/live_view_cost.py.
MAX_FPS_LOSS = 0.25


# --- helpers ---------------------------------------------------------------------------------

def fetch(url, headers=None, host=None):
    """(status, headers, body) of a GET; error statuses are returned, not raised."""
    req = urllib.request.Request(url, headers={**(headers or {}), **({"Host": host} if host else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            ctype = r.headers.get("Content-Type", "")
            body = b"" if ctype.startswith("multipart/") else r.read()  # a stream never ends
            return r.status, r.headers, body
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def settled(client, quiet=0.5, timeout=10.0):
    """Wait until the client has received nothing new for `quiet` seconds."""
    end = time.monotonic() + timeout
    count, since = client.frames, time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        if client.frames != count:
            count, since = client.frames, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError("the stream never went quiet")


@pytest.fixture
def live():
    servers = []

    def make(token=TOKEN, host="127.0.0.1", **kw):
        server = LiveServer(host, 0, token, INFO, **kw).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


def record(i, label="cat"):
    return {"frame": i, "timestamp": time.time(), "topk": [{"label": label, "confidence": 0.75}, {"label": "dog", "confidence": 0.25}],
            "ms": {s: 0.5 for s in STAGES}, "fps": 100.0}


class Publisher(threading.Thread):
    """Publishes frames as fast as a small model would classify them (about 400 FPS)."""

    def __init__(self, server, frames):
        super().__init__(daemon=True)
        self.server, self.pool, self.count = server, frames, 0
        self._halt = threading.Event()
        self._sock = None

    def run(self):
        while not self._halt.is_set():
            self.server.publish(self.pool[self.count % len(self.pool)], record(self.count))
            self.count += 1
            time.sleep(0.0025)

    def stop(self):
        self._halt.set()
        if self.is_alive():
            self.join()


# --- addresses, access ---------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("8080", ("127.0.0.1", 8080)), ("0.0.0.0:8080", ("0.0.0.0", 8080)), ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("pi.local:9000", ("pi.local", 9000)), ("[::1]:8080", ("::1", 8080)), ("[::]:80", ("::", 80)),
])
def test_parse_address_defaults_to_localhost(spec, expected):
    assert parse_address(spec) == expected


@pytest.mark.parametrize("spec", ["", "http", "80a", "host:", "::1:8080", "[::1]8080", "70000", "-1"])
def test_parse_address_rejects_bad_specs_with_a_hint(spec):
    with pytest.raises(UserError, match=r"--serve"):
        parse_address(spec)


@pytest.mark.parametrize("path", ["/", "/stream.mjpg", "/stats.json"])
def test_token_is_required_on_every_route(live, path):
    server = live()
    base = f"http://127.0.0.1:{server.port}{path}"
    status, headers, _ = fetch(base)
    assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert fetch(base + "?token=wrong")[0] == 403
    assert fetch(base, {"Authorization": "Bearer wrong"})[0] == 403
    assert fetch(base + f"?token={TOKEN}")[0] == 200
    assert fetch(base, {"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_routes_without_token_and_unknown_paths(live):
    server = live(token=None)
    base = f"http://127.0.0.1:{server.port}"
    status, headers, body = fetch(base + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b'id="stream"' in body
    assert fetch(base + "/stats.json")[0] == 200
    assert fetch(base + "/nope")[0] == 404


def test_binding_beyond_localhost_needs_a_token_and_warns(live):
    for token in (None, "", "  "):
        with pytest.raises(UserError, match="--token"):
            live(token=token, host="0.0.0.0")
    said = []
    guarded = live(token=TOKEN, host="0.0.0.0", echo=said.append)
    assert len(said) == 1 and "0.0.0.0" in said[0] and "token" in said[0]
    assert guarded.url == f"http://{socket.gethostname()}:{guarded.port}/?token={TOKEN}"
    said.clear()
    live(token=None, host="127.0.0.1", echo=said.append)
    assert said == []


def test_loopback_server_answers_only_loopback_host_names(live):
    # A web page elsewhere can point its own DNS name at 127.0.0.1 (DNS rebinding) and read the camera.
    server = live(token=None)
    url = f"http://127.0.0.1:{server.port}/stats.json"
    assert fetch(url, host=f"attacker.example:{server.port}")[0] == 403
    assert fetch(url, host=f"localhost:{server.port}")[0] == 200


def test_url_carries_the_token_url_encoded(live):
    server = live(token="a b&c/d")
    assert server.url == f"http://127.0.0.1:{server.port}/?token=a%20b%26c%2Fd"
    assert fetch(server.url.replace("/?", "/stats.json?"))[0] == 200


def test_port_in_use_is_a_user_error(live):
    server = live()
    with pytest.raises(UserError, match="cannot serve on 127.0.0.1"):
        LiveServer("127.0.0.1", server.port, None, INFO).start()


def test_stats_json_is_strict_json_with_the_latest_record(live):
    server = live(token=None)
    rec = record(7)
    rec["fps"] = np.float32(42.5)       # numpy scalars and NaN come straight from a runner
    rec["ms"]["capture"] = float("nan")
    server.publish(np.zeros((48, 64, 3), np.uint8), rec)
    _, _, body = fetch(f"http://127.0.0.1:{server.port}/stats.json")

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    stats = json.loads(body, parse_constant=no_constants)
    assert stats["info"] == INFO
    assert stats["latest"]["frame"] == 7 and stats["latest"]["fps"] == 42.5 and stats["latest"]["ms"]["capture"] is None
    assert stats["published"] == 1 and stats["stream"]["clients"] == 0 and stats["shown"] is None
    assert stats["recent"] == {"frames": 1, "fps": None, "ms": {s: 0.5 for s in STAGES[1:]}}


def test_stats_summarise_recent_frames_by_median(live):
    server = live(token=None)
    frame = np.zeros((48, 64, 3), np.uint8)
    for i in range(9):
        rec = record(i)
        rec["ms"]["inference"] = 100.0 if i == 4 else 1.0 + i / 100   # one hiccup must not show
        server.publish(frame, rec)
        time.sleep(0.01)
    recent = server.stats()["recent"]
    assert recent["frames"] == 9 and recent["ms"]["inference"] == 1.05 and recent["ms"]["capture"] == 0.5
    assert 20 < recent["fps"] < 101  # 9 frames about 10 ms apart


def test_runner_info_names_are_understood():
    server = LiveServer(None, 0, None, {"model": "m", "runtime": "litert 2.3.0", "class_names": ["a", "b"], "top_k": 2})
    assert server.host == "127.0.0.1"
    assert server.info == {"model": "m", "format": None, "backend": "litert 2.3.0", "source": None,
                           "classes": ["a", "b"], "top_k": 2}


# --- encoding and clients ------------------------------------------------------------------

def test_encoder_runs_only_for_viewers_once_for_all_at_the_capped_rate(live):
    import cv2

    server = live(token=None, max_fps=10)
    frames = [np.full((240, 320, 3), v, np.uint8) for v in (40, 120, 200)]
    pub = Publisher(server, frames)
    pub.start()
    try:
        time.sleep(0.5)
        assert server.stats()["stream"]["encoded"] == 0, "nobody watches: nothing should be encoded"
        clients = [StreamClient(server.port) for _ in range(4)]
        for c in clients:
            c.start()
        for c in clients:
            assert c.connected.wait(5)
        start_encoded, t0 = server.stats()["stream"]["encoded"], time.monotonic()
        start_received = [c.frames for c in clients]
        time.sleep(2.0)
        encoded, elapsed = server.stats()["stream"]["encoded"] - start_encoded, time.monotonic() - t0
        received = [c.frames - s for c, s in zip(clients, start_received)]
        pub.stop()
        settled(clients[0])  # the encoder's last JPEG, of the last published frame, has arrived
        shown = server.stats()["shown"]
        for c in clients:
            c.stop()
    finally:
        pub.stop()
    assert pub.count > 10 * encoded, "the publisher should outpace the stream: the stream is capped, inference is not"
    assert 3 <= encoded <= 10 * elapsed + 2, f"{encoded} JPEGs in {elapsed:.1f} s with a 10 fps cap"
    assert all(c.error is None for c in clients), [c.error for c in clients]
    # One encoding serves every client: together they received far more frames than were encoded.
    assert sum(received) >= 2 * encoded and max(received) <= encoded + 2, (received, encoded)
    # stats.json's "shown" is the record of the frame in the stream: the page's bars match the picture.
    picture = cv2.imdecode(np.frombuffer(clients[0].last_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (240, 320, 3)
    assert abs(int(np.median(picture)) - int(frames[shown["frame"] % len(frames)][0, 0, 0])) <= 3


def test_slow_client_skips_frames_and_does_not_hold_back_others(live):
    rng = np.random.default_rng(0)
    # Noise compresses badly (about 400 kB a JPEG), so the slow client's socket buffers fill within a frame or two.
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(3)]
    server = live(token=None, max_fps=10)
    pub = Publisher(server, frames)
    pub.start()
    rt = realtime_allowed()  # a loaded machine should not starve the fast client either
    fast, slow = StreamClient(server.port, realtime=rt), StreamClient(server.port, delay=0.5, realtime=rt)
    try:
        fast.start(), slow.start()
        assert fast.connected.wait(5) and slow.connected.wait(5)
        start = server.stats()["stream"]["encoded"]
        fast_start, slow_start = fast.frames, slow.frames
        time.sleep(3.0)
        encoded = server.stats()["stream"]["encoded"] - start
        got_fast, got_slow = fast.frames - fast_start, slow.frames - slow_start
    finally:
        fast.stop(), slow.stop(), pub.stop()
    assert fast.error is None and slow.error is None, (fast.error, slow.error)
    assert encoded >= 6, f"only {encoded} JPEGs in 3 s"
    assert got_fast >= 0.8 * encoded, f"the fast client got {got_fast} of {encoded} frames: held back by the slow one?"
    assert got_slow <= 0.5 * encoded, f"the slow client got {got_slow} of {encoded}: frames are queued, not dropped"


def test_close_ends_streams_and_frees_the_port(live):
    server = live(token=None)
    server.publish(np.zeros((48, 64, 3), np.uint8), record(0))
    client = StreamClient(server.port)
    client.start()
    assert client.connected.wait(5)
    t0 = time.monotonic()
    server.close()
    client.join(timeout=5)
    assert not client.is_alive() and time.monotonic() - t0 < 5
    LiveServer("127.0.0.1", server.port, None, INFO).start().close()  # the port is free again


# --- the real runner, in a real browser ----------------------------------------------------

@pytest.fixture(scope="module")
def model(request) -> Path:
    override = os.environ.get("EDGECIFAR_LIVE_VIEW_MODEL")
    return Path(override) if override else export_artifacts(request.getfixturevalue("tiny_run"))["tflite_int8"]


@pytest.fixture(scope="module")
def long_video(cifar, tmp_path_factory) -> Path:
    """A long 640x480 camera-like video of CIFAR-10 test images (benchmarks/live_view_cost.py makes it)."""
    return LVC.make_long_video(tmp_path_factory.mktemp("live"), cifar.test.images, VIDEO_FRAMES)


def _browser_or_skip():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        how = "apt-get install -y chromium chromium-driver; pip install 'edgecifar[dev]' (selenium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test but {', '.join(missing)} is missing: {how}")
        pytest.skip(f"no headless browser here ({', '.join(missing)} missing): {how}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    return webdriver, Service(CHROMEDRIVER), opts


@pytest.fixture
def browser(tmp_path):
    webdriver, service, opts = _browser_or_skip()
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", VIEWPORT)
    yield driver
    driver.quit()


@pytest.mark.slow
def test_browser_shows_the_live_stream_labels_fps_and_latency(browser, model, long_video, tmp_path):
    import cv2
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    runner = Runner(model, long_video, tmp_path, "--token", TOKEN)  # the browser is up first: the video is finite
    try:
        url = runner.wait_url()
        assert url == f"http://127.0.0.1:{runner.port}/?token={TOKEN}"
        assert fetch(f"http://127.0.0.1:{runner.port}/")[0] == 401
        browser.get(url)
        js = "const i = document.getElementById('stream'); return [i.complete, i.naturalWidth, i.naturalHeight];"
        WebDriverWait(browser, 30, poll_frequency=0.1).until(lambda d: d.execute_script(js)[1] > 0)
        assert browser.execute_script(js)[1:] == [640, 480]  # the annotated frame, not a placeholder

        text = lambda el_id: browser.find_element(By.ID, el_id).text  # noqa: E731
        labels, frames, end = [], [], time.monotonic() + 15
        while time.monotonic() < end and (len(set(labels)) < 3 or len(frames) < 8):
            labels.append(text("top1-label"))
            frames.append(text("frame"))
            time.sleep(0.25)
        classes = set(json.loads(Path(str(model) + ".json").read_text())["class_names"])
        seen = [lb for lb in labels if lb in classes]
        assert len(set(seen)) >= 2, f"the label never changed: {labels}"
        assert len({f for f in frames if f.isdigit()}) >= 3, f"the frame counter did not advance: {frames}"

        assert float(text("fps")) > 0
        assert re.fullmatch(r"\d+\.\d% confidence", text("top1-conf"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#topk .bar-row")) == 3  # --top-k 3 by default
        latency = text("latency")
        for stage in (*STAGES, "total"):
            assert re.search(rf"{stage}\s+\d+(\.\d+)? ms", latency), latency
        assert text("model") == Path(model).name and text("backend").startswith("litert")
        assert text("status") == "live"
        # The page passed its token on: the <img> and every stats poll carried it (they would get 401 otherwise).
        own = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert own and all(f"token={TOKEN}" in u for u in own if "/stats.json" in u or "/stream.mjpg" in u), own

        shot = tmp_path / "live_view.png"
        assert browser.save_screenshot(str(shot))
        assert runner.proc.poll() is None, "the video ended before the checks: raise TEST_PAIRS"
        png = cv2.imread(str(shot))
        rect = browser.find_element(By.ID, "stream").rect
        x, y, w, h = (int(rect[k]) for k in ("x", "y", "width", "height"))
        assert w > 300 and h > 200, rect
        assert png[y : y + h, x : x + w].std() > 20, "the stream area of the screenshot is blank"
        if os.environ.get("EDGECIFAR_LIVE_VIEW_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["EDGECIFAR_LIVE_VIEW_SCREENSHOT"])

        status, _, body = fetch(f"http://127.0.0.1:{runner.port}/stats.json", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        stats = json.loads(body)
        assert stats["info"]["model"] == Path(model).name and set(stats["info"]["classes"]) == classes
        assert stats["info"]["backend"].startswith("litert") and stats["info"]["source"] == "video cifar_long.ts"
        latest = stats["latest"]
        top = latest.get("topk") or latest["top"]
        assert {t["label"] for t in top} <= classes and latest["fps"] > 0
        assert set(STAGES) <= set(latest["ms"]) and stats["published"] > latest["frame"] // 2
        assert stats["stream"]["clients"] >= 1 and stats["stream"]["encoded"] > 0
    finally:
        runner.close()


@pytest.mark.slow
def test_five_stream_clients_barely_slow_the_runner(model, long_video, tmp_path):
    """benchmarks/live_view_cost.py's measurement on the tiny model: phases of 1,000 frames alternate none / 5 clients,
    each client phase against its neighbours (drift in the machine's load cancels), under SCHED_FIFO where allowed.
    It refuses a run whose clients did not really load the server; the cost is printed and bounded here."""
    result = LVC.measure(model, long_video, tmp_path, pairs=TEST_PAIRS)
    table = LVC.phase_table(result)
    print(f"\nSCHED_FIFO: {result['realtime']}; phase FPS (n = no client, c = {LVC.CLIENTS} clients): {table}\n"
          f"client/no-client ratios: {' '.join(f'{r:.3f}' for r in result['ratios'])}; cost {100 * result['cost']:.1f} %")
    assert len(result["ratios"]) == TEST_PAIRS
    assert result["cost"] <= MAX_FPS_LOSS, f"{LVC.CLIENTS} clients cost {100 * result['cost']:.1f} % FPS ({table})"


@pytest.mark.slow
@pytest.mark.parametrize("serve, extra, url_host, warned", [
    ("0", (), "127.0.0.1", False), ("0.0.0.0:0", ("--token", TOKEN), socket.gethostname(), True)])
def test_cli_binds_localhost_unless_told_otherwise(model, long_video, serve, extra, url_host, warned):
    res = run_cli("run", model, "--source", long_video, "--max-frames", "20", "--serve", serve, *extra)
    assert res.returncode == 0, res.stderr
    assert re.search(rf"live view: http://{re.escape(url_host)}:\d+/", res.stdout), res.stdout
    assert ("warning: live view bound to 0.0.0.0" in res.stderr) == warned, res.stderr


# --- the cost benchmark's own report and errors ------------------------------------------------

def _result(ratios):
    phases = [{"kind": k, "fps": 1000.0 * (r if k == "clients" else 1.0)}
              for r in ratios for k in ("none", "clients")] + [{"kind": "none", "fps": 1000.0}]
    return {"realtime": False, "phases": phases, "ratios": list(ratios), "cost": 1 - statistics.median(ratios)}


@pytest.mark.parametrize("ratios, verdict", [((0.99, 0.97, 1.01), "met"), ((0.85, 0.88, 0.90), "missed")])
def test_cost_report_states_the_verdict_against_the_target(ratios, verdict):
    results = [_result(ratios), _result(ratios)]
    text = LVC.markdown("m.tflite", results, "python benchmarks/live_view_cost.py m.tflite --out r.md", "Machine: x.")
    cost = 1 - statistics.median(ratios)
    assert f"Median cost over 2 repeats: {100 * cost:.1f} % FPS" in text
    assert f"target at most 10 %: {verdict}." in text
    pooled, low, high = LVC.pooled_cost(results)
    assert low <= pooled <= high and pooled == pytest.approx(cost)
    assert LVC.pct(-0.0004) == "0.0" and LVC.pct(-0.012) == "-1.2"


@pytest.mark.slow
def test_cost_benchmark_refuses_a_bad_model_in_one_line(tmp_path):
    bad = tmp_path / "junk.tflite"
    bad.write_bytes(b"junk")
    out = tmp_path / "cost.md"
    res = subprocess.run([sys.executable, str(LVC.__file__), str(bad), "--repeats", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("live_view_cost:") or "Traceback" in ln]
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and "not a valid .tflite file" in lines[0], res.stderr
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.parametrize("args, message", [(["--repeats", "0"], "pass at least 1 of each"),
                                           (["--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar")])
def test_cost_benchmark_refuses_bad_options_in_one_line(model, tmp_path, capsys, args, message):
    out = tmp_path / "cost.md"
    assert LVC.main([str(model), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("live_view_cost: ") and message in err[0], err
    assert not out.exists()

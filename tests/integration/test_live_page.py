"""The live page and REST API (``--http-port``) of the real module process.

The module replays a synthetic recording with a developing bearing fault (the tiny mean-level
model, a threshold between the healthy and the faulty part, as in the fault tests) and serves its
page on loopback. A real headless chromium (Debian's, through selenium) watches the spectrogram
and the score move, the alert appear and its clip play; ``POST /api/score`` is compared with
``ml predict --per-window`` on the same file; malformed, oversized and unauthenticated requests
get clear 4xx answers while the module keeps going. In IoT Hub mode, ``/api/status`` is what
``getStatus`` answers, ``/metrics`` counts the outbox and the uploads, and an alert's clip still
plays after its upload removed it from the spool.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from harness.browser import chromium
from harness.models import tiny_model
from harness.module import ModuleProcess, run_module, synth_recording
from harness.paths import REPO
from harness.procs import free_port, wait_for

THRESHOLD = -15.3  # the tiny model: about -15.5 healthy, -15.1 with the bearing fault
TOKEN = "live-page-token-" + uuid.uuid4().hex  # a secret: must never appear in the module's output


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("live")
    out = {}
    for name, (seconds, start) in {"fault": (60.0, 6.0), "short": (20.0, 4.0)}.items():
        out[name] = synth_recording(folder / f"{name}.wav", seconds=seconds, fault="bearing", fault_start=start)
    out["model"] = tiny_model(folder / "tiny.onnx", version="1")[0]
    return out


class Live(ModuleProcess):
    """The module with its page on ``port``; :meth:`request` talks to it."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        super().__init__(env, logs)
        self.port = free_port()
        self.token = ""

    def start_live(self, source: Path, model: Path, *extra: str, speed: str = "realtime") -> None:
        self.start("--source", str(source), "--model", str(model), "--speed", speed, "--threshold", str(THRESHOLD),
                   "--consecutive", "1", "--cooldown-seconds", "2", "--machine", "pump-1", "--local-out",
                   str(self.logs / "local"), "--http-port", str(self.port), *extra)
        wait_for(lambda: self._answers() or (self.proc is not None and self.proc.poll() is not None), 60,
                 "the live page")
        assert self.proc is not None and self.proc.poll() is None, self.text()[-3000:]

    def _answers(self) -> bool:
        try:
            return self.request("GET", "/api/status")[0] in (200, 401)
        except OSError:
            return False

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                *, auth: bool = True) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = dict(headers or {})
        if auth and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None, **kw: Any) -> tuple[int, Any]:
        status, _, data = self.request(method, path, body, **kw)
        return status, json.loads(data)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture()
def live(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUSCULT_", "IOTEDGE_", "EdgeHub", "EdgeModule"))}
    env["PYTHONUNBUFFERED"] = "1"
    logs = tmp_path / "logs"
    logs.mkdir()
    m = Live(env, logs)
    yield m
    m.kill()
    assert TOKEN not in m.text(), "the token was logged"


def _page_state(browser) -> dict[str, Any]:
    return browser.execute_script("""
        const spec = document.getElementById('spec'), ctx = spec.getContext('2d');
        const d = ctx.getImageData(0, 0, spec.width, spec.height).data, colours = new Set();
        for (let i = 0; i < d.length; i += 16) colours.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
        return {columns: +spec.dataset.columns, colours: colours.size, points: +document.getElementById('chart').dataset.points,
                score: document.getElementById('last-score').textContent, state: document.getElementById('state').textContent,
                alerts: [...document.querySelectorAll('#alerts audio')].map(a => a.getAttribute('src')),
                machine: document.getElementById('machine').textContent,
                settings: [...document.querySelectorAll('#settings tr')].map(r => r.innerText)};
    """)


@pytest.mark.slow
def test_a_browser_sees_the_fault_scored_alerted_and_its_clip_plays(live, recordings, tmp_path) -> None:
    live.start_live(recordings["fault"], recordings["model"], speed="2")
    with chromium(tmp_path / "profile") as browser:
        browser.get(f"http://127.0.0.1:{live.port}/")
        first = wait_for(lambda: (s := _page_state(browser))["columns"] > 0 and s["points"] > 0 and s, 30, "first data")
        assert first["machine"] == "pump-1"
        assert first["state"] in ("running", "silent")
        assert any(r.startswith("consecutive") and r.endswith("1") for r in first["settings"]), first["settings"]
        # The spectrogram scrolls and the score moves while the module listens.
        later = wait_for(lambda: (s := _page_state(browser))["columns"] > first["columns"]
                         and s["points"] > first["points"] and s, 30, "the page to update")
        assert later["colours"] > 20, "the spectrogram is drawn, not blank"
        scores = {later["score"]}
        wait_for(lambda: scores.add(_page_state(browser)["score"]) or len(scores) >= 3, 30, "the score to change")
        # The fault raises an alert; the page lists it with a player for its clip.
        clips = wait_for(lambda: _page_state(browser)["alerts"], 60, "an alert on the page")
        src = clips[-1]
        fetched = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch(arguments[0]).then(r => r.arrayBuffer().then(b => done({status: r.status,
                type: r.headers.get('content-type'), bytes: b.byteLength}))).catch(e => done({error: String(e)}));
        """, src)
        assert fetched["status"] == 200 and fetched["type"] == "audio/wav" and fetched["bytes"] > 44, fetched
        played = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const a = document.querySelector('#alerts audio[src="' + arguments[0] + '"]');
            a.muted = true;
            a.play().then(() => setTimeout(() => done({time: a.currentTime, duration: a.duration, error: a.error && a.error.code}), 700),
                          e => done({failed: String(e)}));
        """, src)
        assert played.get("time", 0) > 0 and played["duration"] >= 2.0 and not played["error"], played
        status, headers, wav = live.request("GET", src)
        assert status == 200 and headers["content-type"] == "audio/wav"
        audio, rate = sf.read(io.BytesIO(wav))
        assert rate == 16000 and 2.0 <= audio.shape[0] / rate <= 6.0
        shot = tmp_path / "live-page.png"
        browser.save_screenshot(str(shot))
        print(f"live_page_screenshot: {shot}")
        final = _page_state(browser)
        # Readable on a phone: at a phone's width nothing overflows sideways.
        browser.set_window_size(390, 1400)
        wait_for(lambda: browser.execute_script("return window.innerWidth") <= 420, 10, "the phone width")
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        browser.save_screenshot(str(tmp_path / "live-page-phone.png"))
        assert overflow <= 0, f"the page is {overflow} px wider than a phone"
    print(f"live_page: columns {final['columns']}, points {final['points']}, alerts shown {len(final['alerts'])}")
    assert live.alive() or live.wait(5) == 0


def _ml_predict(model: Path, recording: Path, hop: str) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-m", "ml", "predict", "--model", str(model), "--input", str(recording),
                          "--hop-seconds", hop, "--per-window"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def test_score_api_gives_ml_predicts_scores_for_wav_and_flac(live, recordings, tmp_path) -> None:
    live.start_live(recordings["fault"], recordings["model"])
    reference = _ml_predict(recordings["model"], recordings["short"], "1")
    wav = recordings["short"].read_bytes()
    y, rate = sf.read(recordings["short"], dtype="int16")
    flac = io.BytesIO()
    sf.write(flac, y, rate, format="FLAC")
    for body, kind in ((wav, "audio/wav"), (flac.getvalue(), "audio/flac")):
        status, got = live.json("POST", "/api/score?hop_seconds=1&name=short.wav", body, headers={"Content-Type": kind})
        assert status == 200, got
        assert got["windows"] == reference["windows"] == len(got["per_window"])
        assert got["threshold"] == THRESHOLD and got["model"] == "1"
        np.testing.assert_allclose(got["window_scores"], reference["window_scores"], rtol=0, atol=1e-4)
        assert abs(got["score"] - reference["score"]) < 1e-4
        # The decision is the module's: windows over the threshold, alerts under consecutive 1, cooldown 2 s.
        over = [s > THRESHOLD for s in reference["window_scores"]]
        assert got["decision"]["windows_over_threshold"] == sum(over) > 0
        assert got["decision"]["alert"] and got["decision"]["consecutive"] == 1
        assert [w["label"] for w in got["per_window"]] == ["anomaly" if o else "normal" for o in over]
    # The settings in force are the defaults of a request: the module's hop here (1 s).
    status, default = live.json("POST", "/api/score", wav)
    assert status == 200 and default["hop_seconds"] == pytest.approx(0.992)
    assert live.alive()


def _raw(port: int, head: bytes, body: bytes = b"") -> bytes:
    """Send ``head`` and ``body`` on a plain socket and read the answer to its end."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        try:
            s.sendall(body)
        except OSError:
            pass
        data = b""
        while True:
            try:
                part = s.recv(65536)
            except OSError:
                break
            if not part:
                break
            data += part
    return data


def test_bad_requests_get_clear_4xx_and_the_module_keeps_listening(live, recordings, tmp_path) -> None:
    live.start_live(recordings["fault"], recordings["model"], "--http-max-upload-mb", "1")
    before = live.json("GET", "/api/status")[1]["counters"]["windows"]
    quiet = io.BytesIO()
    sf.write(quiet, np.zeros(8000, dtype=np.float32), 16000, format="WAV")  # 0.5 s: shorter than a window
    slow = io.BytesIO()
    sf.write(slow, np.random.default_rng(0).normal(0, 0.1, 8000 * 4).astype(np.float32), 8000, format="WAV")
    cases = [
        ("POST", "/api/score", b"", 400, "empty body"),
        ("POST", "/api/score", b"RIFF\x00\x00garbage" * 10, 400, "not a usable recording"),
        ("POST", "/api/score", quiet.getvalue(), 400, "shorter than one model window"),
        ("POST", "/api/score", slow.getvalue(), 400, "below the model's 16000 Hz"),
        ("POST", "/api/score?hop_seconds=abc", recordings["short"].read_bytes(), 400, "hop_seconds"),
        ("POST", "/api/score?energy_gate_dbfs=5", recordings["short"].read_bytes(), 400, "energy_gate_dbfs"),
        ("POST", "/api/score", os.urandom(1_200_000), 413, "at most 1048576"),
        ("GET", "/api/score", None, 405, ""),
        ("GET", "/api/nothing", None, 404, "no such page"),
        ("GET", "/api/clips/..%2F..%2Fetc%2Fpasswd", None, 400, "not a clip name"),
        ("GET", "/api/clips/pump-1/2020-01-01/000000000-anomaly-a1.wav", None, 404, "not on this device"),
    ]
    for method, path, body, want, reason in cases:
        status, headers, data = live.request(method, path, body)
        assert status == want, (path, status, data[:300])
        if reason:
            assert headers["content-type"].startswith("application/json")
            assert reason in json.loads(data)["error"], (path, data[:300])
    # A declared size over the limit is refused before the body is read; chunked bodies are counted.
    answer = _raw(live.port, b"POST /api/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 900000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b"at most 1048576" in answer, answer[:300]
    chunk = os.urandom(300_000)
    chunked = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
    answer = _raw(live.port, b"POST /api/score HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n", chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert _raw(live.port, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert _raw(live.port, b"BREW / HTCPCP/1.0\r\n\r\n").startswith(b"HTTP/1.1 400")
    # A page elsewhere reaching loopback through a browser (DNS rebinding) is refused by its Host.
    status, _, data = live.request("GET", "/api/status", headers={"Host": "attacker.example:80"})
    assert status == 403 and b"loopback" in data
    # ...and the module went on: it answers, and it kept analysing windows.
    assert live.alive()
    after = wait_for(lambda: (c := live.json("GET", "/api/status")[1]["counters"]["windows"]) > before and c, 30,
                     "more windows")
    status, good = live.json("POST", "/api/score?hop_seconds=1", recordings["short"].read_bytes())
    assert status == 200 and good["windows"] > 10
    print(f"bad_requests: {len(cases) + 4} refused, windows {before} -> {after}, module alive")


def test_the_token_is_required_everywhere_beyond_loopback_and_never_logged(live, recordings) -> None:
    refused = run_module("--source", str(recordings["short"]), "--model", str(recordings["model"]), "--http-port",
                         str(free_port()), "--http-bind", "0.0.0.0", env={"AUSCULT_HTTP_TOKEN": ""}, timeout=120)
    assert refused.returncode == 2 and "AUSCULT_HTTP_TOKEN" in refused.stderr
    weak = run_module("--source", str(recordings["short"]), "--model", str(recordings["model"]), "--http-port",
                      str(free_port()), env={"AUSCULT_HTTP_TOKEN": "short"}, timeout=120)
    assert weak.returncode == 2 and "at least 16" in weak.stderr and "short" not in weak.stderr.replace("at least", "")

    live.env["AUSCULT_HTTP_TOKEN"] = TOKEN
    live.env["AUSCULT_HTTP_BIND"] = "0.0.0.0"
    live.start_live(recordings["fault"], recordings["model"], "--log-level", "DEBUG")
    live.token = TOKEN
    paths = [("GET", "/"), ("GET", "/api/status"), ("GET", "/api/alerts"), ("GET", "/api/events"),
             ("GET", "/api/clips/pump-1/2020-01-01/000000000-anomaly-a1.wav"), ("GET", "/metrics"),
             ("GET", "/static/app.js"), ("POST", "/api/score"), ("GET", "/nothing")]
    for method, path in paths:
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Cookie": f"auscult_session={TOKEN}"}):
            status, got, _ = live.request(method, path, b"x" if method == "POST" else None, headers, auth=False)
            assert status == 401, (method, path, headers, status)
    for method, path in (("GET", "/"), ("GET", "/api/status"), ("GET", "/metrics"), ("GET", "/static/app.js")):
        assert live.request(method, path)[0] == 200, path
    # A browser logs in with ?token= once: a session cookie (not the token), and the token leaves the URL.
    status, headers, _ = live.request("GET", f"/?token={TOKEN}", auth=False)
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"].split(";")[0]
    assert TOKEN not in cookie and "httponly" in headers["set-cookie"].lower()
    assert live.request("GET", "/api/status", headers={"Cookie": cookie}, auth=False)[0] == 200
    status, _, page = live.request("POST", "/login", f"token={TOKEN}x".encode(),
                                   {"Content-Type": "application/x-www-form-urlencoded"}, auth=False)
    assert status == 401 and b"wrong token" in page
    # Reached through a non-loopback name, with the token, the Host does not matter.
    assert live.request("GET", "/api/status", headers={"Host": "device.local:8080"})[0] == 200
    assert live.alive()
    # The module's log (DEBUG: every request line) never holds the token, with or without query strings.
    live.kill()
    assert TOKEN not in live.text() and "web: GET /api/status" in live.text()


def test_hub_mode_status_is_getstatus_metrics_count_uploads_and_uploaded_clips_still_play(
        live, recordings, edge_env, azurite, hub) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    live.env.update(edge_env)
    live.env.update({"AUSCULT_BLOB_CONNECTION_STRING": azurite.connection_string,
                     "AUSCULT_BLOB_CONTAINER": f"live-{uuid.uuid4().hex[:8]}"})
    live.start_live(recordings["fault"], recordings["model"])
    hub.wait_for(lambda h: h.outputs("alerts"), 60)
    clip = hub.outputs("alerts")[0].body["clip"]
    spool = Path(edge_env["AUSCULT_SPOOL_DIR"]) / "clips"
    wait_for(lambda: not (spool / clip).exists(), 60, "the clip's upload (it leaves the spool)")
    status, headers, wav = live.request("GET", f"/api/clips/{clip}")
    assert status == 200 and headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(wav))
    assert rate == 16000 and audio.shape[0] >= 2 * rate
    code, method_status = hub.invoke("getStatus")
    assert code == 200
    _, page_status = live.json("GET", "/api/status")
    assert set(page_status) == set(method_status) and {"hub", "outbox", "uploads"} <= set(page_status)
    assert page_status["model"] == method_status["model"] and page_status["settings"] == method_status["settings"]
    _, _, text = live.request("GET", "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    for name in ("auscult_windows", "auscult_alerts", "auscult_window_score", "auscult_outbox_sent_messages",
                 "auscult_uploads", "auscult_hub_connected", "auscult_threshold", "auscult_state"):
        assert name in families, name
    assert families["auscult_uploads"].samples[0].value >= 1
    assert families["auscult_threshold"].samples[0].value == THRESHOLD
    alerts_sent = {s.labels["output"]: s.value for s in families["auscult_outbox_sent_messages"].samples}
    assert alerts_sent.get("alerts", 0) >= 1
    assert live.alive()

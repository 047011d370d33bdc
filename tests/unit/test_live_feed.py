"""The live page's parts in-process: the worker's feed (bounded, thread-safe), the metrics text,
the upload scoring, the ``--http-*`` options and audio decoded from memory."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import soundfile as sf
from prometheus_client.parser import text_string_to_metric_families

from audioclassifier.audio_io import AudioFileError, audio_info, iter_blocks, load_audio
from audioclassifier.backends import load_model
from audioclassifier.config import ConfigError, load_config
from audioclassifier.live import DB_HI, DB_LO, LiveFeed, quantize_columns
from audioclassifier.scoring import score_recording, verdict
from audioclassifier.web.metrics import exposition
from harness.audio import tone
from harness.models import make_model


def _publish(feed: LiveFeed, n: int, *, n_mels: int = 8, k: int = 4, score: float | None = 1.0) -> None:
    for i in range(n):
        feed.window(time=1000.0 + i, offset=float(i), level_dbfs=-20.0, score=score, label="anomaly", threshold=0.5,
                    state="running", columns=np.full((n_mels, k), -50.0, dtype=np.float32), frame_seconds=0.032)


def test_columns_are_quantized_column_after_column_and_clipped() -> None:
    cols = np.array([[DB_LO - 10, DB_LO, DB_HI], [DB_HI + 5, (DB_LO + DB_HI) / 2, DB_LO]], dtype=np.float32)
    data = quantize_columns(cols)
    assert list(data) == [0, 255, 0, 128, 255, 0]  # (band 0, band 1) of column 0, then column 1, ...


def test_the_feed_is_bounded_and_hands_out_what_is_new() -> None:
    feed = LiveFeed(windows=50, spectrogram_columns=40, alerts=3, clip_bytes=100_000)
    _publish(feed, 200)
    events, columns, last = feed.since(0)
    assert last == 200 and len(events) == 50 and events[-1].seq == 200
    assert sum(len(c) for c in columns) // 8 <= 40 and columns  # the newest columns, at most 40
    new, new_cols, _ = feed.since(195)
    assert [e.seq for e in new] == [196, 197, 198, 199, 200] and len(new_cols) == 5
    assert feed.since(0, limit=7)[0][0].seq == 194
    # Another front end (n_mels): the old columns no longer line up and are dropped.
    _publish(feed, 1, n_mels=16)
    assert [len(c) for c in feed.since(199)[1]] == [16 * 4]
    assert feed.stats()["scored"] == 201 and feed.stats()["over_threshold"] == 201


def test_alert_clips_are_kept_in_memory_within_their_budget() -> None:
    feed = LiveFeed(alerts=5, clip_bytes=3 * 16000 * 2)  # three one-second clips
    for seq in range(1, 7):
        audio = np.full(16000, 0.5 * (-1) ** seq, dtype=np.float32)
        feed.alert({"seq": seq, "clip": f"m/2026-01-01/{seq}.wav"}, audio, 16000)
    feed.alert({"seq": 7, "clip": None}, None, 16000)
    alerts = feed.alerts()
    assert [a["seq"] for a in alerts] == [7, 6, 5, 4, 3]  # newest first, five kept
    assert [a["clip_held"] for a in alerts] == [False, True, True, True, False]
    samples, rate = feed.clip("m/2026-01-01/6.wav")
    assert rate == 16000 and samples.dtype == np.int16 and samples[0] == 16384
    assert feed.clip("m/2026-01-01/3.wav") is None and feed.stats()["clip_bytes_held"] == 3 * 16000 * 2


def test_readers_on_other_threads_never_see_a_torn_feed() -> None:
    feed = LiveFeed(windows=100, spectrogram_columns=64)
    stop = threading.Event()
    errors: list[str] = []

    def read() -> None:
        seq = 0
        while not stop.is_set():
            events, _, last = feed.since(seq)
            if [e.seq for e in events] != sorted({e.seq for e in events}) or (events and events[-1].seq > last):
                errors.append("out of order")
            seq = last

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    _publish(feed, 3000)
    stop.set()
    for t in readers:
        t.join()
    assert not errors and feed.seq == 3000


def test_metrics_render_the_status_and_the_health_index_when_present() -> None:
    status = {"state": "silent", "version": "0.1.0", "backend": "openvino", "device": "CPU", "threshold": 0.5,
              "last_score": float("nan"), "settings": {"machine": "pump-1"}, "model": {"version": "7"},
              "counters": {"windows": 12, "scored": 10, "alerts": 2}, "uptime_seconds": 5.0, "peak_rss_mb": 100.0,
              "health": {"index": 0.82, "state": "watch", "trend_per_day": -0.01},
              "outbox": {"pending": {"alerts": 1, "telemetry": 0}, "sent": {"alerts": 4}, "dropped": {}, "bytes": 10,
                         "quota_bytes": 100},
              "uploads": {"uploaded": 3, "failures": 1, "pending": 2, "pending_bytes": 2048, "dropped": 0,
                          "paused": "rate limit"}}
    feed = {"scored": 10, "score_sum": 4.5, "over_threshold": 3, "clips_held": 2}
    text = exposition(status, feed, {"streams": 1, "requests": {"2xx": 5, "4xx": 1}}).decode()
    f = {m.name: m for m in text_string_to_metric_families(text)}
    value = {name: m.samples[0].value for name, m in f.items() if m.samples}
    assert value["auscult_windows"] == 12 and value["auscult_alerts"] == 2 and value["auscult_health_index"] == 0.82
    assert value["auscult_health_trend_per_day"] == -0.01 and value["auscult_uploads_paused"] == 1.0
    assert "auscult_last_score" not in value  # NaN is no value
    states = {s.labels["state"]: s.value for s in f["auscult_state"].samples}
    assert states == {"running": 0.0, "silent": 1.0, "no-audio": 0.0}
    assert {s.labels["output"]: s.value for s in f["auscult_outbox_pending_messages"].samples} == {"alerts": 1,
                                                                                                   "telemetry": 0}
    summary = {s.name: s.value for s in f["auscult_window_score"].samples}
    assert summary == {"auscult_window_score_count": 10, "auscult_window_score_sum": 4.5}
    plain = exposition({"state": "running", "counters": {}}, {}, {}).decode()
    assert "auscult_health" not in plain and "auscult_outbox" not in plain  # local mode, no health index yet


def _wav(y: np.ndarray, rate: int = 16000, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def test_audio_is_read_from_memory_with_the_same_checks_as_files(tmp_path) -> None:
    y = tone(3.0, dbfs=-20.0)
    data = _wav(y)
    path = tmp_path / "t.wav"
    path.write_bytes(data)
    assert audio_info("upload", data=data).frames == audio_info(path).frames
    assert np.array_equal(np.concatenate(list(iter_blocks("upload", data=data, block_frames=4000))), load_audio(path))
    with pytest.raises(AudioFileError, match="empty file"):
        audio_info("upload", data=b"")
    with pytest.raises(AudioFileError, match="not a readable audio file") as err:
        audio_info("upload", data=b"RIFF" + bytes(100))
    assert "BytesIO" not in str(err.value)
    for bad in (np.nan, 1e6):
        with pytest.raises(AudioFileError, match="NaN|beyond full scale"):
            list(iter_blocks("upload", data=_wav(np.full(16000, bad, dtype=np.float32), subtype="FLOAT"),
                             block_frames=4000))


def test_an_upload_is_scored_window_by_window_with_the_modules_decision(tmp_path) -> None:
    model = load_model(make_model(tmp_path / "m.onnx", threshold=-40.0), backend="onnxruntime")
    quiet, loud = tone(4.0, dbfs=-60.0), tone(6.0, dbfs=-10.0)
    data = _wav(np.concatenate([quiet, loud]).astype(np.float32), fmt="FLAC")
    probe = score_recording(data, name="up.flac", model=model, threshold=0.0, hop_seconds=1.0, gate_dbfs=-90.0,
                            consecutive=2, cooldown_seconds=100.0)["window_scores"]
    threshold = (min(probe) + max(probe)) / 2
    r = score_recording(data, name="up.flac", model=model, threshold=threshold, hop_seconds=1.0, gate_dbfs=-90.0,
                        consecutive=2, cooldown_seconds=100.0)
    scores = r["window_scores"]
    assert r["windows"] == len(scores) == len(r["per_window"]) >= 8 and None not in scores
    over = [s > threshold for s in scores]
    assert not over[0] and over[-1]  # quiet first, loud at the end
    # consecutive 2 and a long cooldown: one alert, at the second window in a row over the threshold
    first = over.index(True)
    assert r["decision"]["alert"] and len(r["decision"]["alerts"]) == 1
    assert r["decision"]["alerts"][0]["start_seconds"] == r["per_window"][first + 1]["start_seconds"]
    assert [w["label"] for w in r["per_window"]] == ["anomaly" if o else "normal" for o in over]
    gated = score_recording(data, name="up.flac", model=model, threshold=threshold, hop_seconds=1.0, gate_dbfs=-30.0,
                            consecutive=1, cooldown_seconds=0.0)
    assert gated["silent"] > 0 and gated["window_scores"][0] is None
    with pytest.raises(AudioFileError, match="shorter than one model window"):
        score_recording(_wav(quiet[:8000]), name="s", model=model, threshold=0.0, hop_seconds=1.0, gate_dbfs=-90,
                        consecutive=1, cooldown_seconds=0)
    with pytest.raises(AudioFileError, match="at most 3 s"):
        score_recording(data, name="s", model=model, threshold=0.0, hop_seconds=1.0, gate_dbfs=-90, consecutive=1,
                        cooldown_seconds=0, max_seconds=3.0)
    assert verdict(model.card, [], threshold=0.0, gate_dbfs=-70.0, loudest_dbfs=-80.0)["label"] == "silent"


def test_the_page_is_off_by_default_and_needs_a_token_beyond_loopback() -> None:
    assert load_config([], {}).http is None
    http = load_config(["--http-port", "8080"], {}).http
    assert http is not None and (http.port, http.bind, http.token) == (8080, "127.0.0.1", "")
    with pytest.raises(ConfigError, match="AUSCULT_HTTP_TOKEN"):
        load_config(["--http-port", "8080", "--http-bind", "0.0.0.0"], {})
    env = {"AUSCULT_HTTP_PORT": "8081", "AUSCULT_HTTP_BIND": "::", "AUSCULT_HTTP_TOKEN": "t" * 16,
           "AUSCULT_HTTP_MAX_UPLOAD_MB": "2"}
    http = load_config([], env).http
    assert http is not None and (http.port, http.bind, http.max_upload_bytes) == (8081, "::", 2 * 2**20)
    assert "t" * 16 not in repr(http)
    with pytest.raises(ConfigError, match="at least 16"):
        load_config(["--http-port", "1"], {"AUSCULT_HTTP_TOKEN": "short"})
    for bad in (["--http-port", "70000"], ["--http-port", "x"], ["--http-max-upload-mb", "0"],
                ["--http-bind", "a b"]):
        with pytest.raises(SystemExit):
            load_config(bad, {})

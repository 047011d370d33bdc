"""``/metrics``: the module's state in Prometheus text format, from one status read per scrape.

:func:`exposition` renders a status (what ``getStatus`` answers), the live feed's counters and the
web server's own with prometheus_client's metric families: windows, scores, alerts, clips, the
source, the outbox and uploads (IoT Hub mode), the health index when the status has one, and the
process. Nothing is registered globally: each scrape renders what the status says now.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE", "exposition"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
STATES = ("running", "silent", "no-audio")
#: Status counters exported as counters: (status key, metric name, help).
COUNTERS = (
    ("windows", "auscult_windows", "windows analysed"),
    ("scored", "auscult_windows_scored", "windows scored (over the energy gate)"),
    ("silent", "auscult_windows_silent", "windows under the energy gate (not scored)"),
    ("alerts", "auscult_alerts", "alerts raised"),
    ("suppressed", "auscult_alerts_suppressed", "alerts held back (cooldown, calibration)"),
    ("clips", "auscult_clips", "alert clips written"),
    ("clip_errors", "auscult_clip_errors", "alert clips that could not be written"),
    ("captures", "auscult_captures", "captureClip recordings written"),
    ("model_swaps", "auscult_model_swaps", "models swapped in"),
    ("overflows", "auscult_audio_overflows", "audio blocks lost by the capture (input overflows)"),
    ("reopens", "auscult_source_reopens", "microphone reopens"),
)


def _num(value: Any) -> float | None:
    """A finite number, or None (missing, not a number, NaN: no sample rather than a wrong one)."""
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class _Snapshot:
    """A collector over one status (see :func:`exposition`)."""

    def __init__(self, status: Mapping[str, Any], feed: Mapping[str, Any], web: Mapping[str, Any]) -> None:
        self.status, self.feed, self.web = status, feed, web

    def collect(self) -> Iterator[Metric]:
        s = self.status
        settings = s.get("settings") or {}
        model = s.get("model") or {}
        info = GaugeMetricFamily("auscult_info", "the module: version, machine, model, backend",
                                 labels=["version", "machine", "model", "backend", "device"])
        info.add_metric([str(s.get("version", "")), str(settings.get("machine", "")), str(model.get("version", "")),
                         str(s.get("backend", "")), str(s.get("device", ""))], 1.0)
        yield info
        state = GaugeMetricFamily("auscult_state", "1 for the state the module is in", labels=["state"])
        for name in STATES:
            state.add_metric([name], float(s.get("state") == name))
        yield state
        counters = s.get("counters") or {}
        for key, name, doc in COUNTERS:
            value = _num(counters.get(key))
            if value is not None:
                yield CounterMetricFamily(name, doc, value=value)
        yield from self._scores()
        for key, name, doc in (("audio_seconds", "auscult_audio_seconds", "seconds of audio analysed"),):
            value = _num(s.get(key))
            if value is not None:
                yield CounterMetricFamily(name, doc, value=value)
        for key, name, doc, scale in (("uptime_seconds", "auscult_uptime_seconds", "seconds since start", 1.0),
                                      ("peak_rss_mb", "auscult_peak_rss_bytes", "peak resident memory", 2.0**20)):
            value = _num(s.get(key))
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value * scale)
        yield from self._learning(s)
        yield from self._health(s.get("health"))
        yield from self._hub(s)
        yield GaugeMetricFamily("auscult_web_live_pages", "live pages connected", value=float(self.web.get("streams", 0)))
        requests = CounterMetricFamily("auscult_web_requests", "web requests answered", labels=["status"])
        for kind, n in sorted((self.web.get("requests") or {}).items()):
            requests.add_metric([kind], float(n))
        yield requests

    def _scores(self) -> Iterator[Metric]:
        s, feed = self.status, self.feed
        for key, name, doc in (("last_score", "auscult_last_score", "the last window's score"),
                               ("threshold", "auscult_threshold", "the threshold in force")):
            value = _num(s.get(key))
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)
        yield SummaryMetricFamily("auscult_window_score", "scores of the windows scored since start",
                                  count_value=int(feed.get("scored", 0)), sum_value=float(feed.get("score_sum", 0.0)))
        yield CounterMetricFamily("auscult_windows_over_threshold", "scored windows over the threshold in force",
                                  value=float(feed.get("over_threshold", 0)))
        yield GaugeMetricFamily("auscult_live_clips_held", "alert clips held in memory for the page",
                                value=float(feed.get("clips_held", 0)))

    def _learning(self, s: Mapping[str, Any]) -> Iterator[Metric]:
        for key, name in (("calibration", "auscult_calibration_state"), ("learning", "auscult_learning_state")):
            block = s.get(key)
            if isinstance(block, Mapping) and block.get("state"):
                g = GaugeMetricFamily(name, f"1 for the {key} state", labels=["state"])
                g.add_metric([str(block["state"])], 1.0)
                yield g

    def _health(self, health: Any) -> Iterator[Metric]:
        """The per-machine health index, when the status carries one (``{"index","state","trend_per_day"}``)."""
        if not isinstance(health, Mapping):
            return
        index, trend = _num(health.get("index")), _num(health.get("trend_per_day"))
        if index is not None:
            yield GaugeMetricFamily("auscult_health_index", "the machine's health index", value=index)
        if trend is not None:
            yield GaugeMetricFamily("auscult_health_trend_per_day", "the health index's trend per day", value=trend)
        if health.get("state"):
            g = GaugeMetricFamily("auscult_health_state", "1 for the health state", labels=["state"])
            g.add_metric([str(health["state"])], 1.0)
            yield g

    def _hub(self, s: Mapping[str, Any]) -> Iterator[Metric]:
        hub, outbox, uploads = s.get("hub"), s.get("outbox"), s.get("uploads")
        if isinstance(hub, Mapping):
            yield GaugeMetricFamily("auscult_hub_connected", "1 while connected to edgeHub",
                                    value=float(bool(hub.get("connected"))))
            for key, name, doc in (("connects", "auscult_hub_connects", "connections made"),
                                   ("send_failures", "auscult_hub_send_failures", "sends that failed")):
                value = _num(hub.get(key))
                if value is not None:
                    yield CounterMetricFamily(name, doc, value=value)
        if isinstance(outbox, Mapping):
            for key, name, doc, kind in (("pending", "auscult_outbox_pending_messages", "messages waiting", "gauge"),
                                         ("sent", "auscult_outbox_sent_messages", "messages sent", "counter"),
                                         ("dropped", "auscult_outbox_dropped_messages", "messages dropped (quota)",
                                          "counter")):
                family: Any = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(name, doc, labels=["output"])
                for output, n in sorted((outbox.get(key) or {}).items()):
                    family.add_metric([str(output)], float(n))
                yield family
            for key, name in (("bytes", "auscult_outbox_bytes"), ("quota_bytes", "auscult_outbox_quota_bytes")):
                value = _num(outbox.get(key))
                if value is not None:
                    yield GaugeMetricFamily(name, f"outbox {key.replace('_', ' ')}", value=value)
        if isinstance(uploads, Mapping):
            for key, name, doc, kind in (("uploaded", "auscult_uploads", "clips uploaded", "counter"),
                                         ("failures", "auscult_upload_failures", "uploads that failed", "counter"),
                                         ("dropped", "auscult_spool_dropped_clips", "clips dropped (spool quota)",
                                          "counter"),
                                         ("pending", "auscult_uploads_pending_clips", "clips waiting", "gauge"),
                                         ("pending_bytes", "auscult_uploads_pending_bytes", "bytes waiting", "gauge")):
                value = _num(uploads.get(key))
                if value is not None:
                    cls: Any = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
                    yield cls(name, doc, value=value)
            yield GaugeMetricFamily("auscult_uploads_paused", "1 while uploads are paused (disabled, rate limit)",
                                    value=float(bool(uploads.get("paused"))))


def exposition(status: Mapping[str, Any], feed: Mapping[str, Any], web: Mapping[str, Any]) -> bytes:
    """The metrics text for ``status`` (getStatus's answer), the feed's and the web server's counters."""
    return generate_latest(_Snapshot(status, feed, web))

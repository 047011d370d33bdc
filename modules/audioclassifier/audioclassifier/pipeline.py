"""The pipeline: what the runtime's worker does with each chunk, single-threaded and lock-free.

Chunk → :class:`~audioclassifier.analysis.Windower` → gate and score → detector (or, while a
site calibration runs, the calibration; while on-site learning runs, the learning) → alerts,
telemetry, captures. :class:`Pipeline` owns the
worker's state: the model and settings in force, the windower and the detector, the small parts
that each hold one concern (:class:`~audioclassifier.telemetry.TelemetryAccumulator`,
:class:`~audioclassifier.calibration.SiteCalibration`, :class:`~audioclassifier.capture.Captures`,
:func:`~audioclassifier.alerts.build_alert`, :class:`~audioclassifier.windowlog.WindowLog`), the
counters and the state. :meth:`Pipeline.execute` applies a command from the queue
(:mod:`audioclassifier.commands`) between two chunks. Threads are the runtime's business, not its.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from audioclassifier.alerts import FlaggedWindow, build_alert
from audioclassifier.alertwindows import AlertRecord, AlertWindows
from audioclassifier.analysis import Window, Windower
from audioclassifier.backends import LoadedModel
from audioclassifier.bands import NormalBands, window_bands
from audioclassifier.calibration import CalibrationError, SiteCalibration
from audioclassifier.capture import Captures, write_capture
from audioclassifier.commands import (
    ApplySettings,
    Command,
    EndCalibration,
    GiveFeedback,
    StartCalibration,
    StartCapture,
    StartLearning,
    SwapModel,
)
from audioclassifier.detector import Detector
from audioclassifier.events import Telemetry
from audioclassifier.feedback import Feedback
from audioclassifier.health import HealthTracker
from audioclassifier.live import LiveFeed
from audioclassifier.onsite import OnsiteError, OnsiteLearning
from audioclassifier.procinfo import seconds_since_start
from audioclassifier.sequence import SequenceStore
from audioclassifier.settings import Settings
from audioclassifier.sinks import Sink
from audioclassifier.sources import AudioSource, Chunk
from audioclassifier.telemetry import Interval, TelemetryAccumulator
from audioclassifier.windowlog import WindowLog

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)


class Pipeline:
    """The worker's state and per-chunk work (see the module docstring)."""

    def __init__(self, *, source: AudioSource, model: LoadedModel, settings: Settings, sink: Sink,
                 state_path: Path | None, context_seconds: float, window_log: Path | None,
                 onsite: OnsiteLearning | None = None, alert_windows: AlertWindows | None = None,
                 feedback: Feedback | None = None, feed: LiveFeed | None = None, bands_dir: Path | None = None,
                 on_health: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.source, self.model, self.settings, self.sink = source, model, settings, sink
        self.feed = feed  # the live page's feed (--http-port), or None
        self.context_seconds = context_seconds
        self.windower = Windower(model.card, hop_seconds=settings.hop_seconds, context_seconds=context_seconds)
        self.onsite = onsite if onsite is not None else OnsiteLearning()
        self.onsite.bind(model.card, settings.machine)
        self.alert_windows = alert_windows if alert_windows is not None else AlertWindows()
        self.feedback = feedback if feedback is not None else Feedback()
        self._bound = (self.onsite.fingerprint, settings.machine)  # what the recent windows were heard with
        self.health = HealthTracker(settings.health_window_seconds)
        self.on_health = on_health
        self.bands = NormalBands(bands_dir)
        self.bands.bind(model.card.features, settings.machine)
        self.bands.set_learned(self.onsite.band_profile)
        self.detector = Detector(self.threshold, settings.consecutive, settings.cooldown_seconds)
        self.state = "no-audio" if source.state == "no-audio" else "running"
        # alerts waiting for their last samples
        self._flagged: deque[tuple[Window, float, str, AlertRecord]] = deque()
        self.counters = {"windows": 0, "scored": 0, "silent": 0, "alerts": 0, "clips": 0, "clip_errors": 0,
                         "captures": 0, "model_swaps": 0}
        self.last_error: str | None = None
        self.last_score: float | None = None
        self.first_score_seconds: float | None = None
        self.audio_seconds = 0.0
        self.started = time.time()
        self.live = False  # a worker runs: captures can be served
        self.calibration = SiteCalibration()
        self.captures = Captures()
        self.telemetry = TelemetryAccumulator(lambda: self.source.overflows)
        self._seq = SequenceStore(state_path)
        self._window_log = WindowLog(window_log)

    @property
    def threshold(self) -> float:
        """The threshold in force: the settings' override, the learned one or the model card's."""
        return threshold_of(self.settings, self.model, self.onsite.threshold)

    @property
    def hop_seconds(self) -> float:
        return self.windower.hop_seconds

    @property
    def suppressed(self) -> int:
        return self.detector.suppressed

    def calibration_status(self) -> dict[str, Any]:
        return self.calibration.status()

    def learning_status(self) -> dict[str, Any]:
        return self.onsite.status()

    def feedback_status(self) -> dict[str, Any]:
        return self.feedback.status(self.onsite, self.alert_windows)

    def health_status(self) -> dict[str, Any]:
        return self.health.status()

    # -- commands ---------------------------------------------------------------------------------

    def execute(self, command: Command) -> Any:
        """Apply ``command``; its outcome (a StartCapture's comes when the clip is written)."""
        if isinstance(command, ApplySettings):
            return self.install(command.settings, command.model)
        if isinstance(command, SwapModel):
            return self.install(self.settings, command.model)
        if isinstance(command, StartCapture):
            if not self.live:
                return command.capture.fail("the runtime is not running")
            return self.captures.add(command.capture)
        if isinstance(command, StartCalibration):
            if self.onsite.running:
                raise CalibrationError("on-site learning is running")
            started = self.calibration.start(command.seconds, command.percentile, command.on_done)
            self.bands.start_calibration()
            return started
        if isinstance(command, StartLearning):
            if self.calibration.running:
                raise OnsiteError("a site calibration is running")
            self._break_run()
            return self.onsite.start(command.seconds)
        if isinstance(command, EndCalibration) and self.calibration.is_current(command.run):
            return self._end_calibration(command.reason)
        if isinstance(command, GiveFeedback):
            outcome = self.feedback.give(command.seq, command.verdict, label=command.label, note=command.note,
                                         alerts=self.alert_windows, onsite=self.onsite, hop_seconds=self.hop_seconds)
            self.install(self.settings)  # a learned model started or dropped: its threshold
            return outcome
        return None

    def install(self, settings: Settings, model: LoadedModel | None = None) -> None:
        """Put ``settings`` (and ``model``) in force; a new front end or window restarts the analysis."""
        renamed = settings.machine != self.settings.machine
        if model is not None and model is not self.model:
            old, self.model = self.model, model
            self._restart_health("a new model")
            if (model.card.features, model.card.window_samples) != (old.card.features, old.card.window_samples):
                log.info("the new model has another front end or window: analysis restarts")
                self._release_flagged(final=True)
                self.windower = Windower(model.card, hop_seconds=settings.hop_seconds,
                                         context_seconds=self.context_seconds)
                self._break_run()
            self._end_calibration("the model changed during the calibration")
            self.counters["model_swaps"] += 1
            old.close()
        self.settings = settings
        self.onsite.bind(self.model.card, settings.machine)  # a new front end or machine: another learned state
        if (self.onsite.fingerprint, settings.machine) != self._bound:
            self._bound = (self.onsite.fingerprint, settings.machine)
            self.alert_windows.forget_recent()
        self.bands.bind(self.model.card.features, settings.machine)
        self.bands.set_learned(self.onsite.band_profile)
        if renamed:
            self._restart_health(f"machine {settings.machine}")
        self.health.window_seconds = settings.health_window_seconds
        self.detector.configure(self.threshold, settings.consecutive, settings.cooldown_seconds)
        if self.windower.hop_frames != self.windower.card.features.hop_frames(settings.hop_seconds):
            self.windower.set_hop(settings.hop_seconds)

    # -- audio ------------------------------------------------------------------------------------

    def on_chunk(self, chunk: Chunk) -> None:
        """Captures, windows, calibration progress, state and telemetry for one chunk."""
        for capture in self.captures.feed(chunk):
            error = write_capture(capture, clip_dir=self.sink.clip_dir, machine=self.settings.machine,
                                  seq=self._seq.next("captures"), sample_rate=self.windower.sample_rate,
                                  fallback_time=time.time())
            self.counters["captures"] += error is None
            self.last_error = error or self.last_error
        if chunk.discontinuity:
            self._break_run()
            self.alert_windows.end_run()
        for window in self.windower.push(chunk):
            self._on_window(window)
        self._release_flagged()
        seconds = chunk.samples.shape[0] / self.windower.sample_rate
        self.audio_seconds += seconds
        if self.calibration.advance(seconds):
            self._conclude_calibration()
        if self.onsite.advance(seconds):
            self.onsite.conclude(self.hop_seconds)
            self.install(self.settings)  # the learned threshold (or what stays in force)
            self._break_run()
            if self.onsite.model is not None and self.onsite.status().get("state") == "learned":
                self._restart_health("a new learned normal model")
        if self.source.state == "no-audio":
            self._set_state("no-audio", self.source.last_error or "")
            self._break_run()
        elif seconds and self.state == "no-audio":
            self._set_state("running", "audio is back")
        self._emit_telemetry(self.telemetry.advance(chunk.start_time, chunk.offset, seconds,
                                                    interval_seconds=self.settings.telemetry_interval_seconds))

    def finish(self, why: str) -> None:
        """The source ended (``why``): fail what waits for audio, send the last telemetry."""
        self._release_flagged(final=True)  # with the audio there is
        self.alert_windows.end_run()
        self.captures.fail_all(why, self.windower.sample_rate)
        self._end_calibration(f"{why} {self.calibration.describe_progress()}")
        self.onsite.fail(why)
        self._emit_telemetry(self.telemetry.finish())
        self._window_log.close()

    def _on_window(self, w: Window) -> None:
        s = self.settings
        self.counters["windows"] += 1
        if w.level_dbfs < s.energy_gate_dbfs:
            self.counters["silent"] += 1
            self.telemetry.window(w.start_time, w.start_offset, w.level_dbfs, None)
            self.calibration.window()
            self.alert_windows.end_run()
            self._window_log.write(w, None, None, self.detector.threshold)
            self.detector.update(None, w.end_offset)
            self.onsite.gap()
            self._set_state("silent", f"level {w.level_dbfs:.1f} dBFS under the gate {s.energy_gate_dbfs:g} dBFS")
            self._publish(w, None, None)
            return
        score, label, embedding = self.model.analyse(w.logmel)
        score = self.onsite.score(score, embedding)  # the learned model's, once learned
        if self.first_score_seconds is None:
            self.first_score_seconds = round(seconds_since_start(), 3)
            log.info("first score %.3f s after process start (cold start)", self.first_score_seconds)
        self._set_state("running")
        self.counters["scored"] += 1
        self.last_score = score
        self.telemetry.window(w.start_time, w.start_offset, w.level_dbfs, score)
        self._window_log.write(w, score, label, self.detector.threshold)
        self._publish(w, score, label)
        if self.onsite.running:  # learned, not scored against a threshold
            self.onsite.window(embedding, window_bands(w.logmel))
            self.alert_windows.end_run()
            return
        if self.calibration.running:  # held back: this sound is normal by definition
            self.bands.window(*window_bands(w.logmel), normal=True)
            self.calibration.window(score, held_back=self.detector.observe(score, w.end_offset))
            self.alert_windows.window(embedding, over=False)
            return
        normal = score <= self.detector.threshold and self.health.state == "ok"
        if normal:  # the running normal (explanations when nothing was learned or calibrated)
            self.bands.window(*window_bands(w.logmel), normal=True)
        if self.health.update(score, self.detector.threshold, w.end_time):
            self._health_changed()
        overlap = math.ceil(self.model.card.window_seconds / self.hop_seconds - 1e-9) - 1
        self.alert_windows.window(embedding, over=score > self.detector.threshold, overlap=overlap)
        if self.detector.update(score, w.end_offset):
            self._flagged.append((w, score, label, self.alert_windows.flagged(self.onsite.fingerprint)))
            self._release_flagged()

    def _break_run(self) -> None:
        """The run of sound broke (lost audio, a new rule or model): the detector's run and the
        learned model's sustained score start afresh."""
        self.detector.reset()
        self.onsite.gap()

    def _publish(self, w: Window, score: float | None, label: str | None) -> None:
        """Hand the window to the live page's feed: the spectrogram columns it added (all of them
        for a segment's first window), its score and the state. A feed failure never stops the worker."""
        if self.feed is None:
            return
        frames = self.windower.window_frames
        new = frames if w.index == 0 else min(frames, self.windower.hop_frames)
        state = "learning" if self.onsite.running else "calibrating" if self.calibration.running else self.state
        try:
            self.feed.window(time=w.end_time, offset=w.end_offset, level_dbfs=w.level_dbfs, score=score, label=label,
                             threshold=self.detector.threshold, state=state, columns=w.logmel[:, frames - new:],
                             frame_seconds=self.windower.hop_length / self.windower.sample_rate)
        except Exception:
            self.feed.errors += 1
            log.exception("live feed: window not published")

    def _release_flagged(self, *, final: bool = False) -> None:
        """Alert for the flagged windows whose audio has all arrived (a window's last STFT frame can
        end up to a hop before the window does: its clip waits for the chunk that completes it)."""
        while self._flagged and (final or self.windower.ring.end >= self._flagged[0][0].end_sample):
            w, score, label, record = self._flagged.popleft()
            self._alert(FlaggedWindow(w, score, label, self.windower.clip(w), self.windower.sample_rate), record)

    def _alert(self, flagged: FlaggedWindow, record: AlertRecord) -> None:
        self.counters["alerts"] += 1
        self.telemetry.alert()
        alert, error = build_alert(flagged, clip_dir=self.sink.clip_dir, machine=self.settings.machine,
                                   threshold=self.detector.threshold, model=self.model.version,
                                   seq=self._seq.next("alerts"), health=self.health.status(),
                                   explanation=self.bands.explain(flagged.window.logmel))
        self.counters["clips" if error is None else "clip_errors"] += 1
        self.last_error = error or self.last_error
        self.alert_windows.alerted(record, seq=alert.seq, machine=alert.machine, clip=alert.clip, label=alert.label,
                                   score=alert.score, threshold=alert.threshold, time=alert.window_start,
                                   model=alert.model)
        message = alert.to_message()
        self.sink.emit("alerts", message)
        if self.feed is not None:
            try:
                self.feed.alert(message, flagged.audio, flagged.sample_rate)
            except Exception:
                self.feed.errors += 1
                log.exception("live feed: alert not published")

    def _emit_telemetry(self, interval: Interval | None) -> None:
        if interval is not None:
            t = Telemetry(machine=self.settings.machine, state=self.state, model=self.model.version,
                          seq=self._seq.next("telemetry"), health=self.health.status(), **interval.fields())
            self.sink.emit("telemetry", t.to_message())

    def _conclude_calibration(self) -> None:
        """Put the fitted threshold in force as the settings' override (between chunks, so the
        result does not depend on thread timing), or fail the calibration."""
        try:
            result = self.calibration.fit()
        except CalibrationError as exc:
            self._end_calibration(str(exc))
            return
        old = self.threshold
        self.install(replace(self.settings, threshold=result["threshold"]))
        self._break_run()  # a new rule: runs start afresh
        self.bands.end_calibration(True)  # what it heard is the machine's normal for explanations
        self._restart_health("a site calibration")
        state = self.calibration.finish(result) or {}
        log.info("site calibration done: threshold %.4g → %.4g (%s; %d window(s) over the old threshold held back)",
                 old, self.threshold, result["method"], state.get("suppressed", 0))

    def _end_calibration(self, error: str) -> None:
        """Fail the calibration in progress, if any, with ``error``."""
        if self.calibration.finish(error=error) is not None:
            self.bands.end_calibration(False)
            self.last_error = f"calibration failed: {error}"
            log.error("site calibration failed, the threshold stays %.4g: %s", self.threshold, error)

    def _health_changed(self) -> None:
        h = self.health.status()
        log.log(logging.WARNING if h["state"] != "ok" else logging.INFO, "health of %s: %s (index %s)",
                self.settings.machine, h["state"], h["index"])
        if self.on_health is not None:
            try:
                self.on_health(h)
            except Exception:
                log.exception("on_health failed")

    def _restart_health(self, why: str) -> None:
        """A new normal (model, learned model, calibration, machine): the health starts afresh."""
        was = self.health.state
        self.health.reset()
        if was != "ok":
            log.info("health starts afresh (%s)", why)
            self._health_changed()

    def _set_state(self, state: str, why: str = "") -> None:
        if state != self.state:
            log.info("state %s → %s%s", self.state, state, f" ({why})" if why else "")
            self.state = state


def threshold_of(settings: Settings, model: LoadedModel, learned: float | None = None) -> float:
    """The threshold ``settings`` put in force with ``model``: their override, else the ``learned``
    one (on-site learning), else the card's."""
    if settings.threshold is not None:
        return float(settings.threshold)
    return model.card.threshold if learned is None else learned

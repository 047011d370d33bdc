"""The runtime: source → windows → scores → detector → alerts, telemetry and clips; and its controls.

One worker (the thread that calls :meth:`Runtime.run`) does all the work, chunk by chunk. Other
threads (the IoT Hub's twin and methods, signal handlers) talk to it through the
:class:`~audioclassifier.control.RuntimeControl` methods, which hand changes to the worker to
apply between windows: settings take effect on the next window, a new model is compiled in the
caller's thread and swapped in between two windows, so no audio is dropped.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from audioclassifier import __version__
from audioclassifier.analysis import Window, Windower, hop_frames_for, level_dbfs
from audioclassifier.backends import LoadedModel, load_model
from audioclassifier.calibration import gamma_threshold
from audioclassifier.clips import clip_name, write_clip
from audioclassifier.detector import Detector
from audioclassifier.events import Alert, Telemetry
from audioclassifier.procinfo import peak_rss_mb, seconds_since_start
from audioclassifier.sequence import SequenceStore
from audioclassifier.settings import DEVICES, Settings
from audioclassifier.sinks import Sink
from audioclassifier.sources import AudioSource, Chunk, SourceError
from audioclassifier.errors import AuscultError

__all__ = ["CalibrationError", "CaptureError", "Runtime"]

log = logging.getLogger(__name__)

#: Seconds of audio before the flagged window that an alert's clip includes.
CLIP_CONTEXT_SECONDS = 3.0
MAX_CAPTURE_SECONDS = 600.0
MAX_CALIBRATION_SECONDS = 3600.0
#: Fewest scored windows a site calibration fits a threshold to (fewer: it fails, the old stays).
MIN_CALIBRATION_WINDOWS = 10


class CaptureError(AuscultError):
    """A requested clip could not be recorded (bad request, the source ended, a write failed)."""


class CalibrationError(AuscultError):
    """A site calibration was refused (bad request, one already running) or failed (too few
    scored windows, the source ended, the model changed); the threshold in force stays."""


@dataclass
class _Calibration:
    """A site calibration in progress: the scores of the scored windows over ``seconds`` of audio."""

    seconds: float
    percentile: float
    on_done: Callable[[dict[str, Any]], None] | None = None
    audio: float = 0.0  # seconds of audio heard so far
    scores: list[float] = field(default_factory=list)
    windows: int = 0  # all windows seen, silent ones included
    suppressed: int = 0  # alerts held back while calibrating
    result: dict[str, Any] | None = None  # the fit's outcome
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Capture:
    seconds: float
    label: str
    needed: int
    parts: list[np.ndarray] = field(default_factory=list)
    have: int = 0
    start_time: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    path: Path | None = None
    error: str | None = None


@dataclass
class _Interval:
    """Telemetry accumulators for one interval."""

    start_time: float
    start_offset: float
    windows: int = 0
    scored: int = 0
    score_sum: float = 0.0
    score_max: float | None = None
    power_sum: float = 0.0
    alerts: int = 0
    overflows_at_start: int = 0


class Runtime:
    """The module's main job over one source, one model and one sink (see the module docstring)."""

    def __init__(
        self,
        *,
        source: AudioSource,
        model: LoadedModel,
        settings: Settings,
        sink: Sink,
        backend: str = "auto",
        state_path: Path | None = None,
        context_seconds: float = CLIP_CONTEXT_SECONDS,
        window_log: Path | None = None,
    ) -> None:
        self.source = source
        self.model = model
        self.model_path = model.path
        self.sink = sink
        self.backend_preference = backend
        self.context_seconds = context_seconds
        self._settings = settings
        self._applied: Settings | None = None
        self._lock = threading.Lock()
        self._pending_model: tuple[LoadedModel, threading.Event] | None = None
        self._captures: list[_Capture] = []
        self._stop = threading.Event()
        self._running = False
        self._seq = SequenceStore(state_path)
        self.windower = Windower(model.card, hop_seconds=settings.hop_seconds, context_seconds=context_seconds)
        self.detector = Detector(self._threshold(settings, model), settings.consecutive, settings.cooldown_seconds)
        self.state = "no-audio" if getattr(source, "state", "running") == "no-audio" else "running"
        self.counters = {"windows": 0, "scored": 0, "silent": 0, "alerts": 0, "clips": 0, "clip_errors": 0,
                         "captures": 0, "model_swaps": 0}
        self.last_error: str | None = None
        self.last_score: float | None = None
        self.first_score_seconds: float | None = None
        self.audio_seconds = 0.0
        self._interval: _Interval | None = None
        self._last_end: tuple[float, float] | None = None  # (UTC, offset) after the last chunk
        self._started = time.time()
        self._window_log = open(window_log, "w", encoding="utf-8", buffering=1) if window_log is not None else None
        self._calibration: _Calibration | None = None
        self._calibration_state: dict[str, Any] = {"state": "idle"}

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _threshold(settings: Settings, model: LoadedModel) -> float:
        return model.card.threshold if settings.threshold is None else float(settings.threshold)

    @property
    def threshold(self) -> float:
        """The threshold in force: the settings' override or the model card's."""
        return self._threshold(self._settings, self.model)

    # -- RuntimeControl ---------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    def apply_settings(self, new: Settings) -> None:
        """Take ``new`` live; a device or precision change recompiles first and raises (keeping all) on failure."""
        if not isinstance(new, Settings):
            raise TypeError(f"expected Settings, got {type(new).__name__}")
        if new.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {new.device!r}")
        old = self._settings
        recompile = (new.device, new.precision) != (old.device, old.precision)
        if recompile and self.backend_preference in ("auto", "openvino"):
            # Compile for the new device first: on failure nothing changes (auto may fall back).
            compiled = load_model(self.model_path, backend=self.backend_preference, device=new.device,
                                  precision=new.precision)
            self._hand_over(compiled)
            log.info("device %s/%s → %s/%s: %s on %s at %s%s", old.device, old.precision, new.device,
                     new.precision, compiled.backend.name, compiled.backend.device, compiled.backend.precision,
                     f" ({compiled.note})" if compiled.note else "")
        elif recompile:
            log.info("device %s/%s noted; it applies to OpenVINO, this module runs onnxruntime (f32)",
                     new.device, new.precision)
        with self._lock:
            self._settings = new
        if not self._running:
            self._apply_settings()
        log.info("settings in force: %s", _changes(old, new) or "unchanged")

    def status(self) -> dict[str, Any]:
        s = self._settings
        model = self.model
        return {
            "state": self.state,
            "source": getattr(self.source, "name", "?"),
            "backend": model.backend.name,
            "device": model.backend.device,
            "precision": model.backend.precision,
            "backend_note": model.note,
            "model": {"path": str(model.path), **model.card.summary()},
            "threshold": self.threshold,
            "hop_seconds": self.windower.hop_seconds,
            "settings": s.to_dict(),
            "counters": {**self.counters, "suppressed": self.detector.suppressed,
                         "overflows": getattr(self.source, "overflows", 0),
                         "reopens": getattr(self.source, "reopens", 0)},
            "last_score": self.last_score,
            "audio_seconds": round(self.audio_seconds, 3),
            "first_score_seconds": self.first_score_seconds,
            "uptime_seconds": round(time.time() - self._started, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "last_error": self.last_error or getattr(self.source, "last_error", None),
            "calibration": self.calibration_status(),
            "version": __version__,
        }

    def calibration_status(self) -> dict[str, Any]:
        """``{"state": "idle" | "running" | "done" | "failed", ...}``: progress while running, the
        result (threshold, method, windows, percentile) when done, the reason when failed."""
        cal = self._calibration
        if cal is not None:
            return {"state": "running", "seconds": cal.seconds, "percentile": cal.percentile,
                    "progress": round(min(1.0, cal.audio / cal.seconds), 3), "windows": len(cal.scores),
                    "suppressed": cal.suppressed, "result": None, "error": None, "finished": None}
        return dict(self._calibration_state)

    def start_calibration(self, seconds: float, percentile: float = 99.5,
                          on_done: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Start a site calibration over the next ``seconds`` of audio and return at once (the
        running state); ``on_done(state)`` is called from the worker when it is done or failed.
        Raises CalibrationError for a bad request or while another calibration runs."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or not 0 < seconds <= MAX_CALIBRATION_SECONDS:
            raise CalibrationError(f"seconds must be in (0, {MAX_CALIBRATION_SECONDS:g}], got {seconds!r}")
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) \
                or not math.isfinite(percentile) or not 50 < percentile < 100:
            raise CalibrationError(f"percentile must be in (50, 100), got {percentile!r}")
        self._start_calibration(float(seconds), float(percentile), on_done)
        return self.calibration_status()

    def _start_calibration(self, seconds: float, percentile: float,
                           on_done: Callable[[dict[str, Any]], None] | None) -> _Calibration:
        with self._lock:
            if self._calibration is not None:
                raise CalibrationError("a calibration is already running")
            cal = self._calibration = _Calibration(seconds, percentile, on_done)
        # scipy.stats takes about a second to import: do it now, off the worker, not at the fit.
        threading.Thread(target=_import_scipy_stats, name="calibration-import", daemon=True).start()
        log.info("site calibration: scoring %g s of audio as normal (alerts held back), threshold at gamma p%g",
                 seconds, percentile)
        return cal

    def calibrate(self, seconds: float, percentile: float = 99.5) -> dict[str, Any]:
        """Calibrate the threshold on the next ``seconds`` of this machine's (healthy) sound and
        apply it as a settings override; blocks until done. Returns ``{"threshold", "method",
        "windows", "percentile"}``; raises CalibrationError (the old threshold stays) on failure."""
        if not self._running:
            raise CalibrationError("the runtime is not running")
        self.start_calibration(seconds, percentile)  # validates
        cal = self._calibration
        if cal is not None and not cal.done.wait(seconds * 2 + 60):
            self._end_calibration(None, f"no {seconds:g} s of audio arrived in {seconds * 2 + 60:g} s "
                                        f"(state {self.state})", only=cal)
        state = self._calibration_state
        if state.get("state") != "done":
            raise CalibrationError(state.get("error") or "calibration failed")
        return dict(state["result"])

    def capture_clip(self, seconds: float, label: str) -> Path:
        """Record the next ``seconds`` of audio to ``clip_dir``; returns the written path."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or not 0 < seconds <= MAX_CAPTURE_SECONDS:
            raise CaptureError(f"seconds must be in (0, {MAX_CAPTURE_SECONDS:g}], got {seconds!r}")
        if not isinstance(label, str) or not label.strip():
            raise CaptureError(f"label must be a non-empty string, got {label!r}")
        if not self._running:
            raise CaptureError("the runtime is not running")
        sr = self.windower.sample_rate
        cap = _Capture(float(seconds), label, needed=max(1, int(round(seconds * sr))))
        with self._lock:
            self._captures.append(cap)
        if not cap.done.wait(seconds * 2 + 30):
            with self._lock:
                if cap in self._captures:
                    self._captures.remove(cap)
            raise CaptureError(f"no {seconds:g} s of audio arrived in {seconds * 2 + 30:g} s (state {self.state})")
        if cap.error or cap.path is None:
            raise CaptureError(cap.error or "capture failed")
        return cap.path

    def reload_model(self) -> dict[str, Any]:
        """Load the model file in use again and swap it in."""
        return self.swap_model(self.model_path)

    def swap_model(self, path: Path) -> dict[str, Any]:
        """Load, compile and check ``path``; swap it in between windows. ModelError keeps the old."""
        new = load_model(path, backend=self.backend_preference, device=self._settings.device,
                         precision=self._settings.precision)
        self._hand_over(new)
        log.info("model %s (version %s, %s on %s) in use", new.path, new.version, new.backend.name,
                 new.backend.device)
        return {"ok": True, **new.summary()}

    def self_test(self) -> dict[str, Any]:
        from audioclassifier.selftest import run_self_test

        report = run_self_test(self.model)
        report["runtime"] = {"state": self.state, "source": getattr(self.source, "name", "?"),
                             "windows": self.counters["windows"]}
        return report

    # -- lifecycle --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to finish (safe from signal handlers and other threads)."""
        self._stop.set()
        self.source.close()

    def run(self) -> int:
        """Process the source until it ends or :meth:`stop`; returns an exit status. The sink
        belongs to whoever made it (the composition root closes it after this returns)."""
        self._running = True
        s = self.model.summary()
        log.info("model %s: %s, version %s, window %.2f s, threshold %.4g; %s on %s%s", s["path"],
                 self.model.card.kind, self.model.version, self.model.card.window_seconds, self.threshold,
                 s["backend"], s["device"], f" ({s['note']})" if s["note"] else "")
        status = 0
        try:
            for chunk in self.source.chunks():
                self._between_windows()
                self._feed_captures(chunk)
                if chunk.discontinuity:
                    self.detector.reset()
                for window in self.windower.push(chunk):
                    self._on_window(window)
                self._tick(chunk)
                if self._stop.is_set():
                    break
        except SourceError as exc:
            self.last_error = str(exc)
            log.error("source failed: %s", exc)
            status = 1
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("runtime failed")
            status = 1
        finally:
            self._running = False
            self._between_windows()
            self._finish_captures("the source ended")
            cal = self._calibration
            if cal is not None:
                self._end_calibration(None, f"the source ended after {cal.audio:.1f} of {cal.seconds:g} s")
            self._flush_telemetry()
            if self._window_log is not None:
                self._window_log.close()
        log.info("done: %d windows, %d scored, %d alerts, %.1f s of audio; peak RSS %.1f MB",
                 self.counters["windows"], self.counters["scored"], self.counters["alerts"], self.audio_seconds,
                 peak_rss_mb())
        return status

    # -- worker -----------------------------------------------------------------------------------

    def _hand_over(self, new: LoadedModel) -> None:
        """Give a compiled model to the worker and wait until it is in (or swap now if idle)."""
        done = threading.Event()
        with self._lock:
            previous, self._pending_model = self._pending_model, (new, done)
        if previous is not None:
            previous[0].close()
            previous[1].set()
        if not self._running:
            self._swap_pending()
            return
        if not done.wait(30):
            log.warning("the worker has not taken the new model within 30 s; it will at the next window")

    def _swap_pending(self) -> None:
        with self._lock:
            pending, self._pending_model = self._pending_model, None
        if pending is None:
            return
        new, done = pending
        old = self.model
        same_front_end = (new.card.features == old.card.features
                          and new.card.window_samples == old.card.window_samples)
        self.model = new
        self.model_path = new.path
        if not same_front_end:
            log.info("the new model has another front end or window: analysis restarts")
            self.windower = Windower(new.card, hop_seconds=self._settings.hop_seconds,
                                     context_seconds=self.context_seconds)
            self.detector.reset()
        self._applied = None  # the threshold may come from the new card
        self._apply_settings()
        if self._calibration is not None:
            self._end_calibration(None, "the model changed during the calibration")
        self.counters["model_swaps"] += 1
        if old is not new:
            old.close()
        done.set()

    def _apply_settings(self) -> None:
        s = self._settings
        if s is self._applied:
            return
        self.detector.configure(self._threshold(s, self.model), s.consecutive, s.cooldown_seconds)
        if self.windower.hop_frames != hop_frames_for(s.hop_seconds, self.windower.card):
            self.windower.set_hop(s.hop_seconds)
        self._applied = s

    def _between_windows(self) -> None:
        if self._pending_model is not None:
            self._swap_pending()
        if self._settings is not self._applied:
            self._apply_settings()

    def _on_window(self, w: Window) -> None:
        s = self._settings
        self.counters["windows"] += 1
        if self._calibration is not None:
            self._calibration.windows += 1
        iv = self._interval_for(w.start_time, w.start_offset)
        iv.windows += 1
        iv.power_sum += 10.0 ** (w.level_dbfs / 10.0)
        if w.level_dbfs < s.energy_gate_dbfs:
            self._log_window(w, None, None)
            self.counters["silent"] += 1
            self.detector.update(None, w.end_offset)
            self._set_state("silent", f"level {w.level_dbfs:.1f} dBFS under the gate {s.energy_gate_dbfs:g} dBFS")
            return
        score, label = self.model.score(w.logmel)
        if self.first_score_seconds is None:
            self.first_score_seconds = round(seconds_since_start(), 3)
            log.info("first score %.3f s after process start (cold start)", self.first_score_seconds)
        self._set_state("running")
        self.counters["scored"] += 1
        self.last_score = score
        iv.scored += 1
        if math.isfinite(score):
            iv.score_sum += score
            iv.score_max = score if iv.score_max is None else max(iv.score_max, score)
        self._log_window(w, score, label)
        cal = self._calibration
        if cal is not None:
            cal.scores.append(score)
            held = self.detector.last_alert
            if self.detector.update(score, w.end_offset):  # held back: this sound is normal by definition
                self.detector.last_alert = held  # no cooldown from an alert that was not raised
                self.detector.suppressed += 1
                cal.suppressed += 1
            return
        if self.detector.update(score, w.end_offset):
            iv.alerts += 1
            self._alert(w, score, label)

    def _log_window(self, w: Window, score: float | None, label: str | None) -> None:
        """One line per window to ``--window-log`` (for plots and troubleshooting) and the debug log."""
        if self._window_log is not None:
            self._window_log.write(json.dumps({
                "start_offset": round(w.start_offset, 4), "end_offset": round(w.end_offset, 4),
                "level_dbfs": round(w.level_dbfs, 2), "score": score, "label": label,
                "threshold": self.detector.threshold}) + "\n")
        if score is None:
            log.debug("window %d at %.2f s: %.1f dBFS, silent", w.index, w.start_offset, w.level_dbfs)
        else:
            log.debug("window %d at %.2f s: %.1f dBFS, score %.4f (%s)", w.index, w.start_offset, w.level_dbfs,
                      score, label)

    def _alert(self, w: Window, score: float, label: str) -> None:
        s = self._settings
        self.counters["alerts"] += 1
        seq = self._seq.next("alerts")
        clip = None
        try:
            audio = self.windower.clip(w)
            clip = write_clip(self.sink.clip_dir, clip_name(s.machine, w.start_time, label, seq=seq), audio,
                              sample_rate=self.windower.sample_rate)
            self.counters["clips"] += 1
        except (OSError, ValueError, RuntimeError) as exc:
            self.counters["clip_errors"] += 1
            self.last_error = f"clip not written: {exc}"
            log.error("%s", self.last_error)
        alert = Alert(machine=s.machine, label=label, score=score, threshold=self.detector.threshold,
                      window_start=w.start_time, window_end=w.end_time, audio_offset_seconds=w.start_offset,
                      model=self.model.version, seq=seq, clip=clip)
        self.sink.emit("alerts", alert.to_message())

    def _set_state(self, state: str, why: str = "") -> None:
        if state != self.state:
            log.info("state %s → %s%s", self.state, state, f" ({why})" if why else "")
            self.state = state

    def _interval_for(self, start_time: float, offset: float) -> _Interval:
        if self._interval is None:
            self._interval = _Interval(start_time, offset, overflows_at_start=getattr(self.source, "overflows", 0))
        return self._interval

    def _tick(self, chunk: Chunk) -> None:
        n = chunk.samples.shape[0]
        dur = n / self.windower.sample_rate
        self.audio_seconds += dur
        cal = self._calibration
        if cal is not None:
            cal.audio += dur
            if cal.audio >= cal.seconds:
                # About a millisecond for an hour of windows (scipy was imported in the background at
                # the start); done here, between chunks, the result does not depend on thread timing.
                self._fit_calibration(cal)
                self._conclude_calibration(cal)
        if getattr(self.source, "state", "running") == "no-audio":
            self._set_state("no-audio", getattr(self.source, "last_error", None) or "")
            self.detector.reset()
        elif n and self.state == "no-audio":
            self._set_state("running", "audio is back")
        end_time, end_offset = chunk.start_time + dur, chunk.offset + dur
        iv = self._interval_for(chunk.start_time, chunk.offset)
        if end_offset - iv.start_offset >= self._settings.telemetry_interval_seconds:
            self._emit_telemetry(iv, end_time)
            self._interval = _Interval(end_time, end_offset, overflows_at_start=getattr(self.source, "overflows", 0))
        self._last_end = (end_time, end_offset)

    def _flush_telemetry(self) -> None:
        """Emit the interval in progress (at the end), if it holds anything."""
        iv = self._interval
        if iv is None:
            return
        end_time = self._last_end[0] if self._last_end else iv.start_time
        if iv.windows or end_time > iv.start_time:
            self._emit_telemetry(iv, end_time)
        self._interval = None

    def _emit_telemetry(self, iv: _Interval, end_time: float) -> None:
        s = self._settings
        overflows = getattr(self.source, "overflows", 0) - iv.overflows_at_start
        t = Telemetry(
            machine=s.machine, interval_start=iv.start_time, interval_end=end_time, windows=iv.windows,
            scored=iv.scored, mean_score=iv.score_sum / iv.scored if iv.scored else None, max_score=iv.score_max,
            level_dbfs=level_dbfs(iv.power_sum / iv.windows) if iv.windows else None, state=self.state,
            model=self.model.version, seq=self._seq.next("telemetry"), alerts=iv.alerts, overflows=overflows,
        )
        self.sink.emit("telemetry", t.to_message())

    # -- site calibration -------------------------------------------------------------------------

    def _fit_calibration(self, cal: _Calibration) -> None:
        """Fit the threshold to the collected scores into ``cal.result`` (or ``cal.error``)."""
        try:
            finite = [s for s in cal.scores if math.isfinite(s)]
            if len(finite) < MIN_CALIBRATION_WINDOWS:
                cal.error = (f"too few scored windows: {len(finite)} of {cal.windows} windows in {cal.seconds:g} s "
                             f"(need {MIN_CALIBRATION_WINDOWS}); was the machine running and over the energy "
                             f"gate? calibrate again, longer, while it runs")
                return
            fit = gamma_threshold(np.asarray(finite), percentile=cal.percentile)
            if not math.isfinite(fit.threshold):
                cal.error = f"the threshold fit gave {fit.threshold!r}"
                return
            cal.result = {"threshold": fit.threshold, "method": "site " + fit.method, "windows": fit.n,
                          "percentile": cal.percentile}
        except Exception as exc:  # noqa: BLE001 - any fit failure fails the calibration, not the module
            cal.error = f"the threshold fit failed: {type(exc).__name__}: {exc}"

    def _conclude_calibration(self, cal: _Calibration) -> None:
        """Put a fitted threshold in force as the settings' override (worker, between windows)."""
        if cal.result is None:
            self._end_calibration(None, cal.error or "the threshold fit failed", only=cal)
            return
        old = self.threshold
        with self._lock:
            self._settings = replace(self._settings, threshold=cal.result["threshold"])
        self._apply_settings()
        self.detector.reset()  # a new rule: runs start afresh
        log.info("site calibration done: threshold %.4g → %.4g (%s; %d window(s) over the old threshold held back)",
                 old, self.threshold, cal.result["method"], cal.suppressed)
        self._end_calibration(cal.result, None, only=cal)

    def _end_calibration(self, result: dict[str, Any] | None, error: str | None,
                         only: _Calibration | None = None) -> None:
        """Record the outcome, wake the waiter, tell ``on_done`` (never raises into the worker)."""
        with self._lock:
            cal = self._calibration
            if cal is None or (only is not None and cal is not only):
                return
            # The same keys in every state: reported properties merge, so none is left over.
            state: dict[str, Any] = {
                "state": "done" if error is None else "failed", "seconds": cal.seconds, "percentile": cal.percentile,
                "progress": round(min(1.0, cal.audio / cal.seconds), 3), "windows": len(cal.scores),
                "suppressed": cal.suppressed, "result": result, "error": error, "finished": round(time.time(), 3)}
            self._calibration_state = state
            self._calibration = None
        if error is not None:
            self.last_error = f"calibration failed: {error}"
            log.error("site calibration failed, the threshold stays %.4g: %s", self.threshold, error)
        cal.done.set()
        if cal.on_done is not None:
            try:
                cal.on_done(dict(state))
            except Exception:  # noqa: BLE001 - a reporting problem must not stop the audio
                log.exception("calibration: on_done failed")

    # -- captures ---------------------------------------------------------------------------------

    def _feed_captures(self, chunk: Chunk) -> None:
        if not self._captures or not chunk.samples.size:
            return
        with self._lock:
            captures = list(self._captures)
        for cap in captures:
            if cap.start_time is None:
                cap.start_time = chunk.start_time
            take = chunk.samples[: cap.needed - cap.have]
            cap.parts.append(take.copy())
            cap.have += take.shape[0]
            if cap.have >= cap.needed:
                with self._lock:
                    if cap in self._captures:
                        self._captures.remove(cap)
                self._write_capture(cap)

    def _write_capture(self, cap: _Capture) -> None:
        try:
            name = write_clip(self.sink.clip_dir,
                              clip_name(self._settings.machine, cap.start_time or time.time(), cap.label,
                                        seq=self._seq.next("captures"), kind="capture"),
                              np.concatenate(cap.parts), sample_rate=self.windower.sample_rate)
            cap.path = self.sink.clip_dir / name
            self.counters["captures"] += 1
            log.info("captured %.1f s as %s", cap.seconds, name)
        except (OSError, ValueError, RuntimeError) as exc:
            cap.error = f"writing the clip failed: {exc}"
            self.last_error = cap.error
            log.error("%s", cap.error)
        cap.done.set()

    def _finish_captures(self, why: str) -> None:
        with self._lock:
            captures, self._captures = self._captures, []
        for cap in captures:
            cap.error = f"{why} after {cap.have / self.windower.sample_rate:.1f} of {cap.seconds:g} s"
            cap.done.set()


def _import_scipy_stats() -> None:
    try:
        import scipy.stats  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - the fit reports the failure
        log.debug("scipy.stats: %s", exc)


def _changes(old: Settings, new: Settings) -> str:
    a, b = old.to_dict(), new.to_dict()
    return ", ".join(f"{k}={b[k]!r}" for k in b if a.get(k) != b[k])

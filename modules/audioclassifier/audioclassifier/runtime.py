"""The runtime: the worker's loop over a source, its lifecycle, and the controls other threads use.

One worker (the thread in :meth:`Runtime.run`) does all the work, chunk by chunk, through a
:class:`~audioclassifier.pipeline.Pipeline` that it alone touches. Other threads (the IoT Hub's
twin and methods, signal handlers) use the :class:`~audioclassifier.control.RuntimeControl`
methods, which put a command on one queue (:mod:`audioclassifier.commands`) that the worker
drains between chunks: settings take effect on the next window; a new model is compiled in the
caller's thread and swapped in between two windows, so no audio is dropped. While no worker runs
(before :meth:`~Runtime.run`, after it), the caller applies its command itself, under a lock.

The sink belongs to whoever made it: the composition root (``__main__``) closes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audioclassifier import commands
from audioclassifier.alertwindows import AlertWindows
from audioclassifier.backends import LoadedModel, load_model
from audioclassifier.calibration import CalibrationError, SiteCalibration
from audioclassifier.capture import Capture, CaptureError
from audioclassifier.feedback import Feedback
from audioclassifier.learning import NormalModel
from audioclassifier.live import LiveFeed
from audioclassifier.onsite import OnsiteLearning
from audioclassifier.pipeline import Pipeline
from audioclassifier.procinfo import peak_rss_mb
from audioclassifier.settings import DEVICES, Settings
from audioclassifier.sinks import Sink
from audioclassifier.sources import AudioSource, SourceError
from audioclassifier.status import runtime_status

__all__ = ["CalibrationError", "CaptureError", "InForce", "Runtime"]

log = logging.getLogger(__name__)

CLIP_CONTEXT_SECONDS = 3.0  #: seconds of audio before the flagged window that an alert's clip includes
COMMAND_TIMEOUT = 30.0  #: seconds a caller waits for the worker to take a command (it takes them every chunk)

OnDone = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class InForce:
    """What the worker scores with now (:meth:`Runtime.in_force`)."""

    model: LoadedModel
    threshold: float
    settings: Settings
    learned: NormalModel | None


class Runtime:
    """The module's main job over one source, one model and one sink (see the module docstring)."""

    def __init__(self, *, source: AudioSource, model: LoadedModel, settings: Settings, sink: Sink,
                 backend: str = "auto", state_path: Path | None = None,
                 context_seconds: float = CLIP_CONTEXT_SECONDS, window_log: Path | None = None,
                 onsite: OnsiteLearning | None = None, alert_windows: AlertWindows | None = None,
                 feedback: Feedback | None = None, feed: LiveFeed | None = None, bands_dir: Path | None = None,
                 on_health: OnDone | None = None, model_cache: Path | None = None) -> None:
        self.source = source
        self.backend_preference = backend
        self.model_cache = model_cache  # OpenVINO's compiled-model cache for later loads (swaps, device changes)
        self.pipeline = Pipeline(source=source, model=model, settings=settings, sink=sink, state_path=state_path,
                                 context_seconds=context_seconds, window_log=window_log, onsite=onsite,
                                 alert_windows=alert_windows, feedback=feedback, feed=feed,
                                 bands_dir=bands_dir, on_health=on_health)
        self.counters = self.pipeline.counters
        self._commands = commands.CommandQueue()
        self._gate = threading.RLock()  # held to start or end the worker, and to run commands while none runs
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()

    # -- what the worker has (read from any thread) -----------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self.pipeline.settings

    @property
    def model(self) -> LoadedModel:
        return self.pipeline.model

    @property
    def threshold(self) -> float:
        """The threshold in force: the settings' override or the model card's."""
        return self.pipeline.threshold

    @property
    def state(self) -> str:
        """``running``, ``silent`` (under the energy gate) or ``no-audio``."""
        return self.pipeline.state

    @property
    def audio_seconds(self) -> float:
        return self.pipeline.audio_seconds

    def status(self) -> dict[str, Any]:
        return runtime_status(self.pipeline)

    def calibration_status(self) -> dict[str, Any]:
        return self.pipeline.calibration_status()

    def in_force(self) -> InForce:
        """The model, threshold, settings and learned normal model in force, read together: what
        ``POST /api/score`` scores a recording with (from another thread; each is replaced, never mutated)."""
        p = self.pipeline
        learned = p.onsite.model if not p.onsite.running else None
        return InForce(model=p.model, threshold=p.threshold, settings=p.settings, learned=learned)

    # -- RuntimeControl (any thread) --------------------------------------------------------------

    def apply_settings(self, new: Settings) -> None:
        """Take ``new`` live; a device or precision change recompiles first and raises (keeping all) on failure."""
        if not isinstance(new, Settings):
            raise TypeError(f"expected Settings, got {type(new).__name__}")
        if new.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {new.device!r}")
        old, compiled = self.settings, None
        if (new.device, new.precision) != (old.device, old.precision):
            if self.backend_preference in ("auto", "openvino"):  # compile first: on failure nothing changes
                compiled = load_model(self.model.path, backend=self.backend_preference, device=new.device,
                                      precision=new.precision, cache_dir=self.model_cache)
                log.info("device %s/%s → %s/%s: %s on %s at %s%s", old.device, old.precision, new.device,
                         new.precision, compiled.backend.name, compiled.backend.device, compiled.backend.precision,
                         f" ({compiled.note})" if compiled.note else "")
            else:
                log.info("device %s/%s noted; it applies to OpenVINO, this module runs onnxruntime (f32)",
                         new.device, new.precision)
        self._run_command(commands.ApplySettings(settings=new, model=compiled), "settings")
        log.info("settings in force: %s", _changes(old, new) or "unchanged")

    def start_calibration(self, seconds: float, percentile: float = 99.5,
                          on_done: OnDone | None = None) -> dict[str, Any]:
        """Start a site calibration over the next ``seconds`` of audio and return at once (the
        running state); ``on_done(state)`` is called from the worker when it is done or failed.
        Raises CalibrationError for a bad request or while another calibration runs."""
        self._start_calibration(seconds, percentile, on_done)
        return self.calibration_status()

    def _start_calibration(self, seconds: float, percentile: float, on_done: OnDone | None) -> Future[Any]:
        seconds, percentile = SiteCalibration.check_request(seconds, percentile)
        start = commands.StartCalibration(seconds=seconds, percentile=percentile, on_done=on_done)
        finished: Future[Any] = self._run_command(start, "calibration")
        return finished

    def start_learning(self, seconds: float) -> dict[str, Any]:
        """On-site learning over the next ``seconds`` of audio (:mod:`onsite`); returns the running state."""
        self._run_command(commands.StartLearning(seconds=seconds), "learning")
        return self.pipeline.learning_status()

    def feedback(self, seq: int, verdict: str, label: str | None = None, note: str | None = None) -> dict[str, Any]:
        """A technician's verdict on alert ``seq`` (:mod:`audioclassifier.feedback`), applied between
        chunks; returns what was done and the clip's mark. FeedbackError subclasses say why not."""
        command = commands.GiveFeedback(seq=seq, verdict=verdict, label=label, note=note)
        outcome: dict[str, Any] = self._run_command(command, "feedback")
        return outcome

    def calibrate(self, seconds: float, percentile: float = 99.5) -> dict[str, Any]:
        """Calibrate the threshold on the next ``seconds`` of this machine's (healthy) sound and
        apply it as a settings override; blocks until done. Returns ``{"threshold", "method",
        "windows", "percentile"}``; raises CalibrationError (the old threshold stays) on failure."""
        if self._worker is None:
            raise CalibrationError("the runtime is not running")
        finished = self._start_calibration(seconds, percentile, None)
        patience = float(seconds) * 2 + 60
        if not commands.settles(finished, patience):
            why = f"no {seconds:g} s of audio arrived in {patience:g} s (state {self.state})"
            self._run_command(commands.EndCalibration(run=finished, reason=why), "calibration")
        state = finished.result(COMMAND_TIMEOUT)
        if state["state"] != "done":
            raise CalibrationError(state.get("error") or "calibration failed")
        return dict(state["result"])

    def capture_clip(self, seconds: float, label: str) -> Path:
        """Record the next ``seconds`` of audio to ``clip_dir``; blocks until written, returns the path."""
        capture = Capture.request(seconds, label, sample_rate=self.pipeline.windower.sample_rate)
        if self._worker is None:
            raise CaptureError("the runtime is not running")
        self._submit(commands.StartCapture(capture=capture, future=capture.result))
        patience = capture.seconds * 2 + 30
        if not commands.settles(capture.result, patience):
            why = f"no {capture.seconds:g} s of audio arrived in {patience:g} s (state {self.state})"
            if capture.result.cancel():  # still queued: the worker will skip it
                raise CaptureError(why)
            capture.fail(why)  # in progress: the worker drops it
        return capture.result.result()

    def reload_model(self) -> dict[str, Any]:
        """Load the model file in use again and swap it in."""
        return self.swap_model(self.model.path)

    def swap_model(self, path: Path) -> dict[str, Any]:
        """Load, compile and check ``path``; swap it in between windows. ModelError keeps the old."""
        new = load_model(path, backend=self.backend_preference, device=self.settings.device,
                         precision=self.settings.precision, cache_dir=self.model_cache)
        self._run_command(commands.SwapModel(model=new), "model swap")
        log.info("model %s (version %s, %s on %s) in use", new.path, new.version, new.backend.name,
                 new.backend.device)
        return {"ok": True, **new.summary()}

    def self_test(self) -> dict[str, Any]:
        from audioclassifier.selftest import run_self_test

        report = run_self_test(self.model)
        report["runtime"] = {"state": self.state, "source": self.source.name, "windows": self.counters["windows"]}
        return report

    def _submit(self, command: commands.Command) -> None:
        """Queue ``command``; while no worker runs (or from the worker itself), run it now."""
        self._commands.put(command)
        with self._gate:
            if self._worker is None or self._worker is threading.current_thread():
                self._drain()

    def _run_command(self, command: commands.Command, what: str) -> Any:
        self._submit(command)
        return commands.wait(command.future, COMMAND_TIMEOUT, what)

    # -- lifecycle and the worker's loop ----------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to finish, from another thread (a signal handler goes through
        :mod:`audioclassifier.stopsignal`: this takes locks the interrupted worker may hold)."""
        self._stop.set()
        self.source.close()

    def run(self) -> int:
        """Process the source until it ends or :meth:`stop`; returns an exit status."""
        with self._gate:
            self._worker, self.pipeline.live = threading.current_thread(), True
        m = self.model.summary()
        log.info("model %s: %s, version %s, window %.2f s, threshold %.4g; %s on %s%s", m["path"],
                 self.model.card.kind, self.model.version, self.model.card.window_seconds, self.threshold,
                 m["backend"], m["device"], f" ({m['note']})" if m["note"] else "")
        status = 0
        try:
            for chunk in self.source.chunks():
                self._drain()
                self.pipeline.on_chunk(chunk)
                if self._stop.is_set():
                    break
        except SourceError as exc:
            self.pipeline.last_error = str(exc)
            log.error("source failed: %s", exc)
            status = 1
        except Exception as exc:
            self.pipeline.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("runtime failed")
            status = 1
        finally:
            with self._gate:
                self._worker, self.pipeline.live = None, False
                self._drain()
                self.pipeline.finish("the source ended")
        log.info("done: %d windows, %d scored, %d alerts, %.1f s of audio; peak RSS %.1f MB",
                 self.counters["windows"], self.counters["scored"], self.counters["alerts"], self.audio_seconds,
                 peak_rss_mb())
        return status

    def _drain(self) -> None:
        """Apply the queued commands (the worker between chunks, or a caller holding the gate)."""
        for command in self._commands.drain():
            try:
                result = self.pipeline.execute(command)
            except Exception as exc:  # noqa: BLE001 - the caller gets it
                command.future.set_exception(exc)
            else:
                if not isinstance(command, commands.StartCapture):  # its future resolves when the clip is written
                    command.future.set_result(result)


def _changes(old: Settings, new: Settings) -> str:
    a, b = old.to_dict(), new.to_dict()
    return ", ".join(f"{k}={b[k]!r}" for k in b if a.get(k) != b[k])

"""Site calibration: a few minutes of a machine's own healthy sound become its threshold.

:class:`SiteCalibration` is the state machine, ``idle`` → ``running`` → ``done`` | ``failed``
(→ ``running`` again). The runtime's worker owns it (no locks) and feeds it: every window
(:meth:`~SiteCalibration.window`, a scored one with its score and whether the detector held an
alert back) and every chunk's duration (:meth:`~SiteCalibration.advance`, True once ``seconds`` of
audio were heard). Then :meth:`~SiteCalibration.fit` fits the gamma threshold
(:func:`audioclassifier.thresholds.gamma_threshold`) to the finite scores, and
:meth:`~SiteCalibration.finish` records the outcome, tells ``on_done`` and resolves the future a
blocking caller waits on. Fewer than :data:`MIN_CALIBRATION_WINDOWS` scored windows fail it.

:class:`Hearing` is what every "hear ``seconds`` of audio, then fit" run shares (this one and
on-site learning, :mod:`audioclassifier.onsite`): the audio heard so far, the future of the final
state, and the ``on_done`` callback whose failure is logged, never raised.

:meth:`~SiteCalibration.status` has the same keys in every state but ``idle`` (the twin's
reported properties merge, so none is left over).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audioclassifier.constraints import METHODS, ConstraintError
from audioclassifier.errors import AuscultError
from audioclassifier.thresholds import gamma_threshold

__all__ = ["MIN_CALIBRATION_WINDOWS", "CalibrationError", "Hearing", "SiteCalibration"]

log = logging.getLogger(__name__)

#: Fewest scored windows a site calibration fits a threshold to (fewer: it fails, the old stays).
MIN_CALIBRATION_WINDOWS = 10

OnDone = Callable[[dict[str, Any]], None]


class CalibrationError(AuscultError):
    """A site calibration was refused (bad request, one already running) or failed (too few
    scored windows, the source ended, the model changed); the threshold in force stays."""


@dataclass
class Hearing:
    """One run that hears ``seconds`` of audio, then fits: progress, final-state future, ``on_done``."""

    seconds: float
    on_done: OnDone | None = None
    finished: Future[dict[str, Any]] = field(default_factory=Future)
    audio: float = 0.0  # seconds of audio heard so far

    def advance(self, seconds: float) -> bool:
        """Count ``seconds`` more audio; True once the run has heard enough (fit it now)."""
        self.audio += seconds
        return self.audio >= self.seconds

    def settle(self, state: dict[str, Any]) -> None:
        """Resolve the future with the final ``state`` and tell ``on_done`` (a failure is logged)."""
        if not self.finished.done():
            self.finished.set_result(dict(state))
        if self.on_done is not None:
            try:
                self.on_done(dict(state))
            except Exception:
                log.exception("%s: on_done failed", type(self).__name__)


@dataclass
class _Run(Hearing):
    """One calibration in progress: the scores of the scored windows over ``seconds`` of audio."""

    percentile: float = 99.5
    scores: list[float] = field(default_factory=list)
    windows: int = 0  # all windows seen, silent ones included
    suppressed: int = 0  # alerts held back while calibrating

    def state(self, name: str, result: dict[str, Any] | None = None, error: str | None = None,
              finished: float | None = None) -> dict[str, Any]:
        return {"state": name, "seconds": self.seconds, "percentile": self.percentile,
                "progress": round(min(1.0, self.audio / self.seconds), 3), "windows": len(self.scores),
                "suppressed": self.suppressed, "result": result, "error": error, "finished": finished}


class SiteCalibration:
    """The site calibration state machine (see the module docstring); one worker owns it."""

    def __init__(self) -> None:
        self._run: _Run | None = None
        self._last: dict[str, Any] = {"state": "idle"}

    @property
    def running(self) -> bool:
        return self._run is not None

    def status(self) -> dict[str, Any]:
        """``{"state": "idle" | "running" | "done" | "failed", ...}``: progress while running, the
        result (threshold, method, windows, percentile) when done, the reason when failed."""
        run = self._run
        return run.state("running") if run is not None else dict(self._last)

    @staticmethod
    def check_request(seconds: Any, percentile: Any) -> tuple[float, float]:
        """``seconds`` and ``percentile`` checked against ``METHODS["calibrate"]``; CalibrationError if refused."""
        try:
            return (METHODS["calibrate"]["seconds"].check(seconds),
                    METHODS["calibrate"]["percentile"].check(percentile))
        except ConstraintError as exc:
            raise CalibrationError(str(exc)) from exc

    def start(self, seconds: float, percentile: float, on_done: OnDone | None = None) -> Future[dict[str, Any]]:
        """Begin; returns the future of the final state. CalibrationError while one runs."""
        if self._run is not None:
            raise CalibrationError("a calibration is already running")
        self._run = _Run(float(seconds), on_done, percentile=float(percentile))
        log.info("site calibration: scoring %g s of audio as normal (alerts held back), threshold at gamma p%g",
                 seconds, percentile)
        return self._run.finished

    def is_current(self, finished: Future[dict[str, Any]]) -> bool:
        """Whether the run behind ``finished`` (from :meth:`start`) is the one in progress."""
        return self._run is not None and self._run.finished is finished

    def window(self, score: float | None = None, *, held_back: bool = False) -> None:
        """Count a window; a scored one adds its score, ``held_back``: its alert was held back."""
        run = self._run
        if run is None:
            return
        run.windows += 1
        if score is not None:
            run.scores.append(score)
        if held_back:
            run.suppressed += 1

    def advance(self, seconds: float) -> bool:
        """Count ``seconds`` more audio; True when the calibration has heard enough (fit it now)."""
        return self._run is not None and self._run.advance(seconds)

    def fit(self) -> dict[str, Any]:
        """The threshold fitted to the scores so far: ``{"threshold", "method", "windows",
        "percentile"}``; CalibrationError when too few windows were scored or the fit failed."""
        run = self._run
        if run is None:
            raise CalibrationError("no calibration is running")
        finite = [s for s in run.scores if math.isfinite(s)]
        if len(finite) < MIN_CALIBRATION_WINDOWS:
            raise CalibrationError(
                f"too few scored windows: {len(finite)} of {run.windows} windows in {run.seconds:g} s "
                f"(need {MIN_CALIBRATION_WINDOWS}); was the machine running and over the energy gate? "
                f"calibrate again, longer, while it runs")
        try:
            fit = gamma_threshold(np.asarray(finite), percentile=run.percentile)
        except Exception as exc:
            raise CalibrationError(f"the threshold fit failed: {type(exc).__name__}: {exc}") from exc
        if not math.isfinite(fit.threshold):
            raise CalibrationError(f"the threshold fit gave {fit.threshold!r}")
        return {"threshold": fit.threshold, "method": "site " + fit.method, "windows": fit.n,
                "percentile": run.percentile}

    def finish(self, result: dict[str, Any] | None = None, error: str | None = None) -> dict[str, Any] | None:
        """End the run (done with ``result``, or failed with ``error``): record the final state,
        resolve its future and call ``on_done`` (whose failure is logged, never raised). Returns
        the final state, None if none was running."""
        run, self._run = self._run, None
        if run is None:
            return None
        state = run.state("done" if error is None else "failed", result, error, round(time.time(), 3))
        self._last = state
        run.settle(state)
        return state

    def describe_progress(self) -> str:
        """How far the run in progress got (for a failure message)."""
        run = self._run
        return "" if run is None else f"after {run.audio:.1f} of {run.seconds:g} s"

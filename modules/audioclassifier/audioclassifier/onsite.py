"""On-site learning on the device: a machine's first minutes of sound become its own normal model.

:class:`OnsiteLearning` is the state machine, ``off`` → ``learning`` → ``learned`` | ``failed``
(→ ``learning`` again), modelled on :class:`~audioclassifier.calibration.SiteCalibration` and
sharing its run (:class:`~audioclassifier.calibration.Hearing`). The pipeline feeds it: the
embedding of every scored (non-silent) window while it learns (:meth:`~OnsiteLearning.window`),
every chunk's duration (:meth:`~OnsiteLearning.advance`: audio time, so a replay at ``--speed max``
learns the same), then :meth:`~OnsiteLearning.conclude` fits
:func:`audioclassifier.learning.fit_normal` with the card's ``learning`` block (method, ``k``) and
the module's own rule: scores sustained over :data:`SUSTAIN_SECONDS` of windows, and the threshold
set for at most ``alerts_per_day`` false alerts a day (the ``learn_alerts_per_day`` option). The
result is put in force: a window's score is then the learned model's sustained score of its
embedding (:meth:`~OnsiteLearning.score`; a silent window or lost audio starts the median afresh:
:meth:`~OnsiteLearning.gap`) and the threshold the learned one (:attr:`threshold`), unless the
settings set one. While it learns, nothing is scored against a threshold.

The learned model is kept per machine (:class:`LearnedStore`: ``<state dir>/learned/<machine>.npz``,
written atomically) with the :func:`fingerprint` of the card's front end and embedding; it is
reloaded at every start (:meth:`~OnsiteLearning.bind`), survives a model swap with the same
fingerprint and is dropped (logged, reported) when it changes. ``seconds`` > 0 learns whenever no
valid learned state exists (at start, after such a drop); ``relearn`` learns at start regardless.

Feedback (:mod:`audioclassifier.feedback`) teaches the learned model in force: :meth:`~OnsiteLearning.accept`
adds a false alarm's windows as an accepted sound (:meth:`audioclassifier.learning.NormalModel.accept`),
:meth:`~OnsiteLearning.forget` removes it (undo); both are saved at once. When no learned model exists
yet (the card's model alone), the first false alarm *starts* one: fitted on the recent windows the
card's model found normal (given by the caller; at least
:data:`~audioclassifier.learning.WARN_WINDOWS` of them, so the threshold rests on more than a guess),
plus the accepted sound. The card's score, in other
units, has no place for an accepted sound, and those windows are the machine's normal sound as far as
anyone knows; undoing that false alarm (no other accepted sound left) drops the started model again,
back to the card's. A relearn keeps the accepted sounds (the technician's word outlives a new fit).

A fit that fails (fewer than :data:`audioclassifier.learning.MIN_WINDOWS` windows, the source ended,
the model changed) leaves the state ``failed`` with the reason; the learned model that was in
force before (if any) stays, else the card's model and threshold. :meth:`~OnsiteLearning.status`
has the same keys in every state (the twin's reported properties merge); ``on_change`` is told
every new state (the hub reports it as ``learning``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from audioclassifier.bands import BandAccumulator, BandProfile
from audioclassifier.calibration import Hearing
from audioclassifier.card import ModelCard
from audioclassifier.clips import safe_part
from audioclassifier.constraints import METHODS, ConstraintError
from audioclassifier.durable import atomic_file
from audioclassifier.errors import AuscultError
from audioclassifier.learning import WARN_WINDOWS, LearningError, NormalModel, Sustained, fit_normal

__all__ = ["LearnedStore", "OnsiteError", "OnsiteLearning", "fingerprint"]

log = logging.getLogger(__name__)

OnChange = Callable[[dict[str, Any]], None]

#: A learned model's score is the median of this many seconds of window distances (odd windows).
SUSTAIN_SECONDS = 9.0
#: Default target of the learned threshold: false alerts per day of the machine's normal sound.
ALERTS_PER_DAY = 1.0


class OnsiteError(AuscultError):
    """On-site learning refused (bad request, the model cannot learn, a learning or calibration runs)."""


def fingerprint(card: ModelCard) -> str | None:
    """What a learned model depends on: the card's front end, window and embedding (name, dim, the
    features it describes); None when the card does not support learning."""
    block = card.learning
    if block is None:
        return None
    what = {"features": card.features.to_dict(), "window_seconds": card.window_seconds,
            "context_frames": card.context_frames, "embedding": block.get("embedding"), "dim": block.get("dim"),
            "embedding_features": block.get("features")}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def fit_learned(embeddings: np.ndarray, card: ModelCard, *, alerts_per_day: float = ALERTS_PER_DAY,
                hop_seconds: float = 1.0) -> NormalModel:
    """The module's on-site fit: :func:`fit_normal` with the card's learning block (method, ``k``),
    scores sustained over :data:`SUSTAIN_SECONDS` and the threshold set for ``alerts_per_day``."""
    if card.learning is None:
        raise OnsiteError("the model cannot learn: its card has no learning block")
    block = card.learning
    sustain = max(1, round(SUSTAIN_SECONDS / hop_seconds)) | 1  # odd
    return fit_normal(embeddings, method=str(block.get("method", "mahalanobis")), k=int(block.get("k", 1)),
                      alerts_per_day=alerts_per_day, hop_seconds=hop_seconds, sustain=sustain)


class LearnedStore:
    """Learned models per machine under ``directory`` (None: kept in memory only)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def path(self, machine: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{safe_part(machine)}.npz"

    def load(self, machine: str, fp: str) -> tuple[NormalModel | None, str | None]:
        """``(model, None)``, ``(None, None)`` when there is none, ``(None, why)`` when it is unusable."""
        path = self.path(machine)
        if path is None or not path.is_file():
            return None, None
        try:
            model = NormalModel.from_bytes(path.read_bytes())
        except (OSError, LearningError) as exc:
            return None, f"learned state {path.name} unreadable ({exc})"
        if model.meta.get("fingerprint") != fp:
            return None, (f"learned state {path.name} was learned with another front end or embedding "
                          f"(model {model.meta.get('model')}): dropped")
        return model, None

    def save(self, machine: str, model: NormalModel) -> None:
        path = self.path(machine)
        if path is not None:
            with atomic_file(path) as fh:
                fh.write(model.to_bytes())

    def delete(self, machine: str) -> None:
        path = self.path(machine)
        if path is not None:
            path.unlink(missing_ok=True)


@dataclass
class _Learn(Hearing):
    """One learning in progress: the embeddings of the scored windows (and their bands)."""

    embeddings: list[np.ndarray] = field(default_factory=list)
    bands: BandAccumulator | None = None


class OnsiteLearning:
    """The on-site learning state machine (see the module docstring); one worker owns it."""

    def __init__(self, *, directory: Path | None = None, seconds: float = 0.0, relearn: bool = False,
                 alerts_per_day: float = ALERTS_PER_DAY, on_change: OnChange | None = None) -> None:
        self.store = LearnedStore(directory)
        self.seconds, self.relearn, self.on_change = float(seconds), relearn, on_change
        self.alerts_per_day = float(alerts_per_day)
        self._sustained = Sustained(1)
        self.model: NormalModel | None = None  # the learned model in force
        self._run: _Learn | None = None
        self._card: ModelCard | None = None
        self._fp: str | None = None
        self._machine = ""
        self._last = self._state("off")

    @property
    def running(self) -> bool:
        return self._run is not None

    @property
    def threshold(self) -> float | None:
        """The learned threshold in force, or None (the card's applies)."""
        return None if self.model is None else self.model.threshold

    @property
    def band_profile(self) -> BandProfile | None:
        """The per-band normal heard with the learned model in force (explanations), or None."""
        d = None if self.model is None else self.model.meta.get("bands")
        if d is None:
            return None
        try:
            return BandProfile.from_dict(d, source="learned")
        except ValueError:
            return None

    def score(self, score: float, embedding: np.ndarray | None) -> float:
        """The window's score: the learned model's sustained score of its embedding once learned,
        else ``score``."""
        model = self.model
        if model is None or self._run is not None or embedding is None:
            return score
        if self._sustained.n != model.sustain:  # another learned model: its own median
            self._sustained = Sustained(model.sustain)
        return self._sustained.push(float(model.score(embedding[None])[0]))

    def gap(self) -> None:
        """The run of sound broke (a silent window, lost audio, a new rule): sustained scores start afresh."""
        self._sustained.reset()

    def _fit(self, embeddings: np.ndarray, hop_seconds: float) -> NormalModel:
        assert self._card is not None
        return fit_learned(embeddings, self._card, alerts_per_day=self.alerts_per_day, hop_seconds=hop_seconds)

    @property
    def machine(self) -> str:
        return self._machine

    @property
    def can_learn(self) -> bool:
        """Whether the bound card has an embedding output (the model can learn)."""
        return self._fp is not None

    @property
    def fingerprint(self) -> str | None:
        """The bound card's :func:`fingerprint` (None: it cannot learn)."""
        return self._fp

    def status(self) -> dict[str, Any]:
        """``{"state", "seconds", "total", "windows", "threshold", "method", "warning", "error", "accepted",
        "sustain", "alerts_per_day"}``."""
        run = self._run
        if run is not None:
            return self._state("learning", seconds=run.audio, total=run.seconds, windows=len(run.embeddings))
        return dict(self._last)

    # -- binding to a model and a machine --------------------------------------------------------

    def bind(self, card: ModelCard, machine: str) -> None:
        """Use ``card`` for ``machine``: at start, after a model swap, after a machine rename. Loads the
        machine's learned state (dropped if learned with another front end or embedding); learns when
        none is valid and ``seconds`` > 0, or at the first bind with ``relearn``."""
        first = self._card is None
        fp = fingerprint(card)
        unchanged = (fp, machine) == (self._fp, self._machine)
        self._card, self._fp, self._machine = card, fp, machine
        if unchanged and not first:
            return
        if self._run is not None:
            self._fail("the model's front end or embedding, or the machine, changed during learning")
        had, self.model = self.model, None
        if fp is None:
            if had is not None or self.seconds or (first and self.relearn):
                off = "the model has no embedding output (its card does not support learning): the card's model is used"
                log.warning("on-site learning: %s", off)
                self._set(self._state("off", error=off))
            return
        model, why = self.store.load(machine, fp)
        if model is not None:
            self.model = model
            log.info("on-site learning: learned state for %s loaded (%d windows, threshold %.4g, %s)",
                     machine, model.n_fitted, model.threshold, model.method)
            self._set(self._learned_state(model))
        elif why or had is not None:
            why = why or f"no learned state for {machine} under this model"
            log.warning("on-site learning: %s", why)
            self._set(self._state("off", error=why))
        if first and self.relearn:  # a failure keeps the state loaded above
            self.start(self.seconds or METHODS["learn"]["seconds"].default)
        elif self.model is None and self.seconds > 0:
            self.start(self.seconds)

    # -- a learning run ---------------------------------------------------------------------------

    def start(self, seconds: Any, on_done: OnChange | None = None) -> Future[dict[str, Any]]:
        """Learn the next ``seconds`` of audio; returns the future of the final state. OnsiteError
        for bad seconds, a model that cannot learn, or while a learning runs."""
        try:
            seconds = METHODS["learn"]["seconds"].check(seconds)
        except ConstraintError as exc:
            raise OnsiteError(str(exc)) from exc
        if self._fp is None:
            raise OnsiteError("the model cannot learn: its card has no learning block (no embedding output); "
                              "use a model trained with `ml train` that exports one")
        if self._run is not None:
            raise OnsiteError("on-site learning is already running")
        self._run = _Learn(seconds, on_done)
        log.info("on-site learning: learning %g s of %s's sound (no alerts meanwhile)", seconds, self._machine)
        self._tell(self.status())
        return self._run.finished

    def window(self, embedding: np.ndarray | None, bands: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Collect a scored window's embedding and its per-band level and variability
        (:func:`audioclassifier.bands.window_bands`; silent windows are never passed)."""
        run = self._run
        if run is not None and embedding is not None:
            run.embeddings.append(np.asarray(embedding, dtype=np.float64).reshape(-1))
            if bands is not None:
                if run.bands is None:
                    run.bands = BandAccumulator(len(bands[0]))
                run.bands.add(*bands)

    def advance(self, seconds: float) -> bool:
        """Count ``seconds`` more audio; True when the learning has heard enough (conclude now)."""
        return self._run is not None and self._run.advance(seconds)

    def conclude(self, hop_seconds: float = 1.0) -> None:
        """Fit the learned model (windows ``hop_seconds`` apart), put it in force and keep it; or
        fail, keeping what was in force."""
        run, card = self._run, self._card
        if run is None or card is None or card.learning is None:
            return
        try:
            fitted = self._fit(np.asarray(run.embeddings).reshape(len(run.embeddings), int(card.learning["dim"])),
                               hop_seconds)
        except (LearningError, ValueError, np.linalg.LinAlgError) as exc:
            self._fail(f"{exc} ({len(run.embeddings)} scored windows in {run.audio:.1f} s)")
            return
        self._run = None
        profile = run.bands.profile("learned") if run.bands is not None else None
        model = replace(fitted, meta={**fitted.meta, "fingerprint": self._fp, "machine": self._machine,
                                      "model": card.version, "seconds": round(run.audio, 3), "total": run.seconds,
                                      "learned_at": round(time.time(), 3),
                                      **({"bands": profile.to_dict()} if profile is not None else {})})
        if self.model is not None:  # the accepted sounds (feedback) stay accepted
            model = model.with_accepted(self.model.accepted)
        log.info("on-site learning done for %s: %d windows, threshold %.4g (%s)%s", self._machine, model.n_fitted,
                 model.threshold, model.method, f"; {model.warning}" if model.warning else "")
        self._put(model, unsaved="learned, but not saved ({}): it is learned again at the next start", run=run)

    def fail(self, why: str) -> None:
        """End the learning in progress, if any, as failed with ``why``."""
        if self._run is not None:
            self._fail(f"{why} after {self._run.audio:.1f} of {self._run.seconds:g} s")

    def _fail(self, why: str) -> None:
        run, self._run = self._run, None
        assert run is not None
        kept = (f"the learned model from before stays in force (threshold {self.model.threshold:.4g})"
                if self.model is not None else "the card's model and threshold stay in force")
        log.error("on-site learning failed: %s; %s", why, kept)
        self._set(self._state("failed", seconds=run.audio, total=run.seconds, windows=len(run.embeddings),
                              error=f"{why}; {kept}"), run)

    # -- feedback: accepted sounds -----------------------------------------------------------------

    def accept(self, seq: int, windows: np.ndarray, *, meta: dict[str, Any], recent: np.ndarray,
               recent_seconds: float, hop_seconds: float = 1.0) -> dict[str, Any]:
        """Accept alert ``seq``'s ``windows`` as normal in the learned model (started from ``recent``
        normal windows, ``recent_seconds`` of audio, when there is none); saved at once. Returns
        ``{"seeded", "accepted", "threshold"}``; OnsiteError when the model cannot learn, a learning
        runs, or no model can be started (too few recent windows)."""
        if self._fp is None or self._card is None or self._card.learning is None:
            raise OnsiteError("the model cannot learn: its card has no learning block (no embedding output), so a "
                              "false alarm cannot teach it; the verdict is kept, the clip marked")
        if self._run is not None:
            raise OnsiteError("on-site learning is running: mark the false alarm once it is done")
        base, seeded = self.model, False
        if base is None:
            if len(recent) < WARN_WINDOWS:
                raise OnsiteError(f"no learned model for {self._machine} yet, and {len(recent)} recent normal "
                                  f"window(s) to start one from (at least {WARN_WINDOWS}): let the module listen "
                                  "a little longer, or learn (the learn method)")
            try:
                fitted = self._fit(recent, hop_seconds)
            except (LearningError, ValueError, np.linalg.LinAlgError) as exc:
                raise OnsiteError(f"could not start a learned model from the recent normal windows: {exc}") from None
            base = replace(fitted, meta={**fitted.meta, "fingerprint": self._fp, "machine": self._machine,
                                         "model": self._card.version, "seconds": round(recent_seconds, 3),
                                         "total": round(recent_seconds, 3), "learned_at": round(time.time(), 3),
                                         "seeded_by": int(seq)})
            seeded = True
        try:
            model = base.accept(seq, windows, meta)
        except LearningError as exc:
            raise OnsiteError(str(exc)) from None
        self._put(model)
        log.info("feedback: alert %d's sound (%d windows) accepted as normal for %s%s; %d accepted sound(s)", seq,
                 len(windows), self._machine, f", in a learned model started from {len(recent)} recent normal windows "
                 f"(threshold {model.threshold:.4g})" if seeded else "", len(model.accepted))
        return {"seeded": seeded, "accepted": len(model.accepted), "threshold": model.threshold}

    def forget(self, seq: int) -> dict[str, Any]:
        """Undo :meth:`accept` of alert ``seq``: its sound alarms again. A learned model that this
        feedback started, left with no accepted sound, is dropped (the card's model again)."""
        model = self.model
        if model is None or seq not in model.accepted_seqs:
            return {"dropped": False, "accepted": 0 if model is None else len(model.accepted), "changed": False}
        model = model.forget(seq)
        if not model.accepted and model.meta.get("seeded_by") is not None:
            self.model = None
            self.store.delete(self._machine)
            log.info("feedback: alert %d's sound no longer accepted; the learned model it started for %s is dropped "
                     "(the card's model and threshold again)", seq, self._machine)
            self._set(self._state("off"))
            return {"dropped": True, "accepted": 0, "changed": True}
        self._put(model)
        log.info("feedback: alert %d's sound no longer accepted as normal for %s", seq, self._machine)
        return {"dropped": False, "accepted": len(model.accepted), "changed": True}

    def _put(self, model: NormalModel, *, unsaved: str = "changed, but not saved ({}): the change is lost at the "
             "next start", run: _Learn | None = None) -> None:
        """Put ``model`` in force and save it (a failed save is reported with ``unsaved``, the model stays in force)."""
        self.model = model
        state = self._learned_state(model)
        try:
            self.store.save(self._machine, model)
        except OSError as exc:
            state["error"] = unsaved.format(exc)
        self._set(state, run)

    # -- states -----------------------------------------------------------------------------------

    def _state(self, name: str, *, seconds: float = 0.0, total: float = 0.0, windows: int = 0,
               error: str | None = None) -> dict[str, Any]:
        m = self.model
        return {"state": name, "seconds": round(seconds, 1), "total": total, "windows": windows,
                "threshold": None if m is None else m.threshold, "method": None if m is None else m.method,
                "warning": None if m is None else m.warning, "error": error,
                "accepted": 0 if m is None else len(m.accepted),
                "sustain": None if m is None else m.sustain,
                "alerts_per_day": None if m is None else m.meta.get("alerts_per_day")}

    def _learned_state(self, m: NormalModel) -> dict[str, Any]:
        return self._state("learned", seconds=float(m.meta.get("seconds", 0.0)),
                           total=float(m.meta.get("total", 0.0)), windows=m.n_fitted)

    def _set(self, state: dict[str, Any], run: _Learn | None = None) -> None:
        self._last = state
        if run is not None:
            run.settle(state)
        self._tell(state)

    def _tell(self, state: dict[str, Any]) -> None:
        if self.on_change is not None:
            try:
                self.on_change(dict(state))
            except Exception:
                log.exception("on-site learning: on_change failed")

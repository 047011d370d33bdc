"""``python -m ml predict``: one JSON object per file from the exported model (onnxruntime).

Files of any length are streamed in bounded memory (:mod:`ml.stream`), and windows are gated
like the module does: a window quieter than ``energy_gate_dbfs`` is ``silent`` and not scored.
A file shorter than one window cannot be scored (the module scores no window of it) unless it is
looped (``loop_short``). A source slower than the model's rate is refused unless upsampling is
allowed; a channel count other than the training's gives a warning.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from audioclassifier.audio_io import AudioFileError
from audioclassifier.constraints import SETTINGS
from audioclassifier.scoring import verdict
from ml.dataset import find_audio, suffixes
from ml.inference import OnnxModel, card_channels
from ml.stream import StreamWindow, StreamWindows, signal_blocks
from ml.windows import check_rate, read_signal, source_of

__all__ = ["DEFAULT_GATE_DBFS", "predict_file", "predict_paths"]

#: the module's default energy gate
DEFAULT_GATE_DBFS = float(SETTINGS["energy_gate_dbfs"].default)
_BATCH = 256


def _channel_notes(model: OnnxModel, channels: int, channel: int | None) -> list[str]:
    block = card_channels(model.card)
    trained = block.get("trained_channels")
    if channel is None and block.get("mix") == "mean" and isinstance(trained, int) and trained != channels:
        return [f"the model was trained on a mix of {trained} channel(s); this file has {channels}: a mix of "
                "other microphones sounds different, scores may not be comparable"]
    return []


def predict_file(model: OnnxModel, path: str | os.PathLike[str], *, hop_seconds: float | None = None,
                 channel: int | None = None, per_window: bool = False, gate_dbfs: float = DEFAULT_GATE_DBFS,
                 loop_short: bool = False, allow_upsampling: bool = False, sensor: bool | None = None) -> dict[str, Any]:
    """The verdict on one file: mean and max score of its scored (not silent) windows, the
    decision, and per-label probabilities for a classifier (``unknown`` when the top one is under
    the card's ``confidence_threshold``); ``silent`` when every window is under the gate. With
    ``per_window``, every window's score (None for a silent window) in order: the module's
    windows, then one aligned to the file's end when the hops do not reach it. Raises
    :class:`AudioFileError` for an unusable file, one shorter than a window (unless ``loop_short``)
    or slower than the model (unless ``allow_upsampling``)."""
    card = model.card
    p = card.features
    trained = card_channels(card)
    if channel is None and trained.get("mix") == "channel":
        channel = int(trained["channel"])
    if sensor is None:
        sensor = trained.get("input") == "sensor"
    src = source_of(path, params=p, sensor=bool(sensor))
    notes = _channel_notes(model, src.channels, channel)
    up = check_rate(path, src.rate, p.sample_rate, allow_upsampling=allow_upsampling)
    if up:
        notes.append(up)
    hop = card.window_seconds / 2 if hop_seconds is None else hop_seconds
    sw = StreamWindows(p, window_frames=card.window_frames, window_samples=card.window_samples,
                       hop_frames=p.hop_frames(hop))
    levels: list[float] = []
    scores: list[float | None] = []
    prob_sum: np.ndarray | None = None
    pending: list[StreamWindow] = []
    looped = False

    def flush() -> None:
        nonlocal prob_sum
        if not pending:
            return
        loud = [w for w in pending if w.level_dbfs >= gate_dbfs]
        out = model.run(np.stack([w.logmel for w in loud])) if loud else None
        s = iter(model.scores(out).tolist()) if out is not None else iter(())
        if out is not None and card.kind != "anomaly":
            prob_sum = out.sum(axis=0) if prob_sum is None else prob_sum + out.sum(axis=0)
        for w in pending:
            levels.append(w.level_dbfs)
            scores.append(next(s) if w.level_dbfs >= gate_dbfs else None)
        pending.clear()

    for y in signal_blocks(path, params=p, channel=channel, sensor=bool(sensor)):
        pending += sw.push(y)
        if len(pending) >= _BATCH:
            flush()
    if sw.samples_seen < card.window_samples:
        seconds = sw.samples_seen / p.sample_rate
        if not loop_short:
            raise AudioFileError(path, f"{seconds:.3g} s is shorter than one model window ({card.window_seconds:g} s): "
                                       "it cannot be scored (the module scores no window of it); --loop-short "
                                       "repeats it up to a window")
        y = read_signal(path, params=p, channel=channel, sensor=bool(sensor))
        sw = StreamWindows(p, window_frames=card.window_frames, window_samples=card.window_samples,
                           hop_frames=p.hop_frames(hop))
        pending += sw.push(np.tile(y, -(-card.window_samples // max(1, y.shape[0])))[: card.window_samples])
        looped = True
    pending += sw.finish()
    flush()
    scored = np.array([s for s in scores if s is not None], dtype=np.float64)
    rec: dict[str, Any] = {"file": str(path), "kind": card.kind, "model": card.version, "windows": len(scores),
                           "scored": int(scored.size), "silent": len(scores) - int(scored.size),
                           "seconds": round(sw.samples_seen / p.sample_rate, 3) if not looped else
                           round(src_seconds(path, p, channel, bool(sensor)), 3), "threshold": card.threshold}
    if looped:
        rec["looped"] = True
    if notes:
        rec["warnings"] = notes
    if per_window:
        rec["window_scores"] = [None if s is None else round(float(s), 6) for s in scores]
    rec.update(verdict(card, scored.tolist(), threshold=card.threshold, prob_sum=prob_sum, gate_dbfs=gate_dbfs,
                       loudest_dbfs=max(levels)))
    return rec


def src_seconds(path: str | os.PathLike[str], p: Any, channel: int | None, sensor: bool) -> float:
    """Duration of a (short) file at the front end's rate."""
    return read_signal(path, params=p, channel=channel, sensor=sensor).shape[0] / p.sample_rate


def predict_paths(model: OnnxModel, target: str | os.PathLike[str], **kw: Any) -> Iterator[dict[str, Any]]:
    """:func:`predict_file` for a file or every audio file under a folder; a bad file yields
    ``{"file": ..., "error": reason}`` instead of stopping the run. A folder without any file to
    score raises FileNotFoundError."""
    sensor = kw.get("sensor")
    if sensor is None:
        sensor = card_channels(model.card).get("input") == "sensor"
    files = find_audio(Path(target), sensor=bool(sensor))
    if not files:
        raise FileNotFoundError(f"{target}: no {'/'.join(suffixes(bool(sensor)))} files found")
    for f in files:
        try:
            yield predict_file(model, f, **kw)
        except AudioFileError as exc:
            yield {"file": str(f), "error": exc.reason}

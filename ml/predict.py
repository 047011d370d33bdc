"""``python -m ml predict``: one JSON object per file from the exported model (onnxruntime)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from audioclassifier.audio_io import AudioFileError, load_audio
from audioclassifier.features import logmel
from ml.dataset import find_audio
from ml.inference import OnnxModel
from ml.windows import file_windows

__all__ = ["predict_file", "predict_paths"]


def predict_file(model: OnnxModel, path: str | os.PathLike[str], *, hop_seconds: float | None = None,
                 channel: int | None = None, per_window: bool = False) -> dict[str, Any]:
    """The verdict on one file: mean and max window score, the decision, and per-label
    probabilities for a classifier (``unknown`` when the top one is under the card's
    ``confidence_threshold``); with ``per_window``, every window's score too (``window_scores``,
    in window order: the module's windows, then one aligned to the file's end when the hops do not
    reach it). Raises :class:`AudioFileError` for an unusable file."""
    card = model.card
    p = card.features
    y = load_audio(path, sample_rate=p.sample_rate, channel=channel)
    if y.shape[0] < p.n_fft:
        y = np.tile(y, -(-p.n_fft // y.shape[0]))
    hop = card.window_seconds / 2 if hop_seconds is None else hop_seconds
    try:
        w = file_windows(logmel(y, params=p), card.window_frames, p.hop_frames(hop))
    except ValueError as exc:
        raise AudioFileError(path, str(exc)) from exc
    out = model.run(w)
    scores = model.scores(out)
    rec: dict[str, Any] = {"file": str(path), "kind": card.kind, "model": card.version, "windows": int(len(w)),
                           "seconds": round(len(y) / p.sample_rate, 3)}
    score = float(scores.mean())
    rec.update(score=round(score, 6), max_score=round(float(scores.max()), 6), threshold=card.threshold)
    if per_window:
        rec["window_scores"] = [round(float(s), 6) for s in scores]
    if card.kind == "anomaly":
        rec["label"] = "anomaly" if score > card.threshold else card.normal_label
        rec["anomalous_windows"] = int((scores > card.threshold).sum())
    else:
        probs = out.mean(axis=0)
        top = int(probs.argmax())
        conf = float(card.extra.get("confidence_threshold", 0.0))
        rec["label"] = card.labels[top] if probs[top] >= conf else "unknown"
        rec["top_label"] = card.labels[top]
        rec["confidence"] = round(float(probs[top]), 6)
        rec["probs"] = {lab: round(float(v), 6) for lab, v in zip(card.labels, probs)}
    return rec


def predict_paths(model: OnnxModel, target: str | os.PathLike[str], **kw: Any) -> Iterator[dict[str, Any]]:
    """:func:`predict_file` for a file or every audio file under a folder; a bad file yields
    ``{"file": ..., "error": reason}`` instead of stopping the run."""
    for f in find_audio(Path(target)):
        try:
            yield predict_file(model, f, **kw)
        except AudioFileError as exc:
            yield {"file": str(f), "error": exc.reason}

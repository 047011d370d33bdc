"""A whole recording scored with the model in force: ``POST /api/score`` (the REST inference service).

:func:`score_recording` decodes an uploaded WAV/FLAC in memory with :mod:`audio_io`'s checks
(plausible rate, no NaN, no absurd samples, bounded length), cuts it into the windows ``ml
predict`` scores (:class:`~audioclassifier.analysis.StreamWindows`: the module's windows, then
one aligned to the end), gates them by level as the module does, scores each with the loaded
model (and the learned normal model when on-site learning put one in force) and returns every
window's score and label, the recording's verdict (:func:`verdict`, the one ``ml predict``
prints) and the module's decision: the alerts its detector (threshold, ``consecutive``,
cooldown) would raise on it. Memory stays bounded: the upload is decoded block by block.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from audioclassifier.analysis import StreamWindow, StreamWindows
from audioclassifier.audio_io import AudioFileError, audio_info, iter_blocks
from audioclassifier.backends import LoadedModel
from audioclassifier.card import ModelCard
from audioclassifier.detector import Detector
from audioclassifier.learning import NormalModel

__all__ = ["MAX_SCORE_SECONDS", "score_recording", "verdict"]

#: The longest recording scored in one request (10 minutes: a few seconds of work).
MAX_SCORE_SECONDS = 600.0


def verdict(card: ModelCard, scored: Sequence[float], *, threshold: float, prob_sum: np.ndarray | None = None,
            gate_dbfs: float, loudest_dbfs: float) -> dict[str, Any]:
    """A recording's verdict from its scored windows: mean and max score and the label (anomaly
    model: ``anomaly`` when the mean is over ``threshold``, else the normal label; classifier: the
    label of the mean probabilities, ``unknown`` under the card's ``confidence_threshold``);
    ``silent`` when no window was loud enough to score."""
    s = np.asarray(scored, dtype=np.float64)
    if not s.size:
        return {"score": None, "max_score": None, "label": "silent",
                "reason": f"every window is under the energy gate {gate_dbfs:g} dBFS (loudest {loudest_dbfs:.1f} "
                          "dBFS): not scored, as in the module"}
    score = float(s.mean())
    out: dict[str, Any] = {"score": round(score, 6), "max_score": round(float(s.max()), 6)}
    if card.kind == "anomaly" or prob_sum is None:
        out["label"] = "anomaly" if score > threshold else card.normal_label
        out["anomalous_windows"] = int((s > threshold).sum())
        return out
    probs = prob_sum / s.size
    top = int(probs.argmax())
    conf = float(card.extra.get("confidence_threshold", 0.0))
    out["label"] = card.labels[top] if probs[top] >= conf else "unknown"
    out["top_label"] = card.labels[top]
    out["confidence"] = round(float(probs[top]), 6)
    out["probs"] = {lab: round(float(v), 6) for lab, v in zip(card.labels, probs)}
    return out


def score_recording(data: bytes, *, name: str, model: LoadedModel, threshold: float, hop_seconds: float,
                    gate_dbfs: float, consecutive: int, cooldown_seconds: float, learned: NormalModel | None = None,
                    max_seconds: float = MAX_SCORE_SECONDS, pause: float = 0.0) -> dict[str, Any]:
    """Score the WAV/FLAC bytes ``data`` (see the module docstring). ``name`` names the upload in
    errors; ``pause`` seconds are yielded after each window (the worker shares the model).
    Raises :class:`AudioFileError` for an unusable recording."""
    card = model.card
    p = card.features
    info = audio_info(name, data=data)
    if info.sample_rate < p.sample_rate:
        raise AudioFileError(name, f"source rate {info.sample_rate} Hz is below the model's {p.sample_rate} Hz: "
                                   "upsampling leaves the upper bands empty and the scores are not comparable")
    if info.seconds > max_seconds:
        raise AudioFileError(name, f"{info.seconds:.0f} s of audio; at most {max_seconds:g} s are scored per request")
    channel = card.channel
    if channel is not None and not -info.channels <= channel < info.channels:
        channel = None  # the card's channel is missing here: mix down, as a one-microphone device would hear it
    sw = StreamWindows(p, window_frames=card.window_frames, window_samples=card.window_samples,
                       hop_frames=p.hop_frames(hop_seconds))
    detector = Detector(threshold, consecutive, cooldown_seconds)
    use_learned = learned is not None and model.embedding is not None
    windows: list[dict[str, Any]] = []
    scores: list[float] = []
    alerts: list[dict[str, Any]] = []
    prob_sum: np.ndarray | None = None
    sr = p.sample_rate

    def take(w: StreamWindow) -> None:
        nonlocal prob_sum
        start = w.start_frame * p.hop_length / sr
        end = start + card.window_samples / sr
        score: float | None = None
        label = "silent"
        if w.level_dbfs >= gate_dbfs:
            if use_learned:
                assert learned is not None
                score, label, emb = model.analyse(w.logmel)
                score = float(learned.score(np.asarray(emb)[None])[0])
            else:
                out = model.raw(w.logmel[None])
                score, label = model.decide(out)
                if card.kind != "anomaly":
                    probs = out.reshape(-1).astype(np.float64)
                    prob_sum = probs if prob_sum is None else prob_sum + probs
            if card.kind == "anomaly":  # the model's label is "anomaly" whatever the score: say what it means
                label = "anomaly" if score > threshold else card.normal_label
            scores.append(score)
            if pause:
                time.sleep(pause)
        if detector.update(score, end) and score is not None:
            alerts.append({"start_seconds": round(start, 3), "end_seconds": round(end, 3), "score": round(score, 6),
                           "label": label})
        windows.append({"start_seconds": round(start, 3), "end_seconds": round(end, 3),
                        "level_dbfs": round(w.level_dbfs, 2), "score": None if score is None else round(score, 6),
                        "label": label, "over_threshold": score is not None and score > threshold})

    levels: list[float] = []
    for y in iter_blocks(name, data=data, block_frames=10 * sr, sample_rate=sr, channel=channel):
        for w in sw.push(y):
            levels.append(w.level_dbfs)
            take(w)
    if sw.samples_seen < card.window_samples:
        raise AudioFileError(name, f"{sw.samples_seen / sr:.3g} s is shorter than one model window "
                                   f"({card.window_seconds:g} s): it cannot be scored")
    for w in sw.finish():
        levels.append(w.level_dbfs)
        take(w)
    result: dict[str, Any] = {
        "file": name, "kind": card.kind, "model": card.version, "threshold": threshold,
        "learned": use_learned, "hop_seconds": round(p.hop_frames(hop_seconds) * p.hop_length / sr, 6),
        "energy_gate_dbfs": gate_dbfs, "seconds": round(sw.samples_seen / sr, 3),
        "source": {"sample_rate": info.sample_rate, "channels": info.channels, "format": info.format,
                   "subtype": info.subtype, "channel": channel},
        "windows": len(windows), "scored": len(scores), "silent": len(windows) - len(scores),
        "window_scores": [w["score"] for w in windows], "window_labels": [w["label"] for w in windows],
        "per_window": windows,
    }
    result.update(verdict(card, scores, threshold=threshold, prob_sum=prob_sum, gate_dbfs=gate_dbfs,
                          loudest_dbfs=max(levels)))
    result["decision"] = {"alert": bool(alerts), "alerts": alerts, "threshold": threshold,
                          "consecutive": consecutive, "cooldown_seconds": cooldown_seconds,
                          "windows_over_threshold": sum(w["over_threshold"] for w in windows)}
    return result

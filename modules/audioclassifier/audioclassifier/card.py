"""The model card: JSON under the ONNX metadata key ``auscult`` that makes a model self-describing.

DESIGN.md fixes the schema. The module configures its front end, window and default threshold
from the card alone. The input and output contract of every Auscult model:

* input: float32 log-mel dB windows, shape ``(batch, n_mels, window_frames)``, exactly as
  :func:`audioclassifier.features.logmel` computes them (normalisation is inside the graph);
* output: ``anomaly``: one score per window, shape ``(batch,)``, higher = more anomalous;
  ``classifier``: probabilities in ``labels`` order, shape ``(batch, len(labels))``.

Optional, additive: ``"learning": {"supported": true, "embedding": "embedding", "dim": D, "method":
"knn" | "mahalanobis", ...}`` says the model also outputs ``embedding`` ``(batch, D)`` float32, the
window features a per-machine normal model can be fitted on (:mod:`audioclassifier.learning`).
Cards without it load as before (:attr:`ModelCard.learning` is then None).

Optional, additive: ``"channels": {"mix": "mean" | "channel", "channel": k, "trained_channels": n}``
records how training reduced channels (or a sensor's axes) to one signal; the module and ``ml``
apply it when no channel is asked for. Cards without it mean ``{"mix": "mean"}``.

Reading uses onnxruntime (a runtime dependency); writing uses ``onnx`` and lives in ``ml``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audioclassifier.errors import AuscultError
from audioclassifier.features import LogMelParams

__all__ = ["CARD_KEY", "SCHEMA_VERSION", "CardError", "ModelCard", "card_from_metadata", "read_card"]

CARD_KEY = "auscult"
SCHEMA_VERSION = 1
KINDS = ("classifier", "anomaly")


class CardError(AuscultError, ValueError):
    """A model without a card, or with an invalid one; ``source`` names the model."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}" if source else reason)


def _num(d: Mapping[str, Any], key: str, *, source: str, optional: bool = False) -> float | None:
    v = d.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise CardError(source, f"model card field {key!r} must be a finite number, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class ModelCard:
    """A validated model card. Build it with :meth:`from_dict`; serialise with :meth:`to_json`."""

    kind: str
    labels: tuple[str, ...]
    features: LogMelParams
    window_seconds: float
    threshold: float
    normal_label: str = "normal"
    context_frames: int = 1
    normalization: Mapping[str, Any] = field(default_factory=dict)
    threshold_method: str = ""
    version: str = "0"
    trained: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def window_samples(self) -> int:
        """Samples in one model window at the card's sample rate."""
        return int(round(self.window_seconds * self.features.sample_rate))

    @property
    def window_frames(self) -> int:
        """Log-mel columns in one model window (the model's time dimension)."""
        return self.features.frames_for(self.window_samples)

    @property
    def normal_index(self) -> int | None:
        """Position of the normal label in a classifier's output, None for anomaly models."""
        if self.kind != "classifier":
            return None
        return self.labels.index(self.normal_label)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "") -> ModelCard:
        """Validate a parsed card; every problem raises :class:`CardError` naming the field."""
        if not isinstance(d, Mapping):
            raise CardError(source, f"model card must be a JSON object, got {type(d).__name__}")
        if d.get("schema") != SCHEMA_VERSION:
            raise CardError(source, f"unsupported model card schema {d.get('schema')!r} (expected {SCHEMA_VERSION})")
        kind = d.get("kind")
        if kind not in KINDS:
            raise CardError(source, f"model card 'kind' must be one of {KINDS}, got {kind!r}")
        labels = d.get("labels")
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise CardError(source, "model card 'labels' must be a list of non-empty strings")
        if len(set(labels)) != len(labels):
            raise CardError(source, f"model card 'labels' has duplicates: {labels}")
        normal = d.get("normal_label", "normal")
        if kind == "classifier":
            if len(labels) < 2:
                raise CardError(source, "a classifier's card needs at least two labels")
            if normal not in labels:
                raise CardError(source, f"normal_label {normal!r} is not among labels {labels}")
        feats = d.get("features")
        if not isinstance(feats, Mapping):
            raise CardError(source, "model card has no 'features' object")
        try:
            params = LogMelParams.from_dict(feats)
        except (TypeError, ValueError) as exc:
            raise CardError(source, f"model card 'features' invalid: {exc}") from exc
        window = _num(feats, "window_seconds", source=source)
        assert window is not None
        if params.frames_for(int(round(window * params.sample_rate))) < 1:
            raise CardError(source, f"window_seconds {window} is shorter than one FFT frame")
        ctx = feats.get("context_frames", 1)
        if isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 1:
            raise CardError(source, f"context_frames must be a positive integer, got {ctx!r}")
        threshold = _num(d, "threshold", source=source)
        assert threshold is not None
        _check_learning(d.get("learning"), source=source)
        _check_channels(d.get("channels"), source=source)
        known = {"schema", "kind", "labels", "normal_label", "features", "threshold", "threshold_method",
                 "trained", "metrics", "version"}
        return cls(
            kind=kind,
            labels=tuple(labels),
            normal_label=normal,
            features=params,
            window_seconds=window,
            context_frames=ctx,
            normalization=dict(feats.get("normalization") or {}),
            threshold=threshold,
            threshold_method=str(d.get("threshold_method", "")),
            version=str(d.get("version", "0")),
            trained=dict(d.get("trained") or {}),
            metrics=dict(d.get("metrics") or {}),
            extra={k: v for k, v in d.items() if k not in known},
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "") -> ModelCard:
        """Parse and validate card JSON."""
        try:
            d = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise CardError(source, f"model card is not valid JSON ({exc})") from exc
        return cls.from_dict(d, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The card as DESIGN.md lays it out (JSON-ready)."""
        feats = self.features.to_dict()
        feats.update(window_seconds=self.window_seconds, context_frames=self.context_frames,
                     normalization=dict(self.normalization))
        d: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "kind": self.kind,
            "version": self.version,
            "labels": list(self.labels),
            "normal_label": self.normal_label,
            "features": feats,
            "threshold": self.threshold,
            "threshold_method": self.threshold_method,
            "trained": dict(self.trained),
            "metrics": dict(self.metrics),
        }
        d.update(self.extra)
        return d

    def to_json(self) -> str:
        """Compact JSON for the ONNX metadata."""
        return json.dumps(self.to_dict(), sort_keys=False, allow_nan=False)

    @property
    def learning(self) -> Mapping[str, Any] | None:
        """The on-site learning block when the model supports it (validated on load), else None."""
        block = self.extra.get("learning")
        return block if isinstance(block, Mapping) and block.get("supported") is True else None

    @property
    def channel(self) -> int | None:
        """The channel the model was trained on (``channels.mix == "channel"``), else None (mixed down)."""
        block = self.extra.get("channels")
        if isinstance(block, Mapping) and block.get("mix") == "channel":
            return int(block["channel"])
        return None

    def summary(self) -> dict[str, Any]:
        """The short form for status and reported properties."""
        return {"kind": self.kind, "version": self.version, "labels": list(self.labels),
                "threshold": self.threshold, "window_seconds": self.window_seconds,
                "sample_rate": self.features.sample_rate, "metrics": dict(self.metrics)}


def _check_learning(block: Any, *, source: str) -> None:
    """The optional ``learning`` block: absent, or an object whose ``supported`` says yes or no."""
    if block is None:
        return
    if not isinstance(block, Mapping) or not isinstance(block.get("supported"), bool):
        raise CardError(source, "model card 'learning' must be an object with a boolean 'supported'")
    if not block["supported"]:
        return
    name, dim = block.get("embedding"), block.get("dim")
    if not isinstance(name, str) or not name:
        raise CardError(source, "model card 'learning.embedding' must name the embedding output")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise CardError(source, f"model card 'learning.dim' must be a positive integer, got {dim!r}")


def _check_channels(block: Any, *, source: str) -> None:
    """The optional ``channels`` block: absent, or how the training signal was made."""
    if block is None:
        return
    if not isinstance(block, Mapping) or block.get("mix") not in ("mean", "channel"):
        raise CardError(source, "model card 'channels' must be an object with 'mix' \"mean\" or \"channel\"")
    ch = block.get("channel")
    if block["mix"] == "channel" and (isinstance(ch, bool) or not isinstance(ch, int) or ch < 0):
        raise CardError(source, f"model card 'channels.channel' must be a channel index >= 0, got {ch!r}")


def card_from_metadata(meta: Mapping[str, str], *, source: str = "") -> ModelCard:
    """The card from an ONNX model's metadata_props mapping (as runtimes expose it)."""
    if CARD_KEY not in meta:
        raise CardError(source, f"model has no Auscult model card (metadata key {CARD_KEY!r}); "
                                "a model from elsewhere needs the Auscult input/output contract and a card: train it with "
                                "`python -m ml train` (`ml export` only re-exports a model that already has a card)")
    return ModelCard.from_json(meta[CARD_KEY], source=source)


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate the card of an ONNX file (also checks that onnxruntime can load it)."""
    p = Path(path)
    if not p.is_file():
        raise CardError(str(p), "model file not found")
    from audioclassifier.backends import import_onnxruntime  # here, so card parsing stays light

    ort = import_onnxruntime()

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(p), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several private exception types
        raise CardError(str(p), f"not a loadable ONNX model ({str(exc).splitlines()[0][:300]})") from exc
    return card_from_metadata(sess.get_modelmeta().custom_metadata_map, source=str(p))

"""Run an exported model with onnxruntime: what the ml tools evaluate is exactly what ships."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from audioclassifier.card import ModelCard, card_from_metadata

__all__ = ["OnnxModel", "card_channels"]


def card_channels(card: ModelCard) -> dict[str, Any]:
    """The card's optional ``channels`` block (how training reduced channels or axes to one signal);
    an old card without it: ``{"mix": "mean"}``."""
    block = card.extra.get("channels")
    return dict(block) if isinstance(block, dict) else {"mix": "mean"}


class OnnxModel:
    """An Auscult ONNX model and its card; :meth:`run` maps windows to scores or probabilities."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int = 1) -> None:
        from audioclassifier.backends import import_onnxruntime
        from audioclassifier.card import CardError

        ort = import_onnxruntime()

        self.path = Path(path)
        if not self.path.is_file():
            raise CardError(str(self.path), "model file not found")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises private exception types
            raise CardError(str(self.path), f"not a loadable ONNX model ({str(exc).splitlines()[0][:300]})") from exc
        self.card: ModelCard = card_from_metadata(self.session.get_modelmeta().custom_metadata_map, source=str(self.path))
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    @property
    def kind(self) -> str:
        return self.card.kind

    def run(self, x: np.ndarray, *, batch: int = 256) -> np.ndarray:
        """Outputs for ``(n, n_mels, window_frames)`` windows: ``(n,)`` scores or ``(n, K)`` probabilities."""
        out = [self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(x[i : i + batch], dtype=np.float32)})[0]
               for i in range(0, len(x), batch)]
        if out:
            return np.concatenate(out)
        k = len(self.card.labels)
        return np.empty((0,) if self.kind == "anomaly" else (0, k), dtype=np.float32)

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """Anomaly scores from outputs: the score itself, or ``1 - p(normal)`` for a classifier."""
        if self.kind == "anomaly":
            return outputs
        return 1.0 - outputs[:, self.card.normal_index]

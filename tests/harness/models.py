"""Tiny real ONNX models with an Auscult card, for model-update tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from audioclassifier.card import ModelCard

CARD = {
    "schema": 1, "kind": "anomaly", "labels": ["normal"], "normal_label": "normal",
    "features": {"sample_rate": 16000, "n_fft": 1024, "hop_length": 512, "n_mels": 64, "fmin": 0,
                 "fmax": 8000, "power": 2.0, "top_db": None, "window_seconds": 2.0, "context_frames": 1,
                 "normalization": {}},
    "threshold": 0.5, "threshold_method": "test", "trained": {"dataset": "test"}, "metrics": {},
}


def tiny_graph(n_mels: int = 64, frames: int | str = "frames") -> onnx.ModelProto:
    """(batch, n_mels, frames) -> (batch,): a window's mean, a stand-in anomaly score."""
    x = helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["batch", n_mels, frames])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    node = helper.make_node("ReduceMean", ["logmel", "axes"], ["score"], keepdims=0)
    graph = helper.make_graph([node], "tiny", [x], [y], initializer=[axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def tiny_model(path: Path, version: str = "2", **card_changes) -> tuple[Path, str]:
    """Write a tiny anomaly model with a card of ``version``; returns (path, sha256)."""
    from ml.modelcard import save_with_card

    card = ModelCard.from_dict({**CARD, "version": version, **card_changes})
    save_with_card(tiny_graph(card.features.n_mels), card, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()

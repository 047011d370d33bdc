"""Small real ONNX models with Auscult cards: the one place tests get a model from.

They follow the module's contract exactly (input ``logmel`` (batch, n_mels, frames), output
``score`` (batch,) or ``probs`` (batch, labels)) and score what is easy to reason about: the mean
log-mel level of the window in dB, so a louder window scores higher. :func:`make_model` writes one;
:func:`tiny_model` is the 64-band one the hub tests update over the air (with its SHA-256);
:func:`tiny_graph` a bare graph without a card.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from audioclassifier.card import ModelCard
from audioclassifier.features import LogMelParams

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


def make_model(
    path: Path,
    *,
    kind: str = "anomaly",
    threshold: float = -40.0,
    window_seconds: float = 2.0,
    params: LogMelParams = LogMelParams(),
    labels: tuple[str, ...] | None = None,
    version: str = "test-1",
    mismatch: bool = False,
) -> Path:
    """Write a mean-log-mel-level model with a card. ``classifier``: labels ``normal``, ``loud``,
    p(loud) = sigmoid((level + 40) / 5). ``mismatch``: the graph's output contradicts the card."""
    import onnx
    from onnx import TensorProto, helper

    from ml.modelcard import save_with_card

    frames = params.frames_for(int(round(window_seconds * params.sample_rate)))
    inp = helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["batch", params.n_mels, frames])
    init = [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])]
    nodes = [helper.make_node("ReduceMean", ["logmel", "axes"], ["level"], keepdims=0)]
    classifier_graph = (kind == "classifier") != mismatch
    if classifier_graph:
        # logits (batch, 2) = level[:, None] * w + b, w = [0, 0.2], b = [0, 8]: p(loud) = sigmoid((level+40)/5)
        init += [helper.make_tensor("one", TensorProto.INT64, [1], [1]),
                 helper.make_tensor("w", TensorProto.FLOAT, [1, 2], [0.0, 0.2]),
                 helper.make_tensor("b", TensorProto.FLOAT, [2], [0.0, 8.0])]
        nodes += [helper.make_node("Unsqueeze", ["level", "one"], ["col"]),
                  helper.make_node("MatMul", ["col", "w"], ["xw"]),
                  helper.make_node("Add", ["xw", "b"], ["logits"]),
                  helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
        out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 2])
    else:
        nodes += [helper.make_node("Identity", ["level"], ["score"])]
        out = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    graph = helper.make_graph(nodes, "mean_level", [inp], [out], initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    if labels is None:
        labels = ("normal", "loud") if kind == "classifier" else ("anomaly",)
    card = ModelCard(kind=kind, labels=labels, features=params, window_seconds=window_seconds,
                     threshold=threshold, version=version, threshold_method="test: fixed",
                     trained={"dataset": "none: a test model scoring the mean log-mel level"})
    if mismatch:
        from ml.modelcard import embed_card

        embed_card(model, card)
        onnx.save_model(model, str(path))
        return path
    return save_with_card(model, card, path)


def tiny_model(path: Path, version: str = "2", **card_changes) -> tuple[Path, str]:
    """A 64-band mean-level anomaly model with a card of ``version``; returns (path, sha256)."""
    if card_changes:
        from ml.modelcard import save_with_card

        card = ModelCard.from_dict({**CARD, "version": version, **card_changes})
        save_with_card(tiny_graph(card.features.n_mels), card, path)
    else:
        make_model(path, params=LogMelParams(n_mels=64), threshold=0.5, version=version)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()

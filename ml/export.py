"""Export a torch model to one ONNX file with the Auscult contract and its model card.

Input ``logmel`` float32 ``(batch, n_mels, window_frames)``; output ``score (batch,)`` for anomaly
models or ``probs (batch, K)`` for classifiers; dynamic batch; opset 17. A learning-ready anomaly
model (card field ``learning.supported``) has a second output ``embedding (batch, D)``. torch 2.13 defaults to the
dynamo exporter (which needs onnxscript); the TorchScript exporter (``dynamo=False``) is still
there, handles these small graphs, and needs nothing more, so it is used.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from audioclassifier.card import ModelCard
from ml.modelcard import save_with_card

__all__ = ["EMBEDDING_NAME", "INPUT_NAME", "OPSET", "IR_VERSION", "check_contract", "export_onnx", "output_name",
           "to_onnx"]

INPUT_NAME = "logmel"
EMBEDDING_NAME = "embedding"
OPSET = 17
#: onnxruntime 1.31 refuses onnx 1.23's default IR version; 10 loads everywhere we run.
IR_VERSION = 10


def output_name(kind: str) -> str:
    """``score`` for anomaly models, ``probs`` for classifiers."""
    return "score" if kind == "anomaly" else "probs"


def to_onnx(model: nn.Module, *, kind: str, n_mels: int, frames: int, embedding: bool = False) -> onnx.ModelProto:
    """The ONNX graph of ``model`` (in eval mode) with named input/output and a dynamic batch.

    ``embedding``: also output window statistics as ``embedding (batch, D)``: the model's
    ``learning_stats`` module when it has one (set by training), else the scorer's own ``embed``.
    """
    from ml.models.anomaly import ScoreAndEmbedding

    model.eval()
    out = output_name(kind)
    outs = [out]
    if embedding:
        if kind != "anomaly":
            raise ValueError("only anomaly models have an embedding output")
        model = ScoreAndEmbedding(model, getattr(model, "learning_stats", None)).eval()
        outs.append(EMBEDDING_NAME)
    dummy = torch.zeros(2, n_mels, frames, dtype=torch.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # branches on the window's frames: fixed by the card
        torch.onnx.export(
            model, (dummy,), buf, dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=outs,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{o: {0: "batch"} for o in outs}},
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = IR_VERSION
    proto.producer_name = "auscult-ml"
    del proto.metadata_props[:]
    return proto


def export_onnx(model: nn.Module, card: ModelCard, path: str | os.PathLike[str]) -> Path:
    """Export ``model`` with the card's shape and embed the card; returns the written path.

    A card whose ``learning`` block is supported gets the ``embedding`` output too."""
    proto = to_onnx(model, kind=card.kind, n_mels=card.features.n_mels, frames=card.window_frames,
                    embedding=card.learning is not None)
    return save_with_card(proto, card, path)


def check_contract(proto: onnx.ModelProto, card: ModelCard) -> None:
    """Raise ValueError unless ``proto`` has the Auscult input/output contract for ``card``."""
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < OPSET:
        raise ValueError(f"opset {opset} < {OPSET}")
    g = proto.graph
    init = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in init]
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ValueError(f"expected one input named {INPUT_NAME!r}, got {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value for d in dims]
    if len(shape) != 3 or not isinstance(shape[0], str) or shape[1:] != [card.features.n_mels, card.window_frames]:
        raise ValueError(f"input shape {shape} is not (batch, {card.features.n_mels}, {card.window_frames})")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ValueError("input must be float32")
    outs = [o.name for o in g.output]
    want = [output_name(card.kind)]
    if card.learning is not None:
        want.append(str(card.learning["embedding"]))
    if outs != want:
        raise ValueError(f"expected outputs {want}, got {outs}")

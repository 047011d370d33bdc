"""Embed the Auscult model card in an ONNX file (training side; the module only reads it)."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from audioclassifier.card import CARD_KEY, CardError, ModelCard, card_from_metadata, read_card
from audioclassifier.durable import atomic_file

__all__ = ["embed_card", "save_with_card", "read_card"]


def embed_card(model: onnx.ModelProto, card: ModelCard) -> onnx.ModelProto:
    """Put ``card`` under metadata key ``auscult`` of ``model`` (replacing any earlier card)."""
    keep = [p for p in model.metadata_props if p.key != CARD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key = CARD_KEY
    entry.value = card.to_json()
    return model


def _check_loadable(data: bytes, source: str) -> None:
    """onnxruntime loads the bytes and reads the card back (before anything is written)."""
    from audioclassifier.backends import import_onnxruntime

    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises private exception types
        raise CardError(source, f"not a loadable ONNX model ({str(exc).splitlines()[0][:300]})") from exc
    card_from_metadata(sess.get_modelmeta().custom_metadata_map, source=source)


def save_with_card(model: onnx.ModelProto, card: ModelCard, path: str | os.PathLike[str]) -> Path:
    """Embed the card, check the card, the graph and that onnxruntime loads it, then write ``path``
    atomically (:func:`audioclassifier.durable.atomic_file`): a failed check or a crash leaves the
    previous file as it was. Raises :class:`CardError` for an invalid card or graph."""
    dest = Path(path)
    ModelCard.from_dict(card.to_dict(), source=str(dest))  # the card as the module will read it
    embed_card(model, card)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise CardError(str(dest), f"invalid ONNX graph ({str(exc).splitlines()[0][:300]})") from exc
    data = model.SerializeToString()
    _check_loadable(data, str(dest))
    with atomic_file(dest) as fh:
        fh.write(data)
    return dest

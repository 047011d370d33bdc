"""Embed the Auscult model card in an ONNX file (training side; the module only reads it)."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from audioclassifier.card import CARD_KEY, ModelCard, read_card

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


def save_with_card(model: onnx.ModelProto, card: ModelCard, path: str | os.PathLike[str]) -> Path:
    """Embed the card, check the graph, save to ``path`` and read the card back as a check."""
    embed_card(model, card)
    onnx.checker.check_model(model)
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    onnx.save_model(model, str(tmp))
    os.replace(tmp, dest)
    read_card(dest)
    return dest

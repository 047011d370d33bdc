"""The model card: validation, and the round trip through ONNX metadata."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from audioclassifier.card import CardError, ModelCard, read_card
from harness.models import tiny_graph
from ml.modelcard import save_with_card

CARD = {
    "schema": 1,
    "kind": "classifier",
    "version": "2026.11.1",
    "labels": ["normal", "imbalance", "clogging"],
    "normal_label": "normal",
    "features": {"sample_rate": 16000, "n_fft": 1024, "hop_length": 512, "n_mels": 128, "fmin": 0,
                 "fmax": 8000, "power": 2.0, "top_db": None, "window_seconds": 10.0, "context_frames": 5,
                 "normalization": {"mean": -40.0, "std": 12.0}},
    "threshold": 0.73,
    "threshold_method": "gamma-p90 on normal validation scores",
    "trained": {"dataset": "synthetic", "date": "2026-11-21", "git": "abc"},
    "metrics": {"auc": 0.94, "pauc": 0.88, "accuracy": None},
}


def test_dict_json_roundtrip() -> None:
    card = ModelCard.from_dict(CARD)
    assert card.window_frames == 311 and card.normal_index == 0 and card.context_frames == 5
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert again.to_dict()["features"]["normalization"] == {"mean": -40.0, "std": 12.0}


@pytest.mark.parametrize(
    "mutate,msg",
    [
        (lambda d: d.pop("kind"), "kind"),
        (lambda d: d.update(kind="regressor"), "kind"),
        (lambda d: d.update(schema=2), "schema"),
        (lambda d: d.update(labels="normal"), "labels"),
        (lambda d: d.update(labels=["normal", "normal"]), "duplicates"),
        (lambda d: d.update(normal_label="healthy"), "normal_label"),
        (lambda d: d.update(threshold=float("nan")), "threshold"),
        (lambda d: d.update(threshold="high"), "threshold"),
        (lambda d: d.pop("features"), "features"),
        (lambda d: d["features"].update(n_fft=0), "n_fft"),
        (lambda d: d["features"].pop("window_seconds"), "window_seconds"),
        (lambda d: d["features"].update(window_seconds=0.01), "shorter than one FFT frame"),
        (lambda d: d["features"].update(context_frames=0), "context_frames"),
    ],
)
def test_invalid_cards_are_refused_with_the_reason(mutate, msg: str) -> None:
    d = copy.deepcopy(CARD)
    mutate(d)
    with pytest.raises(CardError, match=msg):
        ModelCard.from_dict(d, source="m.onnx")


def test_onnx_roundtrip_through_metadata(tmp_path: Path) -> None:
    card = ModelCard.from_dict({**CARD, "kind": "anomaly", "labels": ["normal"]})
    path = save_with_card(tiny_graph(128, 311), card, tmp_path / "m.onnx")
    assert read_card(path) == card
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["auscult"])["threshold"] == 0.73
    # a second embed replaces the card instead of adding a second key
    card2 = ModelCard.from_dict({**CARD, "kind": "anomaly", "labels": ["normal"], "threshold": 0.5})
    path = save_with_card(onnx.load(str(path)), card2, path)
    assert [p.key for p in onnx.load(str(path)).metadata_props].count("auscult") == 1
    assert read_card(path).threshold == 0.5


def test_models_without_a_valid_card_get_clear_errors(tmp_path: Path) -> None:
    bare = tmp_path / "bare.onnx"
    onnx.save_model(tiny_graph(128, 311), str(bare))
    with pytest.raises(CardError, match="no Auscult model card"):
        read_card(bare)
    broken = tiny_graph(128, 311)
    broken.metadata_props.add(key="auscult", value="{not json")
    onnx.save_model(broken, str(tmp_path / "broken.onnx"))
    with pytest.raises(CardError, match="not valid JSON"):
        read_card(tmp_path / "broken.onnx")
    (tmp_path / "junk.onnx").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(CardError, match="not a loadable ONNX model"):
        read_card(tmp_path / "junk.onnx")
    with pytest.raises(CardError, match="not found"):
        read_card(tmp_path / "nope.onnx")

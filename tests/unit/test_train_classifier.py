"""Classifier training on tiny synthetic data, and the augmentation it uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audioclassifier.card import read_card
from harness.trees import PARAMS, WINDOW, make_tree
from ml.augment import Augment
from ml.evaluate import evaluate
from ml.train import TrainOptions, train

torch.set_num_threads(1)


@pytest.mark.slow
def test_classifier_learns_and_calibrates_unknown(tmp_path: Path) -> None:
    tr = make_tree(tmp_path / "train", labels={"normal": 4, "bearing": 4}, machines=(0, 1, 2), seconds=3.0)
    te = make_tree(tmp_path / "test", labels={"normal": 3, "bearing": 3}, machines=(5,), seconds=3.0)
    o = TrainOptions(data=tr, kind="classifier", out=tmp_path / "c.onnx", params=PARAMS, window_seconds=WINDOW,
                     epochs=6, seed=2)
    lines: list[str] = []
    res = train(o, say=lines.append)
    card = read_card(res.path)
    assert card.kind == "classifier" and card.labels == ("normal", "bearing")
    conf = card.extra["confidence_threshold"]
    assert 0.0 <= conf <= 1.0
    assert 1 <= card.trained["epochs"] <= 6
    assert sum(s.strip().startswith("epoch") for s in lines) == card.trained["epochs"]  # per-epoch metrics printed
    ev = evaluate(res.path, te, None, plots=False)  # an unseen machine
    assert ev.metrics["window"]["auc"] >= 0.9, ev.metrics  # p(normal) ranks its normal windows first


def test_class_weights_balance_a_rare_fault() -> None:
    from ml.classifier import ClassifierConfig, fit_classifier

    rng = np.random.default_rng(0)
    x = rng.normal(-40, 3, (60, PARAMS.n_mels, 20)).astype(np.float32)
    y = np.zeros(60, dtype=np.int64)
    y[:6] = 1
    x[:6, : PARAMS.n_mels // 2] += 12.0  # the rare class is louder in the low bands
    model, hist = fit_classifier(x, y, 2, ClassifierConfig(epochs=8, augment=False, channels=(4, 8, 8)),
                                 seed=0, progress=lambda s: None)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    assert (pred[:6] == 1).mean() >= 0.8  # the rare class is not drowned by the common one
    assert len(hist) >= 1 and "train_loss" in hist[0]


def test_augment_keeps_shape_and_is_reproducible() -> None:
    x = torch.randn(16, 32, 40) * 5 - 40
    aug = Augment(p=1.0)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x)
    # mixing in power can only add energy (before masks): a gain-free mix never lowers a cell much
    only_mix = Augment(p=1.0, gain_db=0.0, max_shift=0.0, freq_mask=0, time_mask=0)
    m = only_mix(x, torch.Generator().manual_seed(3))
    assert (m >= x - 1e-4).all()


def test_classifier_sees_windows_relative_to_themselves() -> None:
    """Without the level statistic, a louder or quieter machine (or microphone gain) gets the same
    probabilities: both branches describe the window relative to its own level."""
    from ml.models import ConvClassifier, LogMelStats

    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(-40, 6, (12, PARAMS.n_mels, 40)).astype(np.float32))
    torch.manual_seed(0)
    model = ConvClassifier(PARAMS.n_mels, 3, stats_parts=("relmean", "low"))
    model.fit_normalization(x)
    model.eval()
    assert isinstance(model.stats, LogMelStats)  # the anomaly model's statistics, one implementation
    with torch.no_grad():
        p, louder = model(x), model(x + 15.0)
        other = model(torch.flip(x, dims=[1]))  # a different spectrum shape
    torch.testing.assert_close(louder, p, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(other, p, atol=1e-3)
    np.testing.assert_allclose(p.sum(dim=1).numpy(), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        ConvClassifier(PARAMS.n_mels, 3, channels=(), stats_parts=())

"""The classical kind: MFCC statistics computed in the graph, a logistic regression or SVM chosen by
a group-aware grid search, written out as tensor arithmetic that reproduces scikit-learn, exported
as one self-describing ONNX classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audioclassifier.card import read_card
from harness.trees import make_tree
from ml.__main__ import main
from ml.classical import ClassicalConfig, ClassicalError, cv_splits, fit_classical
from ml.evaluate import evaluate
from ml.models.classical import LinearHead, MfccStats, SVCHead

torch.set_num_threads(1)

FRONT = ["--sample-rate", "16000", "--n-fft", "512", "--hop-length", "256", "--n-mels", "32", "--window-seconds", "1"]


def test_mfcc_is_librosas_and_the_statistics_are_the_textbook_ones() -> None:
    import librosa

    rng = np.random.default_rng(0)
    x = (rng.normal(-40, 8, (3, 32, 30)) + np.linspace(0, -30, 32)[None, :, None]).astype(np.float32)
    f = MfccStats(32, n_mfcc=13, level=True)
    with torch.no_grad():
        c = f.mfcc(torch.from_numpy(x)).numpy()
        v = f(torch.from_numpy(x)).numpy()
    want = np.stack([librosa.feature.mfcc(S=w.astype(np.float64), n_mfcc=13, norm="ortho") for w in x])
    np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-3)
    d = np.diff(want, axis=2)
    np.testing.assert_allclose(v, np.concatenate([want.mean(2), want.std(2), d.std(2)], axis=1), rtol=1e-4, atol=2e-3)
    no_level = MfccStats(32, n_mfcc=13)
    with torch.no_grad():  # without c0's mean: a louder window (gain) gives the same vector
        a, b = no_level(torch.from_numpy(x)).numpy(), no_level(torch.from_numpy(x + 12.0)).numpy()
    assert a.shape == (3, 38) and no_level.dim == 38
    np.testing.assert_allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("kernel", ["rbf", "linear", "logreg"])
def test_heads_reproduce_scikit_learn_probabilities(k: int, kernel: str) -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    rng = np.random.default_rng(k)
    x = np.concatenate([rng.normal(c, 1.0, (30, 5)) for c in rng.normal(0, 1.2, (k, 5))])
    y = np.repeat(np.arange(k), 30)
    xt = torch.from_numpy(x.astype(np.float32))
    head: torch.nn.Module
    if kernel == "logreg":
        est = LogisticRegression(C=0.5, max_iter=2000).fit(x, y)
        head = LinearHead(est.coef_, est.intercept_)
    else:
        est = CalibratedClassifierCV(SVC(kernel=kernel, C=1.0, gamma=0.3), method="sigmoid", ensemble=False, cv=3).fit(x, y)
        cc = est.calibrated_classifiers_[0]
        head = SVCHead(cc.estimator, cc.calibrators)
    with torch.no_grad():
        got = head(xt).numpy()
    want = est.predict_proba(x)
    assert 0.2 < want.max(1).mean() < 1.0  # probabilities, not one-hot: the comparison means something
    np.testing.assert_allclose(got, want, atol=2e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_cv_folds_keep_machines_apart_else_recordings_else_refuse() -> None:
    y = np.repeat([0, 1], 20)
    files = np.repeat(np.arange(8), 5)
    machines = np.where(files % 4 == 0, "m0", np.where(files % 4 == 1, "m1", np.where(files % 4 == 2, "m2", "m3")))
    splits, how = cv_splits(y, machines, files, 5, 0)
    assert "by machine" in how and len(splits) == 4
    for tr, va in splits:
        assert not set(machines[tr]) & set(machines[va]) and set(y[tr]) == {0, 1}
    # label 1 only on machine m9: a machine fold would leave it without training windows -> by recording
    machines2 = np.where(y == 1, "m9", machines)
    splits, how = cv_splits(y, machines2, files, 5, 0)
    assert "by recording" in how
    for tr, va in splits:
        assert not set(files[tr]) & set(files[va]) and set(y[tr]) == {0, 1}
    with pytest.raises(ClassicalError, match="add recordings of the rare labels"):
        cv_splits(np.array([0] * 10 + [1] * 5), np.array(["a"] * 15), np.array([0] * 5 + [1] * 5 + [2] * 5), 5, 0)


def test_grid_search_prefers_the_simpler_model_on_ties_and_records_the_grid() -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(-40, 3, (60, 32, 20)) + np.linspace(0, -30, 32)[None, :, None]).astype(np.float32)
    y = np.repeat([0, 1], 30)
    x[y == 1, 8:12] += 15  # an easy cue: every model separates it
    files = np.arange(60) // 5
    model, info = fit_classical(x, y, np.array([f"m{f % 4}" for f in files]), files, 2,
                                ClassicalConfig(c_values=(0.1, 1.0), gamma_factors=(1.0,)), progress=lambda s: None)
    grid = info["grid"]
    assert len(grid["candidates"]) == 2 + 2 + 2 and "by machine" in grid["cv"]
    assert grid["chosen"]["cv_balanced_accuracy"] == 1.0 and grid["chosen"]["model"] == "logreg"
    assert info["method"] == "mfcc+logreg" and grid["chosen"]["C"] == 0.1
    with torch.no_grad():
        p = model(torch.from_numpy(x)).numpy()
    assert (p.argmax(1) == y).all()


@pytest.mark.slow
def test_train_classical_exports_a_classifier_that_knows_unseen_machines(tmp_path: Path) -> None:
    tr = make_tree(tmp_path / "train", labels={"normal": 3, "bearing": 3}, machines=(0, 1, 2, 3), seconds=3.0)
    te = make_tree(tmp_path / "test", labels={"normal": 3, "bearing": 3}, machines=(6,), seconds=3.0)
    out = tmp_path / "c.onnx"
    assert main(["train", "--data", str(tr), "--kind", "classical", "--out", str(out), "--seed", "1",
                 "--n-mfcc", "16", *FRONT]) == 0
    card = read_card(out)
    assert card.kind == "classifier" and card.labels == ("normal", "bearing")  # the module runs it as a classifier
    assert card.version.startswith("classical-") and card.extra["method"].startswith("mfcc+")
    grid = card.trained["grid"]
    assert grid["chosen"] in grid["candidates"] and len(grid["candidates"]) == 4 + 4 + 12
    assert "stratified" in grid["cv"] and "16 MFCCs" in grid["features"]
    assert card.trained["selection"].startswith("grid search")
    assert 0 <= card.extra["confidence_threshold"] <= 1
    ev = evaluate(out, te, tmp_path / "rep", plots=False)
    assert ev.metrics["window"]["auc"] >= 0.9, ev.metrics
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text())["file"]["per_class"]


def test_classical_refusals_leave_the_output_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = make_tree(tmp_path / "one", labels={"normal": 2}, machines=(0, 1), seconds=1.0)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")
    assert main(["train", "--data", str(one), "--kind", "classical", "--out", str(out), *FRONT]) == 2
    assert "needs at least two labels" in capsys.readouterr().out
    two = make_tree(tmp_path / "two", labels={"normal": 2, "bearing": 2}, machines=(0, 1), seconds=1.0)
    assert main(["train", "--data", str(two), "--kind", "classical", "--out", str(out), "--n-mfcc", "40", *FRONT]) == 2
    assert "--n-mfcc 40 is more than --n-mels 32" in capsys.readouterr().out
    assert out.read_bytes() == b"previous"

"""Honest splits: no label silently dropped from training, degenerate set-ups refused up front
(exit 2, the output file untouched), named validation groups, separate validation/test sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audioclassifier.card import read_card
from harness.trees import PARAMS, WINDOW, make_tree
from ml.__main__ import main
from ml.dataset import scan_tree
from ml.splits import SplitError, plan_split
from ml.train import TrainError, TrainOptions, train

torch.set_num_threads(1)

FRONT = ["--sample-rate", "16000", "--n-fft", "512", "--hop-length", "256", "--n-mels", "32", "--window-seconds", "1"]


def _bldc_subset(root: Path, data: Path, layout: dict[str, tuple[str, ...]]) -> Path:
    """A tree of symbolic links to the real recordings (nothing copied)."""
    for label, motors in layout.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for m in motors:
            (root / label / m).symlink_to(data / "bldc-motor-sound" / label / m, target_is_directory=True)
    return root


def test_default_split_keeps_every_label_in_training_on_bldc(shared_data: Path, tmp_path: Path) -> None:
    # Healthy M2/M3, Propeller M2, Bearing M4: holding out M2 or M4 would leave a fault without training files
    tree = _bldc_subset(tmp_path / "t", shared_data, {"Healthy": ("M2", "M3"), "Propeller": ("M2",), "Bearing": ("M4",)})
    items = scan_tree(tree)  # symbolic links to folders are followed
    assert len(items) == 29
    labels, groups = [it.label for it in items], [it.group for it in items]
    for seed in range(5):
        sp = plan_split(labels, groups, seed=seed)
        assert {labels[i] for i in sp.train} == {"Healthy", "Propeller", "Bearing"}
        assert sp.val_groups == ["M3"] and sp.warnings  # validation lacks the faults: said, not hidden


def test_full_bldc_unseen_motor_split_holds_out_a_motor_with_two_labels(shared_data: Path) -> None:
    items = scan_tree(shared_data / "bldc-motor-sound")
    labels, groups = [it.label for it in items], [it.group for it in items]
    sp = plan_split(labels, groups, seed=0)
    assert {labels[i] for i in sp.train} == {"Healthy", "Propeller", "Bearing"}
    assert sp.val_groups in (["M1"], ["M2"])  # the held-out motor has healthy and propeller files
    assert {labels[i] for i in sp.val} == {"Healthy", "Propeller"}
    assert not set(sp.train_groups) & set(sp.val_groups)


def test_a_split_that_must_drop_a_label_is_refused_with_the_reason() -> None:
    labels = ["normal"] * 4 + ["bearing"] * 4
    groups = ["a"] * 4 + ["b"] * 4
    with pytest.raises(SplitError, match=r"'bearing' \(only on b\)|'normal' \(only on a\)") as exc:
        plan_split(labels, groups)
    assert "--split-by recording" in str(exc.value)
    sp = plan_split(labels, groups, by="recording")
    assert {labels[i] for i in sp.train} == {"normal", "bearing"} and len(sp.val)
    with pytest.raises(SplitError, match="no such group"):
        plan_split(labels, groups, val_groups=["zz"])
    with pytest.raises(SplitError, match="no training file left for 'bearing'"):
        plan_split(labels, groups, val_groups=["b"])


@pytest.fixture(scope="module")
def two_label_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("t2"), labels={"normal": 2, "bearing": 2}, machines=(0, 1, 2, 3), seconds=2.0)


def _keep(path: Path) -> bytes:
    path.write_bytes(b"previous good model")
    return path.read_bytes()


@pytest.mark.parametrize("extra, reason", [
    (["--kind", "classifier", "--normal-label", "normal", "--val-groups", "id_09"], "no such group"),
    (["--kind", "classifier", "--val-fraction", "0"], "--val-data"),
    (["--kind", "classifier", "--val-fraction", "1.5"], "--val-fraction"),
])
def test_degenerate_setups_exit_2_and_leave_the_output_alone(two_label_tree: Path, tmp_path: Path, extra: list[str],
                                                             reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    before = _keep(out)
    assert main(["train", "--data", str(two_label_tree), "--out", str(out), *extra, *FRONT]) == 2
    assert reason in capsys.readouterr().out
    assert out.read_bytes() == before


def test_single_class_classifier_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_tree(tmp_path / "one", labels={"normal": 2}, machines=(0, 1), seconds=1.5)
    out = tmp_path / "m.onnx"
    before = _keep(out)
    assert main(["train", "--data", str(tree), "--kind", "classifier", "--out", str(out), *FRONT]) == 2
    text = capsys.readouterr().out
    assert "needs at least two labels" in text and "epoch" not in text
    assert out.read_bytes() == before
    assert not list(tmp_path.glob(".m.onnx.*"))  # no temporary file left behind


def test_named_groups_separate_test_set_and_training_curves(two_label_tree: Path, tmp_path: Path) -> None:
    test = make_tree(tmp_path / "test", labels={"normal": 1, "bearing": 1}, machines=(7,), seconds=2.0)
    o = TrainOptions(data=two_label_tree, kind="classifier", out=tmp_path / "c.onnx", params=PARAMS,
                     window_seconds=WINDOW, epochs=2, val_groups=["id_01"], test_data=test)
    res = train(o, say=lambda s: None)
    card = read_card(res.path)
    assert "validation groups ['id_01']" in card.trained["split"]
    assert len(card.trained["history"]) == card.trained["epochs"] and "val_loss" in card.trained["history"][0]
    assert (tmp_path / "c-curves.png").stat().st_size > 1000
    assert set(card.metrics["test"]) >= {"window", "file", "on"}
    assert json.loads((tmp_path / "c-test" / "metrics.json").read_text())["file"]["per_class"]["bearing"]["support"] == 1
    assert card.extra["channels"] == {"mix": "mean", "trained_channels": 1}


def test_train_on_everything_with_a_named_validation_set(two_label_tree: Path, tmp_path: Path) -> None:
    val = make_tree(tmp_path / "val", labels={"normal": 3, "bearing": 1}, machines=(8,), seconds=2.0)
    o = TrainOptions(data=two_label_tree, kind="anomaly", out=tmp_path / "a.onnx", params=PARAMS, window_seconds=WINDOW,
                     method="mahalanobis", val_fraction=0.0, val_data=val)
    res = train(o, say=lambda s: None)
    card = read_card(res.path)
    assert card.trained["files"] == {"train": 16, "validation": 4, "failed": 0}
    assert str(val) in card.metrics["on"]
    with pytest.raises(TrainError, match="exclude each other"):
        train(TrainOptions(data=two_label_tree, kind="anomaly", out=tmp_path / "b.onnx", val_data=val,
                           val_groups=["id_00"]), say=lambda s: None)
    assert not (tmp_path / "b.onnx").exists()


def test_refused_rewrite_keeps_the_previous_model(two_label_tree: Path, tmp_path: Path) -> None:
    from audioclassifier.card import CardError, ModelCard
    from ml.export import to_onnx
    from ml.modelcard import save_with_card

    good = tmp_path / "m.onnx"
    before = _keep(good)
    bad = ModelCard(kind="classifier", labels=("normal",), features=PARAMS, window_seconds=1.0, threshold=0.5)
    proto = to_onnx(torch.nn.Softmax(dim=1), kind="classifier", n_mels=PARAMS.n_mels, frames=8)
    with pytest.raises(CardError, match="at least two labels"):
        save_with_card(proto, bad, good)
    assert good.read_bytes() == before
    assert np.array_equal(np.frombuffer(good.read_bytes(), np.uint8), np.frombuffer(before, np.uint8))

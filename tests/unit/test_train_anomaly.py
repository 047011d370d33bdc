"""Anomaly training on tiny synthetic data: learns from normal only, scores faults higher, calibrates
its threshold, keeps machines apart, reproduces with a seed, skips bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audioclassifier.card import read_card
from harness.trees import PARAMS, WINDOW, make_tree
from ml.calibrate import confidence_threshold, gamma_threshold
from ml.evaluate import evaluate
from ml.splits import SplitError, group_split
from ml.train import TrainError, TrainOptions, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Training tree (normal of 4 machines, a few faults for method choice) and a test tree
    (other clips of the same machines, every label)."""
    base = tmp_path_factory.mktemp("anomaly")
    tr = make_tree(base / "train", labels={"normal": 6, "bearing": 1, "imbalance": 1}, machines=(0, 1, 2, 3), seconds=3.0)
    te = make_tree(base / "test", labels={"normal": 2, "bearing": 2, "imbalance": 2, "clogging": 2},
                   machines=(0, 1), clip_offset=10)
    return tr, te


def _opts(data: Path, out: Path, **kw) -> TrainOptions:
    o = TrainOptions(data=data, kind="anomaly", out=out, params=PARAMS, window_seconds=WINDOW, **kw)
    o.anomaly.gmm_n_init = 1
    return o


def test_gmm_learns_normal_and_flags_faults(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    tr, te = tiny
    res = train(_opts(tr, tmp_path / "m.onnx", method="gmm", seed=1), say=lambda s: None)
    card = read_card(res.path)
    assert card.kind == "anomaly" and card.window_frames == PARAMS.frames_for(16000)
    assert card.extra["method"].startswith("gmm")
    assert card.threshold_method.startswith("gamma-p99.5")  # the default: few false alarms per hour
    assert card.version.startswith("anomaly-")
    assert "train" in card.trained["files"] and card.trained["seed"] == 1
    ev = evaluate(res.path, te, tmp_path / "rep", plots=False)
    assert ev.metrics["file"]["auc"] > 0.9, ev.metrics
    # the abnormal training files were never fitted: only normal windows went into the mixture
    assert set(card.trained["candidates"]) == {"gmm1", "gmm2", "gmm4"}


def test_threshold_is_the_gamma_percentile_of_normal_validation_scores(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    tr, _ = tiny
    val_groups = ["id_03"]  # named, so the test knows the split the run made
    res = train(_opts(tr, tmp_path / "m.onnx", method="mahalanobis", percentile=80.0, val_groups=val_groups),
                say=lambda s: None)
    from ml.anomaly import AnomalyConfig, fit_method, score_windows
    from ml.dataset import scan_tree
    from ml.windows import load_windows

    # recompute the validation normal scores of the split the run made (the method fitted on the
    # training groups alone: the shipped model is refitted on every normal window) and fit the gamma again
    ws = load_windows(scan_tree(tr), params=PARAMS, window_seconds=WINDOW, progress=False)
    normal = ws.labels == "normal"
    sel = np.isin(ws.groups, val_groups) & normal
    held_out_fit = fit_method("mahalanobis", ws.x[~np.isin(ws.groups, val_groups) & normal], AnomalyConfig())
    s = score_windows(held_out_fit, ws.x[sel])
    expect = gamma_threshold(s, percentile=80.0)
    assert res.card.threshold == pytest.approx(expect.threshold, rel=1e-4)
    assert "p80" in res.card.threshold_method
    # and that is the 80th percentile of the fitted gamma
    assert scipy.stats.gamma.cdf(expect.threshold - expect.shift, expect.shape, scale=expect.scale) == pytest.approx(0.8)


def test_the_shipped_model_is_refitted_on_every_normal_window(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from ml.anomaly import AnomalyConfig, fit_method, score_windows
    from ml.dataset import scan_tree
    from ml.windows import load_windows

    tr, _ = tiny
    val_groups = ["id_03"]
    res = train(_opts(tr, tmp_path / "m.onnx", method="knn", val_groups=val_groups), say=lambda s: None)
    ws = load_windows(scan_tree(tr), params=PARAMS, window_seconds=WINDOW, progress=False)
    normal = ws.labels == "normal"
    x_val = ws.x[normal & np.isin(ws.groups, val_groups)]
    # the shipped model heard the validation machines: their windows are its own references
    assert np.allclose(score_windows(res.model, x_val), 0.0, atol=1e-4)
    assert "refit" in res.card.trained
    every = fit_method("knn", ws.x[normal], AnomalyConfig())
    assert np.allclose(score_windows(res.model, ws.x), score_windows(every, ws.x), rtol=1e-4, atol=1e-5)
    # without the refit, the model is the one fitted on the training groups alone
    o = _opts(tr, tmp_path / "n.onnx", method="knn", val_groups=val_groups)
    o.anomaly.refit_all = False
    kept = train(o, say=lambda s: None)
    assert "refit" not in kept.card.trained
    assert score_windows(kept.model, x_val).min() > 0.0
    assert kept.card.threshold == pytest.approx(res.card.threshold, rel=1e-6)  # the threshold: held-out scores


def test_no_refit_on_the_command_line_ships_the_training_groups_fit(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """``ml train --no-refit`` (what ``make model`` passes to rebuild the shipped model as it was)."""
    from ml.__main__ import main

    tr, _ = tiny
    common = ["train", "--data", str(tr), "--kind", "anomaly", "--method", "knn", "--n-fft", str(PARAMS.n_fft),
              "--hop-length", str(PARAMS.hop_length), "--n-mels", str(PARAMS.n_mels), "--window-seconds", str(WINDOW)]
    assert main([*common, "--out", str(tmp_path / "refit.onnx")]) == 0
    assert main([*common, "--no-refit", "--out", str(tmp_path / "kept.onnx")]) == 0
    refit, kept = read_card(tmp_path / "refit.onnx"), read_card(tmp_path / "kept.onnx")
    assert "refit" in refit.trained and "refit" not in kept.trained
    assert kept.threshold == pytest.approx(refit.threshold, rel=1e-6)


def test_gamma_threshold_recovers_a_known_percentile() -> None:
    rng = np.random.default_rng(0)
    s = rng.gamma(4.0, 0.5, 5000)
    g = gamma_threshold(s, percentile=90)
    assert g.threshold == pytest.approx(scipy.stats.gamma.ppf(0.9, 4.0, scale=0.5), rel=0.03)
    assert np.mean(s <= g.threshold) == pytest.approx(0.9, abs=0.02)
    # negative scores (log-likelihoods) are shifted, not refused
    g2 = gamma_threshold(s - 10.0, percentile=90)
    assert g2.threshold == pytest.approx(g.threshold - 10.0, abs=0.1)
    with pytest.raises(ValueError):
        gamma_threshold(np.array([1.0, np.nan]), percentile=90)


def test_confidence_threshold_keeps_the_requested_share_of_correct_windows() -> None:
    p = np.linspace(0.3, 1.0, 101)
    correct = np.ones(101, bool)
    t = confidence_threshold(p, correct, keep=0.9)
    assert np.mean(p[correct] >= t) == pytest.approx(0.9, abs=0.02)
    assert confidence_threshold(p, np.zeros(101, bool)) == 0.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["id_0", "id_1", "id_2", "id_3", "id_4", "id_5"]), min_size=4, max_size=40),
       st.integers(0, 1000))
def test_groups_never_leak_across_the_split(groups: list[str], seed: int) -> None:
    labels = ["normal" if i % 3 else "bearing" for i in range(len(groups))]
    try:
        tr, va = group_split(labels, groups, seed=seed)
    except SplitError as exc:  # refused only when no group split keeps every label in training
        assert "keeps every label in training" in str(exc)
        return
    assert set(labels) == {labels[i] for i in tr}  # no label dropped from training
    assert len(tr) and len(va)
    assert set(tr).isdisjoint(va) and len(tr) + len(va) == len(groups)
    if len(set(groups)) > 1:
        assert {groups[i] for i in tr}.isdisjoint({groups[i] for i in va})


def test_same_seed_same_model_ae(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    tr, _ = tiny
    a = train(_opts(tr, tmp_path / "a.onnx", method="ae", seed=7, epochs=2), say=lambda s: None)
    b = train(_opts(tr, tmp_path / "b.onnx", method="ae", seed=7, epochs=2), say=lambda s: None)
    ga, gb = onnx.load(str(a.path)).graph, onnx.load(str(b.path)).graph
    assert ga.SerializeToString() == gb.SerializeToString()
    assert a.card.version == b.card.version and a.card.threshold == b.card.threshold
    assert a.card.context_frames == 5
    c = train(_opts(tr, tmp_path / "c.onnx", method="ae", seed=8, epochs=2), say=lambda s: None)
    assert onnx.load(str(c.path)).graph.SerializeToString() != ga.SerializeToString()


def test_auto_chooses_among_methods_by_detection_under_shift(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    tr, _ = tiny
    lines: list[str] = []
    res = train(_opts(tr, tmp_path / "m.onnx", method="auto", epochs=1), say=lines.append)
    cands = res.card.trained["candidates"]
    # three training machines: the coarse feature sets (the fine ones need more machines), and the AE
    assert {"mahalanobis:shape", "knn:spread", "gmm4:shape", "ae"} <= set(cands)
    assert not any(c.endswith((":fine", ":finespread", ":finelow", ":finelowspread", ":level")) for c in cands)
    # every candidate is judged on generated anomalies and the real abnormal validation windows
    assert all({"key", "pseudo_pauc", "real_pauc", "false_alarms"} <= set(v) for v in cands.values())
    best = max(v["key"] for v in cands.values())
    assert cands[res.card.extra["method"]]["key"] >= round(best, 3) - 1e-3
    assert "generated anomalies" in res.card.trained["selection"]
    assert any("chosen method" in s for s in lines)


def test_bad_files_are_skipped_and_counted(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    tr, _ = tiny
    data = tmp_path / "data"
    import shutil

    shutil.copytree(tr, data)
    (data / "normal" / "id_00" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (data / "normal" / "id_01" / "empty.wav").write_bytes(b"")
    lines: list[str] = []
    res = train(_opts(data, tmp_path / "m.onnx", method="mahalanobis"), say=lines.append)
    assert res.card.trained["files"]["failed"] == 2
    assert sum(s.startswith("skipped ") for s in lines) == 2


def test_refuses_a_tree_without_normal(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", labels={"bearing": 1}, machines=(0,), seconds=1.0)
    with pytest.raises(TrainError, match="normal"):
        train(_opts(tmp_path / "d", tmp_path / "m.onnx"), say=lambda s: None)


def test_cli_train_reports_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ml.__main__ import main

    assert main(["train", "--data", str(tmp_path / "nothing"), "--kind", "anomaly", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "no such file" in capsys.readouterr().out


def test_window_statistics_describe_the_window_relative_to_itself() -> None:
    """relmean ignores a gain change, level follows it exactly, low rises with low-band power."""
    from ml.models.anomaly import LogMelStats, low_band_counts

    rng = np.random.default_rng(0)
    x = torch.from_numpy((rng.normal(-50, 3, (5, 32, 20)) + np.linspace(0, -20, 32)[None, :, None]).astype(np.float32))
    stats = LogMelStats(32, band_pool=8, parts=("relmean", "level", "low"))
    f = stats.raw(x)
    n_low = len(low_band_counts(32))
    assert f.shape == (5, 4 + 1 + n_low) and stats.dim == f.shape[1]
    g = stats.raw(x + 12.0)
    np.testing.assert_allclose(g[:, :4], f[:, :4], atol=1e-3)  # shape only: a louder machine looks the same
    np.testing.assert_allclose(g[:, 4], f[:, 4] + 12.0, atol=1e-3)
    np.testing.assert_allclose(g[:, 5:], f[:, 5:], atol=1e-3)
    # level is the dB of the mean power
    want = 10 * np.log10(np.mean(10 ** (x.numpy().astype(np.float64) / 10), axis=(1, 2)))
    np.testing.assert_allclose(f[:, 4].numpy(), want, atol=1e-3)
    # a strong tone in the lowest band (an unbalanced rotor's 1x) raises every low-band share
    y = x.clone()
    y[:, 0, :] += 20.0
    assert bool((stats.raw(y)[:, 5:] > f[:, 5:] + 1.0).all())
    with pytest.raises(ValueError, match="parts"):
        LogMelStats(32, parts=("mean", "nope"))


@pytest.mark.parametrize("kind", ["harmonics", "resonance", "shelf"])
def test_fault_family_pseudo_anomalies_change_what_the_fault_changes(kind: str) -> None:
    from audioclassifier.features import mel_frequencies
    from ml.anomaly import FAULT_KINDS, pseudo_anomalies

    assert kind in FAULT_KINDS
    rng = np.random.default_rng(0)
    x = rng.normal(-50.0, 2.0, (16, 64, 20)).astype(np.float32)
    y = pseudo_anomalies(x, kind, np.random.default_rng(1), sample_rate=16000)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_array_equal(y, pseudo_anomalies(x, kind, np.random.default_rng(1), sample_rate=16000))
    d = (y - x).astype(np.float64)
    hz = mel_frequencies(n_mels=66, fmin=0.0, fmax=8000.0)[1:-1]
    assert d.max() > 1.0  # some are strong
    if kind == "harmonics":  # added shaft tones: nothing drops, only bands below 6 x 60 Hz (and the next) move
        assert d.min() > -1e-4
        assert np.abs(d[:, hz > 500.0]).max() < 1e-4
    elif kind == "resonance":  # a ringing resonance: nothing drops, the strongest rise is between 0.5 and 8 kHz
        assert d.min() > -1e-4
        peak = hz[d.mean(axis=2).argmax(axis=1)]
        assert ((peak > 500.0) & (peak <= 8000.0)).all()
    else:  # a steady step up above a corner frequency: constant in time, never lower above than below
        np.testing.assert_allclose(d, d[:, :, :1].repeat(d.shape[2], axis=2), atol=1e-4)
        per_band = d[:, :, 0]
        assert (np.diff(per_band, axis=1) > -1e-4).all()


def test_unknown_pseudo_anomaly_is_refused() -> None:
    from ml.anomaly import pseudo_anomalies

    with pytest.raises(ValueError, match="harmonics"):
        pseudo_anomalies(np.zeros((1, 8, 4), np.float32), "rattle", np.random.default_rng(0))


def test_reported_fault_kinds_do_not_move_the_selection_key() -> None:
    from ml.anomaly import FAULT_KINDS, AnomalyConfig, fit_mahalanobis, selection_report

    rng = np.random.default_rng(3)
    x = (rng.normal(-50.0, 2.0, (40, 32, 12)) + np.linspace(0, -20, 32)[None, :, None]).astype(np.float32)
    m = fit_mahalanobis(x[:30], AnomalyConfig())
    with_faults = selection_report(m, x[30:], seed=1)
    without = selection_report(m, x[30:], seed=1, report_kinds=())
    assert with_faults["key"] == without["key"] and with_faults["pseudo_pauc"] == without["pseudo_pauc"]
    assert all(f"pseudo_{k}_pauc" in with_faults for k in FAULT_KINDS) and "fault_pauc" in with_faults
    assert not any(f"pseudo_{k}_pauc" in without for k in FAULT_KINDS)


def test_auto_tries_the_fine_feature_sets_only_with_enough_training_groups() -> None:
    from ml.anomaly import AnomalyConfig
    from ml.train import auto_candidates

    cfg = AnomalyConfig()
    many, few = auto_candidates(cfg, cfg.fine_min_groups), auto_candidates(cfg, cfg.fine_min_groups - 1)
    assert {n.partition(":")[2] for n in many} == {"finelow", ""}
    assert {n.partition(":")[2] for n in few} == {"shape", "spread", ""}
    assert {"gmm4:finelow", "knn:finelow", "ae"} <= set(many) and {"gmm4:shape", "knn:spread", "ae"} <= set(few)
    assert auto_candidates(cfg) == many  # unknown count: the fine sets


def test_hires_statistics_resolve_a_narrow_upper_band_resonance() -> None:
    """``hires`` keeps the upper bands' detail the 8-band pooling averages away, ignores gain, and is
    blind to the lower bands; the exported ONNX graph computes the same as torch."""
    import onnxruntime as ort

    from ml.anomaly import AnomalyConfig, fit_knn
    from ml.export import to_onnx
    from ml.models.anomaly import LogMelStats, hires_bands

    assert hires_bands(128) == (80, 2) and hires_bands(64) == (40, 1) and hires_bands(32) == (20, 1)
    rng = np.random.default_rng(0)
    x = torch.from_numpy((rng.normal(-50, 2, (6, 128, 16)) + np.linspace(0, -20, 128)[None, :, None]).astype(np.float32))
    stats = LogMelStats(128, band_pool=8, parts=("relmean", "hires", "low"))
    f = stats.raw(x)
    assert stats.dim == f.shape[1] == 16 + 24 + len(stats.low_bands)
    np.testing.assert_allclose(stats.raw(x + 12.0), f, atol=1e-3)  # gain-invariant like relmean
    # a narrow resonance (2 mel bands, +12 dB) at bands 100-101: one hires value rises by almost all
    # of it, the pooled relmean band holding it (96-103) by about a quarter
    y = x.clone()
    y[:, 100:102, :] += 12.0
    d = (stats.raw(y) - f).numpy()
    rel, hi = d[:, :16], d[:, 16:40]
    assert (hi[:, (100 - 80) // 2] > 11.0).all() and (rel[:, 12] < 4.0).all()
    assert np.abs(np.delete(hi, (100 - 80) // 2, axis=1)).max() < 1.0  # the other fine bands move by the level only
    # the lower bands are not in hires: a change there moves hires by the level change only
    z = x.clone()
    z[:, 10:20, :] += 6.0
    dz = (stats.raw(z) - f).numpy()[:, 16:40]
    np.testing.assert_allclose(dz, dz[:, :1].repeat(24, axis=1), atol=1e-3)
    # exported with the embedding output: onnxruntime gives torch's scores and embeddings
    xs = np.concatenate([x.numpy(), y.numpy()])
    m = fit_knn(xs[:8], AnomalyConfig(), parts=("relmean", "hires", "low"))
    m.learning_stats = m.stats
    proto = to_onnx(m, kind="anomaly", n_mels=128, frames=16, embedding=True)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    score, emb = sess.run(["score", "embedding"], {"logmel": xs})
    with torch.no_grad():
        np.testing.assert_allclose(score, m(torch.from_numpy(xs)).numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(emb, m.embed(torch.from_numpy(xs)).numpy(), rtol=1e-4, atol=1e-4)


def test_lowres_statistics_keep_each_low_band_apart() -> None:
    """``lowres`` keeps each of the lowest 16 of 128 mel bands on its own, where the 8-band pool
    and the cumulative ``low`` shares put neighbouring tones together; it ignores gain and the
    upper bands; the exported ONNX graph computes the same as torch."""
    import onnxruntime as ort

    from ml.anomaly import AnomalyConfig, fit_gmm
    from ml.export import to_onnx
    from ml.models.anomaly import LogMelStats, lowres_bands

    assert lowres_bands(128) == 16 and lowres_bands(64) == 8 and lowres_bands(4) == 1
    rng = np.random.default_rng(1)
    x = torch.from_numpy((rng.normal(-50, 2, (6, 128, 16)) + np.linspace(0, -20, 128)[None, :, None]).astype(np.float32))
    parts = ("relmean", "hires", "lowres", "low")
    stats = LogMelStats(128, band_pool=8, parts=parts)
    f = stats.raw(x)
    assert stats.dim == f.shape[1] == 16 + 24 + 16 + len(stats.low_bands)
    np.testing.assert_allclose(stats.raw(x + 12.0), f, atol=1e-3)  # gain-invariant
    # the same +12 dB tone in band 3 or band 5: the same pooled band (0-7) and cumulative share of
    # the lowest 8, but different lowres values
    lo = slice(40, 56)
    a, b = x.clone(), x.clone()
    a[:, 3, :] += 12.0
    b[:, 5, :] += 12.0
    fa, fb = stats.raw(a), stats.raw(b)
    assert (fa[:, lo][:, 3] - f[:, lo][:, 3] > 10.0).all() and (fb[:, lo][:, 5] - f[:, lo][:, 5] > 10.0).all()
    assert (fa[:, lo][:, 5] - fb[:, lo][:, 5] < -10.0).all()
    # the upper bands are not in lowres: a change there moves lowres by the level change only
    z = x.clone()
    z[:, 100:110, :] += 6.0
    dz = (stats.raw(z) - f).numpy()[:, lo]
    np.testing.assert_allclose(dz, dz[:, :1].repeat(16, axis=1), atol=1e-3)
    xs = np.concatenate([x.numpy(), a.numpy(), b.numpy()])
    m = fit_gmm(xs, AnomalyConfig(), components=2, parts=parts)
    proto = to_onnx(m, kind="anomaly", n_mels=128, frames=16)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (score,) = sess.run(["score"], {"logmel": xs})
    with torch.no_grad():
        np.testing.assert_allclose(score, m(torch.from_numpy(xs)).numpy(), rtol=1e-4, atol=1e-4)

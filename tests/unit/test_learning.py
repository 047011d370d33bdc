"""On-site learning (audioclassifier.learning): numpy only, bounded, round-trips, scores shifted sound
higher, refuses too few windows; the embedding output agrees across torch, onnxruntime and OpenVINO;
the training's method choice prefers the method that generalises; the few-windows rule in training."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from audioclassifier.backends import OpenVinoBackend
from audioclassifier.card import CardError, ModelCard, read_card
from audioclassifier.learning import (
    FORMAT_VERSION,
    MIN_WINDOWS,
    WARN_WINDOWS,
    LearningError,
    NormalModel,
    Sustained,
    coreset,
    fit_normal,
    ledoit_wolf,
    sustained,
)

torch.set_num_threads(1)

LEARNING_PY = Path(__file__).resolve().parents[2] / "modules" / "audioclassifier" / "audioclassifier" / "learning.py"


def _cluster(n: int, seed: int, *, dim: int = 12, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (n, dim)) @ np.diag(np.linspace(0.3, 1.5, dim))
    return base + shift


def test_learning_imports_numpy_only() -> None:
    tree = ast.parse(LEARNING_PY.read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not mods & {"torch", "sklearn", "scipy", "librosa", "matplotlib"}, mods


@pytest.mark.parametrize("method", ["knn", "mahalanobis"])
def test_a_shifted_cluster_scores_higher_and_the_threshold_holds_on_new_normal(method: str) -> None:
    learn = _cluster(400, 0)
    model = fit_normal(learn, method=method)
    normal = model.score(_cluster(200, 1))
    shifted = model.score(_cluster(200, 2, shift=1.5))
    assert np.median(shifted) > np.percentile(normal, 95)
    assert np.mean(normal > model.threshold) < 0.05  # few false alarms on unseen normal windows
    assert np.mean(shifted > model.threshold) > 0.5
    assert model.warning is None and model.n_fitted == 400


@pytest.mark.parametrize("method", ["knn", "mahalanobis"])
def test_round_trip_gives_the_same_scores(method: str) -> None:
    model = fit_normal(_cluster(120, 0), method=method, k=3, max_references=50)
    again = NormalModel.from_bytes(model.to_bytes())
    x = _cluster(30, 5, shift=0.5)
    np.testing.assert_allclose(again.score(x), model.score(x), rtol=1e-5, atol=1e-6)
    assert again.threshold == model.threshold and again.method == method and again.k == 3


def test_knn_memory_is_bounded_by_a_covering_coreset() -> None:
    x = _cluster(3000, 0)
    model = fit_normal(x, method="knn", max_references=256)
    assert model.refs.shape == (256, x.shape[1])
    idx = coreset(x, size=256)
    assert len(set(idx.tolist())) == 256
    # every learnt window is near a kept one: closer than a random subsample of the same size leaves it
    rnd = x[np.random.default_rng(0).choice(len(x), 256, replace=False)]
    def worst(refs: np.ndarray) -> float:
        return float(np.max(np.min(((x[:, None, :] - refs[None]) ** 2).sum(-1), axis=1)))
    assert worst(x[idx]) < worst(rnd)
    assert len(model.to_bytes()) < 256 * x.shape[1] * 4 + 4096


def test_ledoit_wolf_matches_sklearn() -> None:
    from sklearn.covariance import LedoitWolf

    x = _cluster(60, 3, dim=20)
    mu, cov, shrink = ledoit_wolf(x)
    ref = LedoitWolf().fit(x)
    np.testing.assert_allclose(cov, ref.covariance_, rtol=1e-8, atol=1e-10)
    assert shrink == pytest.approx(ref.shrinkage_)


def test_from_bytes_rejects_garbage_with_a_clear_error() -> None:
    good = fit_normal(_cluster(40, 0)).to_bytes()
    for bad in (b"", b"garbage that is not a model", good[: len(good) // 2]):
        with pytest.raises(LearningError, match="not a learnt normal model"):
            NormalModel.from_bytes(bad)
    import io
    import json

    buf = io.BytesIO()
    header = {"magic": "auscult-normal-model", "format": FORMAT_VERSION + 1}
    np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), np.uint8), refs=np.zeros((1, 2)),
             precision=np.zeros((0, 0)))
    with pytest.raises(LearningError, match="format"):
        NormalModel.from_bytes(buf.getvalue())


def test_too_few_windows_are_refused_and_few_warn() -> None:
    with pytest.raises(LearningError, match=f"at least {MIN_WINDOWS}"):
        fit_normal(_cluster(MIN_WINDOWS - 1, 0))
    model = fit_normal(_cluster(WARN_WINDOWS - 1, 0), method="mahalanobis")
    assert model.warning and "fewer than" in model.warning
    with pytest.raises(LearningError, match="dimensions"):
        model.score(np.zeros((2, 3)))
    with pytest.raises(LearningError, match="NaN"):
        fit_normal(np.full((40, 3), np.nan))
    with pytest.raises(LearningError, match="method"):
        fit_normal(_cluster(40, 0), method="svm")


# ------------------------------------------------------------------------------------------------
# sustained scores and a threshold set for a rate of false alerts


@pytest.mark.parametrize("n", [1, 3, 9])
def test_sustained_on_a_stream_equals_sustained_on_the_array(n: int) -> None:
    s = np.random.default_rng(n).gamma(2.0, 1.0, 200)
    stream = Sustained(n)
    np.testing.assert_array_equal([stream.push(v) for v in s], sustained(s, n))
    stream.reset()  # after a gap the windows before count as 0 again
    np.testing.assert_array_equal([stream.push(v) for v in s[50:80]], sustained(s[50:80], n))


def test_a_burst_shorter_than_half_the_median_never_rises_a_longer_one_does() -> None:
    quiet = np.full(40, 0.5)
    for length in range(1, 5):  # n = 9: up to 4 windows are a transient
        s = quiet.copy()
        s[20 : 20 + length] = 1e6
        assert sustained(s, 9).max() == 0.5
    s = quiet.copy()
    s[20:] = 7.0  # a fault that lasts: over after n // 2 + 1 windows
    out = sustained(s, 9)
    assert out[23] == 0.5 and out[24] == 7.0
    assert sustained([3.0, 3.0], 9).tolist() == [0.0, 0.0]  # the first windows: those before count as 0
    for bad in (0, 2, 4, -1, 1001, True, 2.0):
        with pytest.raises(LearningError, match="odd"):
            sustained([1.0], bad)


def _with_transients(n: int, seed: int, *, every: int = 50) -> np.ndarray:
    """Normal windows with a 1-3 window loud event (a door, a clank) now and then."""
    x = _cluster(n, seed)
    rng = np.random.default_rng(seed + 100)
    for start in range(every // 2, n - 3, every):
        x[start : start + rng.integers(1, 4)] += rng.normal(0, 6, x.shape[1])
    return x


def test_a_rate_target_with_sustained_scores_keeps_transients_quiet_and_finds_a_lasting_shift() -> None:
    learn = _with_transients(600, 0)
    plain = fit_normal(learn, method="mahalanobis", percentile=99.5)
    model = fit_normal(learn, method="mahalanobis", alerts_per_day=1.0, hop_seconds=1.0, sustain=9)
    assert model.sustain == 9 and model.meta["percentile"] == pytest.approx(100 * (1 - 1 / 86400))
    assert "sustained" in model.threshold_method and "at most 1 false alerts a day" in model.threshold_method
    later = _with_transients(20000, 1)  # 5.5 hours of new normal sound, transients every 50 s
    plain_over = int((plain.score(later) > plain.threshold).sum())
    sustained_over = int((sustained(model.score(later), 9) > model.threshold).sum())
    assert plain_over > 100 and sustained_over == 0, (plain_over, sustained_over)
    fault = _cluster(60, 2, shift=1.5)  # a lasting change, about 1.5 standard deviations per dimension
    over = np.flatnonzero(sustained(model.score(np.concatenate([later[-40:], fault])), 9) > model.threshold)
    assert over.size and 40 <= over[0] <= 40 + 9, over[:5]
    fewer = fit_normal(learn, method="mahalanobis", alerts_per_day=0.1, sustain=9)
    assert fewer.threshold > model.threshold  # a lower rate, a higher threshold
    for bad in (0.0, -1.0, 86400.0, float("nan")):
        with pytest.raises(LearningError, match="alerts_per_day"):
            fit_normal(learn, alerts_per_day=bad)


def test_sustain_round_trips_is_lowered_for_short_learning_and_old_models_read_as_one() -> None:
    model = fit_normal(_cluster(300, 0), method="mahalanobis", sustain=9, alerts_per_day=1.0)
    assert NormalModel.from_bytes(model.to_bytes()).sustain == 9
    short = fit_normal(_cluster(40, 0), method="mahalanobis", sustain=9, alerts_per_day=1.0)
    assert short.sustain == 3 and "not 9" in short.meta["sustain_note"]  # 5 folds of 8 windows
    assert "set high to be safe" in short.warning and model.warning is None  # 40 windows: a rate on few scores
    import io
    import json
    import zipfile

    with zipfile.ZipFile(io.BytesIO(model.to_bytes())) as z:  # a model learnt before sustained scores
        arrays = {name[:-4]: np.load(io.BytesIO(z.read(name))) for name in z.namelist()}
    header = json.loads(arrays["header"].tobytes())
    for value, ok in ((None, True), (4, False), ("9", False)):
        h = {k: v for k, v in header.items() if k != "sustain"} | ({} if value is None else {"sustain": value})
        buf = io.BytesIO()
        np.savez(buf, **{**arrays, "header": np.frombuffer(json.dumps(h).encode(), np.uint8)})
        if ok:
            assert NormalModel.from_bytes(buf.getvalue()).sustain == 1
        else:
            with pytest.raises(LearningError, match="inconsistent"):
                NormalModel.from_bytes(buf.getvalue())


# ------------------------------------------------------------------------------------------------
# the embedding output and the card


def test_embedding_output_agrees_across_torch_onnxruntime_openvino(tmp_path: Path) -> None:
    import onnx

    from audioclassifier.features import LogMelParams
    from ml.anomaly import AnomalyConfig, fit_knn, fit_stats
    from ml.export import check_contract, export_onnx

    params = LogMelParams(n_fft=512, hop_length=256, n_mels=32)
    frames = params.frames_for(16000)
    rng = np.random.default_rng(0)
    x = (rng.normal(-40, 6, (120, 1, 1)) + np.linspace(0, -30, 32)[None, :, None]
         + rng.normal(0, 3, (120, 32, frames))).astype(np.float32)
    cfg = AnomalyConfig(knn_k=3)
    model = fit_knn(x, cfg, parts=cfg.feature_sets["shape"])
    model.learning_stats = fit_stats(x, cfg, cfg.feature_sets["spread"])
    dim = model.learning_stats.dim
    card = ModelCard(kind="anomaly", labels=("normal", "anomaly"), features=params, window_seconds=1.0, threshold=1.0,
                     extra={"learning": {"supported": True, "embedding": "embedding", "dim": dim, "method": "knn"}})
    path = export_onnx(model, card, tmp_path / "m.onnx")
    back = read_card(path)
    assert back.learning is not None and back.learning["dim"] == dim
    check_contract(onnx.load(str(path)), back)
    xt = x[:9] + rng.normal(0, 2, (9, 32, frames)).astype(np.float32)
    with torch.no_grad():
        want_s = model(torch.from_numpy(xt)).numpy()
        want_e = model.learning_stats(torch.from_numpy(xt)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    compiled = OpenVinoBackend(path, "CPU")  # f32, as the module compiles it
    compiled.select_output("score", "embedding")
    for batch in (xt[:1], xt):
        n = len(batch)
        s_ort, e_ort = sess.run(["score", "embedding"], {"logmel": batch})
        s_ov, e_ov = compiled.infer_all(batch)
        assert e_ort.shape == e_ov.shape == (n, dim) and e_ort.dtype == np.float32
        np.testing.assert_allclose(e_ort, want_e[:n], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(e_ov, want_e[:n], rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(s_ort, want_s[:n], rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want_s).max())))
        np.testing.assert_allclose(s_ov, want_s[:n], rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(want_s).max())))


def test_cards_without_learning_still_load_and_bad_blocks_are_refused() -> None:
    from audioclassifier.features import LogMelParams

    base = ModelCard(kind="anomaly", labels=("normal", "anomaly"), features=LogMelParams(), window_seconds=2.0,
                     threshold=1.0).to_dict()
    assert ModelCard.from_dict(base).learning is None
    assert ModelCard.from_dict({**base, "learning": {"supported": False}}).learning is None
    ok = ModelCard.from_dict({**base, "learning": {"supported": True, "embedding": "embedding", "dim": 35}})
    assert ok.learning["dim"] == 35 and ok.to_dict()["learning"]["dim"] == 35
    for bad in ("yes", {"supported": "yes"}, {"supported": True, "dim": 3}, {"supported": True, "embedding": "e", "dim": 0}):
        with pytest.raises(CardError, match="learning"):
            ModelCard.from_dict({**base, "learning": bad})


# ------------------------------------------------------------------------------------------------
# method choice and the few-windows rule in training


def test_selection_prefers_the_method_that_generalises_under_shift() -> None:
    """Two candidates on windows of a few synthetic machines: one sees the absolute level, the
    other only the spectrum's shape. Held-out windows at another gain look abnormal to the first:
    the criterion must prefer the second, though the first scores normal windows lower."""
    from ml.anomaly import AnomalyConfig, fit_gmm, score_windows, selection_report

    rng = np.random.default_rng(0)
    m, t = 32, 30

    def machine_windows(n: int, tilt: float) -> np.ndarray:
        shape = -40 + tilt * np.linspace(0, -20, m) + 4 * np.sin(np.arange(m) * (0.3 + tilt))
        return (shape[None, :, None] + rng.normal(0, 1.5, (n, m, t)) + rng.normal(0, 1, (n, 1, 1))).astype(np.float32)

    x_tr = np.concatenate([machine_windows(80, tilt) for tilt in (0.8, 1.0, 1.2)])
    x_held = machine_windows(60, 1.1)
    cfg = AnomalyConfig(gmm_n_init=1, band_pool=4)
    level = fit_gmm(x_tr, cfg, components=1, parts=("mean",))
    shape = fit_gmm(x_tr, cfg, components=1, parts=("relmean",))
    r_level = selection_report(level, x_held, seed=0)
    r_shape = selection_report(shape, x_held, seed=0)
    assert r_shape["key"] > r_level["key"]
    assert r_level["false_alarms"] > r_shape["false_alarms"]
    # ... though the level model fits the held-out normal windows at least as tightly
    z = lambda mod: score_windows(mod, x_held) / np.std(score_windows(mod, x_tr))  # noqa: E731
    assert np.median(z(level)) <= np.median(z(shape)) * 1.5


def test_training_refuses_a_threshold_on_too_few_windows_and_warns_on_few(tmp_path: Path) -> None:
    from harness.trees import PARAMS, make_tree
    from ml.train import TrainError, TrainOptions, train

    def opts(data: Path, window: float) -> TrainOptions:
        o = TrainOptions(data=data, kind="anomaly", out=tmp_path / "m.onnx", params=PARAMS, window_seconds=window,
                         method="mahalanobis")
        o.anomaly.gmm_n_init = 1
        return o

    # 8 machines x 1 clip of 1 s: the 2 held-out machines give 2 windows
    tiny = make_tree(tmp_path / "tiny", labels={"normal": 1}, machines=tuple(range(8)), seconds=1.0)
    with pytest.raises(TrainError, match=f"at least {MIN_WINDOWS}"):
        train(opts(tiny, 1.0), say=lambda s: None)
    # 4 machines x 2 clips of 3 s, 1 s windows: 10 held-out windows -> trained, with a warning in the card
    few = make_tree(tmp_path / "few", labels={"normal": 2}, machines=(0, 1, 2, 3), seconds=3.0)
    lines: list[str] = []
    res = train(opts(few, 1.0), say=lines.append)
    assert any(s.startswith("WARNING") and "fewer than" in s for s in lines)
    assert "fewer than" in res.card.extra["threshold_warning"]
    assert res.card.learning is not None  # and it is learning-ready by default


def test_cli_train_exits_2_on_too_few_windows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.trees import make_tree
    from ml.__main__ import main

    tiny = make_tree(tmp_path / "tiny", labels={"normal": 1}, machines=tuple(range(8)), seconds=1.0)
    code = main(["train", "--data", str(tiny), "--kind", "anomaly", "--out", str(tmp_path / "m.onnx"),
                 "--method", "mahalanobis", "--window-seconds", "1.0", "--n-mels", "32", "--n-fft", "512",
                 "--hop-length", "256"])
    assert code == 2
    assert f"at least {MIN_WINDOWS}" in capsys.readouterr().out

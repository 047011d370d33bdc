"""Train the classical classifier: MFCC statistics, then logistic regression or an SVM chosen by a
grid search with group-aware cross-validation (scikit-learn), written out as torch modules
(:mod:`ml.models.classical`) so that the whole model exports to one ONNX graph on the ``logmel``
input, like the other kinds.

The search scores every candidate by the balanced accuracy of cross-validation folds that keep
machines apart (``StratifiedGroupKFold`` over the training windows' groups); when a machine fold
would leave a label without training windows (a fault recorded on one machine only), folds keep
recordings apart instead, and the card says which. The chosen SVM is calibrated on the same folds
(``CalibratedClassifierCV(method="sigmoid", ensemble=False)``), so its probabilities come from
windows it was not fitted on.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ml.models.classical import ClassicalClassifier, LinearHead, MfccStats, SVCHead

__all__ = ["ClassicalConfig", "ClassicalError", "cv_splits", "fit_classical", "mfcc_features"]

MODELS = ("logreg", "svm-linear", "svm-rbf")


class ClassicalError(ValueError):
    """The training windows cannot support a cross-validated search (the caller turns it into a refusal)."""


@dataclass
class ClassicalConfig:
    """The front end and the search grid (``C`` of every model; the RBF ``gamma`` as multiples of
    1/n_features, scikit-learn's ``"scale"`` on standardised features)."""

    n_mfcc: int = 20
    #: keep the mean of c0 (the window's level): off, as gain and distance are not the fault
    level: bool = False
    models: tuple[str, ...] = MODELS
    c_values: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    gamma_factors: tuple[float, ...] = (0.25, 1.0, 4.0)
    folds: int = 5
    #: training windows the search may use (a stratified sample beyond it: an SVM's fit grows with n^2)
    max_windows: int = 4000


def mfcc_features(front: MfccStats, x: np.ndarray, *, batch: int = 512) -> np.ndarray:
    """The graph's own feature vectors of windows ``(n, n_mels, T)``: what scikit-learn learns from."""
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(front(torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))).numpy())
    return np.concatenate(out) if out else np.empty((0, front.dim), np.float32)


def cv_splits(y: np.ndarray, groups: np.ndarray, files: np.ndarray, folds: int,
              seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Cross-validation folds over windows that keep machines (else recordings) apart and leave every
    label in each fold's training side; the folds partition the windows. Raises :class:`ClassicalError`."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = len(np.unique(y))
    tried = []
    for what, g in (("machine", groups), ("recording", files)):
        n_groups = len(np.unique(g))
        n = min(folds, n_groups)
        if n < 2:
            tried.append(f"{n_groups} {what}{'s' if n_groups != 1 else ''}")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class has only ..."
            splits = list(StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed).split(y, y, g))
        short = [i for i, (tr, _) in enumerate(splits) if len(np.unique(y[tr])) < k]
        if not short:
            return splits, f"{n}-fold stratified, by {what} (no {what} in a fold's training and validation sides)"
        tried.append(f"by {what}, {len(short)} of {n} folds would leave a label without training windows")
    raise ClassicalError("no cross-validation keeps every label in every fold's training windows ("
                         + "; ".join(tried) + "): add recordings of the rare labels")


def _grid(cfg: ClassicalConfig, n_features: int, seed: int) -> list[dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    grid: list[dict[str, Any]] = []
    cs = list(cfg.c_values)
    for name in cfg.models:
        if name == "logreg":
            grid.append({"clf": [LogisticRegression(class_weight="balanced", max_iter=5000)], "clf__C": cs})
        elif name == "svm-linear":
            grid.append({"clf": [SVC(kernel="linear", class_weight="balanced", random_state=seed)], "clf__C": cs})
        elif name == "svm-rbf":
            grid.append({"clf": [SVC(kernel="rbf", class_weight="balanced", random_state=seed)], "clf__C": cs,
                         "clf__gamma": [f / n_features for f in cfg.gamma_factors]})
        else:
            raise ClassicalError(f"unknown model {name!r} (models: {', '.join(MODELS)})")
    return grid


def _name(est: Any) -> str:
    from sklearn.svm import SVC

    return f"svm-{est.kernel}" if isinstance(est, SVC) else "logreg"


def fit_classical(x: np.ndarray, y: np.ndarray, groups: np.ndarray, files: np.ndarray, n_labels: int,
                  cfg: ClassicalConfig, *, seed: int = 0,
                  progress: Callable[[str], None] = print) -> tuple[ClassicalClassifier, dict[str, Any]]:
    """Grid-search, refit and calibrate on windows ``x`` with integer labels ``y`` (every label
    ``0..n_labels-1`` present); returns the torch model and what the card records."""
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    if sorted(np.unique(y).tolist()) != list(range(n_labels)):
        raise ClassicalError(f"training windows hold labels {sorted(np.unique(y).tolist())}, expected 0..{n_labels - 1}")
    front = MfccStats(x.shape[1], n_mfcc=cfg.n_mfcc, level=cfg.level).eval()
    if len(x) > cfg.max_windows:  # a stratified sample, every label kept in proportion
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(x)), train_size=cfg.max_windows, stratify=y, random_state=seed)
        keep = np.sort(keep)
        progress(f"  {len(x)} training windows: a stratified sample of {cfg.max_windows} for the search")
        x, y, groups, files = x[keep], y[keep], groups[keep], files[keep]
    feats = mfcc_features(front, x).astype(np.float64)
    splits, cv_how = cv_splits(y, groups, files, cfg.folds, seed)
    progress(f"  features: {feats.shape[1]} MFCC statistics of {len(feats)} windows; cross-validation {cv_how}")
    from sklearn.linear_model import LogisticRegression

    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])  # "clf" is set by the grid
    search = GridSearchCV(pipe, _grid(cfg, feats.shape[1], seed), scoring="balanced_accuracy", cv=splits,
                          refit=False, n_jobs=1, error_score="raise")
    t0 = time.perf_counter()
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search.fit(feats, y)
    res = search.cv_results_
    table = []
    for i, params in enumerate(res["params"]):
        row = {"model": _name(params["clf"]), "C": params["clf__C"]}
        if "clf__gamma" in params:
            row["gamma"] = round(float(params["clf__gamma"]), 6)
        row["cv_balanced_accuracy"] = round(float(res["mean_test_score"][i]), 4)
        row["cv_std"] = round(float(res["std_test_score"][i]), 4)
        table.append(row)
    # the best mean; ties (to 3 decimals) go to the simpler model: logreg, then linear, then rbf; smaller C
    order = {m: i for i, m in enumerate(MODELS)}
    best_i = min(range(len(table)), key=lambda i: (-round(table[i]["cv_balanced_accuracy"], 3),
                                                   order[table[i]["model"]], table[i]["C"], table[i].get("gamma", 0)))
    best = res["params"][best_i]
    for row in sorted(table, key=lambda r: -r["cv_balanced_accuracy"])[:5]:
        progress("  " + ", ".join(f"{k} {v}" for k, v in row.items()))
    scaler = StandardScaler().fit(feats)
    z = scaler.transform(feats)
    clf = clone(best["clf"]).set_params(**{k.split("__", 1)[1]: v for k, v in best.items() if k != "clf"})
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if _name(clf) == "logreg":
            clf.fit(z, y)
            head: torch.nn.Module = LinearHead(clf.coef_, clf.intercept_)
            calibration = "none needed (logistic regression is probabilistic)"
        else:
            cal = CalibratedClassifierCV(clf, method="sigmoid", ensemble=False, cv=splits).fit(z, y)
            cc = cal.calibrated_classifiers_[0]
            head = SVCHead(cc.estimator, cc.calibrators)
            calibration = "sigmoid (Platt) on the cross-validation folds' decision values (ensemble=False)"
    model = ClassicalClassifier(front, scaler.mean_, scaler.scale_, head).eval()
    chosen = table[best_i]
    method = f"mfcc+{chosen['model']}"
    info = {
        "method": method,
        "fit_seconds": round(time.perf_counter() - t0, 2),
        "grid": {"scoring": "balanced accuracy (mean over folds)", "cv": cv_how, "chosen": chosen,
                 "candidates": table, "calibration": calibration, "windows": int(len(feats)),
                 "features": f"{cfg.n_mfcc} MFCCs (DCT-II ortho of the log-mel): mean"
                             f"{'' if cfg.level else ' (without c0, the level)'}, std and std of the "
                             f"frame-to-frame change over the window: {front.dim} values, standardised in the graph"},
    }
    if _name(clf) != "logreg":
        info["grid"]["support_vectors"] = int(len(cc.estimator.support_vectors_))
    progress(f"  chosen: {method} (" + ", ".join(f"{k} {v}" for k, v in chosen.items() if k != "model") + ")")
    return model, info

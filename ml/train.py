"""``python -m ml train``: data tree → group split → fit → calibrate → ONNX with its model card.

The split keeps groups (machine IDs; recordings when there is a single machine) apart, so the
validation figures in the card are for machines the model never heard. The anomaly kind learns
from the normal label only; other labels are used only to choose the method and report metrics.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import logging
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioclassifier.card import CardError, ModelCard
from audioclassifier.errors import AuscultError
from audioclassifier.features import LogMelParams
from audioclassifier.learning import FORMAT_VERSION as LEARNING_FORMAT
from audioclassifier.learning import MIN_WINDOWS, WARN_WINDOWS, LearningError, check_window_count
from ml.anomaly import AnomalyConfig, fit_method, fit_stats, score_windows, selection_report
from ml.calibrate import confidence_threshold, gamma_threshold
from ml.classical import ClassicalConfig, ClassicalError, fit_classical
from ml.classifier import ClassifierConfig, fit_classifier, predict_probs
from ml.dataset import Item, scan_tree
from ml.export import to_onnx
from ml.metrics import binary_auc
from ml.modelcard import save_with_card
from ml.splits import Split, SplitError, plan_split
from ml.windows import WindowSet, describe, load_windows

__all__ = ["KINDS", "TrainOptions", "TrainResult", "TrainError", "train"]

#: what ``--kind`` trains: an anomaly model, the CNN classifier, the MFCC + linear/SVM classifier
KINDS = ("anomaly", "classifier", "classical")

log = logging.getLogger(__name__)


class TrainError(AuscultError, ValueError):
    """A training run that cannot go on (no normal files, no usable audio, bad options)."""


@dataclass
class TrainOptions:
    """Everything a training run depends on (the CLI fills it)."""

    data: Path
    kind: str
    out: Path
    seed: int = 0
    epochs: int | None = None
    window_seconds: float = 2.0
    hop_seconds: float | None = None
    method: str = "auto"
    val_fraction: float = 0.25
    percentile: float = 99.5
    params: LogMelParams = field(default_factory=LogMelParams)
    normal_label: str = "normal"
    channel: int | None = None
    confidence_keep: float = 0.95
    dataset_note: str = ""
    #: what a split group is: ``machine`` (the second folder) or ``recording``
    split_by: str = "machine"
    #: validation groups named by the user (instead of chosen)
    val_groups: list[str] | None = None
    #: a separate validation tree (threshold, method choice, early stopping); needed with val_fraction 0
    val_data: Path | None = None
    #: a separate test tree, evaluated with the exported model after training (card metrics.test)
    test_data: Path | None = None
    #: CSV/NPY sensor series (and low-rate WAVs) are admitted
    sensor: bool = False
    #: sources slower than the front end's rate are used (else skipped with a reason)
    allow_upsampling: bool = False
    #: anomaly: add the ``embedding`` output and the card's ``learning`` block (on-site learning)
    embedding: bool = True
    #: the on-site learner the card recommends (``audioclassifier.learning`` methods)
    learning_method: str = "mahalanobis"
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    classical: ClassicalConfig = field(default_factory=ClassicalConfig)


@dataclass
class TrainResult:
    """What a run produced."""

    path: Path
    card: ModelCard
    model: torch.nn.Module
    seconds: float
    candidates: dict[str, dict[str, Any]]


def _git() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("-dirty" if dirty else "")) if rev else "unknown"


def describe_dataset(root: Path, ws: WindowSet) -> str:
    """What the model learnt from; a synthetic tree's manifest.csv names its seed, SNRs and IDs."""
    manifest = root / "manifest.csv"
    base = f"{root.name}: {describe(ws)}"
    if manifest.is_file():
        try:
            with open(manifest, newline="") as fh:
                rows = list(csv.DictReader(fh))
            seeds = sorted({r["seed"] for r in rows}) if rows and "seed" in rows[0] else []
            snrs = sorted({float(r["snr_db"]) for r in rows})
            ids = sorted({int(r["machine_id"]) for r in rows})
            return (f"Auscult synthetic machine sounds (python -m ml synth): SNR {'/'.join(f'{s:g}' for s in snrs)} dB, "
                    f"machine IDs {ids[0]}-{ids[-1]} ({len(ids)} machines), {len(rows)} clips in the manifest, "
                    f"{len(seeds)} clip seeds; used: {base}")
        except (OSError, KeyError, ValueError):
            pass
    return base


def _version(kind: str, proto_bytes: bytes) -> str:
    h = hashlib.sha256(proto_bytes).hexdigest()[:8]
    return f"{kind}-{_dt.datetime.now(_dt.timezone.utc):%Y%m%d}-{h}"


def auto_candidates(cfg: AnomalyConfig, groups: int | None = None) -> list[str]:
    """The candidates ``--method auto`` fits: each statistics method on each of
    :attr:`AnomalyConfig.auto_feature_sets` (``few_groups_feature_sets`` when the normal training
    windows come from fewer than ``fine_min_groups`` groups), and the AE."""
    names = []
    sets = cfg.auto_feature_sets if groups is None or groups >= cfg.fine_min_groups else cfg.few_groups_feature_sets
    for feats in sets:
        names += [f"mahalanobis:{feats}"] + [f"gmm{k}:{feats}" for k in cfg.gmm_components if k > 1]
        names.append(f"knn:{feats}")
    return names + ["ae"]


def _candidates(o: TrainOptions, groups: int) -> list[str]:
    if o.method == "auto":
        return auto_candidates(o.anomaly, groups)
    if o.method == "gmm":
        return [f"gmm{k}" for k in o.anomaly.gmm_components]
    return [o.method]


def _anomaly(ws: WindowSet, tr: np.ndarray, va: np.ndarray, o: TrainOptions,
             say: Callable[[str], None]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fit the candidates on normal training windows; pick the one that detects best under shift.

    The choice (:func:`ml.anomaly.selection_report`) scores held-out groups' normal windows, the
    same windows at another speed and gain, generated anomalies, and the real abnormal windows if
    the tree has any: never the normal scores alone. The threshold rests on the held-out normal
    windows: fewer than MIN_WINDOWS are refused, fewer than WARN_WINDOWS give a warning. Then the
    chosen candidate is fitted again on every normal window (``AnomalyConfig.refit_all``).
    """
    labels, fi = ws.labels, ws.file_index
    in_tr, in_va = np.isin(fi, tr), np.isin(fi, va)
    normal = labels == o.normal_label
    x_tr = ws.x[in_tr & normal]
    x_vn = ws.x[in_va & normal]
    abn_va = in_va & ~normal
    abn_note = "abnormal files of the validation machines"
    if not abn_va.any() and (~normal).any():
        abn_va = ~normal
        abn_note = "abnormal files of all machines (the validation machines have none)"
    x_va = np.concatenate([x_vn, ws.x[abn_va]])
    y_va = np.concatenate([np.zeros(len(x_vn), bool), np.ones(int(abn_va.sum()), bool)])
    if len(x_tr) < 4:
        raise TrainError(f"only {len(x_tr)} normal training windows: need more '{o.normal_label}' audio")
    try:
        warning = check_window_count(len(x_vn), what="normal validation windows of held-out groups")
    except LearningError as exc:
        raise TrainError(f"{exc} (at least {MIN_WINDOWS}; {WARN_WINDOWS} or more for a steady threshold)") from None
    if warning:
        say(f"WARNING: {warning}")
        log.warning("%s", warning)
    say(f"anomaly: {len(x_tr)} normal training windows; validation: {len(x_vn)} normal, "
        f"{int(y_va.sum())} abnormal windows ({abn_note if y_va.any() else 'none: generated anomalies only'})")
    n_groups = len(set(ws.groups[in_tr & normal]))
    names = _candidates(o, n_groups)
    if o.method == "auto":
        say(f"candidates ({n_groups} training groups): {', '.join(names)}")
    x_abn = ws.x[abn_va] if y_va.any() else None
    results: dict[str, dict[str, Any]] = {}
    models: dict[str, torch.nn.Module] = {}
    for name in names:
        t0 = time.perf_counter()
        say(f"fitting {name} ...")
        try:
            m = fit_method(name, x_tr, o.anomaly, seed=o.seed, epochs=o.epochs, x_val=x_vn, progress=say)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        r: dict[str, Any] = {"fit_seconds": round(time.perf_counter() - t0, 2)}
        if len(names) > 1:
            r.update(selection_report(m, x_vn, x_abnormal=x_abn, seed=o.seed, sample_rate=o.params.sample_rate))
        say(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in r.items()))
        results[name] = r
        models[name] = m
    best = max(names, key=lambda n: (round(results[n].get("key", 0.0), 3), -names.index(n)))  # ties: the cheaper
    say(f"chosen method: {best}")
    model = models[best]
    info: dict[str, Any] = {"method": best, "candidates": results, "abnormal_validation": abn_note if y_va.any() else None}
    s_vn = score_windows(model, x_vn)
    g = gamma_threshold(s_vn, percentile=o.percentile)
    info["threshold"] = g
    info["threshold_warning"] = warning
    info["selection"] = ("mean pAUC (max FPR 0.1) of held-out groups' normal windows, also shifted in speed "
                         "(+-6 %) and gain (+-10 dB), against generated anomalies (" + ", ".join(
                             ("tone", "tilt", "impulses", "band noise", "modulation")) + "; fault-family pseudo-anomalies (shaft "
                         "harmonics, resonance, shelf) reported, not in the key)"
                         + (" and, half-weighted, the real abnormal validation windows" if y_va.any() else "")
                         + f"; {n_groups} training groups: feature sets " + ", ".join(
                             sorted({n.partition(':')[2] for n in names if ':' in n}))
                         if len(names) > 1 else f"fixed by --method {o.method}")
    if y_va.any() and (~y_va).any():
        s_va = score_windows(model, x_va)
        auc, pauc = binary_auc(y_va, s_va)
        dec = s_va > g.threshold
        info["metrics"] = {"auc": round(auc, 4), "pauc": round(pauc, 4),
                           "accuracy": round(float((dec == y_va).mean()), 4)}
    else:
        info["metrics"] = {"auc": None, "pauc": None, "accuracy": round(float((s_vn <= g.threshold).mean()), 4)}
    if o.anomaly.refit_all and len(x_vn):
        # the choice, threshold and metrics above scored groups the candidate never heard; the
        # shipped model hears them all (the AE then stops on its training loss)
        x_fit = np.concatenate([x_tr, x_vn])
        say(f"refitting {best} on every normal window ({len(x_fit)}: training and validation groups)")
        model = fit_method(best, x_fit, o.anomaly, seed=o.seed, epochs=o.epochs, progress=say)
        info["refit"] = (f"{best} fitted again on the {len(x_fit)} normal windows of the training and validation "
                         "groups; selection, threshold and metrics from its fit on the training groups alone")
    if o.embedding:
        feats = o.anomaly.learning_features
        # standardised on the training groups' windows, as the card says (a fixed affine map: the
        # on-site learner fits the machine's own windows on it)
        learn = fit_stats(x_tr, o.anomaly, o.anomaly.feature_sets[feats])
        model.learning_stats = learn  # exported as the `embedding` output (ml.export.to_onnx)
        info["learning"] = {
            "supported": True, "embedding": "embedding", "dim": int(learn.dim), "method": o.learning_method,
            "k": o.anomaly.knn_k, "features": f"{feats}: {'+'.join(learn.parts)}, {learn.band_pool} mel bands pooled, "
                                             "standardised on the training groups' windows",
            "percentile": o.percentile, "min_windows": MIN_WINDOWS, "warn_windows": WARN_WINDOWS,
            "format": LEARNING_FORMAT, "learner": "audioclassifier.learning.fit_normal"}
    return model, info


def _classifier(ws: WindowSet, tr: np.ndarray, va: np.ndarray, o: TrainOptions, labels: list[str],
                say: Callable[[str], None]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train the CNN (``--kind classifier``) or the MFCC + grid-searched linear/SVM model (``--kind
    classical``); calibrate the unknown cut on validation windows."""
    lab_idx = {lab: i for i, lab in enumerate(labels)}
    y = np.array([lab_idx[v] for v in ws.labels], dtype=np.int64)
    fi = ws.file_index
    in_tr, in_va = np.isin(fi, tr), np.isin(fi, va)
    say(f"{o.kind}: {int(in_tr.sum())} training windows, {int(in_va.sum())} validation windows, labels {labels}")
    t0 = time.perf_counter()
    info: dict[str, Any]
    model: torch.nn.Module
    if o.kind == "classical":
        try:
            model, info = fit_classical(ws.x[in_tr], y[in_tr], ws.groups[in_tr], fi[in_tr], len(labels), o.classical,
                                        seed=o.seed, progress=say)
        except ClassicalError as exc:
            raise TrainError(str(exc)) from None
    else:
        cfg = ClassifierConfig(**{**o.classifier.__dict__})
        if o.epochs is not None:
            cfg.epochs = o.epochs
        model, history = fit_classifier(ws.x[in_tr], y[in_tr], len(labels), cfg, seed=o.seed,
                                        x_val=ws.x[in_va], y_val=y[in_va], progress=say)
        info = {"method": "stats+cnn", "history": history, "fit_seconds": round(time.perf_counter() - t0, 2)}
    p = predict_probs(model, ws.x[in_va])
    yv = y[in_va]
    if len(p):
        pred = p.argmax(1)
        info["confidence_threshold"] = round(confidence_threshold(p.max(1), pred == yv, keep=o.confidence_keep), 4)
        normal_i = lab_idx[o.normal_label]
        is_abn = yv != normal_i
        auc, pauc = binary_auc(is_abn, 1.0 - p[:, normal_i]) if is_abn.any() and (~is_abn).any() else (None, None)
        info["metrics"] = {"auc": None if auc is None else round(auc, 4), "pauc": None if pauc is None else round(pauc, 4),
                           "accuracy": round(float((pred == yv).mean()), 4)}
    else:
        info["confidence_threshold"] = 0.0
        info["metrics"] = {"auc": None, "pauc": None, "accuracy": None}
    return model, info


def _scan(root: Path, what: str, sensor: bool) -> list[Item]:
    try:
        items = scan_tree(root, sensor=sensor)
    except (FileNotFoundError, ValueError) as exc:
        raise TrainError(f"{what}: {exc}") from exc
    if not items:
        raise TrainError(f"{root}: no audio or sensor files found ({what})")
    return items


def _check_options(o: TrainOptions) -> None:
    if o.kind not in KINDS:
        raise TrainError(f"--kind must be one of {', '.join(KINDS)}, got {o.kind!r}")
    if not 0 <= o.val_fraction < 1:
        raise TrainError(f"--val-fraction must be in [0, 1), got {o.val_fraction:g}")
    if o.val_data is not None and o.val_groups:
        raise TrainError("--val-groups and --val-data exclude each other: name validation groups or a validation set")
    if o.val_fraction == 0 and o.val_data is None:
        raise TrainError("--val-fraction 0 trains on every file: name the set the threshold, method choice and "
                         "early stopping come from with --val-data DIR")
    out = Path(o.out)
    if out.is_dir():
        raise TrainError(f"--out {out}: is a folder; give the ONNX file to write")
    parent = next((p for p in (out.parent, *out.parent.parents) if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise TrainError(f"--out {out}: {parent} is not a folder")


def _check_labels(o: TrainOptions, labels_all: list[str], other: list[Item], what: str) -> None:
    """A validation or test tree must speak the training tree's labels."""
    got = sorted({it.label for it in other})
    if o.kind == "anomaly":
        if o.normal_label not in got and what == "--val-data":
            raise TrainError(f"{what}: no '{o.normal_label}' folder (labels found: {', '.join(got)}); the threshold "
                             "needs normal validation files")
        return
    new = [lab for lab in got if lab not in labels_all]
    if new:
        raise TrainError(f"{what}: labels {', '.join(new)} are not among the training labels {', '.join(labels_all)}")


def _split(o: TrainOptions, items: list[Item], val_paths: set[Path]) -> Split:
    """The file indices of both sides: a named validation tree, or a planned split of the tree."""
    if val_paths:
        is_val = np.array([it.path in val_paths for it in items], dtype=bool)
        idx = np.arange(len(items))
        tr, va = idx[~is_val], idx[is_val]
        g_tr = sorted({items[i].group for i in tr})
        g_va = sorted({items[i].group for i in va})
        if len(tr) == 0 or len(va) == 0:
            raise TrainError("no readable training or validation files left")
        shared = sorted(set(g_tr) & set(g_va))
        notes = [f"groups {', '.join(shared)} are in both the training and the validation tree"] if shared else []
        return Split(tr, va, "tree", g_tr, g_va, f"validation tree {o.val_data}, trained on every file of "
                     f"{o.data}", notes)
    labels = [it.label for it in items]
    required = [o.normal_label] if o.kind == "anomaly" else None
    need_val = [o.normal_label] if o.kind == "anomaly" else []
    try:
        return plan_split(labels, [it.group for it in items], val_fraction=o.val_fraction, seed=o.seed, by=o.split_by,
                          val_groups=o.val_groups, required=required, need_in_val=need_val)
    except SplitError as exc:
        raise TrainError(str(exc)) from None


def train(o: TrainOptions, *, say: Callable[[str], None] = print) -> TrainResult:
    """Run a whole training: see the module docstring. Writes ``o.out`` and returns what it made.

    Every refusal (:class:`TrainError`) comes before ``o.out`` is touched; the model is written
    atomically, so a failure leaves the previous file as it was.
    """
    t_start = time.perf_counter()
    _check_options(o)
    torch.manual_seed(o.seed)
    np.random.seed(o.seed)
    data = Path(o.data)
    items = _scan(data, "--data", o.sensor)
    labels_all = sorted({it.label for it in items})
    if o.normal_label not in labels_all:
        raise TrainError(f"{data}: no '{o.normal_label}' folder (labels found: {', '.join(labels_all)}); "
                         "use --normal-label to name the normal class")
    if o.kind != "anomaly" and len(labels_all) < 2:
        raise TrainError(f"{data}: --kind {o.kind} needs at least two labels, found only '{labels_all[0]}'; "
                         "train an anomaly model (--kind anomaly) on one label")
    val_items = _scan(Path(o.val_data), "--val-data", o.sensor) if o.val_data is not None else []
    if val_items:
        _check_labels(o, labels_all, val_items, "--val-data")
    test_items = _scan(Path(o.test_data), "--test-data", o.sensor) if o.test_data is not None else []
    if test_items:
        _check_labels(o, labels_all, test_items, "--test-data")
    val_paths = {it.path for it in val_items}
    if not val_paths:
        _split(o, items, val_paths)  # refuse a split that cannot work before any audio is read
    say(f"scanning {data}: {len(items)} files, labels {dict(Counter(it.label for it in items))}")
    ws = load_windows(items + [it for it in val_items if it.path not in {i.path for i in items}], params=o.params,
                      window_seconds=o.window_seconds, hop_seconds=o.hop_seconds, channel=o.channel,
                      sensor=o.sensor, allow_upsampling=o.allow_upsampling)
    for path, reason in ws.failed.items():
        say(f"skipped {path}: {reason}")
    if not ws.items:
        raise TrainError(f"{data}: none of the {len(items)} files could be read")
    kept_labels = sorted({it.label for it in ws.items if it.path not in val_paths})
    if o.kind != "anomaly" and kept_labels != labels_all:
        lost = sorted(set(labels_all) - set(kept_labels))
        raise TrainError(f"no readable training file of {', '.join(lost)} (see the skipped files)")
    say(f"features: {describe(ws)} of {ws.x.shape[1]}x{ws.x.shape[2]} log-mel")
    sp = _split(o, ws.items, val_paths)
    tr, va = sp.train, sp.val
    g_tr, g_va = sp.train_groups, sp.val_groups
    say(f"split by {sp.by}: train {len(tr)} files ({len(g_tr)} groups), validation {len(va)} files "
        f"({len(g_va)} groups: {', '.join(g_va[:8])}{' ...' if len(g_va) > 8 else ''})")
    for note in sp.warnings:
        say(f"NOTE: {note}")
        log.warning("%s", note)

    if o.kind == "anomaly":
        labels = [o.normal_label, "anomaly"]
        model, info = _anomaly(ws, tr, va, o, say)
        g = info["threshold"]
        threshold, threshold_method = g.threshold, g.method
        extra: dict[str, Any] = {"method": info["method"]}
        if info.get("threshold_warning"):
            extra["threshold_warning"] = info["threshold_warning"]
        if info.get("learning"):
            extra["learning"] = info["learning"]
        context = int(getattr(model, "context", 1))
    else:
        labels = [o.normal_label] + [lab for lab in labels_all if lab != o.normal_label]
        model, info = _classifier(ws, tr, va, o, labels, say)
        threshold = 0.5
        threshold_method = "fixed: alert when 1 - p(normal) > 0.5 (the normal class is not the most likely)"
        extra = {"method": info["method"], "confidence_threshold": info["confidence_threshold"],
                 "confidence_method": f"{o.confidence_keep:.0%} of correctly classified validation windows reach it; "
                                      "below it the decision is 'unknown'"}
        context = 1
    extra["channels"] = channels_block(o.channel, ws, o.sensor)
    seconds = time.perf_counter() - t_start
    frames = ws.x.shape[2]
    card_kind = "anomaly" if o.kind == "anomaly" else "classifier"  # classical: a classifier to the module
    proto = to_onnx(model, kind=card_kind, n_mels=o.params.n_mels, frames=frames, embedding="learning" in extra)
    trained = {
        "dataset": o.dataset_note or describe_dataset(data, ws),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": _git(),
        "seed": o.seed,
        "method": info["method"],
        "selection": info.get("selection", "grid search: mean balanced accuracy of group-aware cross-validation "
                              "on the training windows" if o.kind == "classical" else
                              "validation balanced accuracy per epoch (early stopping)"),
        "split": sp.describe(),
        "split_notes": list(sp.warnings),
        "files": {"train": len(tr), "validation": len(va), "failed": len(ws.failed)},
        "windows": int(len(ws.x)),
        "hop_seconds": o.hop_seconds if o.hop_seconds is not None else o.window_seconds / 2,
        "train_seconds": round(seconds, 1),
    }
    if o.kind == "anomaly":
        trained["candidates"] = {k: dict(v) for k, v in info["candidates"].items()}
        if info.get("refit"):
            trained["refit"] = info["refit"]
    elif "history" in info:
        trained["epochs"] = len(info["history"])
        trained["history"] = [{k: round(float(v), 4) for k, v in rec.items()} for rec in info["history"]]
    if "grid" in info:
        trained["grid"] = info["grid"]
    metrics = {**info["metrics"], "on": "validation windows of held-out groups" if o.val_data is None
               else f"validation windows of {o.val_data}",
               "pauc_definition": "sklearn roc_auc_score max_fpr=0.1 (McClish-standardised)"}
    card = ModelCard(
        kind=card_kind, labels=tuple(labels), features=o.params, window_seconds=o.window_seconds,
        threshold=float(threshold), normal_label=o.normal_label, context_frames=context,
        normalization={"where": "inside the ONNX graph", "fitted_on": "training windows"},
        threshold_method=threshold_method, version=_version(o.kind, proto.SerializeToString()),
        trained=trained, metrics=metrics, extra=extra,
    )
    try:
        path = save_with_card(proto, card, o.out)
    except CardError as exc:
        raise TrainError(str(exc)) from exc
    say(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB), version {card.version}, threshold {threshold:.4g} "
        f"({threshold_method}); validation: " + ", ".join(f"{k} {v}" for k, v in info["metrics"].items())
        + f"; {seconds:.0f} s")
    if info.get("history"):
        from ml.plots import save_training_curves_png

        curves = path.with_name(path.stem + "-curves.png")
        save_training_curves_png(info["history"], curves, title=f"{o.kind} {card.version}")
        say(f"training curves: {curves}")
    if test_items:
        card = _test(o, path, proto, card, say)
    return TrainResult(path, card, model, seconds, info.get("candidates", {}))


def channels_block(channel: int | None, ws: WindowSet, sensor: bool) -> dict[str, Any]:
    """The card's ``channels``: how the training audio was reduced to one signal."""
    counts = sorted(set(ws.channels.values())) if ws.channels else []
    block: dict[str, Any] = {"mix": "mean" if channel is None else "channel", "trained_channels": counts[-1] if
                             len(counts) == 1 else counts}
    if channel is not None:
        block["channel"] = channel
    if sensor:
        block["input"] = "sensor"
    return block


def _test(o: TrainOptions, path: Path, proto: Any, card: ModelCard, say: Callable[[str], None]) -> ModelCard:
    """Evaluate the exported model on ``--test-data``; the card's ``metrics.test`` gets the figures."""
    from ml.evaluate import evaluate, format_table

    report = path.with_name(path.stem + "-test")
    ev = evaluate(path, o.test_data, report, channel=o.channel, plots=True)
    say(f"test set {o.test_data}: {ev.n_files} files, {ev.n_windows} windows")
    say(format_table(ev.metrics))
    test = {level: {k: ev.metrics[level][k] for k in ("auc", "pauc", "accuracy")} for level in ("window", "file")}
    metrics = {**card.metrics, "test": {**test, "on": str(o.test_data), "report": str(report)}}
    card = ModelCard(**{**card.__dict__, "metrics": metrics})
    save_with_card(proto, card, path)
    return card

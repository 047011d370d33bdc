"""``python -m ml train``: train an anomaly model or a classifier and export it as ONNX with its card."""

from __future__ import annotations

import argparse
from pathlib import Path

from audioclassifier.argtypes import int_at_least
from ml.cli.frontend_options import add_frontend_options, frontend_params


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the verb and its options."""
    p = sub.add_parser(
        "train",
        help="train an anomaly model or a classifier (CNN or MFCC + SVM/logistic regression) -> ONNX with model card",
        description="Train on a tree DATA/<label>/<machine>/*.wav. The split keeps machines (the second "
        "folder) apart. --kind anomaly learns from the normal label only (other labels choose the method "
        "and give validation metrics); --kind classifier learns every label. Exit code 0 on success, "
        "2 on bad data or options.",
    )
    p.add_argument("--data", required=True, type=Path, help="dataset tree ROOT/<label>/[<machine>/]*.wav")
    p.add_argument("--kind", required=True, choices=("anomaly", "classifier", "classical"),
                   help="anomaly: learns normal only; classifier: statistics + CNN; classical: MFCC statistics + "
                   "logistic regression / linear SVM / RBF SVM by grid search (all in the ONNX graph)")
    p.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--seed", type=int, default=0, help="random seed: same data + seed = same model (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs of the networks (early stopping may end sooner)")
    p.add_argument("--window-seconds", type=float, default=2.0, help="model window (default 2.0 s)")
    p.add_argument("--hop-seconds", type=float, default=None, help="hop between training windows (default: half a window)")
    p.add_argument("--method", default="auto",
                   help="anomaly method: auto, gmm, gmm<K>, mahalanobis, knn or ae, optionally :shape, :spread, :fine, "
                   ":finespread, :finelow, :finelowspread or :level (the feature set, e.g. gmm4:fine); auto fits them "
                   "on finelow (on shape and spread with fewer than 8 training machines), keeps the one that detects "
                   "best on held-out machines, shifted speed/gain and generated anomalies, and fits it again on every "
                   "normal file (default)")
    p.add_argument("--no-refit", action="store_true",
                   help="anomaly: ship the chosen candidate as fitted on the training groups, without fitting it "
                        "again on every normal window (make model: the shipped model as it was built)")
    p.add_argument("--no-embedding", action="store_true",
                   help="anomaly: leave out the embedding output and the card's learning block (on-site learning)")
    p.add_argument("--percentile", type=float, default=99.5,
                   help="anomaly threshold: percentile of the gamma fitted to normal validation scores (default "
                   "99.5: a module scoring a window every second should rarely alert on a healthy machine)")
    p.add_argument("--val-fraction", type=float, default=0.25,
                   help="share of machines held out for validation (default 0.25); the split never leaves a label "
                   "without training files and refuses when it must. 0: train on every file (needs --val-data)")
    p.add_argument("--split-by", choices=("machine", "recording"), default="machine",
                   help="what the split keeps apart: machine folders (default; validation = unseen machines) or "
                   "single recordings (validation hears machines it trained on)")
    p.add_argument("--val-groups", default=None,
                   help="comma-separated validation groups (machine folders, e.g. M2,M3) instead of a chosen split")
    p.add_argument("--val-data", type=Path, default=None,
                   help="a separate validation tree (threshold, method choice, early stopping, unknown cut)")
    p.add_argument("--test-data", type=Path, default=None,
                   help="a separate test tree: evaluated with the exported model after training "
                   "(report <out stem>-test/, card metrics.test)")
    p.add_argument("--sensor", action="store_true",
                   help="sensor time series: read CSV/NPY files (rows = samples, columns = axes; rate from a "
                   "sensor.json sidecar {\"sample_rate\": N} or --sample-rate) and low-rate WAVs")
    p.add_argument("--allow-upsampling", action="store_true",
                   help="use sources slower than --sample-rate (upsampled; by default they are skipped)")
    p.add_argument("--normal-label", default="normal", help="folder name of the normal class (default normal)")
    p.add_argument("--channel", type=int, default=None, help="0-based channel to use (default: mix down)")
    p.add_argument("--dataset-note", default="", help="text for the card's trained.dataset (default: described from DATA)")
    p.add_argument("--augment", action="store_true",
                   help="classifier: augment the log-mel windows (gain, noise, background, shifts, masks); off by "
                   "default, as it lowered accuracy on unseen synthetic machines")
    p.add_argument("--n-mfcc", type=int_at_least(1), default=20,
                   help="classical: MFCCs per frame (default 20; at most --n-mels)")
    p.add_argument("--mfcc-level", action="store_true",
                   help="classical: keep the mean of c0 (the window's level; off by default: gain is not a fault)")
    p.add_argument("--cv-folds", type=int_at_least(2), default=5,
                   help="classical: cross-validation folds of the grid search (default 5; fewer groups, fewer folds)")
    add_frontend_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Train; print progress and the result; 2 on bad data or options."""
    import torch

    from ml.train import TrainError, TrainOptions, train

    try:
        params = frontend_params(args)
    except ValueError as exc:
        print(f"train: {exc}")
        return 2
    if not args.window_seconds > 0 or (args.hop_seconds is not None and not args.hop_seconds > 0):
        print("train: --window-seconds and --hop-seconds must be > 0")
        return 2
    if not 0 <= args.val_fraction < 1:
        print(f"train: --val-fraction must be in [0, 1), got {args.val_fraction:g}")
        return 2
    if args.epochs is not None and args.epochs < 1:
        print("train: --epochs must be >= 1")
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    opts = TrainOptions(data=args.data, kind=args.kind, out=args.out, seed=args.seed, epochs=args.epochs,
                        window_seconds=args.window_seconds, hop_seconds=args.hop_seconds, method=args.method,
                        val_fraction=args.val_fraction, percentile=args.percentile, params=params,
                        normal_label=args.normal_label, channel=args.channel, dataset_note=args.dataset_note,
                        embedding=not args.no_embedding, split_by=args.split_by,
                        val_groups=[g.strip() for g in args.val_groups.split(",") if g.strip()] if args.val_groups else None,
                        val_data=args.val_data, test_data=args.test_data, sensor=args.sensor,
                        allow_upsampling=args.allow_upsampling)
    opts.classifier.augment = args.augment
    opts.anomaly.refit_all = not args.no_refit
    opts.classical.n_mfcc, opts.classical.level, opts.classical.folds = args.n_mfcc, args.mfcc_level, args.cv_folds
    if args.kind == "classical" and args.n_mfcc > params.n_mels:
        print(f"train: --n-mfcc {args.n_mfcc} is more than --n-mels {params.n_mels}")
        return 2
    try:
        train(opts, say=lambda s: print(s, flush=True))
    except TrainError as exc:
        print(f"train: {exc}")
        return 2
    return 0

"""Fault classification under shift: which fault, on machines and conditions the classifier never heard.

The classifier half of the generalisation benchmark (``bench/shift.py`` is the anomaly half). Every
row holds out whole motors or machines; each reports the file-level *balanced* accuracy (the mean
of the per-class recalls over the classes in the test set, so a model that always says "healthy"
does not look good on a set that is mostly healthy) of

* ``ours``: ``python -m ml train --kind classical`` (the toolkit's classical classifier, model
  chosen by its own grouped cross-validation), through onnxruntime; a file's class is the argmax
  of its windows' mean probabilities;
* ``maha``: baseline (a) as a classifier: one Mahalanobis model (Ledoit-Wolf) per class on the
  per-band mean and std of the log-mel; a file goes to the class with the lowest mean distance;
* ``ae``: baseline (b) as a classifier: one DCASE 2020 dense autoencoder per class; a file goes to
  the class with the lowest mean reconstruction error,

all fitted on the same training windows in the same run. Prints ``name: value`` lines (with
``*_ratio`` = ours / best baseline) and a markdown table. Real data is read in place from
../shared/data (symlink trees under build/bench/faults).

    python bench/faults.py [bldc] [synthetic]     (default: both; about 15 min on 2 cores)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from common import REPO, bldc_files, link_tree, sh, synth
from shift import SEED, Onnx, fit_ae_baseline, fit_maha_meanstd, windows

WORK = REPO / "build" / "bench" / "faults"
SYN = REPO / "build" / "bench" / "synthetic"
ROWS: list[tuple[str, str, dict[str, float]]] = []


def balanced_accuracy(truth: list[str], pred: list[str]) -> float:
    classes = sorted(set(truth))
    return float(np.mean([np.mean([p == c for t, p in zip(truth, pred) if t == c]) for c in classes]))


def tree_files(root: Path) -> tuple[list[Path], list[str]]:
    """The WAVs of a ``<label>/<group>/<file>`` tree and their labels."""
    fs = sorted(root.rglob("*.wav"))
    return fs, [f.parent.parent.name for f in fs]


def ours(train_tree: Path, out: Path, normal_label: str) -> Onnx:
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        sh("train", "--data", str(train_tree), "--kind", "classical", "--out", str(out), "--seed", str(SEED),
           "--normal-label", normal_label)
    return Onnx(out)


def predict_ours(model: Onnx, xs: list[np.ndarray]) -> list[str]:
    labels = list(model.card.labels)
    return [labels[int(np.argmax(model.run(x, "probs").mean(0)))] for x in xs]


def predict_per_class(scorers: dict, xs: list[np.ndarray]) -> list[str]:
    """One novelty scorer per class; each file to the class with its lowest mean score."""
    classes = sorted(scorers)
    means = np.array([[float(np.mean(scorers[c](x))) for c in classes] for x in xs])
    return [classes[i] for i in means.argmin(1)]


class Fitted:
    """Ours and both baselines, fitted once on a training tree; :meth:`accuracy` on any test set."""

    def __init__(self, name: str, train_tree: Path, normal_label: str) -> None:
        files, labels = tree_files(train_tree)
        self.model = ours(train_tree, WORK / name / "classical.onnx", normal_label)
        xw = windows(files)
        per_class = {c: np.concatenate([x for x, lab in zip(xw, labels) if lab == c]) for c in sorted(set(labels))}
        self.baselines = {"maha": {c: fit_maha_meanstd(x) for c, x in per_class.items()},
                          "ae": {c: fit_ae_baseline(x) for c, x in per_class.items()}}

    def accuracy(self, test_tree: Path) -> dict[str, float]:
        files, labels = tree_files(test_tree)
        xs = windows(files)
        out = {"ours": balanced_accuracy(labels, predict_ours(self.model, xs))}
        for name, scorers in self.baselines.items():
            out[name] = balanced_accuracy(labels, predict_per_class(scorers, xs))
        return out


def add_row(name: str, what: str, folds: list[dict[str, float]]) -> None:
    figures = {k: float(np.mean([f[k] for f in folds])) for k in ("ours", "maha", "ae")}
    ROWS.append((name, what, figures))
    print(f"== {name}: ours {figures['ours']:.3f}, maha {figures['maha']:.3f}, ae {figures['ae']:.3f}", flush=True)


def bench_bldc() -> None:
    files = bldc_files()
    if files is None:
        return
    motors = sorted(m for (c, m) in files if c == "Healthy")
    folds = []
    for held in ("M1", "M2"):  # the motors with both healthy and propeller recordings
        tr_map = {f"Healthy/{m}": files[("Healthy", m)] for m in motors if m != held}
        tr_map.update({f"Propeller/{m}": files[("Propeller", m)] for m in ("M1", "M2") if m != held})
        tr_map["Bearing/M4"] = files[("Bearing", "M4")]
        base = WORK / f"bldc-holdout-{held}"
        tree = link_tree(base / "train", tr_map)
        test = link_tree(base / "test", {f"Healthy/{held}": files[("Healthy", held)],
                                         f"Propeller/{held}": files[("Propeller", held)]})
        folds.append(Fitted(f"bldc_fault_unseen_motor_{held}", tree, "Healthy").accuracy(test))
    add_row("bldc_fault_unseen_motor", "BLDC Healthy / Propeller / Bearing: hold out motor M1 or M2 (2 folds; "
            "Bearing is M4 only, so it trains and is never tested); test that motor's healthy and propeller "
            "recordings at all its speeds", folds)


def bench_synthetic() -> None:
    tr = synth(SYN / "train-labelled-48", "--seed", "2", "--first-machine-id", "100", "--machines", "48",
               "--clips-per-class", "2", "--snr-db", "-6", "--snr-db", "0", "--snr-db", "6")
    fitted = Fitted("synthetic_fault", tr, "normal")
    tests = [
        ("synthetic_fault_unseen_machines_0dB", "synthetic, 4 classes, 6 unseen machines at 0 dB (trained on 48 "
         "machines of another fleet at -6/0/+6 dB)", ("test-0dB", "--snr-db", "0")),
        ("synthetic_fault_unseen_machines_-6dB", "as above, the unseen machines at -6 dB", ("test--6dB", "--snr-db", "-6")),
        ("synthetic_fault_unseen_speed_load_gain", "as above at 0 dB, each clip at its own speed (+-10 %), load "
         "(+-4 dB) and gain (+-12 dB)", ("test-shift", "--snr-db", "0", "--speed-jitter", "0.1", "--load-db-range",
                                         "-4", "4", "--gain-db-range", "-12", "12")),
    ]
    for name, what, (folder, *extra) in tests:
        te = synth(SYN / folder, "--seed", "1", "--first-machine-id", "40", "--machines", "6", "--clips-per-class", "6",
                   *extra)
        add_row(name, what, [fitted.accuracy(te)])


def report() -> None:
    print()
    print("| row | held out | ours (classical) | (a) maha per class | (b) DCASE AE per class | ours / best |")
    print("|---|---|---|---|---|---|")
    for name, what, f in ROWS:
        best = max(f["maha"], f["ae"])
        print(f"| {name} | {what} | {f['ours']:.3f} | {f['maha']:.3f} | {f['ae']:.3f} | {f['ours'] / best:.3f} |")
    print()
    for name, _, f in ROWS:
        for k, v in f.items():
            print(f"{name}_{k}_balanced_accuracy: {v:.4f}")
        print(f"{name}_ratio: {f['ours'] / max(f['maha'], f['ae']):.4f}")


def main(argv: list[str]) -> int:
    parts = {"bldc": bench_bldc, "synthetic": bench_synthetic}
    for name in argv or list(parts):
        parts[name]()
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

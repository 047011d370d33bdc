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


def predict_per_class(fit, train: dict[str, np.ndarray], xs: list[np.ndarray]) -> list[str]:
    """One novelty model per class (``fit(windows) -> score``); each file to its lowest mean score."""
    scorers = {c: fit(x) for c, x in train.items()}
    classes = sorted(scorers)
    means = np.array([[float(np.mean(scorers[c](x))) for c in classes] for x in xs])
    return [classes[i] for i in means.argmin(1)]


def row(name: str, what: str, train_files: list[Path], train_labels: list[str], train_tree: Path,
        tests: list[tuple[list[Path], list[str]]], normal_label: str) -> None:
    """Fit ours and both baselines on the training files once; balanced accuracy on each test set (mean)."""
    model = ours(train_tree, WORK / name / "classical.onnx", normal_label)
    xw = windows(train_files)
    per_class = {c: np.concatenate([x for x, lab in zip(xw, train_labels) if lab == c]) for c in sorted(set(train_labels))}
    acc: dict[str, list[float]] = {"ours": [], "maha": [], "ae": []}
    for files, labels in tests:
        xs = windows(files)
        acc["ours"].append(balanced_accuracy(labels, predict_ours(model, xs)))
        acc["maha"].append(balanced_accuracy(labels, predict_per_class(fit_maha_meanstd, per_class, xs)))
        acc["ae"].append(balanced_accuracy(labels, predict_per_class(fit_ae_baseline, per_class, xs)))
    figures = {k: float(np.mean(v)) for k, v in acc.items()}
    ROWS.append((name, what, figures))
    print(f"== {name}: ours {figures['ours']:.3f}, maha {figures['maha']:.3f}, ae {figures['ae']:.3f}", flush=True)


def bench_bldc() -> None:
    files = bldc_files()
    if files is None:
        return
    motors = sorted(m for (c, m) in files if c == "Healthy")
    tests, trains = [], []
    for held in ("M1", "M2"):  # the motors with both healthy and propeller recordings
        tr_map = {f"Healthy/{m}": files[("Healthy", m)] for m in motors if m != held}
        tr_map.update({f"Propeller/{m}": files[("Propeller", m)] for m in ("M1", "M2") if m != held})
        tr_map["Bearing/M4"] = files[("Bearing", "M4")]
        base = WORK / f"bldc-holdout-{held}"
        tree = link_tree(base / "train", tr_map)
        test = link_tree(base / "test", {f"Healthy/{held}": files[("Healthy", held)],
                                         f"Propeller/{held}": files[("Propeller", held)]})
        trains.append(tree)
        tests.append(test)
    # one row, two folds: each fold fits its own models
    figs: dict[str, list[float]] = {"ours": [], "maha": [], "ae": []}
    for held, tree, test in zip(("M1", "M2"), trains, tests):
        n = len(ROWS)
        tf, tl = tree_files(tree)
        row(f"bldc_fault_unseen_motor_{held}", "", tf, tl, tree, [tree_files(test)], "Healthy")
        for k in figs:
            figs[k].append(ROWS[n][2][k])
        del ROWS[n]
    ROWS.append(("bldc_fault_unseen_motor", "BLDC Healthy / Propeller / Bearing: hold out motor M1 or M2 (2 folds; "
                 "Bearing is M4 only, so it trains and is never tested); test that motor's healthy and propeller "
                 "recordings at all its speeds", {k: float(np.mean(v)) for k, v in figs.items()}))
    f = ROWS[-1][2]
    print(f"== bldc_fault_unseen_motor: ours {f['ours']:.3f}, maha {f['maha']:.3f}, ae {f['ae']:.3f}", flush=True)


def bench_synthetic() -> None:
    tr = synth(SYN / "train-labelled-48", "--seed", "2", "--first-machine-id", "100", "--machines", "48",
               "--clips-per-class", "2", "--snr-db", "-6", "--snr-db", "0", "--snr-db", "6")
    tf, tl = tree_files(tr)
    tests = {
        "0dB": synth(SYN / "test-0dB", "--seed", "1", "--first-machine-id", "40", "--machines", "6",
                     "--clips-per-class", "6", "--snr-db", "0"),
        "-6dB": synth(SYN / "test--6dB", "--seed", "1", "--first-machine-id", "40", "--machines", "6",
                      "--clips-per-class", "6", "--snr-db", "-6"),
        "shift": synth(SYN / "test-shift", "--seed", "1", "--first-machine-id", "40", "--machines", "6",
                       "--clips-per-class", "6", "--snr-db", "0", "--speed-jitter", "0.1", "--load-db-range", "-4",
                       "4", "--gain-db-range", "-12", "12"),
    }
    what = {"0dB": "synthetic, 4 classes, 6 unseen machines at 0 dB (trained on 48 machines of another fleet, "
                   "-6/0/+6 dB)",
            "-6dB": "as above, the unseen machines at -6 dB",
            "shift": "as above at 0 dB, each clip at its own speed (+-10 %), load (+-4 dB) and gain (+-12 dB)"}
    for key, te in tests.items():
        row(f"synthetic_fault_unseen_machines_{key}" if key != "shift" else "synthetic_fault_unseen_speed_load_gain",
            what[key], tf, tl, tr, [tree_files(te)], "normal")


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

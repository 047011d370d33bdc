"""Full trainings and evaluations: synthetic machines at -6/0/+6 dB with unseen machine IDs, and the
real sets in ../shared/data (BLDC motors split by motor, MIMII fan, the DCASE slice as normal-only);
``quantize`` compares int8 with fp32 on held-out data for each kind (synthetic and BLDC).

Every figure comes from ``evaluate`` (the exported ONNX model through onnxruntime) on files the
model never trained on. Data trees are built in build/bench/ (synthetic audio, and symlinks to the
real recordings: nothing is copied into the repository). Prints ``name: value`` lines at the end.

    python bench/train.py [synthetic] [bldc] [mimii] [dcase] [quantize]    (default: all)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from common import REPO, bldc_files, link_tree, normal_and_abnormal, sh, synth

WORK = REPO / "build" / "bench"
FIGURES: dict[str, float | str] = {}


def train(data: Path, kind: str, out: Path, *extra: str) -> float:
    """Train with the CLI; returns wall seconds."""
    t0 = time.perf_counter()
    sh("train", "--data", str(data), "--kind", kind, "--out", str(out), "--seed", "1", *extra)
    return time.perf_counter() - t0


def evaluate(model: Path, data: Path, name: str, *extra: str) -> dict:
    """Evaluate with the CLI; record window and file figures under ``name``."""
    rep = model.with_name(f"{model.stem}-{name}-report")
    sh("evaluate", "--model", str(model), "--data", str(data), "--out", str(rep), *extra)
    m = json.loads((rep / "metrics.json").read_text())
    for level in ("window", "file"):
        for key in ("auc", "pauc", "accuracy"):
            v = m[level][key]
            if v is not None:
                FIGURES[f"{name}_{level}_{key}"] = round(v, 4)
    return m


def bench_synthetic() -> None:
    """Unseen machine IDs: anomaly trained on normal clips of seed-1 IDs 100-163 (the ``make model``
    recipe), classifier on 48 machines of another fleet (seed 2, IDs 100-147) x 2 clips per label;
    both tested on seed-1 IDs 40-45."""
    syn = WORK / "synthetic"
    tr_a = synth(syn / "train-normal-64", "--seed", "1", "--labels", "normal", "--first-machine-id", "100",
                 "--machines", "64", "--clips-per-class", "4", "--snr-db", "-6", "--snr-db", "0", "--snr-db", "6")
    tr_c = synth(syn / "train-labelled-48", "--seed", "2", "--first-machine-id", "100", "--machines", "48",
                 "--clips-per-class", "2", "--snr-db", "-6", "--snr-db", "0", "--snr-db", "6")
    tests = {snr: synth(syn / f"test-{snr}dB", "--seed", "1", "--first-machine-id", "40", "--machines", "6",
                        "--clips-per-class", "6", "--snr-db", str(snr)) for snr in (-6, 0, 6)}
    m_a = syn / "anomaly.onnx"
    # the recipe's pin (Makefile `model`): the shipped model's method, fitted on the training machines
    FIGURES["synthetic_anomaly_train_seconds"] = round(train(tr_a, "anomaly", m_a, "--method", "gmm4:level",
                                                             "--no-refit"), 1)
    m_c = syn / "classifier.onnx"
    FIGURES["synthetic_classifier_train_seconds"] = round(train(tr_c, "classifier", m_c), 1)
    m_k = syn / "classical.onnx"
    FIGURES["synthetic_classical_train_seconds"] = round(train(tr_c, "classical", m_k), 1)
    for snr, te in tests.items():
        evaluate(m_a, te, f"synthetic_anomaly_{snr}dB")
        evaluate(m_c, te, f"synthetic_classifier_{snr}dB")
        evaluate(m_k, te, f"synthetic_classical_{snr}dB")
    for name, m in (("anomaly", m_a), ("classifier", m_c), ("classical", m_k)):
        FIGURES[f"synthetic_{name}_onnx_bytes"] = m.stat().st_size
        FIGURES[f"synthetic_{name}_ms_per_window"] = ms_per_window(m)


def ms_per_window(model: Path) -> float:
    """Single-window latency with onnxruntime on one thread."""
    from ml.inference import OnnxModel

    m = OnnxModel(model, threads=1)
    x = np.random.default_rng(0).normal(-40, 10, (1, m.card.features.n_mels, m.card.window_frames)).astype(np.float32)
    for _ in range(20):
        m.run(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        m.run(x)
        n += 1
    return round((time.perf_counter() - t0) / n * 1000, 4)


def bench_bldc() -> None:
    """BLDC motors, leave one healthy motor out: train normal = Healthy of the other motors; test =
    the held-out motor's Healthy and Propeller files + Bearing (M4, never in training)."""
    found = bldc_files()
    if found is None:
        return
    files = found
    motors = sorted(m for c, m in files if c == "Healthy")
    aucs, accs = [], []
    for held in motors:
        base = WORK / "bldc" / f"holdout-{held}"
        tr = link_tree(base / "train", {f"normal/{m}": files[("Healthy", m)] for m in motors if m != held})
        te_map = {f"normal/{held}": files[("Healthy", held)], "bearing/M4": files[("Bearing", "M4")]}
        if ("Propeller", held) in files:
            te_map[f"propeller/{held}"] = files[("Propeller", held)]
        te = link_tree(base / "test", te_map)
        model = base / "anomaly.onnx"
        train(tr, "anomaly", model)  # the product's default, --method auto
        m = evaluate(model, te, f"bldc_anomaly_holdout_{held}")
        aucs.append(m["file"]["auc"])
        accs.append(m["file"]["accuracy"])
    FIGURES["bldc_anomaly_file_auc_mean"] = round(float(np.mean(aucs)), 4)
    FIGURES["bldc_anomaly_file_accuracy_mean"] = round(float(np.mean(accs)), 4)
    # classifiers: healthy vs propeller, leave one motor out (M1, M2 have both); bearing (M4) trains only.
    # The docs' protocol: the default split of the training tree (validation M3), test on the held-out motor.
    for kind in ("classifier", "classical"):
        accs = []
        for held in ("M1", "M2"):
            base = WORK / "bldc" / f"clf-holdout-{held}"
            tr_map = {f"Healthy/{m}": files[("Healthy", m)] for m in motors if m != held}
            tr_map.update({f"Propeller/{m}": files[("Propeller", m)] for m in ("M1", "M2") if m != held})
            tr_map["Bearing/M4"] = files[("Bearing", "M4")]
            tr = link_tree(base / "train", tr_map)
            te = link_tree(base / "test", {f"Healthy/{held}": files[("Healthy", held)],
                                           f"Propeller/{held}": files[("Propeller", held)]})
            model = base / f"{kind}.onnx"
            train(tr, kind, model, "--normal-label", "Healthy")
            m = evaluate(model, te, f"bldc_{kind}_holdout_{held}")
            accs.append(m["file"]["accuracy"])
            FIGURES[f"bldc_{kind}_holdout_{held}_window_unknown"] = round(m["window"].get("unknown", 0.0), 4)
        FIGURES[f"bldc_{kind}_file_accuracy_mean"] = round(float(np.mean(accs)), 4)


def bench_quantize() -> None:
    """int8 against fp32 on held-out data (``quantize --eval-data``): the synthetic models of
    :func:`bench_synthetic` with the 0 dB test set, and BLDC anomaly models (one per held-out motor)
    with that motor's test tree."""
    syn = WORK / "synthetic"
    runs = [(syn / f"{k}.onnx", syn / ("train-normal-64" if k == "anomaly" else "train-labelled-48"),
             syn / "test-0dB", f"synthetic_{k}") for k in ("anomaly", "classifier", "classical")]
    runs += [(WORK / "bldc" / f"holdout-{m}" / "anomaly.onnx", WORK / "bldc" / f"holdout-{m}" / "train",
              WORK / "bldc" / f"holdout-{m}" / "test", f"bldc_anomaly_holdout_{m}") for m in ("M1", "M2", "M3")]
    runs += [(WORK / "bldc" / f"clf-holdout-{m}" / f"{k}.onnx", WORK / "bldc" / f"clf-holdout-{m}" / "train",
              WORK / "bldc" / f"clf-holdout-{m}" / "test", f"bldc_{k}_holdout_{m}")
             for k in ("classifier", "classical") for m in ("M1", "M2")]
    from ml.quantize import quantize

    for model, data, test, name in runs:
        if not model.is_file():
            print(f"skip quantize {name}: {model} not built (run the synthetic and bldc parts first)")
            continue
        rep = quantize(model, data, model.with_name(model.stem + "-q.onnx"), eval_data=test)
        print(f"$ quantize {name}\n{rep.table()}", flush=True)
        for k in ("size_bytes", "ms_per_window", "auc", "accuracy"):
            FIGURES[f"quantize_{name}_fp32_{k}"] = rep.fp32[k]
            FIGURES[f"quantize_{name}_int8_{k}"] = rep.int8[k]
        FIGURES[f"quantize_{name}_agreement"] = rep.agreement if rep.agreement is not None else "-"
        FIGURES[f"quantize_{name}_kept"] = rep.kept + (" (" + "; ".join(rep.failed) + ")" if rep.failed else "")


def bench_mimii() -> None:
    """MIMII fan: 2-fold over the 10 normal clips (train on 5); test on the other 5 + 10 abnormal."""
    found = normal_and_abnormal("mimii-demo-clips", "fan")
    if found is None:
        return
    normal, abnormal = found
    aucs = []
    for fold in (0, 1):
        tr_files = normal[fold::2]
        te_files = normal[1 - fold :: 2]
        base = WORK / "mimii" / f"fold{fold}"
        tr = link_tree(base / "train", {"normal/fan": tr_files})
        te = link_tree(base / "test", {"normal/fan": te_files, "abnormal/fan": abnormal})
        model = base / "anomaly.onnx"
        train(tr, "anomaly", model)  # the product's default, --method auto
        m = evaluate(model, te, f"mimii_fan_anomaly_fold{fold}")
        aucs.append(m["file"]["auc"])
    FIGURES["mimii_fan_anomaly_file_auc_mean"] = round(float(np.mean(aucs)), 4)


def bench_dcase() -> None:
    """DCASE 2020 slice (one machine ID): train on 60 normal clips; test on 15 others + the 1 abnormal."""
    found = normal_and_abnormal("dcase2020-task2-dev-slice", "id_00")
    if found is None:
        return
    normal, abnormal = found
    base = WORK / "dcase"
    tr = link_tree(base / "train", {"normal/id_00": normal[:60]})
    te = link_tree(base / "test", {"normal/id_00": normal[60:], "abnormal/id_00": abnormal})
    model = base / "anomaly.onnx"
    FIGURES["dcase_anomaly_train_seconds"] = round(train(tr, "anomaly", model), 1)
    m = evaluate(model, te, "dcase_anomaly")
    conf = m["file"]["confusion"]
    FIGURES["dcase_normal_files_flagged"] = f"{conf[0][1]}/{sum(conf[0])}"
    FIGURES["dcase_abnormal_files_flagged"] = f"{conf[1][1]}/{sum(conf[1])}"


def main(argv: list[str]) -> int:
    parts = {"synthetic": bench_synthetic, "bldc": bench_bldc, "mimii": bench_mimii, "dcase": bench_dcase,
             "quantize": bench_quantize}
    chosen = argv or list(parts)
    WORK.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        parts[name]()
    print()
    for k, v in FIGURES.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

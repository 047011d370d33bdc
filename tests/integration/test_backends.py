"""Inference backends: OpenVINO and onnxruntime agree, auto picks and says, bad models are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from audioclassifier.backends import ModelError, load_model, openvino_core
from audioclassifier.config import DEFAULT_MODEL
from audioclassifier.features import logmel
from harness.audio import tone
from harness.models import make_model
from harness.module import run_module
from harness.paths import REPO


def machine_windows(card, n: int = 6) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Log-mel windows of synthetic machine sound (healthy and with a bearing fault)."""
    from ml.synth import machine_params, synth_clip

    out = []
    for i in range(n):
        fault = "normal" if i % 2 == 0 else "bearing"
        y = synth_clip(machine=machine_params(i, seed=7), fault=fault, severity=0.8, seconds=card.window_seconds,
                       sample_rate=card.features.sample_rate, snr_db=0.0, rng=np.random.default_rng(i))
        out.append(logmel(y[: card.window_samples], params=card.features))
    return np.stack(out)


def agree(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ov = load_model(path, backend="openvino", device="CPU")
    ort = load_model(path, backend="onnxruntime")
    assert (ov.backend.name, ort.backend.name) == ("openvino", "onnxruntime")
    assert ov.card == ort.card  # the card read through each runtime's own metadata
    x = machine_windows(ov.card)
    a, _ = ov.score_batch(x)
    b, _ = ort.score_batch(x)
    singles = [ov.score(w)[0] for w in x]
    np.testing.assert_allclose(singles, a, atol=1e-5)
    return np.array(a), np.array(b)


def test_backends_agree_on_the_default_model() -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"{DEFAULT_MODEL} not built yet (make model)")
    a, b = agree(DEFAULT_MODEL)
    assert np.ptp(a) > 0  # different windows, different scores: the comparison means something
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("kind", ["anomaly", "classifier"])
def test_backends_agree_on_test_models(tmp_path: Path, kind: str) -> None:
    a, b = agree(make_model(tmp_path / "m.onnx", kind=kind))
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_classifier_score_is_one_minus_p_normal_and_label_is_argmax(tmp_path: Path) -> None:
    m = load_model(make_model(tmp_path / "c.onnx", kind="classifier"), backend="onnxruntime")
    for dbfs in (-70.0, -10.0):
        w = logmel(tone(m.card.window_seconds, dbfs=dbfs, noise_dbfs=dbfs - 10))
        score, label = m.score(w)
        p_loud = 1 / (1 + np.exp(-(w.mean() + 40) / 5))
        assert score == pytest.approx(p_loud, abs=1e-5)
        assert label == ("loud" if p_loud > 0.5 else "normal")


def test_openvino_compiles_through_a_bounded_model_cache_and_runs_without_one(tmp_path: Path, caplog) -> None:
    """The state folder's model cache: the first load writes the compiled model, the next loads it
    (same scores); the cache is pruned to its budget; a folder that cannot be made is no reason not to run."""
    import audioclassifier.backends as backends

    cache = tmp_path / "model-cache"
    first = load_model(DEFAULT_MODEL, backend="openvino", device="CPU", cache_dir=cache)
    blobs = sorted(cache.iterdir())
    assert first.backend.cache_dir == cache and blobs and all(b.stat().st_size > 0 for b in blobs)
    x = machine_windows(first.card, n=3)
    written = {b: b.stat().st_mtime_ns for b in blobs}
    again = load_model(DEFAULT_MODEL, backend="openvino", device="CPU", cache_dir=cache)
    assert {b: b.stat().st_mtime_ns for b in cache.iterdir()} == written  # read from the cache, not compiled again
    np.testing.assert_array_equal(again.score_batch(x)[0], first.score_batch(x)[0])
    stale = cache / "stale.blob"
    stale.write_bytes(b"\0" * 4096)
    os.utime(stale, (1, 1))  # the oldest file
    budget = backends.MODEL_CACHE_BYTES
    try:
        backends.MODEL_CACHE_BYTES = sum(b.stat().st_size for b in blobs) + 100
        load_model(DEFAULT_MODEL, backend="openvino", device="CPU", cache_dir=cache)
    finally:
        backends.MODEL_CACHE_BYTES = budget
    assert not stale.exists() and all(b.exists() for b in blobs)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    plain = load_model(DEFAULT_MODEL, backend="openvino", device="CPU", cache_dir=blocked / "cache")
    assert plain.backend.cache_dir is None and "model cache" in caplog.text
    np.testing.assert_array_equal(plain.score_batch(x)[0], first.score_batch(x)[0])
    ort = load_model(DEFAULT_MODEL, backend="onnxruntime", cache_dir=tmp_path / "unused")
    assert ort.backend.name == "onnxruntime" and not (tmp_path / "unused").exists()


def test_sigterm_still_stops_after_a_model_swap_on_another_thread(tmp_path: Path) -> None:
    """OpenVINO's CPU plugin points the alternate signal stack of the thread that creates it at
    memory it frees with the plugin. A model loaded on another thread (a model update) with the
    first one dropped made the next SIGTERM a segfault, every time, before the process kept one
    Core. In a process of its own, as the module runs, with the module's stop signal."""
    code = textwrap.dedent(f"""
        import gc, os, signal, threading
        from audioclassifier.backends import load_model
        from audioclassifier.stopsignal import stop_on_signals
        models = [load_model({str(DEFAULT_MODEL)!r}, backend="openvino", device="CPU",
                             cache_dir=__import__("pathlib").Path({str(tmp_path / "cache")!r}))]
        def update():
            models[0] = load_model({str(DEFAULT_MODEL)!r}, backend="openvino", device="CPU")
            gc.collect()
        t = threading.Thread(target=update)
        t.start()
        t.join()
        stopped = threading.Event()
        with stop_on_signals(lambda name: stopped.set()):
            os.kill(os.getpid(), signal.SIGTERM)
            print("stopped" if stopped.wait(10) else "not stopped", models[0].backend.cache_dir)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    assert r.stdout.split() == ["stopped", "None"]  # and the second model compiled without the first's cache


def test_auto_takes_onnxruntime_on_a_cpu_only_machine_without_importing_openvino(tmp_path: Path) -> None:
    """This machine has no Intel GPU or NPU (the test checks that first, with the same probe)."""
    path = make_model(tmp_path / "m.onnx")
    code = ("import sys, json; from audioclassifier.backends import load_model; "
            "from audioclassifier.devices import find_accelerators; "
            f"m = load_model({str(path)!r}, backend='auto'); "
            "print(json.dumps([m.backend.name, m.note, 'openvino' in sys.modules, bool(find_accelerators())]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    name, note, imported_openvino, accelerators = json.loads(out.stdout)
    if accelerators:
        pytest.skip("this machine has an Intel GPU or NPU: auto takes OpenVINO here")
    assert name == "onnxruntime" and "CPU only" in note and not imported_openvino


def test_auto_falls_back_to_onnxruntime_when_openvino_cannot_compile(tmp_path: Path) -> None:
    m = load_model(make_model(tmp_path / "m.onnx"), backend="auto", device="NPU")  # no NPU here
    assert m.backend.name == "onnxruntime" and "NPU" in m.note and "onnxruntime" in m.note
    assert "cannot take this model" in m.note
    with pytest.raises(ModelError, match="compile"):
        load_model(tmp_path / "m.onnx", backend="openvino", device="GPU")


def test_each_process_loads_one_runtime(tmp_path: Path) -> None:
    path = make_model(tmp_path / "m.onnx")
    code = ("import sys, json; from audioclassifier.backends import load_model; "
            f"m = load_model({str(path)!r}, backend=sys.argv[1]); "
            "print(json.dumps([m.backend.name, 'openvino' in sys.modules, 'onnxruntime' in sys.modules]))")
    for backend, expected in (("openvino", ["openvino", True, False]), ("onnxruntime", ["onnxruntime", False, True])):
        out = subprocess.run([sys.executable, "-c", code, backend], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == expected


@pytest.mark.parametrize("backend", ["auto", "openvino", "onnxruntime"])
def test_malformed_missing_and_cardless_models_are_clear_errors(tmp_path: Path, backend: str) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        load_model(tmp_path / "nope.onnx", backend=backend)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="empty file"):
        load_model(tmp_path / "empty.onnx", backend=backend)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage that is not a protobuf" * 10)
    with pytest.raises(ModelError, match="junk.onnx") as err:
        load_model(junk, backend=backend)
    assert "ONNX" in str(err.value) or "OpenVINO" in str(err.value)
    good = make_model(tmp_path / "good.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match="truncated.onnx"):
        load_model(truncated, backend=backend)

    import onnx

    bare = onnx.load(str(good))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelError, match="no Auscult model card"):
        load_model(tmp_path / "bare.onnx", backend=backend)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_output_that_contradicts_the_card_is_refused(tmp_path: Path, backend: str) -> None:
    path = make_model(tmp_path / "m.onnx", kind="classifier", labels=("normal", "a", "b"), mismatch=True)
    with pytest.raises(ModelError, match="output 'score' has shape"):
        load_model(path, backend=backend)
    wrong_window = make_model(tmp_path / "w.onnx", window_seconds=2.0)
    import onnx

    from audioclassifier.card import ModelCard
    from ml.modelcard import embed_card

    m = onnx.load(str(wrong_window))
    card = ModelCard.from_json(m.metadata_props[0].value)
    embed_card(m, ModelCard(**{**card.__dict__, "features": card.features.__class__(n_mels=64)}))
    onnx.save(m, str(tmp_path / "w64.onnx"))
    with pytest.raises(ModelError, match="does not score a \\(64, 61\\) log-mel window"):
        load_model(tmp_path / "w64.onnx", backend=backend)


# --- precision: the same scores on every CPU -------------------------------------------------------

@pytest.mark.parametrize("device", ["CPU", "AUTO"])
def test_openvino_computes_in_f32_by_default_on_any_cpu(tmp_path: Path, device: str) -> None:
    """On Intel CPUs with AMX OpenVINO's own default is bf16: the module must not inherit it."""
    m = load_model(make_model(tmp_path / "m.onnx"), backend="openvino", device=device)
    assert m.backend.precision == "f32"
    assert m.summary()["precision"] == "f32"
    assert load_model(tmp_path / "m.onnx", backend="onnxruntime").backend.precision == "f32"


def test_lower_precision_is_an_explicit_opt_in_and_says_what_it_got(tmp_path: Path) -> None:
    path = make_model(tmp_path / "m.onnx")
    capable = "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    m = load_model(path, backend="openvino", device="CPU", precision="bf16")
    assert m.backend.precision == ("bf16" if capable else "f32")  # a CPU without bf16 falls back, and says so
    with pytest.raises(ValueError, match="precision must be one of"):
        load_model(path, backend="openvino", precision="int4")


def test_no_inference_library_phones_home(tmp_path: Path) -> None:
    """OpenVINO's Python package sends a usage event at import unless its telemetry package is
    absent or opted out; the module must never send anything but its own messages."""
    home = tmp_path / "home"
    home.mkdir()
    path = make_model(tmp_path / "m.onnx")
    code = ("import sys, json, logging; logging.basicConfig(level=logging.DEBUG)\n"
            "from audioclassifier.backends import load_model\n"
            f"load_model({str(path)!r}, backend='openvino'); load_model({str(path)!r}, backend='onnxruntime')\n"
            "print(json.dumps(sys.modules.get('openvino_telemetry') is None))")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**env, "HOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) is True  # the telemetry package was never imported
    assert list(home.iterdir()) == []  # no client id, no consent or stats file (~/intel/...)
    assert "telemetry" not in out.stderr.lower()


@pytest.mark.slow
def test_module_scores_agree_across_backends_and_with_ml_predict(tmp_path: Path) -> None:
    """The demo recording through the real module with each backend, and through ``ml predict``."""
    sys.path.insert(0, str(REPO / "demo"))
    try:
        from run_demo import synth_recording
    finally:
        sys.path.remove(str(REPO / "demo"))
    recording = synth_recording(tmp_path / "machine.wav")
    scores = {}
    for backend in ("openvino", "onnxruntime"):
        log = tmp_path / f"{backend}.jsonl"
        res = run_module("--source", str(recording), "--speed", "max", "--backend", backend,
                         "--local-out", str(tmp_path / backend), "--window-log", str(log), "--log-level", "WARNING",
                         timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        scores[backend] = np.array([r["score"] for r in rows], dtype=float)
    a, b = scores["openvino"], scores["onnxruntime"]
    assert a.shape == b.shape and len(a) >= 170 and np.isfinite(a).all()
    assert np.ptp(a) > 1.0  # healthy and faulty windows: the comparison means something
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)

    res = subprocess.run([sys.executable, "-m", "ml", "predict", "--model", str(DEFAULT_MODEL), "--input",
                          str(recording), "--hop-seconds", "1", "--per-window"], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rec = json.loads(res.stdout)
    # The same windows (column-aligned starts on both sides), plus at most one aligned to the file's end.
    offline = np.array(rec["window_scores"])
    assert len(b) <= len(offline) <= len(b) + 1
    np.testing.assert_allclose(offline[: len(b)], b, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_module_runs_a_classical_model_as_trained(tmp_path: Path) -> None:
    """``ml train --kind classical`` (MFCC + grid-searched SVM/logistic regression, all in the graph):
    the real module scores it with each backend as ``ml predict`` does, with no edit of the model."""
    import soundfile as sf

    from harness.trees import PARAMS, make_tree
    from ml import synth

    tree = make_tree(tmp_path / "train", labels={"normal": 2, "bearing": 2}, machines=(0, 1, 2), seconds=3.0)
    model = tmp_path / "classical.onnx"
    res = subprocess.run([sys.executable, "-m", "ml", "train", "--data", str(tree), "--kind", "classical", "--out",
                          str(model), "--seed", "1", "--n-mfcc", "16", "--sample-rate", "16000", "--n-fft", "512",
                          "--hop-length", "256", "--n-mels", str(PARAMS.n_mels), "--window-seconds", "1"],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    m = synth.machine_params(0, seed=3)  # a trained machine, new clips: the point is the agreement
    y = np.concatenate([synth.synth_clip(machine=m, fault=f, severity=0.0 if f == "normal" else 1.0, seconds=4.0,
                                         sample_rate=16000, snr_db=6.0, rng=np.random.default_rng([99, i]))
                        for i, f in enumerate(("normal", "bearing"))])
    wav = tmp_path / "machine.wav"
    sf.write(wav, y, 16000, subtype="PCM_16")
    scores = {}
    for backend in ("openvino", "onnxruntime"):
        log = tmp_path / f"{backend}.jsonl"
        res = run_module("--source", str(wav), "--speed", "max", "--backend", backend, "--model", str(model),
                         "--local-out", str(tmp_path / backend), "--window-log", str(log), "--log-level", "WARNING",
                         timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        scores[backend] = np.array([json.loads(line)["score"] for line in log.read_text().splitlines()], dtype=float)
    a, b = scores["openvino"], scores["onnxruntime"]
    assert a.shape == b.shape and len(a) >= 6
    assert np.ptp(b) > 0.02 and (b >= 0).all() and (b <= 1).all()  # 1 - p(normal), not the same for every window
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    res = subprocess.run([sys.executable, "-m", "ml", "predict", "--model", str(model), "--input", str(wav),
                          "--hop-seconds", "1", "--per-window"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    offline = np.array(json.loads(res.stdout)["window_scores"])
    assert len(b) <= len(offline) <= len(b) + 1
    np.testing.assert_allclose(offline[: len(b)], b, rtol=0, atol=1e-4)


def test_the_module_runs_openvino_when_its_model_cache_cannot_be_made(tmp_path: Path) -> None:
    """Through the real module process: the state folder's ``model-cache`` is a file, so OpenVINO
    compiles without a cache (a warning), and the replay is analysed as usual."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model-cache").write_text("in the way")
    wav = tmp_path / "tone.wav"
    import soundfile as sf

    sf.write(wav, tone(6.0, freq=1000.0), 16000)
    r = run_module("--source", str(wav), "--speed", "max", "--backend", "openvino", "--local-out", str(out), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "model cache" in r.stderr and "not used" in r.stderr
    assert "windows" in r.stderr and (out / "model-cache").read_text() == "in the way"

"""Benchmark the whole edge module on an hour of synthetic audio, against a naive edge loop.

* module: ``python -m audioclassifier --source HOUR.wav --speed max`` (1 s hop, default model,
  onnxruntime unless ``--backend``) in a subprocess; its CPU time comes from ``os.wait4``, its peak
  RSS from the module's final log line (``VmHWM``: wait4's ``ru_maxrss`` would also count this
  script's memory, copied into the child at fork). Cold start (process start to first score) comes from the module's own log line,
  measured against the process start time the kernel records, median of ``--cold-runs`` runs.
* baseline, in the same run: a subprocess that per hop reads the window's samples, recomputes
  its log-mel with librosa and scores it with onnxruntime (one thread), as a naive loop would.

The hour is six 10-minute recordings from :mod:`ml.synth` (faults developing in some), cached in
``build/bench-audio/``. Prints ``name: value`` lines ending with ``cpu_seconds_per_audio_hour``
(goal <= 10), ``module_vs_librosa_ratio`` (goal <= 0.25), ``cold_start_seconds`` (goal <= 0.6)
and ``peak_rss_mb`` (goal <= 120 with onnxruntime). Usage: ``python bench/module.py [--minutes 60]``.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEGMENT_SECONDS = 600.0
#: (machine id, fault) of each 10-minute segment; faults start halfway through.
SEGMENTS = [(0, "normal"), (1, "bearing"), (2, "normal"), (3, "imbalance"), (4, "normal"), (5, "clogging")]


def hour_audio(minutes: float, sample_rate: int = 16000) -> Path:
    """Synthesize (once) ``minutes`` of machine sound into build/bench-audio/ and return the WAV."""
    import soundfile as sf

    from ml.synth import machine_params, synth_recording

    out = REPO / "build" / "bench-audio" / f"machines-{minutes:g}min-{sample_rate}.wav"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    left = minutes * 60.0
    print(f"synthesizing {minutes:g} min of machine sound to {out} ...", flush=True)
    with sf.SoundFile(tmp, "w", samplerate=sample_rate, channels=1, subtype="PCM_16", format="WAV") as fh:
        i = 0
        while left > 0:
            machine, fault = SEGMENTS[i % len(SEGMENTS)]
            seconds = min(SEGMENT_SECONDS, left)
            y = synth_recording(machine=machine_params(machine, seed=1), fault=fault, fault_start=seconds / 2,
                                seconds=seconds, sample_rate=sample_rate, snr_db=0.0, seed=100 + i)
            fh.write(y)
            left -= seconds
            i += 1
    os.replace(tmp, out)
    return out


def run_measured(cmd: list[str], *, env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """Run ``cmd``; return (CPU seconds, peak RSS MiB, wall seconds, stderr) from wait4."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{text[-3000:]}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, wall, text


def module_cmd(source: Path, model: Path, backend: str, out: Path) -> list[str]:
    """The module as its container runs it: the package on a plain path (``PYTHONPATH=/app`` in the
    image) with the installed site-packages, not through the development venv's editable-install
    import hook (a setuptools finder consulted on every import: ~0.06-0.1 s more at start)."""
    site_dirs = [p for p in sys.path if p.endswith("site-packages")]
    boot = (f"import sys, runpy; sys.path[:0] = {[str(REPO / 'modules' / 'audioclassifier'), *site_dirs]!r}; "
            "runpy.run_module('audioclassifier', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-S", "-c", boot, "--source", str(source), "--model", str(model), "--speed", "max",
            "--backend", backend, "--hop-seconds", "1", "--local-out", str(out), "--log-level", "INFO"]


def cold_start(source: Path, model: Path, backend: str, runs: int) -> list[float]:
    """Process start → first score, from the module's log line (kernel start time based)."""
    found = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            _, _, _, err = run_measured(module_cmd(source, model, backend, Path(tmp)))
        m = re.search(r"first score ([0-9.]+) s after process start", err)
        if not m:
            raise SystemExit(f"no 'first score' line in the module's log:\n{err[-2000:]}")
        found.append(float(m.group(1)))
    return found


def baseline_worker(source: str, model: str, hop_seconds: float) -> None:
    """The naive loop (run as a subprocess): per hop, librosa on the whole window, then onnxruntime."""
    import librosa
    import numpy as np
    import onnxruntime as ort
    import soundfile as sf

    from audioclassifier.card import card_from_metadata

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    card = card_from_metadata(sess.get_modelmeta().custom_metadata_map)
    p = card.features
    win = card.window_samples
    hop = int(round(hop_seconds * p.sample_rate / p.hop_length)) * p.hop_length
    buf = np.zeros(0, dtype=np.float32)
    n = 0
    with sf.SoundFile(source) as fh:
        while True:
            block = fh.read(hop, dtype="float32")
            if block.size == 0:
                break
            buf = np.concatenate([buf, block])[-win:]
            if buf.size < win:
                continue
            s = librosa.feature.melspectrogram(y=buf, sr=p.sample_rate, n_fft=p.n_fft, hop_length=p.hop_length,
                                               n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax_hz, power=p.power,
                                               center=False)
            x = librosa.power_to_db(s, ref=1.0, amin=1e-10, top_db=None).astype(np.float32)
            sess.run(None, {"logmel": x[None]})
            n += 1
    print(json.dumps({"windows": n}), file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="audio to replay (default 60)")
    ap.add_argument("--model", type=Path, default=REPO / "modules/audioclassifier/models/model.onnx")
    ap.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "openvino", "auto"))
    ap.add_argument("--cold-runs", type=int, default=5, help="short runs for the cold start median (default 5)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the librosa baseline")
    ap.add_argument("--baseline-worker", nargs=3, metavar=("SOURCE", "MODEL", "HOP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_worker:
        baseline_worker(args.baseline_worker[0], args.baseline_worker[1], float(args.baseline_worker[2]))
        return
    if not args.model.is_file():
        raise SystemExit(f"{args.model} not found: run `make model` (or pass --model)")

    source = hour_audio(args.minutes)
    audio_hours = args.minutes / 60.0
    with tempfile.TemporaryDirectory() as tmp:
        cpu, rss, wall, err = run_measured(module_cmd(source, args.model, args.backend, Path(tmp)))
        done = re.search(r"done: (\d+) windows, (\d+) scored, (\d+) alerts.*peak RSS ([0-9.]+) MB", err)
        alerts = len(Path(tmp, "alerts.jsonl").read_text().splitlines())
    backend_line = re.search(r"; (\w+) on (\S+)", err)
    print(f"audio: {source.name} ({args.minutes:g} min), model: {args.model.name}, "
          f"backend: {backend_line.group(1) if backend_line else args.backend}")
    if done:
        print(f"module_windows: {done.group(1)}")
    print(f"module_alerts: {alerts}")
    print(f"module_wall_seconds: {wall:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        short = Path(tmp) / "short.wav"
        import soundfile as sf

        y, sr = sf.read(source, frames=16000 * 12, dtype="float32")
        sf.write(short, y, sr)
        colds = cold_start(short, args.model, args.backend, args.cold_runs)
    print(f"cold_start_runs: {' '.join(f'{c:.3f}' for c in colds)}")

    ratio_line = None
    if not args.no_baseline:
        bcpu, _, _, _ = run_measured([sys.executable, __file__, "--baseline-worker", str(source),
                                                str(args.model), "1"])
        print(f"baseline_cpu_seconds_per_audio_hour: {bcpu / audio_hours:.2f}")
        ratio_line = f"module_vs_librosa_ratio: {cpu / bcpu:.3f}"

    print(f"cpu_seconds_per_audio_hour: {cpu / audio_hours:.2f}")
    if ratio_line:
        print(ratio_line)
    print(f"cold_start_seconds: {statistics.median(colds):.3f}")
    print(f"peak_rss_mb: {float(done.group(4)) if done else rss:.1f}")


if __name__ == "__main__":
    main()

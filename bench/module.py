"""Benchmark the edge module as it ships, on an hour of synthetic audio, against a naive edge loop.

Every figure is measured for the default (``--backend auto``, what the image runs) and for each
engine forced (onnxruntime, openvino), each in local mode and in hub mode (the real azure-iot-device
SDK against the loopback broker of ``tests/harness``: Mosquitto over TLS on 127.0.0.1:8883 playing
edgeHub, with the hub responder behind it), side by side, in one run:

* CPU seconds per audio hour and peak RSS: ``python -m audioclassifier --source HOUR.wav --speed max``
  (1 s hop, the default model) in a subprocess; CPU from ``os.wait4``, peak RSS from the module's
  final log line (``VmHWM``: wait4's ``ru_maxrss`` would also count this script's memory, copied
  into the child at fork);
* cold start (process start to first score, from the module's own log line, against the start
  time the kernel records): the median of ``--cold-runs`` runs per row, the rows interleaved run by
  run so that any drift in the machine falls on each alike; the hour's CPU likewise, the median of
  ``--hour-runs`` interleaved runs per row (peak RSS: the largest);
* the baseline: a subprocess that per hop reads the window's samples, recomputes its log-mel with
  librosa and scores it with onnxruntime (one thread), as a naive loop would.

The hour is six 10-minute recordings from :mod:`ml.synth` (faults developing in some), cached in
``build/bench-audio/``. Prints ``name: value`` lines; the headline lines (the default backend) end
the output: ``cpu_seconds_per_audio_hour`` (goal <= 2), ``module_vs_librosa_ratio`` (goal <= 0.15),
``cold_start_seconds`` (goal <= 0.5), ``peak_rss_mb_local`` and ``peak_rss_mb_hub`` (goal <= 100).
Usage: ``python bench/module.py [--minutes 60] [--cold-runs 7] [--hour-runs 3] [--backends auto,onnxruntime,openvino]``.
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
from typing import Any  # noqa: E402

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


class Hub:
    """The loopback edgeHub of the tests (Mosquitto over TLS + the hub responder), for hub mode."""

    def __init__(self, workdir: Path) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from harness.broker import Mosquitto, mosquitto_path
        from harness.certs import make_tls
        from harness.fixtures import fake_key
        from harness.responder import HubResponder

        if mosquitto_path() is None:
            raise SystemExit("hub mode needs mosquitto (.ci/run installs it), or pass --modes local")
        self.workdir = workdir
        for sub in ("tls", "mosquitto"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        self.tls = make_tls(workdir / "tls")
        self.broker = Mosquitto(workdir / "mosquitto", self.tls)
        self.broker.start()
        self.responder = HubResponder(self.tls, self.broker.internal_port)
        self.responder.start()
        self._key = fake_key
        self._n = 0

    def env(self) -> dict[str, str]:
        """A fresh module identity (its own MQTT session) and spool for one run."""
        self._n += 1
        device = f"bench-{os.getpid()}-{self._n}"
        return {
            "EdgeHubConnectionString": (f"HostName=benchhub.azure-devices.net;DeviceId={device};"
                                        f"ModuleId=audioclassifier;SharedAccessKey={self._key()};"
                                        "GatewayHostName=localhost"),
            "EdgeModuleCACertificateFile": str(self.tls.ca),
            "AUSCULT_CA_FILE": str(self.tls.ca),
            "AUSCULT_SPOOL_DIR": str(self.workdir / f"spool-{self._n}"),
        }

    def close(self) -> None:
        self.responder.stop()
        self.broker.stop()


def measure(cmd: list[str], env: dict[str, str] | None) -> dict[str, Any]:
    """One run of the module: CPU, peak RSS, cold start, windows and what it chose."""
    cpu, rss, wall, err = run_measured(cmd, env=env)
    done = re.search(r"done: (\d+) windows, (\d+) scored, (\d+) alerts.*peak RSS ([0-9.]+) MB", err)
    first = re.search(r"first score ([0-9.]+) s after process start", err)
    engine = re.search(r"; (\w+) on (\S+)", err)
    if not (done and first):
        raise SystemExit(f"the module's log lacks its 'first score' or 'done' line:\n{err[-3000:]}")
    return {"cpu": cpu, "wall": wall, "rss": float(done.group(4)), "windows": int(done.group(1)),
            "alerts": int(done.group(3)), "cold": float(first.group(1)),
            "engine": engine.group(1) if engine else "?"}


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
    ap.add_argument("--model", type=Path, default=REPO / "modules/audioclassifier/audioclassifier/models/model.onnx")
    ap.add_argument("--backends", default="auto,onnxruntime,openvino",
                    help="comma-separated; the first is the headline (default: auto, what ships)")
    ap.add_argument("--modes", default="local,hub", help="local, hub or both (default)")
    ap.add_argument("--cold-runs", type=int, default=7, help="short runs per row for the cold start median")
    ap.add_argument("--hour-runs", type=int, default=3, help="runs of the hour per row (and of the baseline) for the "
                    "CPU medians (default 3)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the librosa baseline")
    ap.add_argument("--baseline-worker", nargs=3, metavar=("SOURCE", "MODEL", "HOP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_worker:
        baseline_worker(args.baseline_worker[0], args.baseline_worker[1], float(args.baseline_worker[2]))
        return
    if not args.model.is_file():
        raise SystemExit(f"{args.model} not found: run `make model` (or pass --model)")
    backends = [b for b in args.backends.split(",") if b]
    modes = [m for m in args.modes.split(",") if m]
    rows = [(b, m) for b in backends for m in modes]

    # bytecode for the package, as the image ships it (PYTHONDONTWRITEBYTECODE would otherwise make
    # every run compile the module's sources again, which no device does)
    import compileall

    compileall.compile_dir(str(REPO / "modules" / "audioclassifier" / "audioclassifier"), quiet=1)
    source = hour_audio(args.minutes)
    audio_hours = args.minutes / 60.0
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        hub = Hub(tmp / "hub") if "hub" in modes else None
        try:
            def env_for(mode: str) -> dict[str, str] | None:
                return hub.env() if mode == "hub" and hub else None

            short = tmp / "short.wav"
            y, sr = sf.read(source, frames=16000 * 12, dtype="float32")
            sf.write(short, y, sr)
            colds: dict[tuple[str, str], list[float]] = {r: [] for r in rows}
            for _ in range(args.cold_runs):  # interleaved: every row once per round
                for backend, mode in rows:
                    out = tmp / f"cold-{backend}-{mode}"
                    colds[(backend, mode)].append(
                        measure(module_cmd(short, args.model, backend, out), env_for(mode))["cold"])
            # the hour, --hour-runs times, interleaved like the cold starts (the baseline too): the
            # figures are medians, so a drift in the machine's speed falls on every row alike
            runs: dict[tuple[str, str], list[dict[str, Any]]] = {r: [] for r in rows}
            bcpus: list[float] = []
            for i in range(args.hour_runs):
                for backend, mode in rows:
                    out = tmp / f"hour-{backend}-{mode}-{i}"
                    runs[(backend, mode)].append(measure(module_cmd(source, args.model, backend, out), env_for(mode)))
                if not args.no_baseline:
                    bcpus.append(run_measured([sys.executable, __file__, "--baseline-worker", str(source),
                                               str(args.model), "1"])[0])
            hour = {r: {**rs[0], "cpu": statistics.median(x["cpu"] for x in rs), "rss": max(x["rss"] for x in rs),
                        "cpu_runs": [x["cpu"] for x in rs]} for r, rs in runs.items()}
        finally:
            if hub:
                hub.close()

    bcpu = statistics.median(bcpus) if bcpus else None

    print(f"audio: {source.name} ({args.minutes:g} min), model: {args.model.name}, rows: "
          + ", ".join(f"{b}/{m}" for b, m in rows))
    print(f"{'row':<24} {'engine':<12} {'cpu-s/h':>8} {'rss MB':>7} {'cold s':>7} {'windows':>8} {'alerts':>6}")
    for backend, mode in rows:
        r = hour[(backend, mode)]
        print(f"{backend + '/' + mode:<24} {r['engine']:<12} {r['cpu'] / audio_hours:>8.2f} {r['rss']:>7.1f} "
              f"{statistics.median(colds[(backend, mode)]):>7.3f} {r['windows']:>8d} {r['alerts']:>6d}")
    for backend, mode in rows:
        r, key = hour[(backend, mode)], f"{backend}_{mode}"
        print(f"{key}_engine: {r['engine']}")
        print(f"{key}_cpu_seconds_per_audio_hour: {r['cpu'] / audio_hours:.2f}")
        print(f"{key}_cpu_seconds_per_audio_hour_runs: {' '.join(f'{c / audio_hours:.2f}' for c in r['cpu_runs'])}")
        print(f"{key}_peak_rss_mb: {r['rss']:.1f}")
        print(f"{key}_cold_start_seconds: {statistics.median(colds[(backend, mode)]):.3f}")
        print(f"{key}_cold_start_runs: {' '.join(f'{c:.3f}' for c in colds[(backend, mode)])}")
    if bcpu is not None:
        print(f"baseline_cpu_seconds_per_audio_hour: {bcpu / audio_hours:.2f}")
        print(f"baseline_cpu_seconds_per_audio_hour_runs: {' '.join(f'{c / audio_hours:.2f}' for c in bcpus)}")

    # the headline: the first backend (auto: what ships), local mode for CPU and cold start
    head = backends[0]
    main_mode = "local" if "local" in modes else modes[0]
    r = hour[(head, main_mode)]
    print(f"backend: {head} ({r['engine']})")
    print(f"cpu_seconds_per_audio_hour: {r['cpu'] / audio_hours:.2f}")
    if bcpu is not None:
        print(f"module_vs_librosa_ratio: {r['cpu'] / bcpu:.3f}")
    print(f"cold_start_seconds: {statistics.median(colds[(head, main_mode)]):.3f}")
    for mode in modes:
        print(f"peak_rss_mb_{mode}: {hour[(head, mode)]['rss']:.1f}")


if __name__ == "__main__":
    main()

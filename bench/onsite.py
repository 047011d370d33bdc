"""On-site learning through the real module (``python -m audioclassifier``) with the DEFAULT model.

    python bench/onsite.py [dcase] [bldc] [day] [synthetic]   (default: all; about 20 minutes on 2 cores)

Prints ``name: value`` lines. Real data from ``../shared/data`` (read-only: folders of symbolic
links under a temporary directory are replayed, nothing is copied into the repository).

* DCASE 2020 task 2 dev, ``id_00``: learn the first 30 normal clips (300 s, ``--learn-seconds 295``:
  a folder source ends when its last clip does), then replay the other 45 normal clips (450 s) and
  the abnormal clip with the learned state; the card's model and threshold on the same clips for
  comparison.
* BLDC motors: for each healthy motor M1-M3, learn its healthy recordings at alternate speeds, then
  replay its healthy recordings at the other speeds and its faulty (propeller) recordings.

* ``synthetic``: two hours of one ``ml synth`` machine's healthy sound, learned for 2, 5 or 10
  minutes, then monitored; and a bearing fault developing after 5 minutes of learning.
* ``day``: a day of each machine's normal sound, after learning as above. The sets hold minutes of
  normal sound, not days, so the day is assembled from the held-out normal recordings in a seeded
  random order (each heard many times, every one a segment of its own, as the folder source plays
  them), with a faulty recording put in once an hour. Alerts inside a faulty recording are
  detections; every other alert is a false alert of that day.

Alerts per hour of normal sound are alerts / normal audio hours; with minutes of normal audio,
zero alerts only bounds the rate (one alert in the audio heard would be ``1 / hours`` per hour).
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf
from common import REPO, SHARED, bldc_files, normal_and_abnormal


def folder(files: list[Path], where: Path) -> Path:
    """A folder of symbolic links to ``files`` (played in this order: sorted names)."""
    where.mkdir(parents=True)
    for i, f in enumerate(files):
        (where / f"{i:04d}-{f.name}").symlink_to(f.resolve())
    return where


def seconds(files: list[Path]) -> float:
    return sum(sf.info(str(f)).duration for f in files)


def run(source: Path, out: Path, *extra: str) -> tuple[list[dict], str]:
    r = subprocess.run([sys.executable, "-m", "audioclassifier", "--source", str(source), "--speed", "max",
                        "--local-out", str(out), "--machine", "bench", *extra],
                       capture_output=True, text=True, cwd=REPO, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"module failed on {source}: {r.stderr[-2000:]}")
    path = out / "alerts.jsonl"
    return ([json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []), r.stderr


def file_of(alerts: list[dict], durations: list[float]) -> list[int]:
    """The index of the file (played in turn, ``durations`` seconds each) that holds each alert."""
    ends = list(itertools.accumulate(durations))
    return [min(bisect.bisect_right(ends, a["audio_offset_seconds"]), len(ends) - 1) for a in alerts]


def learned(out: Path) -> dict:
    from audioclassifier.learning import NormalModel

    m = NormalModel.from_bytes((out / "learned" / "bench.npz").read_bytes())
    return {"windows": m.n_fitted, "threshold": m.threshold, "seconds": m.meta.get("seconds")}


def monitor(state: Path, files: list[Path], tmp: Path, name: str, *extra: str) -> tuple[int, int]:
    """Replay ``files`` with the learned state of ``state`` (a copy): alerts, files with an alert."""
    out = tmp / f"out-{name}"
    if (state / "learned").is_dir():
        shutil.copytree(state / "learned", out / "learned")
    alerts, log = run(folder(files, tmp / f"src-{name}"), out, *extra)
    if (state / "learned").is_dir():
        assert "learned state for bench loaded" in log, log[-2000:]
    flagged = set(file_of(alerts, [sf.info(str(f)).duration for f in files]))
    return len(alerts), len(flagged)


def bench_dcase(tmp: Path) -> None:
    found = normal_and_abnormal("dcase2020-task2-dev-slice", "id_00")
    if found is None:
        return
    normal, abnormal = found
    learn, rest = normal[:30], normal[30:]
    state = tmp / "dcase-learn"
    alerts, log = run(folder(learn, tmp / "dcase-src-learn"), state, "--learn-seconds", "295")
    fit = learned(state)
    hours = seconds(rest) / 3600
    n_alerts, n_files = monitor(state, rest, tmp, "dcase-normal")
    a_alerts, a_files = monitor(state, abnormal, tmp, "dcase-abnormal")
    c_alerts, c_files = monitor(tmp / "none", rest, tmp, "dcase-normal-card")
    ca_alerts, _ = monitor(tmp / "none", abnormal, tmp, "dcase-abnormal-card")
    print(f"dcase_id00_learn_seconds: {fit['seconds']}")
    print(f"dcase_id00_learn_windows: {fit['windows']}")
    print(f"dcase_id00_learned_threshold: {fit['threshold']:.4f}")
    print(f"dcase_id00_alerts_while_learning: {len(alerts)}")
    print(f"dcase_id00_normal_seconds: {hours * 3600:.0f}")
    print(f"dcase_id00_normal_alerts: {n_alerts}")
    print(f"dcase_id00_normal_files_alerted: {n_files}/{len(rest)}")
    print(f"dcase_id00_normal_alerts_per_hour: {n_alerts / hours:.2f}")
    print(f"dcase_id00_normal_alerts_per_hour_bound_if_zero: {1 / hours:.2f}")
    print(f"dcase_id00_abnormal_alerted: {a_files}/{len(abnormal)} ({a_alerts} alerts)")
    print(f"dcase_id00_card_model_normal_alerts_per_hour: {c_alerts / hours:.2f} ({c_files}/{len(rest)} files)")
    print(f"dcase_id00_card_model_abnormal_alerts: {ca_alerts}")


def bench_bldc(tmp: Path) -> None:
    root = SHARED / "bldc-motor-sound"
    if not root.is_dir():
        print(f"skip bldc: {root} not found")
        return
    total_alerts, total_seconds = 0, 0.0
    for motor in ("M1", "M2", "M3"):
        healthy = sorted((root / "Healthy" / motor).glob("*.wav"))
        learn, rest = healthy[::2], healthy[1::2]
        state = tmp / f"bldc-{motor}-learn"
        learn_s = seconds(learn)
        run(folder(learn, tmp / f"bldc-{motor}-src"), state, "--learn-seconds", f"{learn_s - 1:.0f}")
        fit = learned(state)
        n_alerts, n_files = monitor(state, rest, tmp, f"bldc-{motor}-healthy")
        total_alerts += n_alerts
        total_seconds += seconds(rest)
        print(f"bldc_{motor}_learn: {fit['windows']} windows ({learn_s:.0f} s at {len(learn)} speeds), "
              f"threshold {fit['threshold']:.4f}")
        print(f"bldc_{motor}_healthy_other_speeds_alerts: {n_alerts} in {seconds(rest):.0f} s "
              f"({n_files}/{len(rest)} files)")
        faulty = sorted((root / "Propeller" / motor).glob("*.wav"))
        if faulty:
            f_alerts, f_files = monitor(state, faulty, tmp, f"bldc-{motor}-propeller")
            print(f"bldc_{motor}_propeller_files_alerted: {f_files}/{len(faulty)} ({f_alerts} alerts)")
    print(f"bldc_healthy_alerts_per_hour: {total_alerts / (total_seconds / 3600):.1f} "
          f"({total_alerts} in {total_seconds:.0f} s)")


def day(tmp: Path, name: str, learn: list[Path], normal: list[Path], faulty: list[Path], *, hours: float = 24.0,
        seed: int = 1) -> None:
    """Learn ``learn``, then replay a day of ``normal`` in random order with a ``faulty`` recording
    (in turn) once an hour: false alerts per day and faulty recordings detected."""
    state = tmp / f"day-{name}-learn"
    run(folder(learn, tmp / f"day-{name}-src-learn"), state, "--learn-seconds", f"{seconds(learn) - 1:.0f}")
    fit = learned(state)
    rng = random.Random(seed)
    durations = {f: sf.info(str(f)).duration for f in normal + faulty}
    order: list[Path] = []
    total, next_fault, k = 0.0, rng.uniform(0, 3600), 0
    while total < hours * 3600:
        f = faulty[k % len(faulty)] if total >= next_fault else rng.choice(normal)
        if f in faulty:
            k, next_fault = k + 1, next_fault + 3600
        order.append(f)
        total += durations[f]
    out = tmp / f"day-{name}-out"
    shutil.copytree(state / "learned", out / "learned")
    alerts, _ = run(folder(order, tmp / f"day-{name}-src"), out)
    at = file_of(alerts, [durations[f] for f in order])
    hit = {i for i in at if order[i] in faulty}
    false_alerts = sum(1 for i in at if order[i] not in faulty)
    n_faulty = sum(1 for f in order if f in faulty)
    normal_hours = sum(durations[f] for f in order if f not in faulty) / 3600
    print(f"day_{name}_learned: {fit['windows']} windows, threshold {fit['threshold']:.4f}")
    print(f"day_{name}_normal_hours: {normal_hours:.2f} ({len(set(normal))} recordings in random order)")
    print(f"day_{name}_false_alerts_per_day: {false_alerts / normal_hours * 24:.2f} ({false_alerts} in {normal_hours:.1f} h)")
    print(f"day_{name}_faulty_detected: {len(hit)}/{n_faulty}")


def bench_day(tmp: Path) -> None:
    found = normal_and_abnormal("dcase2020-task2-dev-slice", "id_00")
    if found is not None:
        normal, abnormal = found
        day(tmp, "dcase_id00", normal[:30], normal[30:], abnormal)
    found = normal_and_abnormal("mimii-demo-clips", "fan")
    if found is not None:
        normal, abnormal = found
        day(tmp, "mimii_fan", normal[0::2], normal[1::2], abnormal)
    files = bldc_files()
    if files is not None:
        for motor in ("M1", "M2", "M3"):
            healthy = files[("Healthy", motor)]
            faulty = files.get(("Propeller", motor)) or files[("Bearing", "M4")]
            day(tmp, f"bldc_{motor}", healthy[::2], healthy[1::2], faulty)


def synth_long(out: Path, seconds: int, *extra: str) -> Path:
    """One ``ml synth`` recording of machine 5 of fleet seed 3 at 0 dB (kept in build/bench-audio)."""
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "ml", "synth", "--long-seconds", str(seconds), "--seed", "3",
                        "--machine-id", "5", "--snr-db", "0", "--out", str(out), *extra],
                       check=True, capture_output=True, cwd=REPO, timeout=3600)
    return out


def bench_synthetic(tmp: Path) -> None:
    """Two hours of one synthetic machine's healthy sound (with its background clanks): learn its first
    2, 5 or 10 minutes, count the alerts in the rest; then a bearing fault from 6 minutes on after 5
    minutes of learning: the delay to the first alert."""
    audio = REPO / "build" / "bench-audio"
    healthy = synth_long(audio / "onsite-healthy-7200s.wav", 7200)
    for learn_s in (120, 300, 600):
        alerts, _ = run(healthy, tmp / f"syn-{learn_s}", "--learn-seconds", str(learn_s))
        fit = learned(tmp / f"syn-{learn_s}")
        after = [a for a in alerts if a["audio_offset_seconds"] >= learn_s]
        hours = (7200 - learn_s) / 3600
        print(f"synthetic_learn_{learn_s}s: {fit['windows']} windows, threshold {fit['threshold']:.4f}")
        print(f"synthetic_learn_{learn_s}s_false_alerts_per_day: {len(after) / hours * 24:.2f} "
              f"({len(after)} in {hours:.2f} h)")
    faulty = synth_long(audio / "onsite-bearing-600s.wav", 600, "--fault", "bearing", "--fault-start", "360",
                        "--ramp-seconds", "60")
    alerts, _ = run(faulty, tmp / "syn-bearing", "--learn-seconds", "300")
    before = [a for a in alerts if 300 <= a["audio_offset_seconds"] < 360]
    on = [a["audio_offset_seconds"] for a in alerts if a["audio_offset_seconds"] >= 360]
    print(f"synthetic_bearing_false_alerts_before_the_fault: {len(before)}")
    print(f"synthetic_bearing_first_alert_after_fault_start_seconds: {min(on) - 360 if on else 'none'} "
          f"({len(on)} alerts in the {600 - 360} s of the fault, 60 s ramp)")


def main(argv: list[str]) -> int:
    parts = {"dcase": bench_dcase, "bldc": bench_bldc, "day": bench_day, "synthetic": bench_synthetic}
    chosen = argv or list(parts)
    with tempfile.TemporaryDirectory(prefix="auscult-onsite-") as tmp:
        for name in chosen:
            parts[name](Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

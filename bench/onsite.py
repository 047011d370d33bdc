"""On-site learning through the real module (``python -m audioclassifier``) with the DEFAULT model.

    python bench/onsite.py [dcase] [bldc]      (default: both; a few minutes on 2 cores)

Prints ``name: value`` lines. Real data from ``../shared/data`` (read-only: folders of symbolic
links under a temporary directory are replayed, nothing is copied into the repository).

* DCASE 2020 task 2 dev, ``id_00``: learn the first 30 normal clips (300 s, ``--learn-seconds 295``:
  a folder source ends when its last clip does), then replay the other 45 normal clips (450 s) and
  the abnormal clip with the learned state; the card's model and threshold on the same clips for
  comparison.
* BLDC motors: for each healthy motor M1-M3, learn its healthy recordings at alternate speeds, then
  replay its healthy recordings at the other speeds and its faulty (propeller) recordings.

Alerts per hour of normal sound are alerts / normal audio hours; with minutes of normal audio,
zero alerts only bounds the rate (one alert in the audio heard would be ``1 / hours`` per hour).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf
from common import REPO, SHARED, normal_and_abnormal


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
    edges, t = [], 0.0
    for f in files:
        t += sf.info(str(f)).duration
        edges.append(t)
    flagged = {next((i for i, e in enumerate(edges) if a["audio_offset_seconds"] < e), len(files) - 1)
               for a in alerts}
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


def main(argv: list[str]) -> int:
    parts = {"dcase": bench_dcase, "bldc": bench_bldc}
    chosen = argv or list(parts)
    with tempfile.TemporaryDirectory(prefix="auscult-onsite-") as tmp:
        for name in chosen:
            parts[name](Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``make demo``: the edge module's main job on a recording it synthesizes first.

1. ``python -m ml synth`` writes 180 s of a fan the default model never heard (seed 1, machine 0:
   the model trained on machine IDs 100-163) in which a bearing fault develops from 90 s;
2. ``python -m audioclassifier`` replays it as fast as possible in local mode into ``--out``
   (alerts.jsonl, telemetry.jsonl, clips/), printing a line per alert;
3. ``timeline.png``: spectrogram, window score against the threshold, alerts;
4. the check: the first alert falls between 90 s and 130 s of audio, none before.

Needs the runtime set plus matplotlib (``pip install -e .[demo]``); lives outside the module
package so the module never imports matplotlib. Exit status 0 only if the check passes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

SECONDS = 180.0
FAULT = "bearing"
FAULT_START = 90.0
FIRST_ALERT_BY = 130.0


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def plot_timeline(recording: Path, windows: list[dict[str, Any]], alerts: list[dict[str, Any]],
                  info: dict[str, Any], out: Path) -> None:
    """Spectrogram over time, the score of every window against the threshold, alert marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from audioclassifier.audio_io import load_audio
    from audioclassifier.features import LogMelParams, logmel

    p = LogMelParams()
    y = load_audio(recording, sample_rate=p.sample_rate)
    spec = logmel(y, params=p)
    seconds = y.size / p.sample_rate
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax1.imshow(spec, origin="lower", aspect="auto", extent=(0, seconds, 0, p.n_mels), cmap="magma",
               vmin=float(np.percentile(spec, 5)), vmax=float(spec.max()))
    ax1.set_ylabel("mel band")
    ax1.set_title(f"{recording.name}: {info.get('fault')} fault from {info.get('fault_start'):g} s "
                  f"(machine id_{info.get('machine_id', 0):02d}, seed {info.get('seed')})")
    t = np.array([w["end_offset"] for w in windows])
    score = np.array([np.nan if w["score"] is None else w["score"] for w in windows])
    threshold = np.array([w["threshold"] for w in windows])
    ax2.plot(t, score, lw=1.2, label="window score (at window end)")
    ax2.plot(t, threshold, "k--", lw=1, label="threshold")
    for ax in (ax1, ax2):
        ax.axvline(info.get("fault_start", FAULT_START), color="tab:orange", lw=1.5, ls=":")
    for i, a in enumerate(alerts):
        start = a["audio_offset_seconds"]
        end = start + _seconds_between(a["window_start"], a["window_end"])
        for ax in (ax1, ax2):
            ax.axvspan(start, end, color="tab:red", alpha=0.25, label="alert window" if i == 0 and ax is ax2 else None)
        ax2.plot([end], [a["score"]], "rv")
    ax2.text(info.get("fault_start", FAULT_START), ax2.get_ylim()[1], " fault starts", color="tab:orange",
             va="top")
    ax2.set_xlabel("audio time (s)")
    ax2.set_ylabel("anomaly score")
    ax2.legend(loc="upper left")
    ax2.set_xlim(0, seconds)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _seconds_between(a: str, b: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(b.replace("Z", "+00:00")) - datetime.fromisoformat(a.replace("Z", "+00:00"))
            ).total_seconds()


def synth_recording(recording: Path, *, seed: int = 1, machine_id: int = 0) -> Path:
    """The demo's recording: SECONDS of a fan in which a FAULT develops from FAULT_START (+ .json sidecar)."""
    run([sys.executable, "-m", "ml", "synth", "--long-seconds", f"{SECONDS:g}", "--fault", FAULT, "--fault-start",
         f"{FAULT_START:g}", "--seed", str(seed), "--machine-id", str(machine_id), "--out", str(recording)])
    return recording


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
    ap.add_argument("--model", help="model to run (default: the module's default model)")
    ap.add_argument("--seed", type=int, default=1,
                    help="synth seed (default 1; the default model trained on its IDs 100-163, not on machine 0)")
    ap.add_argument("--machine-id", type=int, default=0, help="synth machine ID (default 0)")
    args = ap.parse_args(argv)
    out: Path = args.out
    for stale in ("alerts.jsonl", "telemetry.jsonl", "windows.jsonl", "sequence.json", "timeline.png"):
        (out / stale).unlink(missing_ok=True)
    shutil.rmtree(out / "clips", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    recording = synth_recording(out / "machine.wav", seed=args.seed, machine_id=args.machine_id)
    cmd = [py, "-m", "audioclassifier", "--source", str(recording), "--speed", "max", "--local-out", str(out),
           "--window-log", str(out / "windows.jsonl"), "--log-level", "WARNING"]
    if args.model:
        cmd += ["--model", args.model]
    run(cmd)

    alerts = load_jsonl(out / "alerts.jsonl")
    windows = load_jsonl(out / "windows.jsonl")
    telemetry = load_jsonl(out / "telemetry.jsonl")
    info = json.loads(recording.with_suffix(".json").read_text())
    plot_timeline(recording, windows, alerts, info, out / "timeline.png")
    clips = sorted(p.relative_to(out).as_posix() for p in (out / "clips").rglob("*.wav"))
    print(f"\n{len(windows)} windows, {len(alerts)} alert(s), {len(telemetry)} telemetry message(s), "
          f"{len(clips)} clip(s) in {out}/clips; timeline: {out / 'timeline.png'}")
    if not alerts:
        print(f"FAIL: no alert, although a {FAULT} fault develops from {FAULT_START:g} s")
        return 1
    first = alerts[0]["audio_offset_seconds"]
    early = [a["audio_offset_seconds"] for a in alerts if a["audio_offset_seconds"] < FAULT_START]
    if early or not FAULT_START <= first <= FIRST_ALERT_BY:
        print(f"FAIL: first alert at {first:.1f} s of audio; expected between {FAULT_START:g} s and "
              f"{FIRST_ALERT_BY:g} s and none before (alerts before the fault: {early})")
        return 1
    print(f"OK: first alert at {first:.1f} s of audio (window start; the fault starts at {FAULT_START:g} s), "
          "none before")
    return 0


if __name__ == "__main__":
    sys.exit(main())

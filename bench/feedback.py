"""Feedback on real recordings: false alarms marked by a technician, then new sound of the same machine.

    python bench/feedback.py [dcase] [bldc]      (default: both; a few minutes on 2 cores)

Prints ``name: value`` lines. The real runtime (in this process, ``--speed max``) with the DEFAULT
model and on-site learning, as on a device; a technician's ``feedback`` is the runtime's
``feedback`` method, as the direct method calls it. Real data from ``../shared/data``, read in place.

* DCASE 2020 task 2 dev, fan ``id_00``: learn the first 30 normal clips; replay the next 22 normal
  clips and mark every alert a false alarm; then replay the last 23 normal clips (held out: never
  marked) and the abnormal clip, with and without the verdicts.
* BLDC motors M1-M3: learn each healthy motor at alternate speeds; replay half of the other speeds,
  marking every alert a false alarm; then the remaining speeds and the propeller faults, with and
  without the verdicts.

Also the cost of scoring with accepted sounds (microseconds per window, numpy on this CPU).
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import SHARED, normal_and_abnormal
from onsite import folder, seconds

from audioclassifier.alertwindows import AlertWindows
from audioclassifier.backends import load_model
from audioclassifier.config import DEFAULT_MODEL
from audioclassifier.feedback import Feedback, FeedbackConflictError
from audioclassifier.learning import MAX_ACCEPTED, fit_normal
from audioclassifier.onsite import OnsiteLearning
from audioclassifier.runtime import Runtime
from audioclassifier.settings import Settings
from audioclassifier.sinks import LocalSink
from audioclassifier.sources import FileSource


class Device:
    """The runtime's state folder; :meth:`play` is one run (a restart) over a folder of recordings."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen = 0

    def play(self, files: list[Path], name: str, *, learn: float = 0.0) -> tuple[Runtime, list[dict], int]:
        """Alerts of a run over ``files``, and how many files alerted."""
        model = load_model(DEFAULT_MODEL, backend="onnxruntime")
        src = folder(files, self.root / f"src-{name}")
        sink = LocalSink(self.root / "out", stdout=io.StringIO())  # the alert lines are not needed
        rt = Runtime(source=FileSource(src, sample_rate=model.card.features.sample_rate, speed=None), model=model,
                     settings=Settings(threshold=None, machine="bench"), sink=sink,
                     state_path=self.root / "sequence.json",
                     onsite=OnsiteLearning(directory=self.root / "learned", seconds=learn),
                     alert_windows=AlertWindows(self.root / "feedback" / "alerts", keep=1000),
                     feedback=Feedback(self.root / "feedback"))
        rt.run()
        sink.close()
        lines = (self.root / "out" / "alerts.jsonl").read_text().splitlines()
        alerts = [json.loads(x) for x in lines[self.seen:]]
        self.seen = len(lines)
        edges = np.cumsum([seconds([f]) for f in files])
        flagged = {int(np.searchsorted(edges, a["audio_offset_seconds"], side="right")) for a in alerts}
        return rt, alerts, len(flagged)


def mark_all(rt: Runtime, alerts: list[dict]) -> int:
    """Every alert marked a false alarm; how many taught the model."""
    taught = 0
    for a in alerts:
        try:
            taught += bool(rt.feedback(a["seq"], "false_alarm", None, "bench")["changed"])
        except FeedbackConflictError as exc:
            print(f"  (alert {a['seq']} not taught: {exc})")
    return taught


def scenario(tmp: Path, name: str, learn: list[Path], mark: list[Path], held: list[Path], faulty: list[Path]) -> None:
    plain, fed = Device(tmp / f"{name}-plain"), Device(tmp / f"{name}-fed")
    learn_s = seconds(learn)
    for dev in (plain, fed):
        dev.play(learn, "learn", learn=learn_s - 1)
    rt, alerts, files = fed.play(mark, "mark")
    taught = mark_all(rt, alerts)
    hours = seconds(held) / 3600
    _, before, before_files = plain.play(held, "held")
    _, after, after_files = fed.play(held, "held")
    print(f"{name}_marked: {taught} false alarms marked on {seconds(mark):.0f} s ({files}/{len(mark)} files alerted)")
    print(f"{name}_held_out_normal_seconds: {hours * 3600:.0f}")
    print(f"{name}_held_out_false_alerts_without_feedback: {len(before)} ({before_files}/{len(held)} files, "
          f"{len(before) / hours:.1f} per hour)")
    print(f"{name}_held_out_false_alerts_with_feedback: {len(after)} ({after_files}/{len(held)} files, "
          f"{len(after) / hours:.1f} per hour)")
    if faulty:
        _, f_before, fb_files = plain.play(faulty, "faulty")
        _, f_after, fa_files = fed.play(faulty, "faulty")
        print(f"{name}_faulty_files_alerted_without_feedback: {fb_files}/{len(faulty)} ({len(f_before)} alerts)")
        print(f"{name}_faulty_files_alerted_with_feedback: {fa_files}/{len(faulty)} ({len(f_after)} alerts)")


def bench_dcase(tmp: Path) -> None:
    found = normal_and_abnormal("dcase2020-task2-dev-slice", "id_00")
    if found is not None:
        normal, abnormal = found
        scenario(tmp, "dcase_id00", normal[:30], normal[30:52], normal[52:], abnormal)


def bench_bldc(tmp: Path) -> None:
    root = SHARED / "bldc-motor-sound"
    if not root.is_dir():
        print(f"skip bldc: {root} not found")
        return
    for motor in ("M1", "M2", "M3"):
        healthy = sorted((root / "Healthy" / motor).glob("*.wav"))
        rest = healthy[1::2]
        faulty = sorted((root / "Propeller" / motor).glob("*.wav"))
        scenario(tmp, f"bldc_{motor}", healthy[::2], rest[::2], rest[1::2], faulty)


def bench_cost() -> None:
    rng = np.random.default_rng(0)
    base = fit_normal(rng.normal(size=(300, 35)), method="mahalanobis")
    x = rng.normal(size=(1, 35))
    for k in (0, 1, 8, MAX_ACCEPTED):
        m = base
        for i in range(k):
            m = m.accept(i, rng.normal(size=(16, 35)) + 3)
        n = 2000
        t = time.perf_counter()
        for _ in range(n):
            m.score(x)
        print(f"score_us_per_window_with_{k}_accepted: {(time.perf_counter() - t) / n * 1e6:.0f}")


def main(argv: list[str]) -> int:
    parts = {"dcase": bench_dcase, "bldc": bench_bldc}
    with tempfile.TemporaryDirectory(prefix="auscult-feedback-") as tmp:
        for name in argv or list(parts):
            parts[name](Path(tmp))
    bench_cost()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

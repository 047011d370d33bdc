"""On-site learning (audioclassifier/onsite.py): the state machine on the default model's card, the
pipeline feeding it (real model, real file source), and the module end to end in local mode."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclassifier.backends import load_model
from audioclassifier.card import read_card
from audioclassifier.config import DEFAULT_MODEL
from audioclassifier.learning import MIN_WINDOWS, NormalModel
from audioclassifier.onsite import OnsiteError, OnsiteLearning, fingerprint
from audioclassifier.runtime import Runtime
from audioclassifier.settings import Settings
from audioclassifier.sinks import LocalSink
from audioclassifier.sources import FileSource
from harness.module import run_module
from harness.paths import REPO

KEYS = {"state", "seconds", "total", "windows", "threshold", "method", "warning", "error", "accepted", "sustain",
        "alerts_per_day"}


@pytest.fixture(scope="module")
def card():
    c = read_card(DEFAULT_MODEL)
    assert c.learning is not None and c.learning["dim"] > 0, "the shipped model supports on-site learning"
    return c


def learn(onsite: OnsiteLearning, n: int, dim: int, *, seed: int = 0) -> np.ndarray:
    """Feed ``n`` windows (one second each) of embeddings; returns them."""
    x = np.random.default_rng(seed).normal(size=(n, dim))
    for e in x:
        onsite.window(e)
        if onsite.advance(1.0):
            onsite.conclude()
    return x


def test_learning_then_learned_persisted_and_reloaded(card, tmp_path: Path) -> None:
    states: list[dict] = []
    onsite = OnsiteLearning(directory=tmp_path, seconds=40, on_change=states.append)
    onsite.bind(card, "fan/1")
    assert onsite.running and onsite.status()["state"] == "learning" and set(onsite.status()) == KEYS
    assert onsite.score(1.5, np.zeros(card.learning["dim"])) == 1.5  # nothing learned yet: the card's score
    onsite.window(None)  # a model without embedding output gives None: not learned
    x = learn(onsite, 40, card.learning["dim"])
    st = onsite.status()
    assert st["state"] == "learned" and st["windows"] == 40 and st["seconds"] == 40 and st["total"] == 40
    assert st["method"] == card.learning["method"] and st["threshold"] == onsite.threshold > 0
    assert (st["sustain"], st["alerts_per_day"]) == (3, 1.0)  # the rule in force: 40 windows make folds of 8
    assert [s["state"] for s in states] == ["learning", "learned"] and all(set(s) == KEYS for s in states)
    # scores by the learned model now, sustained: a far sound must last more than half the median's windows
    n = onsite.model.sustain
    assert n == 3 and "not 9" in onsite.model.meta["sustain_note"]  # 40 windows: folds of 8 (9 s with 5 minutes)
    assert max(onsite.score(0.0, x.mean(0)) for _ in range(n)) < onsite.threshold
    onsite.gap()  # a silent window: what came before does not count
    far = [onsite.score(0.0, x[0] + 10.0) for _ in range(n)]
    assert max(far[: n // 2]) == 0.0 < onsite.threshold < far[n // 2]
    path = tmp_path / "fan-1.npz"  # clips.safe_part of the machine name
    assert path.is_file()

    again = OnsiteLearning(directory=tmp_path, seconds=40)
    again.bind(card, "fan/1")  # the next start: loaded, not learned again
    assert not again.running and again.status() == st
    assert again.threshold == pytest.approx(onsite.threshold)
    other = OnsiteLearning(directory=tmp_path, seconds=40)
    other.bind(card, "fan-2")  # another machine: its own state (none yet)
    assert other.running
    relearn = OnsiteLearning(directory=tmp_path, seconds=0, relearn=True)
    relearn.bind(card, "fan/1")
    assert relearn.running and relearn.threshold == pytest.approx(onsite.threshold)  # kept until the new fit


def test_a_model_swap_keeps_the_state_unless_front_end_or_embedding_change(card, tmp_path: Path) -> None:
    onsite = OnsiteLearning(directory=tmp_path, seconds=20)
    onsite.bind(card, "m")
    learn(onsite, 20, card.learning["dim"])
    learned = onsite.status()
    onsite.bind(replace(card, version="retrained-same-front-end"), "m")  # same fingerprint: kept
    assert onsite.status() == learned and onsite.threshold is not None
    other = replace(card, features=replace(card.features, n_mels=card.features.n_mels // 2))
    assert fingerprint(other) != fingerprint(card)
    onsite.bind(other, "m")  # dropped, and (seconds > 0) learned again under the new front end
    assert onsite.running and onsite.threshold is None
    quiet = OnsiteLearning(directory=tmp_path, seconds=0)
    quiet.bind(other, "m")  # the file on disk was learned with the first front end: not used
    st = quiet.status()
    assert st["state"] == "off" and "another front end or embedding" in st["error"] and quiet.threshold is None
    extra = {k: v for k, v in card.extra.items() if k != "learning"}
    plain = replace(card, extra=extra)
    assert fingerprint(plain) is None
    quiet.bind(plain, "m")
    with pytest.raises(OnsiteError, match="cannot learn"):
        quiet.start(30)


def test_too_few_windows_fail_and_keep_the_card_model(card, tmp_path: Path) -> None:
    onsite = OnsiteLearning(directory=tmp_path, seconds=MIN_WINDOWS + 5)
    onsite.bind(card, "m")
    with pytest.raises(OnsiteError, match="already running"):
        onsite.start(30)
    for _ in range(MIN_WINDOWS + 5):  # all silent: nothing collected
        if onsite.advance(1.0):
            onsite.conclude()
    st = onsite.status()
    assert st["state"] == "failed" and f"at least {MIN_WINDOWS}" in st["error"] and "card's model" in st["error"]
    assert set(st) == KEYS and onsite.threshold is None and onsite.score(0.7, np.zeros(card.learning["dim"])) == 0.7
    assert not (tmp_path / "m.npz").exists()
    for bad in (0, 4.9, 4000, float("nan"), "60", True):
        with pytest.raises(OnsiteError):
            onsite.start(bad)


def test_the_pipeline_learns_scored_windows_only_and_holds_alerts_back(tmp_path: Path) -> None:
    """The real pipeline on the default model: 30 s of noise with 8 s of digital silence; the
    silent windows are not learned, nothing alerts while learning, then the learned model scores."""
    rng = np.random.default_rng(1)
    sr = 16000
    y = (rng.normal(size=30 * sr) * 0.05).astype(np.float32)
    y[10 * sr: 18 * sr] = 0.0
    wav = tmp_path / "a.wav"
    sf.write(wav, y, sr)
    model = load_model(DEFAULT_MODEL, backend="onnxruntime")
    onsite = OnsiteLearning(directory=tmp_path / "learned", seconds=29)
    rt = Runtime(source=FileSource(wav, sample_rate=sr, speed=None), model=model,
                 settings=Settings(threshold=None, consecutive=1), sink=LocalSink(tmp_path / "out"), onsite=onsite)
    assert rt.run() == 0
    st = rt.status()["learning"]
    c = rt.counters
    assert st["state"] == "learned", st
    assert c["silent"] >= 5 and c["scored"] - 2 <= st["windows"] <= c["scored"] and st["windows"] >= 10
    assert c["alerts"] == 0  # held back while learning (the card's model finds white noise anomalous)
    assert rt.threshold == st["threshold"] and (tmp_path / "learned" / "machine.npz").is_file()


def synth(out: Path, seconds: int, *, fault_start: int | None = None) -> Path:
    cmd = [sys.executable, "-m", "ml", "synth", "--long-seconds", str(seconds), "--seed", "1", "--machine-id", "0",
           "--snr-db", "20", "--out", str(out)]
    if fault_start is not None:
        cmd += ["--fault", "bearing", "--fault-start", str(fault_start)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, timeout=300)
    return out


def replay(source: Path, out: Path, *extra: str) -> tuple[list[dict], str]:
    r = run_module("--source", str(source), "--speed", "max", "--local-out", str(out), "--backend", "onnxruntime",
                   *extra, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    path = out / "alerts.jsonl"
    alerts = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return alerts, r.stderr


def test_learn_then_monitor_end_to_end_in_local_mode(tmp_path: Path) -> None:
    """Learn 60 s of a machine's healthy sound; a later run reloads it and alerts on a bearing fault
    (from 90 s) and not before; --relearn learns again."""
    healthy = synth(tmp_path / "healthy.wav", 70)
    faulty = synth(tmp_path / "faulty.wav", 150, fault_start=90)
    out = tmp_path / "out"
    alerts, log = replay(healthy, out, "--learn-seconds", "60")
    assert "on-site learning done" in log and all(a["audio_offset_seconds"] >= 60 for a in alerts)
    saved = out / "learned" / "machine.npz"
    assert saved.is_file()
    before = saved.read_bytes()

    alerts, log = replay(faulty, out, "--learn-seconds", "60")
    assert "learned state for machine loaded" in log and "learning 60 s" not in log
    offsets = [a["audio_offset_seconds"] for a in alerts]
    assert offsets and min(offsets) >= 90 and min(offsets) < 130, offsets
    assert saved.read_bytes() == before
    # each alert explains itself against the bands learned with the normal model: the bearing's
    # impacts ring its resonance, and some alert names the band that holds it
    from ml.synth import machine_params

    resonance = machine_params(0, seed=1).bearing_resonance_hz
    assert all(a["explanation"]["reference"]["source"] == "learned" for a in alerts)
    assert any(b["low_hz"] <= resonance <= b["high_hz"] and b["level_db"] > 0
               for a in alerts for b in a["explanation"]["bands"]), (resonance, [a["explanation"] for a in alerts])
    assert all(a["health"]["windows"] > 0 for a in alerts)

    alerts, log = replay(healthy, out, "--learn-seconds", "30", "--relearn")
    assert "learning 30 s" in log and "on-site learning done" in log
    assert saved.read_bytes() != before


def _linked(files: list[Path], where: Path) -> Path:
    """A folder source of symbolic links (the real recordings are read in place), played in this order."""
    where.mkdir(parents=True)
    for i, f in enumerate(files):
        (where / f"{i:04d}-{f.name}").symlink_to(f.resolve())
    return where


def test_a_real_fan_learned_for_five_minutes_is_quiet_on_its_other_normal_sound_and_alerts_on_its_fault(
        shared_data: Path, tmp_path: Path) -> None:
    """DCASE 2020 fan id_00 through the real module: learn its first 30 normal clips (5 minutes),
    then its other 45 normal clips raise no alert (the card's own model and threshold flag many),
    and its abnormal clip alerts."""
    root = shared_data / "dcase2020-task2-dev-slice" / "id_00"
    normal, abnormal = sorted((root / "normal").glob("*.wav")), sorted((root / "abnormal").glob("*.wav"))
    assert len(normal) >= 75 and abnormal
    out = tmp_path / "out"
    _, log = replay(_linked(normal[:30], tmp_path / "learn"), out, "--learn-seconds", "295")
    assert "on-site learning done" in log
    rest = normal[30:]
    normal_seconds = sum(sf.info(str(f)).duration for f in rest)
    source = _linked(rest + abnormal, tmp_path / "monitor")
    alerts, log = replay(source, out)
    assert "learned state for machine loaded" in log
    offsets = [a["audio_offset_seconds"] for a in alerts]
    assert offsets and min(offsets) >= normal_seconds, (normal_seconds, offsets)  # only in the abnormal clip
    card_alerts, _ = replay(source, tmp_path / "card-out")  # no learned state: the card's threshold
    assert sum(a["audio_offset_seconds"] < normal_seconds for a in card_alerts) >= 5
    model = NormalModel.from_bytes((out / "learned" / "machine.npz").read_bytes())
    assert model.sustain == 9 and "at most 1 false alerts a day" in model.threshold_method and model.warning is None


def test_the_false_alert_rate_is_checked_at_start_and_a_lower_one_sets_a_higher_threshold(tmp_path: Path) -> None:
    """--learn-alerts-per-day through the real module: bad values (flag or variable) exit 2 naming the
    option; a learning at 24 a day sets a lower threshold than at the default 1 a day, and says so."""
    healthy = synth(tmp_path / "healthy.wav", 70)
    for args, env in ((("--learn-alerts-per-day", "0"), {}), (("--learn-alerts-per-day", "-1"), {}),
                      (("--learn-alerts-per-day", "nan"), {}), (("--learn-alerts-per-day", "2000"), {}),
                      (("--learn-alerts-per-day", "many"), {}), ((), {"AUSCULT_LEARN_ALERTS_PER_DAY": "0"})):
        r = run_module("--source", str(healthy), "--speed", "max", "--local-out", str(tmp_path / "bad"),
                       "--learn-seconds", "60", *args, env=env, timeout=60)
        assert r.returncode == 2 and ("--learn-alerts-per-day" in r.stderr or "AUSCULT_LEARN_ALERTS_PER_DAY" in r.stderr), \
            (args, env, r.stderr[-500:])
        assert not (tmp_path / "bad" / "learned").exists()
    thresholds = {}
    for rate in ("1", "24"):
        out = tmp_path / f"rate-{rate}"
        _, log = replay(healthy, out, "--learn-seconds", "60", "--learn-alerts-per-day", rate)
        model = NormalModel.from_bytes((out / "learned" / "machine.npz").read_bytes())
        assert model.meta["alerts_per_day"] == float(rate) and f"at most {rate} false alerts a day" in model.threshold_method
        assert "on-site learning done" in log
        thresholds[rate] = model.threshold
    assert thresholds["24"] < thresholds["1"]

"""Tests of the synthetic machine-sound generator (ml.synth) and its verb ``python -m ml synth``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import scipy.signal
import scipy.stats
import soundfile

from ml import synth
from ml.__main__ import main

SR = 16000


def cli(*argv: str) -> int:
    """Run ``python -m ml`` in-process; the exit code whether argparse exits or run returns."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code)


def clip(machine: synth.MachineParams, fault: str, *, severity: float = 1.0, seconds: float = 2.0,
         snr_db: float | None = None, seed: int = 7) -> np.ndarray:
    """A clip from a fresh generator: equal seeds share everything but the fault."""
    return synth.synth_clip(machine=machine, fault=fault, severity=severity, seconds=seconds,
                            sample_rate=SR, snr_db=snr_db, rng=np.random.default_rng(seed))


def band_db(x: np.ndarray, lo: float, hi: float) -> float:
    """Power (dB) of ``x`` between ``lo`` and ``hi`` Hz, from a Welch spectrum."""
    f, p = scipy.signal.welch(x.astype(np.float64), fs=SR, nperseg=min(8192, x.size))
    return float(10 * np.log10(np.sum(p[(f >= lo) & (f <= hi)])))


@pytest.fixture(scope="module")
def machine() -> synth.MachineParams:
    return synth.machine_params(0, seed=0)


# ---------------------------------------------------------------------------- machines, determinism


def test_machine_params_are_deterministic_and_ids_differ():
    fleet = [synth.machine_params(i, seed=3) for i in range(8)]
    assert fleet == [synth.machine_params(i, seed=3) for i in range(8)]
    assert synth.machine_params(0, seed=4) != fleet[0]
    rates = sorted(m.shaft_hz for m in fleet)
    assert all(15.0 <= r <= 50.0 for r in rates)
    assert min(np.diff(rates)) > 2.0  # different IDs really turn at different rates
    assert len({(m.n_blades, round(m.bearing_ratio, 6)) for m in fleet}) > 1
    with pytest.raises(ValueError):
        synth.machine_params(-1, seed=0)
    with pytest.raises(ValueError):
        synth.machine_params(0, seed=-5)


def test_clip_is_deterministic_by_seed(machine):
    a = clip(machine, "bearing", snr_db=0.0, seed=1)
    assert a.tobytes() == clip(machine, "bearing", snr_db=0.0, seed=1).tobytes()
    assert not np.array_equal(a, clip(machine, "bearing", snr_db=0.0, seed=2))
    assert a.dtype == np.float32 and a.shape == (2 * SR,)
    assert np.max(np.abs(a)) <= synth.PEAK_LIMIT


def test_bad_parameters_raise(machine):
    with pytest.raises(ValueError, match="unknown fault"):
        clip(machine, "rust")
    with pytest.raises(ValueError, match="severity"):
        clip(machine, "bearing", severity=1.5)
    with pytest.raises(ValueError, match="seconds"):
        clip(machine, "normal", seconds=0)
    with pytest.raises(ValueError, match="fault_start"):
        synth.synth_recording(machine=machine, fault="bearing", fault_start=5.0, seconds=2.0, seed=0)


# ---------------------------------------------------------------------------- levels and SNR


@pytest.mark.parametrize("snr_db", [-6.0, 0.0, 6.0])
def test_mix_at_snr_gives_the_requested_ratio(snr_db):
    rng = np.random.default_rng(0)
    s = np.sin(np.arange(SR) * 0.05) * 3.0
    n = rng.standard_normal(SR) * 0.1 + 0.05 * rng.standard_normal(SR) ** 3
    y = synth.mix_at_snr(signal=s, noise=n, snr_db=snr_db)
    measured = 10 * np.log10(np.mean(s**2) / np.mean((y - s) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.01)
    # Reference powers given: the noise is scaled against them, not against the arrays.
    y = synth.mix_at_snr(signal=s, noise=n, snr_db=snr_db, signal_power=1.0, noise_power=float(np.mean(n**2)))
    assert 10 * np.log10(1.0 / np.mean((y - s) ** 2)) == pytest.approx(snr_db, abs=0.01)
    with pytest.raises(ValueError):
        synth.mix_at_snr(signal=s, noise=n[:-1], snr_db=snr_db)


def test_levels_are_calibrated(machine):
    # The healthy machine alone sits at TARGET_RMS; the background has unit power, so a
    # healthy clip at 0 dB has machine and background at equal power.
    x = clip(machine, "normal", seconds=4.0)
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2))
    assert 20 * np.log10(rms / synth.TARGET_RMS) == pytest.approx(0, abs=1.0)
    b = synth.synth_background(seconds=8.0, sample_rate=SR, rng=np.random.default_rng(1))
    assert 10 * np.log10(np.mean(b.astype(np.float64) ** 2)) == pytest.approx(0, abs=1.0)
    # Background is not white: more power below 500 Hz than in 4-8 kHz, and a hum at twice the
    # 50 Hz mains frequency stands out of the noise around it.
    assert band_db(b, 20, 500) > band_db(b, 4000, 8000) + 6
    f, p = scipy.signal.welch(b.astype(np.float64), fs=SR, nperseg=8192)
    assert np.max(p[(f > 99) & (f < 101)]) > 10 * np.median(p[(f > 85) & (f < 115)])


def test_peak_limit_prevents_clipping(machine, monkeypatch):
    monkeypatch.setattr(synth, "TARGET_RMS", 0.6)  # would clip without the limiter
    x = clip(machine, "bearing", snr_db=0.0)
    assert np.max(np.abs(x)) == pytest.approx(synth.PEAK_LIMIT, rel=1e-5)


# ---------------------------------------------------------------------------- fault physics


def test_imbalance_raises_the_shaft_rate_and_its_sidebands(machine):
    normal = clip(machine, "normal", snr_db=6.0)
    faulty = clip(machine, "imbalance", snr_db=6.0)
    fr = machine.shaft_hz
    assert band_db(faulty, 0.9 * fr, 1.1 * fr) > band_db(normal, 0.9 * fr, 1.1 * fr) + 10
    bp = machine.blade_pass_hz  # blade-pass tone modulated at f_r: sideband above it
    assert band_db(faulty, bp + 0.9 * fr, bp + 1.1 * fr) > band_db(normal, bp + 0.9 * fr, bp + 1.1 * fr) + 3


def test_bearing_adds_impulsive_high_frequency_energy(machine):
    normal = clip(machine, "normal", snr_db=0.0)
    faulty = clip(machine, "bearing", snr_db=0.0)
    fc = machine.bearing_resonance_hz
    assert band_db(faulty, fc / 1.1, fc * 1.1) > band_db(normal, fc / 1.1, fc * 1.1) + 6
    sos = scipy.signal.butter(4, [fc / 1.3, fc * 1.3], btype="bandpass", fs=SR, output="sos")

    def envelope_kurtosis(x: np.ndarray) -> float:
        return float(scipy.stats.kurtosis(np.abs(scipy.signal.hilbert(scipy.signal.sosfilt(sos, x)))))

    assert envelope_kurtosis(faulty) > envelope_kurtosis(normal) + 1.0
    # Periodic at the defect frequency: the envelope spectrum peaks near bearing_hz.
    env = np.abs(scipy.signal.hilbert(scipy.signal.sosfilt(sos, faulty.astype(np.float64))))
    f, p = scipy.signal.welch(env - env.mean(), fs=SR, nperseg=SR)
    in_range = (f > 20) & (f < 400)
    assert f[in_range][np.argmax(p[in_range])] == pytest.approx(machine.bearing_hz, rel=0.05)


def test_clogging_shifts_the_blade_pass_peak(machine):
    def peak(x: np.ndarray) -> float:
        f = np.fft.rfftfreq(x.size, 1 / SR)
        mag = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
        near = (f > 0.85 * machine.blade_pass_hz) & (f < 1.15 * machine.blade_pass_hz)
        return float(f[near][np.argmax(mag[near])])

    normal, faulty = clip(machine, "normal"), clip(machine, "clogging")
    assert peak(faulty) / peak(normal) - 1 == pytest.approx(machine.clog_shift, abs=0.01)
    half = clip(machine, "clogging", severity=0.5)
    assert peak(half) / peak(normal) - 1 == pytest.approx(machine.clog_shift / 2, abs=0.01)
    hiss = machine.hiss_hz
    assert band_db(faulty, hiss, 7000) > band_db(normal, hiss, 7000) + 3  # restriction hiss


def test_normal_severity_is_ignored(machine):
    assert np.array_equal(clip(machine, "normal", severity=0.0), clip(machine, "normal", severity=1.0))


# ---------------------------------------------------------------------------- long recordings


def test_long_recording_develops_the_fault_and_is_continuous(machine):
    kw = dict(machine=machine, fault="bearing", fault_start=2.0, seconds=8.0, ramp_seconds=4.0,
              sample_rate=SR, snr_db=6.0, seed=5)
    x = synth.synth_recording(**kw)
    assert x.dtype == np.float32 and x.shape == (8 * SR,) and np.max(np.abs(x)) <= synth.PEAK_LIMIT
    fc = machine.bearing_resonance_hz
    half = [band_db(x[i * SR // 2:(i + 1) * SR // 2], fc / 1.1, fc * 1.1) for i in range(16)]
    before, ramp, after = half[:4], half[4:12], half[12:]
    assert max(before) - min(before) < 3  # healthy and steady until fault_start
    assert min(after) > max(before) + 6  # the fault is there at the end
    assert np.mean(ramp[4:]) > np.mean(ramp[:4]) + 2  # and grew during the ramp
    # Same audio whatever the chunk size: state (phase, filters, impulses) carries over, so
    # chunk boundaries cannot click.
    y = synth.synth_recording(**kw, chunk_seconds=1.3)
    assert np.max(np.abs(x - y)) < 1e-5
    # Before fault_start it is the normal recording of the same seed.
    z = synth.synth_recording(**{**kw, "fault": "normal"})
    assert np.max(np.abs(x[: 2 * SR] - z[: 2 * SR])) < 1e-6
    assert np.max(np.abs(x[4 * SR :] - z[4 * SR :])) > 1e-3


def test_severity_profile():
    t = np.array([0.0, 10.0, 15.0, 20.0, 100.0])
    s = synth.severity_profile(t=t, fault_start=10.0, ramp_seconds=10.0, max_severity=0.8)
    assert s.tolist() == pytest.approx([0.0, 0.0, 0.4, 0.8, 0.8])
    with pytest.raises(ValueError):
        synth.severity_profile(t=t, fault_start=10.0, ramp_seconds=0.0, max_severity=1.0)


# ---------------------------------------------------------------------------- the CLI verb


def test_cli_tree_layout_format_and_manifest(tmp_path):
    out = tmp_path / "tree"
    rc = cli("synth", "--out", str(out), "--seed", "3", "--machines", "2", "--first-machine-id", "4",
             "--clips-per-class", "2", "--seconds", "0.5", "--labels", "normal,bearing",
             "--snr-db", "-6", "--snr-db", "6")
    assert rc == 0
    wavs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert wavs == sorted(f"{label}/id_{i:02d}/{label}_id_{i:02d}_{k:04d}.wav"
                          for label in ("normal", "bearing") for i in (4, 5) for k in (0, 1))
    info = soundfile.info(str(out / wavs[0]))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", SR // 2)
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "label", "machine_id", "severity", "snr_db", "seed"]
    assert sorted(r["path"] for r in rows) == wavs
    for r in rows:
        assert r["path"].startswith(f"{r['label']}/id_{int(r['machine_id']):02d}/")
        sev = float(r["severity"])
        assert sev == 0.0 if r["label"] == "normal" else 0.5 <= sev <= 1.0
        assert float(r["snr_db"]) == (-6.0 if r["path"].endswith("0000.wav") else 6.0)  # cycled
    # A manifest row reproduces its clip.
    r = next(r for r in rows if r["label"] == "bearing")
    x = synth.synth_clip(machine=synth.machine_params(int(r["machine_id"]), seed=3), fault="bearing",
                         severity=float(r["severity"]), seconds=0.5, sample_rate=SR,
                         snr_db=float(r["snr_db"]), rng=np.random.default_rng(int(r["seed"])))
    y, _ = soundfile.read(str(out / r["path"]), dtype="float32")
    assert np.max(np.abs(x - y)) < 1.0 / 32768 + 1e-6


def test_cli_is_deterministic_by_seed(tmp_path):
    args = ["--machines", "1", "--clips-per-class", "1", "--seconds", "0.5", "--labels", "imbalance"]
    name = "imbalance/id_00/imbalance_id_00_0000.wav"
    for d, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert cli("synth", "--out", str(tmp_path / d), "--seed", seed, *args) == 0
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    assert (tmp_path / "a/manifest.csv").read_text() == (tmp_path / "b/manifest.csv").read_text()


def test_cli_long_recording(tmp_path):
    out = tmp_path / "rec" / "long.wav"
    rc = cli("synth", "--out", str(out), "--seed", "2", "--long-seconds", "3", "--fault", "clogging",
             "--fault-start", "1", "--ramp-seconds", "1", "--machine-id", "1", "--snr-db", "6")
    assert rc == 0
    info = soundfile.info(str(out))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", 3 * SR)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert (meta["fault"], meta["fault_start"], meta["machine_id"]) == ("clogging", 1.0, 1)
    assert meta["snr_db"] == 6.0 and meta["ramp_seconds"] == 1.0


@pytest.mark.parametrize(
    ("out", "argv"),
    [
        ("tree", ["--labels", "normal,rust"]),
        ("tree", ["--labels", "normal,normal"]),
        ("tree", ["--machines", "0"]),
        ("tree", ["--seconds", "-1"]),
        ("tree", ["--snr-db", "loud"]),
        ("tree", ["--severity-range", "0.9", "0.5"]),
        ("tree", ["--fault", "bearing"]),  # a long-mode option without --long-seconds
        ("tree", ["--long-seconds", "5"]),  # --out must then be a .wav file
        ("x.wav", ["--long-seconds", "5", "--fault", "rust"]),
        ("x.wav", ["--long-seconds", "5", "--fault-start", "9"]),
        ("x.wav", ["--long-seconds", "5", "--clips-per-class", "3"]),
        ("x.wav", ["--long-seconds", "5", "--snr-db", "0", "--snr-db", "6"]),
    ],
)
def test_cli_rejects_bad_arguments_with_exit_code_2(tmp_path, capsys, out, argv):
    assert cli("synth", "--out", str(tmp_path / out), *argv) == 2
    assert "error:" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*.wav"))

"""Synthetic machine sounds with faults: labelled training data without a factory.

A rotating machine (fan, pump, motor) is modelled from its physics: a shaft turning at ``f_r``
with slow speed wander (the phase is integrated, so every harmonic stays coherent), shaft
harmonics, a blade-pass tone ``n_blades * f_r`` with harmonics, and broadband flow noise coloured
by structural resonances and modulated at blade pass. Faults change what they change in a real
machine (see :data:`FAULTS`), scaled by a severity in [0, 1]. A factory background (pink and
brown noise, mains hum, distant clanks, another machine further away) is mixed in at a chosen SNR.

Levels are calibrated, not normalised per clip: a machine's *healthy* sound has unit power, the
background has unit expected power, and the healthy mix is written at :data:`TARGET_RMS`. A fault
therefore makes the machine louder, as it does in a factory, and the background stays the same.
Output is scaled down as a whole only if a peak would pass :data:`PEAK_LIMIT`.

Everything is deterministic by seed: randomness comes from ``numpy.random.Generator`` objects
passed in (or built from a seed) and split with ``spawn``; there is no global state. Audio is
rendered in blocks with continuous state (phase, filter memories, pending impulses), so long
recordings need little memory beyond the float32 result, and the result does not depend on the
block size. Runtime dependencies only: numpy and scipy.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.signal

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "FAULTS",
    "MachineParams",
    "machine_params",
    "mix_at_snr",
    "apply_gain_db",
    "severity_profile",
    "shifted_machine",
    "synth_background",
    "synth_clip",
    "synth_recording",
]

#: Fault labels, ``normal`` first. ``imbalance``: stronger 1x (and 2x-6x) shaft tones and
#: amplitude modulation at ``f_r`` (sidebands around the blade-pass tones). ``bearing``: periodic
#: impacts at the outer-race defect frequency ringing a structural resonance (2-6 kHz).
#: ``clogging``: restricted airflow; the machine runs a few percent faster or slower, the broadband
#: flow noise drops while a high-frequency hiss rises, and blade-pass harmonics grow while the
#: fundamental weakens.
FAULTS: tuple[str, ...] = ("normal", "imbalance", "bearing", "clogging")

DEFAULT_SAMPLE_RATE = 16000
#: RMS of the healthy machine + background mix in the output (-26 dBFS): headroom for faults.
TARGET_RMS = 0.05
#: Output is scaled down as a whole if any sample would exceed this (-1 dBFS).
PEAK_LIMIT = 10.0 ** (-1.0 / 20.0)
MAINS_HZ = 50.0

# Fault strength at severity 1. Powers are relative to the healthy machine's power (unit power).
#: imbalance: power of the added 1x shaft tone; 2x-6x grow too (:data:`IMBALANCE_HARMONICS`).
IMBALANCE_1X_DB = 0.0
#: imbalance: added amplitude of the 1x ... 6x shaft tones relative to the added 1x.
IMBALANCE_HARMONICS = (1.0, 0.5, 0.35, 0.25, 0.2, 0.15)
#: imbalance: extra amplitude-modulation depth at f_r of the whole sound (healthy: 2-6 %).
IMBALANCE_AM_DEPTH = 0.3
#: imbalance: extra modulation depth at f_r of the blade-pass tones (tip clearance varies once
#: per revolution as the rotor whirls): sidebands at blade pass +- f_r.
IMBALANCE_BLADE_AM_DEPTH = 0.6
#: bearing: power of the impact train (concentrated around the bearing resonance, 2-6 kHz).
BEARING_DB = -10.0
#: clogging: level changes in dB (scaled linearly by severity), plus a speed change of
#: ``MachineParams.clog_shift`` (3-5 %, faster or slower depending on the machine).
CLOG_FLOW_DB = -3.0
CLOG_HISS_DB = 10.0
CLOG_BLADE_FUNDAMENTAL_DB = -4.0
CLOG_BLADE_HARMONICS_DB = 6.0

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_WANDER_RATE = 100.0  # Hz: control rate of the speed-wander path
_BEARING_JITTER = 0.03  # impact spacing jitter, fraction of a period (slip of rolling elements)
_BEARING_AMP_SPREAD = 0.2  # log-normal sigma of impact amplitudes
_BEARING_LOAD_MOD = 0.3  # impact amplitude modulation at f_r (load zone)
_N_SITE_MACHINES = 8  # distant machines a background can draw from
_CALIBRATION_SECONDS = 4.0
_MIN_SAMPLE_RATE = 8000


@dataclass(frozen=True)
class MachineParams:
    """One machine's sound: what a machine ID stands for (draw with :func:`machine_params`)."""

    machine_id: int
    shaft_hz: float  # nominal rotation rate f_r
    n_blades: int  # blades / impeller vanes: blade pass = n_blades * f_r
    shaft_harmonics: tuple[float, ...]  # amplitude of k*f_r, k = 1.. (blade-pass fundamental = 1)
    blade_harmonics: tuple[float, ...]  # amplitude of m*n_blades*f_r, m = 1..
    flow_noise_db: float  # flow-noise power relative to the tonal power
    flow_corner_hz: float  # colour of the flow noise: 2nd-order low-pass corner
    hiss_hz: float  # high-pass corner of the flow hiss
    hiss_share: float  # share of flow-noise power in the hiss
    resonances_hz: tuple[float, ...]  # structural resonances that colour the flow noise
    resonance_q: tuple[float, ...]
    resonance_db: tuple[float, ...]  # peak gain of each resonance over the flow body
    blade_noise_mod: float  # depth of blade-pass modulation of the flow noise
    am_depth: float  # amplitude modulation at f_r when healthy
    wander: float  # standard deviation of the relative speed wander
    wander_seconds: float  # correlation time of the speed wander
    bearing_ratio: float  # outer-race defect frequency (BPFO) / f_r
    bearing_resonance_hz: float  # resonance the bearing impacts ring
    bearing_q: float
    clog_shift: float  # relative speed change at full clogging (signed)

    def __post_init__(self) -> None:
        if not (self.shaft_hz > 0 and self.n_blades >= 1):
            raise ValueError(f"need shaft_hz > 0 and n_blades >= 1, got {self.shaft_hz}, {self.n_blades}")
        if not len(self.resonances_hz) == len(self.resonance_q) == len(self.resonance_db):
            raise ValueError("resonances_hz, resonance_q and resonance_db must have the same length")
        if not 0 <= self.hiss_share < 1:
            raise ValueError(f"hiss_share must be in [0, 1), got {self.hiss_share}")
        if not (0 <= self.wander < 0.1 and self.wander_seconds > 0 and 0 <= self.am_depth < 0.5):
            raise ValueError("need 0 <= wander < 0.1, wander_seconds > 0 and 0 <= am_depth < 0.5")
        if not (self.bearing_ratio > 1 and abs(self.clog_shift) < 0.2):
            raise ValueError("need bearing_ratio > 1 and |clog_shift| < 0.2")

    @property
    def blade_pass_hz(self) -> float:
        """Nominal blade-pass frequency ``n_blades * shaft_hz``."""
        return self.n_blades * self.shaft_hz

    @property
    def bearing_hz(self) -> float:
        """Nominal bearing defect (impact) frequency."""
        return self.bearing_ratio * self.shaft_hz


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A draw uniform in log frequency: resonances spread evenly over octaves."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _draw_machine(rng: np.random.Generator, *, machine_id: int, shaft_hz: float) -> MachineParams:
    """Draw every parameter but the shaft rate from ``rng``."""
    n_blades = int(rng.integers(3, 13))
    shaft_db = [-10.0 - 3.5 * k + rng.normal(0.0, 3.0) for k in range(6)]
    blade_db = [0.0] + [-5.0 * m + rng.normal(0.0, 2.5) for m in range(1, 4)]
    res = sorted(_loguniform(rng, 150.0, 4000.0) for _ in range(3))
    n_balls = int(rng.integers(8, 13))
    ball_ratio = rng.uniform(0.15, 0.3)  # ball / pitch diameter
    sign = 1.0 if rng.random() < 0.7 else -1.0  # an unloaded fan speeds up; some machines slow down
    return MachineParams(
        machine_id=machine_id,
        shaft_hz=float(shaft_hz),
        n_blades=n_blades,
        shaft_harmonics=tuple(float(10 ** (d / 20)) for d in shaft_db),
        blade_harmonics=tuple(float(10 ** (d / 20)) for d in blade_db),
        flow_noise_db=float(rng.uniform(-3.0, 5.0)),
        flow_corner_hz=_loguniform(rng, 300.0, 1500.0),
        hiss_hz=_loguniform(rng, 2000.0, 4000.0),
        hiss_share=float(rng.uniform(0.05, 0.15)),
        resonances_hz=tuple(res),
        resonance_q=tuple(float(rng.uniform(4.0, 20.0)) for _ in res),
        resonance_db=tuple(float(rng.uniform(6.0, 15.0)) for _ in res),
        blade_noise_mod=float(rng.uniform(0.1, 0.3)),
        am_depth=float(rng.uniform(0.02, 0.06)),
        wander=float(rng.uniform(0.003, 0.007)),
        wander_seconds=float(rng.uniform(1.0, 4.0)),
        bearing_ratio=float(n_balls / 2 * (1 - ball_ratio)),
        bearing_resonance_hz=_loguniform(rng, 2000.0, 6000.0),
        bearing_q=float(rng.uniform(10.0, 25.0)),  # damping ratio 2-5 %
        clog_shift=float(sign * rng.uniform(0.03, 0.05)),
    )


def machine_params(machine_id: int, *, seed: int) -> MachineParams:
    """The machine that ``machine_id`` names in the fleet of ``seed``: same inputs, same machine.

    Shaft rates of IDs 0, 1, 2, ... follow a golden-ratio sequence over 15-50 Hz (offset by the
    seed), so IDs of one fleet differ by several Hz; everything else is drawn per ID.
    """
    if isinstance(machine_id, bool) or not isinstance(machine_id, (int, np.integer)) or machine_id < 0:
        raise ValueError(f"machine_id must be an integer >= 0, got {machine_id!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    offset = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED])).random()
    shaft_hz = 15.0 + 35.0 * ((offset + int(machine_id) * _GOLDEN) % 1.0)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(machine_id)]))
    return _draw_machine(rng, machine_id=int(machine_id), shaft_hz=shaft_hz)


@functools.lru_cache(maxsize=64)
def _site_machine(index: int) -> tuple[MachineParams, float]:
    """A distant machine of the factory background and the low-pass corner of its distance."""
    rng = np.random.default_rng(np.random.SeedSequence([0xFAC7, index]))
    machine = _draw_machine(rng, machine_id=-1 - index, shaft_hz=rng.uniform(10.0, 60.0))
    return machine, _loguniform(rng, 300.0, 1200.0)


def mix_at_snr(
    *,
    signal: np.ndarray,
    noise: np.ndarray,
    snr_db: float,
    signal_power: float | None = None,
    noise_power: float | None = None,
) -> np.ndarray:
    """``signal + k * noise`` with ``k`` making signal power / noise power equal ``snr_db``.

    Powers are mean squares measured from the arrays, unless given: pass the reference levels
    when mixing block by block, or to keep the background level fixed while a fault grows.
    """
    signal = np.asarray(signal)
    noise = np.asarray(noise)
    if signal.shape != noise.shape:
        raise ValueError(f"signal and noise must have the same shape, got {signal.shape} and {noise.shape}")
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be a finite number, got {snr_db!r}")
    ps = float(np.mean(np.square(signal, dtype=np.float64))) if signal_power is None else float(signal_power)
    pn = float(np.mean(np.square(noise, dtype=np.float64))) if noise_power is None else float(noise_power)
    if not (ps > 0 and pn > 0 and math.isfinite(ps) and math.isfinite(pn)):
        raise ValueError(f"signal and noise powers must be positive and finite, got {ps} and {pn}")
    k = math.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return signal + noise * np.asarray(k, dtype=np.result_type(noise.dtype, np.float32))


def severity_profile(
    *, t: np.ndarray, fault_start: float, ramp_seconds: float, max_severity: float
) -> np.ndarray:
    """Severity over time ``t`` (s): 0 before ``fault_start``, a linear ramp, then ``max_severity``."""
    if not ramp_seconds > 0:
        raise ValueError(f"ramp_seconds must be > 0 (a step would click), got {ramp_seconds!r}")
    return np.clip((np.asarray(t, dtype=np.float64) - fault_start) / ramp_seconds, 0.0, 1.0) * max_severity


def shifted_machine(machine: MachineParams, *, speed: float = 0.0, load_db: float = 0.0) -> MachineParams:
    """The same machine at another operating point: domain shift without a fault.

    ``speed`` is a relative change of the shaft rate (0.05 = 5 % faster: every tone moves with it).
    ``load_db`` changes the machine's working load: the flow noise rises by ``load_db`` and the
    blade-pass harmonics above the fundamental by half of it (more pressure, more turbulence). The
    healthy machine is still calibrated to unit power, so load changes the spectrum's shape, not the
    level (use :func:`apply_gain_db` for a microphone's gain).
    """
    if not (math.isfinite(speed) and -0.5 < speed < 1.0):
        raise ValueError(f"speed must be a relative change in (-0.5, 1), got {speed!r}")
    if not (math.isfinite(load_db) and abs(load_db) <= 20.0):
        raise ValueError(f"load_db must be within +-20 dB, got {load_db!r}")
    if speed == 0.0 and load_db == 0.0:
        return machine
    import dataclasses

    blade = tuple(a if m == 0 else a * 10 ** (load_db / 40) for m, a in enumerate(machine.blade_harmonics))
    return dataclasses.replace(machine, shaft_hz=machine.shaft_hz * (1.0 + speed),
                               flow_noise_db=machine.flow_noise_db + load_db, blade_harmonics=blade)


def apply_gain_db(x: np.ndarray, gain_db: float) -> np.ndarray:
    """``x`` scaled by ``gain_db`` (a microphone's gain or distance), clipped to the peak limit."""
    if not math.isfinite(gain_db):
        raise ValueError(f"gain_db must be finite, got {gain_db!r}")
    if gain_db == 0.0:
        return x
    y = np.asarray(x, dtype=np.float32) * np.float32(10 ** (gain_db / 20))
    return np.clip(y, -PEAK_LIMIT, PEAK_LIMIT, out=y)


# --------------------------------------------------------------------------------------------
# Filters (cached per parameter set): all scaled to unit output power for unit white noise.


def _unit_power(sos: np.ndarray, sample_rate: int) -> np.ndarray:
    """``sos`` scaled so that unit-variance white noise comes out with unit power."""
    impulse = np.zeros(sample_rate)
    impulse[0] = 1.0
    energy = float(np.sum(np.square(scipy.signal.sosfilt(sos, impulse))))
    out = np.array(sos, dtype=np.float64)
    out[0, :3] /= math.sqrt(energy)
    return out


@functools.lru_cache(maxsize=512)
def _filter(kind: str, freq: float, q: float, sample_rate: int) -> np.ndarray:
    """A unit-power sos filter: ``lowpass``/``highpass`` (2nd order), ``lowpass1``, ``peak``."""
    if kind == "peak":
        b, a = scipy.signal.iirpeak(freq, q, fs=sample_rate)
        sos = scipy.signal.tf2sos(b, a)
    elif kind == "lowpass1":
        sos = scipy.signal.butter(1, freq, btype="lowpass", fs=sample_rate, output="sos")
    else:
        sos = scipy.signal.butter(2, freq, btype=kind, fs=sample_rate, output="sos")
    return _unit_power(sos, sample_rate)


@functools.lru_cache(maxsize=8)
def _pink_filter(sample_rate: int) -> np.ndarray:
    """Unit-power pink (1/f) noise filter: Kellet's 3-pole approximation as sos."""
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    return _unit_power(scipy.signal.tf2sos(b, a), sample_rate)


@functools.lru_cache(maxsize=256)
def _flow_filter(machine: MachineParams, sample_rate: int) -> np.ndarray:
    """Unit-power flow-body filter: a low-pass (the colour) in series with resonance peaks."""
    sections = [scipy.signal.butter(2, machine.flow_corner_hz, btype="lowpass", fs=sample_rate, output="sos")]
    for f, q, db in zip(machine.resonances_hz, machine.resonance_q, machine.resonance_db):
        if f < 0.45 * sample_rate:
            # Peaking section 1 + g * bandpass(f, q): +db at f, unity far from it, no notches.
            b, a = scipy.signal.iirpeak(f, q, fs=sample_rate)
            sections.append(scipy.signal.tf2sos(a + (10 ** (db / 20) - 1) * b, a))
    return _unit_power(np.vstack(sections), sample_rate)


class _Sos:
    """An sos filter with its state: filtering consecutive blocks equals filtering them joined."""

    def __init__(self, sos: np.ndarray) -> None:
        self.sos = sos
        self.zi = np.zeros((sos.shape[0], 2))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y, self.zi = scipy.signal.sosfilt(self.sos, x, zi=self.zi)
        return y


# --------------------------------------------------------------------------------------------
# Block renderers. Each yields float64 blocks of the given lengths with state carried across.

Severity = Callable[[np.ndarray], np.ndarray]


def _no_fault(t: np.ndarray) -> np.ndarray:
    """Severity 0 everywhere."""
    return np.zeros_like(t)


def _wander_path(
    *, machine: MachineParams, n_samples: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Relative speed deviation at :data:`_WANDER_RATE`: smooth, stationary from the first sample."""
    n = int(math.ceil(n_samples / sample_rate * _WANDER_RATE)) + 2
    p = math.exp(-1.0 / (machine.wander_seconds * _WANDER_RATE))
    g = math.sqrt((1 - p * p) ** 3 / (1 + p * p))  # two cascaded one-poles -> unit variance
    sos = np.array([[g, 0.0, 0.0, 1.0, -p, 0.0], [1.0, 0.0, 0.0, 1.0, -p, 0.0]])
    pre = int(8 * machine.wander_seconds * _WANDER_RATE)  # settle into the stationary state
    return scipy.signal.sosfilt(sos, rng.standard_normal(pre + n))[pre:] * machine.wander


def _machine_blocks(
    *,
    machine: MachineParams,
    fault: str,
    severity: Severity,
    sample_rate: int,
    rng: np.random.Generator,
    lengths: list[int],
    gain: float,
) -> Iterator[np.ndarray]:
    """The machine's sound (healthy part times ``gain``; fault parts in calibrated units)."""
    fs = sample_rate
    r_wander, r_phase, r_flow, r_jitter, r_amp, r_hiss = rng.spawn(6)
    wander = _wander_path(machine=machine, n_samples=sum(lengths), sample_rate=fs, rng=r_wander)
    t_wander = np.arange(wander.size) / _WANDER_RATE
    nyq_safe = 0.45 * fs / 1.1  # skip tones that wander could push near Nyquist
    f0 = machine.shaft_hz

    shaft = [(k + 1, a) for k, a in enumerate(machine.shaft_harmonics) if (k + 1) * f0 < nyq_safe]
    bp = machine.blade_pass_hz
    blade = [(m + 1, a) for m, a in enumerate(machine.blade_harmonics) if (m + 1) * bp < nyq_safe]
    shaft_phase = r_phase.uniform(0, 2 * np.pi, len(machine.shaft_harmonics))
    blade_phase = r_phase.uniform(0, 2 * np.pi, len(machine.blade_harmonics))
    am_phase = float(r_phase.uniform(0, 2 * np.pi))  # also the rotor whirl's phase under imbalance
    tonal_power = sum(a * a / 2 for _, a in shaft) + sum(a * a / 2 for _, a in blade)
    flow_amp = math.sqrt(tonal_power * 10 ** (machine.flow_noise_db / 10))

    body = _Sos(_flow_filter(machine, fs))
    hiss = _Sos(_filter("highpass", min(machine.hiss_hz, 0.4 * fs), 0.0, fs))

    imb_amp = math.sqrt(2 * 10 ** (IMBALANCE_1X_DB / 10)) / gain  # raw units: scaled by gain below
    bearing_res = _Sos(_filter("peak", min(machine.bearing_resonance_hz, 0.4 * fs), machine.bearing_q, fs))
    # Impact amplitude so that the impact train has power BEARING_DB at severity 1 (unit-energy ring).
    mean_sq = (1 + _BEARING_LOAD_MOD**2 / 2) * math.exp(2 * _BEARING_AMP_SPREAD**2)
    impact_amp = math.sqrt(10 ** (BEARING_DB / 10) * fs / (machine.bearing_hz * mean_sq))

    cycles0 = 0.0  # shaft revolutions, mod 1
    bearing0 = float(r_phase.random())  # bearing defect cycles, mod 1
    pending_pos = np.empty(0, dtype=np.int64)  # absolute sample index of impacts not yet placed
    pending_amp = np.empty(0)
    start = 0
    for n in lengths:
        t = (start + np.arange(n)) / fs
        s = severity(t) if fault != "normal" else None
        freq = f0 * (1.0 + np.interp(t, t_wander, wander))
        if fault == "clogging":
            freq *= 1.0 + machine.clog_shift * s
        revs = np.cumsum(freq) / fs
        phi = 2 * np.pi * (cycles0 + revs)

        tonal = np.zeros(n)
        for k, a in shaft:
            amp: float | np.ndarray = a
            if fault == "imbalance" and k <= len(IMBALANCE_HARMONICS):
                amp = a + s * imb_amp * IMBALANCE_HARMONICS[k - 1]
            tonal += amp * np.cos(k * phi + shaft_phase[k - 1])
        blade_tones = np.zeros(n)
        for m, a in blade:
            amp = a
            if fault == "clogging":
                db = CLOG_BLADE_FUNDAMENTAL_DB if m == 1 else CLOG_BLADE_HARMONICS_DB
                amp = a * 10 ** (db * s / 20)
            blade_tones += amp * np.cos(m * machine.n_blades * phi + blade_phase[m - 1])
        if fault == "imbalance":
            blade_tones *= 1.0 + IMBALANCE_BLADE_AM_DEPTH * s * np.cos(phi + am_phase)
        tonal += blade_tones

        # Two sources: turbulence shaped by the structure, and a hiss (jets through gaps).
        flow_body = body(r_flow.standard_normal(n)) * math.sqrt(1.0 - machine.hiss_share)
        flow_hiss = hiss(r_hiss.standard_normal(n)) * math.sqrt(machine.hiss_share)
        if fault == "clogging":
            flow_body *= 10 ** (CLOG_FLOW_DB * s / 20)
            flow_hiss *= 10 ** (CLOG_HISS_DB * s / 20)
        flow = flow_body + flow_hiss
        flow *= flow_amp * (1.0 + machine.blade_noise_mod * np.cos(machine.n_blades * phi + blade_phase[0]))

        depth: float | np.ndarray = machine.am_depth
        if fault == "imbalance":
            depth = machine.am_depth + IMBALANCE_AM_DEPTH * s
        out = (tonal + flow) * (1.0 + depth * np.cos(phi + am_phase)) * gain

        if fault == "bearing":
            defect = bearing0 + machine.bearing_ratio * revs
            hit = np.flatnonzero(np.diff(np.floor(np.concatenate(([bearing0], defect)))))
            period = fs / (machine.bearing_ratio * freq[hit])
            delay = np.floor(r_jitter.uniform(0.0, 2 * _BEARING_JITTER, hit.size) * period).astype(np.int64)
            amps = (
                impact_amp
                * s[hit]
                * (1.0 + _BEARING_LOAD_MOD * np.cos(phi[hit]))
                * np.exp(r_amp.normal(0.0, _BEARING_AMP_SPREAD, hit.size))
            )
            pending_pos = np.concatenate((pending_pos, start + hit + delay))
            pending_amp = np.concatenate((pending_amp, amps))
            now = pending_pos < start + n
            impulses = np.zeros(n)
            np.add.at(impulses, pending_pos[now] - start, pending_amp[now])
            pending_pos, pending_amp = pending_pos[~now], pending_amp[~now]
            out += bearing_res(impulses)
            bearing0 = float(defect[-1] % 1.0)

        cycles0 = float((cycles0 + revs[-1]) % 1.0)
        start += n
        yield out


@functools.lru_cache(maxsize=256)
def _reference_power(machine: MachineParams, sample_rate: int) -> float:
    """Mean power of the healthy machine before calibration (a fixed-seed render)."""
    return float(np.mean(np.square(_calibration_render(machine, sample_rate, gain=1.0))))


def _calibration_render(machine: MachineParams, sample_rate: int, *, gain: float) -> np.ndarray:
    """The healthy machine rendered with a fixed seed: what its level calibrations measure."""
    blocks = _machine_blocks(
        machine=machine,
        fault="normal",
        severity=_no_fault,
        sample_rate=sample_rate,
        rng=np.random.default_rng(0xCA1B),
        lengths=[int(_CALIBRATION_SECONDS * sample_rate)],
        gain=gain,
    )
    return next(blocks)


@functools.lru_cache(maxsize=64)
def _site_power(index: int, sample_rate: int) -> float:
    """Mean power of a distant site machine after its distance low-pass (fixed-seed render)."""
    machine, corner = _site_machine(index)
    y = _calibration_render(machine, sample_rate, gain=1.0 / math.sqrt(_reference_power(machine, sample_rate)))
    return float(np.mean(np.square(_Sos(_filter("lowpass1", corner, 0.0, sample_rate))(y))))


def _clank(*, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One distant metallic impact: a few damped inharmonic modes and a short noise burst."""
    fs = sample_rate
    n_modes = int(rng.integers(2, 5))
    freqs = [_loguniform(rng, 200.0, min(2500.0, 0.4 * fs)) for _ in range(n_modes)]
    decays = rng.uniform(0.03, 0.2, n_modes)
    amps = rng.uniform(0.3, 1.0, n_modes)
    t = np.arange(int(min(5 * decays.max(), 1.0) * fs)) / fs
    x = sum(a * np.exp(-t / d) * np.sin(2 * np.pi * f * t) for a, d, f in zip(amps, decays, freqs))
    x = x + rng.uniform(0.5, 1.5) * rng.standard_normal(t.size) * np.exp(-t / 0.004)
    x *= np.minimum(1.0, t * 1000.0)  # 1 ms attack
    return x / math.sqrt(float(np.sum(x * x)))


def _background_blocks(
    *, sample_rate: int, rng: np.random.Generator, lengths: list[int], mains_hz: float = MAINS_HZ
) -> Iterator[np.ndarray]:
    """Factory background of unit expected power: pink+brown noise, hum, clanks, a distant machine."""
    fs = sample_rate
    r_mix, r_pink, r_brown, r_hum, r_clank, r_site = rng.spawn(6)
    share = np.array([0.43, 0.06, 0.1, 0.11, 0.3]) * r_mix.uniform(0.7, 1.3, 5)
    w_pink, w_brown, w_hum, w_clank, w_site = np.sqrt(share / share.sum())

    pink = _Sos(_pink_filter(fs))
    brown = _Sos(_filter("lowpass1", 25.0, 0.0, fs))

    # Magnetostriction hums at twice the mains frequency and its harmonics; pickup adds odd ones.
    profile = (0.5, 1.0, 0.3, 0.5, 0.2, 0.3, 0.1, 0.15)
    harmonics = [h for h in range(1, len(profile) + 1) if h * mains_hz < 0.45 * fs]
    hum_amp = np.array([profile[h - 1] * r_hum.uniform(0.6, 1.4) for h in harmonics])
    hum_amp /= math.sqrt(float(np.sum(hum_amp**2)) / 2)  # unit power
    hum_phase = r_hum.uniform(0, 2 * np.pi, len(harmonics))

    total = sum(lengths)
    rate = float(r_clank.uniform(0.1, 0.3))  # events per second
    n_events = int(r_clank.poisson(rate * total / fs))
    ev_start = np.sort(r_clank.integers(0, max(total, 1), n_events))
    ev_level = np.exp(r_clank.normal(0.0, 0.5, n_events)) * math.sqrt(fs / (rate * math.exp(0.5)))
    ev_seed = r_clank.integers(0, 2**63, n_events)

    index = int(r_site.integers(_N_SITE_MACHINES))
    site, corner = _site_machine(index)
    site_lp = _Sos(_filter("lowpass1", corner, 0.0, fs))
    site_blocks = _machine_blocks(
        machine=site,
        fault="normal",
        severity=_no_fault,
        sample_rate=fs,
        rng=r_site.spawn(1)[0],
        lengths=lengths,
        gain=1.0 / math.sqrt(_reference_power(site, fs) * _site_power(index, fs)),
    )

    start = 0
    for n in lengths:
        out = w_pink * pink(r_pink.standard_normal(n))
        out += w_brown * brown(r_brown.standard_normal(n))
        idx = start + np.arange(n)
        for h, a, p in zip(harmonics, hum_amp, hum_phase):
            out += w_hum * a * np.cos(2 * np.pi * h * mains_hz / fs * idx + p)
        out += w_site * site_lp(next(site_blocks))
        for e in np.flatnonzero((ev_start < start + n) & (ev_start + fs >= start)):
            wave = _clank(sample_rate=fs, rng=np.random.default_rng(int(ev_seed[e]))) * ev_level[e] * w_clank
            lo = int(ev_start[e]) - start
            a, b = max(lo, 0), min(lo + wave.size, n)
            if b > a:
                out[a:b] += wave[a - lo : b - lo]
        start += n
        yield out


# --------------------------------------------------------------------------------------------
# Public renderers.


def _check_common(*, fault: str, seconds: float, sample_rate: int, snr_db: float | None) -> int:
    """Validate shared arguments; return the number of samples."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate < _MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be an integer >= {_MIN_SAMPLE_RATE}, got {sample_rate!r}")
    if not (isinstance(seconds, numbers.Real) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    if snr_db is not None and not (isinstance(snr_db, numbers.Real) and math.isfinite(snr_db)):
        raise ValueError(f"snr_db must be a finite number or None, got {snr_db!r}")
    n = int(round(seconds * sample_rate))
    if n < 1:
        raise ValueError(f"seconds={seconds} gives no samples at {sample_rate} Hz")
    return n


def _block_lengths(n: int, block: int) -> list[int]:
    """``n`` split into blocks of ``block`` samples (the last one shorter)."""
    return [min(block, n - i) for i in range(0, n, block)]


def _render(
    *,
    machine: MachineParams,
    fault: str,
    severity: Severity,
    n: int,
    sample_rate: int,
    snr_db: float | None,
    rng: np.random.Generator,
    block: int,
) -> np.ndarray:
    """Machine (+ background at ``snr_db``) at the calibrated level, float32, peak-limited."""
    lengths = _block_lengths(n, block)
    r_machine, r_background = rng.spawn(2)
    machine_blocks = _machine_blocks(
        machine=machine,
        fault=fault,
        severity=severity,
        sample_rate=sample_rate,
        rng=r_machine,
        lengths=lengths,
        gain=1.0 / math.sqrt(_reference_power(machine, sample_rate)),
    )
    if snr_db is None:
        level = TARGET_RMS
        background_blocks = None
    else:
        level = TARGET_RMS / math.sqrt(1.0 + 10 ** (-snr_db / 10))
        background_blocks = _background_blocks(sample_rate=sample_rate, rng=r_background, lengths=lengths)
    out = np.empty(n, dtype=np.float32)
    pos = 0
    for m in machine_blocks:
        if background_blocks is not None:
            # SNR is healthy-machine power over background power: both calibrated to 1.
            m = mix_at_snr(
                signal=m, noise=next(background_blocks), snr_db=snr_db, signal_power=1.0, noise_power=1.0
            )
        out[pos : pos + m.size] = m * level
        pos += m.size
    peak = max(float(out.max()), -float(out.min()))  # no |out| copy: long recordings are big
    if peak > PEAK_LIMIT:
        out *= np.float32(PEAK_LIMIT / peak)
    return out


def synth_clip(
    *,
    machine: MachineParams,
    fault: str,
    severity: float,
    seconds: float,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    snr_db: float | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """One clip of ``machine`` with ``fault`` at a constant ``severity``: float32 mono in [-1, 1].

    ``snr_db`` is healthy-machine power over background power; ``None`` gives the clean machine.
    ``severity`` (in [0, 1]) is ignored for ``normal``. The same ``rng`` state gives the same clip,
    and clips of different faults from equal ``rng`` states share everything but the fault.
    """
    n = _check_common(fault=fault, seconds=seconds, sample_rate=sample_rate, snr_db=snr_db)
    if not (isinstance(severity, numbers.Real) and 0.0 <= severity <= 1.0):
        raise ValueError(f"severity must be in [0, 1], got {severity!r}")
    return _render(
        machine=machine,
        fault=fault,
        severity=functools.partial(np.full_like, fill_value=float(severity)),
        n=n,
        sample_rate=int(sample_rate),
        snr_db=snr_db,
        rng=rng,
        block=int(10 * sample_rate),
    )


def synth_recording(
    *,
    machine: MachineParams,
    fault: str,
    fault_start: float,
    seconds: float,
    ramp_seconds: float = 20.0,
    max_severity: float = 1.0,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    snr_db: float | None = 0.0,
    seed: int,
    chunk_seconds: float = 10.0,
) -> np.ndarray:
    """A long recording: healthy until ``fault_start`` (s), then the fault ramps up to ``max_severity``.

    Severity follows :func:`severity_profile` (linear over ``ramp_seconds``, then held), applied
    sample by sample with continuous phase, so there are no clicks. Rendered in chunks of
    ``chunk_seconds`` (a memory knob: the output does not depend on it); an hour at 16 kHz needs
    the 230 MB float32 result plus a few MB.
    """
    n = _check_common(fault=fault, seconds=seconds, sample_rate=sample_rate, snr_db=snr_db)
    if not (isinstance(fault_start, numbers.Real) and 0.0 <= fault_start <= seconds):
        raise ValueError(f"fault_start must be in [0, seconds={seconds}], got {fault_start!r}")
    if not (isinstance(max_severity, numbers.Real) and 0.0 <= max_severity <= 1.0):
        raise ValueError(f"max_severity must be in [0, 1], got {max_severity!r}")
    if not (isinstance(ramp_seconds, numbers.Real) and math.isfinite(ramp_seconds) and ramp_seconds > 0):
        raise ValueError(f"ramp_seconds must be > 0, got {ramp_seconds!r}")
    if not (isinstance(chunk_seconds, numbers.Real) and chunk_seconds * sample_rate >= 1):
        raise ValueError(f"chunk_seconds must give at least one sample, got {chunk_seconds!r}")
    return _render(
        machine=machine,
        fault=fault,
        severity=lambda t: severity_profile(
            t=t,
            fault_start=float(fault_start),
            ramp_seconds=float(ramp_seconds),
            max_severity=float(max_severity),
        ),
        n=n,
        sample_rate=int(sample_rate),
        snr_db=snr_db,
        rng=np.random.default_rng(seed),
        block=int(round(chunk_seconds * sample_rate)),
    )


def synth_background(
    *, seconds: float, sample_rate: int = DEFAULT_SAMPLE_RATE, rng: np.random.Generator
) -> np.ndarray:
    """Factory background alone, unit expected power, float32 (for custom mixes and checks)."""
    n = _check_common(fault="normal", seconds=seconds, sample_rate=sample_rate, snr_db=None)
    lengths = _block_lengths(n, int(10 * sample_rate))
    blocks = _background_blocks(sample_rate=int(sample_rate), rng=rng, lengths=lengths)
    return np.concatenate(list(blocks)).astype(np.float32)

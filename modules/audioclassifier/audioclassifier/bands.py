"""Why an alert fired, in frequency bands: the bands whose level or variability left the machine's normal.

Every window's log-mel (dB) gives, per mel band, its **level** (mean over the window's frames)
and its **variability** (standard deviation over the frames: a knock, a rattle or a crackle
raises it, a steady hum does not). A :class:`BandProfile` is the machine's normal for both:
their mean and spread over normal windows. :func:`explain` compares an alert's window with it:

* per band, the change in dB of level and of variability, and how unusual each change is
  (divided by the normal spread, with a floor of 1 dB for level and 0.5 dB for variability): a
  change counts when it is unusual (at least :data:`MIN_DEPARTURE` spreads) and then by its size in dB;
* the band that changed most, grown to its neighbours that changed at least half as much in the
  same direction, is a *range* (in Hz, between the mel bands' crossover points); up to three
  ranges, each from the bands left over, none under :data:`MIN_CHANGE_DB`;
* a one-line summary: ``+9 dB at 2.1-4.3 kHz, impulsive`` (level change, range, and
  ``impulsive`` when the variability rose by 2 dB or more and that stands out, ``steadier`` when it fell).

The normal is, in this order (:class:`NormalBands`): the profile learned with the machine's on-site
normal model (kept in its learned state), else the one heard during the last site calibration
(``<state dir>/bands/<machine>.json``), else a running profile of this run's windows that scored
under the threshold while the machine's health was ``ok`` (at least :data:`MIN_RUNNING_WINDOWS`;
it follows slow changes, so a fault that developed over hours is partly in it: the learned and
calibrated profiles, heard while the machine was known to be healthy, are the sound reference).

Cost: :func:`window_bands` is two reductions over the window (tens of microseconds) and
:func:`explain` a few vector operations over the bands (bench/explain.py measures both).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audioclassifier.clips import safe_part
from audioclassifier.durable import atomic_file
from audioclassifier.features import LogMelParams, mel_frequencies

__all__ = ["MIN_DEPARTURE", "MIN_RUNNING_WINDOWS", "BandAccumulator", "BandProfile", "NormalBands", "band_edges",
           "explain", "window_bands"]

log = logging.getLogger(__name__)

MIN_DEPARTURE = 3.0  #: normal spreads a band's change must reach to count
MIN_CHANGE_DB = 1.0  #: and dB: smaller changes are not named
MIN_RUNNING_WINDOWS = 30  #: windows a running profile needs before it explains anything
RUNNING_WINDOWS = 3600  #: the running profile's memory (exponential, in windows)
LEVEL_FLOOR_DB, VARIABILITY_FLOOR_DB = 1.0, 0.5  #: least spread assumed (a too-steady normal flags noise)
IMPULSIVE_DB = 2.0  #: variability rise that makes a range "impulsive"
MAX_RANGES = 3
_FORMAT = 1


def window_bands(logmel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A window's per-band level and variability (dB, float64), from its ``(n_mels, frames)`` log-mel."""
    x = np.asarray(logmel, dtype=np.float32)
    level = x.mean(axis=1)
    deviation = x - level[:, None]
    variability = np.sqrt(np.einsum("ij,ij->i", deviation, deviation) / x.shape[1])
    return level.astype(np.float64), variability.astype(np.float64)


def band_edges(params: LogMelParams) -> np.ndarray:
    """``n_mels + 1`` edges (Hz) that tile the mel bands: band ``i`` spans ``[edges[i], edges[i+1])``,
    each edge halfway (in mel) between two bands' centres, the outer ones at fmin and fmax."""
    n = params.n_mels
    f = mel_frequencies(n_mels=2 * n + 1, fmin=params.fmin, fmax=params.fmax_hz)  # centres at odd points
    return np.asarray(f[0::2], dtype=np.float64)


@dataclass(frozen=True)
class BandProfile:
    """A machine's normal per band: mean and spread of level and variability (dB)."""

    source: str  # learned | calibration | running
    windows: int
    level_mean: np.ndarray
    level_sd: np.ndarray
    var_mean: np.ndarray
    var_sd: np.ndarray

    @property
    def n_bands(self) -> int:
        return int(self.level_mean.shape[0])

    def to_dict(self) -> dict[str, Any]:
        def r(a: np.ndarray) -> list[float]:
            return [round(float(v), 4) for v in a]

        return {"format": _FORMAT, "source": self.source, "windows": self.windows, "level_mean": r(self.level_mean),
                "level_sd": r(self.level_sd), "var_mean": r(self.var_mean), "var_sd": r(self.var_sd)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str | None = None) -> BandProfile:
        """Read :meth:`to_dict`; ValueError when it is not one."""
        if not isinstance(d, Mapping) or d.get("format") != _FORMAT:
            raise ValueError("not a band profile")
        arrays = [np.asarray(d.get(k), dtype=np.float64) for k in ("level_mean", "level_sd", "var_mean", "var_sd")]
        n = arrays[0].shape
        if len(n) != 1 or n[0] < 1 or any(a.shape != n or not np.isfinite(a).all() for a in arrays):
            raise ValueError("band profile arrays are inconsistent")
        windows = d.get("windows")
        if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
            raise ValueError("band profile window count is not a positive integer")
        return cls(str(source or d.get("source") or "?"), windows, *arrays)


class BandAccumulator:
    """Means and spreads of level and variability over windows: plain averages, or, with
    ``memory``, exponential ones once ``memory`` windows were seen (a running profile that
    follows slow changes). With weight ``1/n`` the update is Welford's, exactly."""

    def __init__(self, n_bands: int, *, memory: int | None = None) -> None:
        self.n = 0
        self.memory = memory
        self._mean = np.zeros((2, n_bands))
        self._var = np.zeros((2, n_bands))

    def add(self, level: np.ndarray, variability: np.ndarray) -> None:
        x = np.stack((level, variability))
        if x.shape != self._mean.shape:
            return  # another front end: ignored (the owner rebinds on a model change)
        self.n += 1
        weight = 1.0 / self.n if self.memory is None else max(1.0 / self.n, 1.0 / self.memory)
        delta = x - self._mean
        self._mean += weight * delta
        self._var = (1.0 - weight) * (self._var + weight * delta * delta)

    def profile(self, source: str) -> BandProfile | None:
        """The profile so far (None before two windows)."""
        if self.n < 2:
            return None
        sd = np.sqrt(self._var)
        return BandProfile(source, self.n, self._mean[0].copy(), sd[0], self._mean[1].copy(), sd[1])


def _hz(f: float) -> str:
    if f < 1000:
        return f"{f:.0f}"
    return f"{f / 1000:.1f}".rstrip("0").rstrip(".")


def _span(lo: float, hi: float) -> str:
    """``200-400 Hz``, ``2.1-4.3 kHz``, ``800 Hz-1.2 kHz``, ``1.06-1.13 kHz``."""
    if hi < 1000:
        return f"{_hz(lo)}-{_hz(hi)} Hz"
    if lo >= 1000:
        a, b = _hz(lo), _hz(hi)
        if a == b:
            a, b = f"{lo / 1000:.2f}", f"{hi / 1000:.2f}"
        return f"{a}-{b} kHz"
    return f"{_hz(lo)} Hz-{_hz(hi)} kHz"


def explain(level: np.ndarray, variability: np.ndarray, profile: BandProfile, edges: np.ndarray) -> dict[str, Any]:
    """The explanation of a window against ``profile`` (see the module docstring):
    ``{"summary", "bands": [{"low_hz", "high_hz", "level_db", "variability_db", "departure", "kind"}],
    "reference": {"source", "windows"}}``."""
    d_level = level - profile.level_mean
    d_var = variability - profile.var_mean
    z_level = d_level / np.maximum(profile.level_sd, LEVEL_FLOOR_DB)
    z_var = d_var / np.maximum(profile.var_sd, VARIABILITY_FLOOR_DB)
    # a band's change in dB counts where it is unusual for this machine (MIN_DEPARTURE spreads or more)
    m_level = np.where(np.abs(z_level) >= MIN_DEPARTURE, np.abs(d_level), 0.0)
    m_var = np.where(np.abs(z_var) >= MIN_DEPARTURE, np.abs(d_var), 0.0)
    free = np.maximum(m_level, m_var)
    # the direction of each band's main change: level up/down (+1/-1) or variability up/down (+2/-2)
    direction = np.where(m_level >= m_var, np.sign(d_level), 2 * np.sign(d_var))
    ranges: list[dict[str, Any]] = []
    n = len(free)
    while len(ranges) < MAX_RANGES:
        top = int(np.argmax(free))
        peak = float(free[top])
        if not peak >= MIN_CHANGE_DB:
            break
        lo = hi = top
        while lo > 0 and free[lo - 1] >= peak / 2 and direction[lo - 1] == direction[top]:
            lo -= 1
        while hi < n - 1 and free[hi + 1] >= peak / 2 and direction[hi + 1] == direction[top]:
            hi += 1
        free[lo : hi + 1] = -np.inf
        sl = slice(lo, hi + 1)
        z_v = float(z_var[sl].mean())
        level_db, var_db = round(float(d_level[sl].mean()), 1), round(float(d_var[sl].mean()), 1)
        kind = ("impulsive" if var_db >= IMPULSIVE_DB and z_v >= MIN_DEPARTURE / 2 else
                "steadier" if var_db <= -IMPULSIVE_DB and z_v <= -MIN_DEPARTURE / 2 else
                "louder" if level_db >= 0 else "quieter")
        ranges.append({"low_hz": round(float(edges[lo]), 1), "high_hz": round(float(edges[hi + 1]), 1),
                       "level_db": level_db, "variability_db": var_db,
                       "departure": round(float(np.maximum(np.abs(z_level[sl]), np.abs(z_var[sl])).max()), 1),
                       "kind": kind})
    return {"summary": _summary(ranges), "bands": ranges,
            "reference": {"source": profile.source, "windows": profile.windows}}


def _phrase(r: Mapping[str, Any]) -> str:
    text = f"{r['level_db']:+.0f} dB at {_span(r['low_hz'], r['high_hz'])}"
    if r["kind"] in ("impulsive", "steadier"):
        text += f", {r['kind']}"
    return text


def _summary(ranges: list[dict[str, Any]]) -> str:
    if not ranges:
        return "no frequency band departs clearly from the machine's normal sound"
    return "; ".join(_phrase(r) for r in ranges[:2])


class NormalBands:
    """Which normal an alert is explained against, per machine (see the module docstring).

    The pipeline tells it every scored window (:meth:`window`), the calibration's start and end
    and the learned profile in force; :meth:`explain` answers for an alert's window, or None when
    no normal is known yet. ``directory`` (None: memory only) keeps the calibration profiles.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.params: LogMelParams | None = None
        self.machine = ""
        self.edges = np.zeros(0)
        self.learned: BandProfile | None = None
        self.calibrated: BandProfile | None = None
        self._running: BandAccumulator | None = None
        self._calibrating: BandAccumulator | None = None

    def bind(self, params: LogMelParams, machine: str) -> None:
        """Use ``params``' bands for ``machine`` (at start, after a model swap or a rename)."""
        if (params, machine) == (self.params, self.machine):
            return
        self.params, self.machine = params, machine
        self.edges = band_edges(params)
        self._running = BandAccumulator(params.n_mels, memory=RUNNING_WINDOWS)
        self._calibrating = None
        self.calibrated = self._load()

    # -- what the pipeline tells it ---------------------------------------------------------------

    def window(self, level: np.ndarray, variability: np.ndarray, *, normal: bool) -> None:
        """A scored window's bands; ``normal``: under the threshold with the health ``ok``."""
        if self._calibrating is not None:
            self._calibrating.add(level, variability)
        elif normal and self._running is not None:
            self._running.add(level, variability)

    @property
    def calibrating(self) -> bool:
        return self._calibrating is not None

    def start_calibration(self) -> None:
        if self.params is not None:
            self._calibrating = BandAccumulator(self.params.n_mels)

    def end_calibration(self, ok: bool) -> None:
        """The calibration ended: when ``ok``, what it heard becomes (and is kept as) the normal."""
        acc, self._calibrating = self._calibrating, None
        profile = acc.profile("calibration") if ok and acc is not None else None
        if profile is None:
            return
        self.calibrated = profile
        self._save(profile)

    def set_learned(self, profile: BandProfile | None) -> None:
        self.learned = profile if profile is None or self.params is None or \
            profile.n_bands == self.params.n_mels else None

    # -- the answer -------------------------------------------------------------------------------

    def reference(self) -> BandProfile | None:
        """The normal in force: learned, else calibrated, else running (once it has enough windows)."""
        if self.learned is not None:
            return self.learned
        if self.calibrated is not None:
            return self.calibrated
        if self._running is not None and self._running.n >= MIN_RUNNING_WINDOWS:
            return self._running.profile("running")
        return None

    def explain(self, logmel: np.ndarray) -> dict[str, Any] | None:
        """The explanation of an alert's window, or None when no normal is known yet."""
        ref = self.reference()
        if ref is None or ref.n_bands != logmel.shape[0]:
            return None
        level, variability = window_bands(logmel)
        return explain(level, variability, ref, self.edges)

    def status(self) -> dict[str, Any]:
        ref = self.reference()
        return {"source": None if ref is None else ref.source, "windows": 0 if ref is None else ref.windows}

    # -- calibration profiles on disk -------------------------------------------------------------

    def _path(self) -> Path | None:
        return None if self.directory is None else self.directory / f"{safe_part(self.machine)}.json"

    def _front_end(self) -> dict[str, Any]:
        assert self.params is not None
        return self.params.to_dict()

    def _save(self, profile: BandProfile) -> None:
        path = self._path()
        if path is None:
            return
        try:
            with atomic_file(path) as fh:
                fh.write(json.dumps({"front_end": self._front_end(), **profile.to_dict()}).encode())
        except OSError as exc:
            log.warning("bands: the calibration's band profile could not be kept (%s): used until the end of this run",
                        exc)

    def _load(self) -> BandProfile | None:
        path = self._path()
        if path is None or not path.is_file():
            return None
        try:
            d = json.loads(path.read_text())
            if d.get("front_end") != self._front_end():
                log.info("bands: %s was heard with another front end: not used", path.name)
                return None
            return BandProfile.from_dict(d, source="calibration")
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("bands: %s unreadable (%s): not used", path.name, exc)
            return None

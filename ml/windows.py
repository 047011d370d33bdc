"""Cut labelled recordings into model windows of log-mel columns, the way the edge module sees them.

A window of ``window_samples`` samples starting at a multiple of ``hop_length`` has exactly the
log-mel columns ``[k, k + window_frames)`` of the whole file (frames are not centered), so each
file's log-mel is computed once and sliced. Files shorter than one window are tiled (repeated)
up to one window, as a short clip looped; unreadable files are reported and skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from audioclassifier.audio_io import AudioFileError, audio_info, load_audio
from audioclassifier.features import LogMelParams, logmel
from ml.dataset import Item

__all__ = ["Source", "WindowSet", "check_rate", "file_windows", "load_windows", "read_signal", "source_of",
           "window_frames"]

log = logging.getLogger(__name__)


def window_frames(params: LogMelParams, window_seconds: float) -> int:
    """Log-mel columns in a window of ``window_seconds`` (as ``ModelCard.window_frames``)."""
    return params.frames_for(int(round(window_seconds * params.sample_rate)))


@dataclass
class WindowSet:
    """Windows of many files: ``x[i]`` is a ``(n_mels, frames)`` dB window of file ``file_index[i]``."""

    x: np.ndarray
    file_index: np.ndarray
    items: list[Item]
    failed: dict[str, str] = field(default_factory=dict)
    #: channels (axes) of each kept file before the mix-down
    channels: dict[str, int] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        """The label of every window (its file's label)."""
        names = np.array([it.label for it in self.items], dtype=object)
        return names[self.file_index] if len(self.file_index) else np.empty(0, dtype=object)

    @property
    def groups(self) -> np.ndarray:
        """The group (machine ID or recording) of every window."""
        names = np.array([it.group for it in self.items], dtype=object)
        return names[self.file_index] if len(self.file_index) else np.empty(0, dtype=object)

    def subset_files(self, keep: Sequence[int]) -> WindowSet:
        """The windows of the files ``keep`` (indices into ``items``), renumbered."""
        keep = list(keep)
        remap = np.full(len(self.items), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        mask = remap[self.file_index] >= 0
        return WindowSet(self.x[mask], remap[self.file_index[mask]], [self.items[i] for i in keep], dict(self.failed),
                         {str(self.items[i].path): self.channels[str(self.items[i].path)] for i in keep
                          if str(self.items[i].path) in self.channels})


def file_windows(s_db: np.ndarray, frames: int, hop_frames: int) -> np.ndarray:
    """Slice a file's ``(n_mels, T)`` log-mel into ``(n, n_mels, frames)`` windows every ``hop_frames``.

    The last window is aligned to the end of the file when the hops do not reach it, so no audio
    at the end is left out. A file shorter than one window is tiled along time.
    """
    n_mels, t = s_db.shape
    if t == 0:
        raise ValueError("no log-mel frames")
    if t < frames:
        s_db = np.tile(s_db, (1, -(-frames // t)))[:, :frames]
        t = frames
    starts = list(range(0, t - frames + 1, hop_frames))
    if starts[-1] != t - frames:
        starts.append(t - frames)
    return np.stack([s_db[:, a : a + frames] for a in starts]).astype(np.float32, copy=False)


class Source:
    """How one input file reaches the front end: its rate and channel (axis) count."""

    def __init__(self, rate: float, channels: int) -> None:
        self.rate = rate
        self.channels = channels


def source_of(path: str | os.PathLike[str], *, params: LogMelParams, sensor: bool = False) -> Source:
    """The source rate and channel count of an audio or series file (header only for audio)."""
    from ml.series import is_series, read_series, series_rate

    if is_series(path):
        return Source(series_rate(path, params.sample_rate), int(read_series(path).shape[1]))
    info = audio_info(path, sensor=sensor)
    return Source(float(info.sample_rate), info.channels)


def check_rate(path: str | os.PathLike[str], rate: float, model_rate: int, *, allow_upsampling: bool) -> str | None:
    """Refuse (AudioFileError) a source slower than the model unless ``allow_upsampling``; then a warning.

    Upsampling adds no bandwidth: the model's upper bands are empty and the scores mean nothing."""
    if rate >= model_rate:
        return None
    msg = (f"source rate {rate:g} Hz is below the model's {model_rate} Hz: upsampling leaves the bands over "
           f"{rate / 2:g} Hz empty and the scores are not comparable")
    if not allow_upsampling:
        raise AudioFileError(path, msg + " (--allow-upsampling to score it anyway)")
    return msg


def read_signal(path: str | os.PathLike[str], *, params: LogMelParams, channel: int | None,
                sensor: bool = False) -> np.ndarray:
    """One signal at the front end's rate from an audio file or (with ``sensor``) a series file."""
    from ml.series import is_series, load_series

    if is_series(path):
        return load_series(path, sample_rate=params.sample_rate, channel=channel)
    return load_audio(path, sample_rate=params.sample_rate, channel=channel, sensor=sensor)


def _load_one(item: Item, params: LogMelParams, channel: int | None, sensor: bool,
              allow_upsampling: bool) -> tuple[np.ndarray, int]:
    src = source_of(item.path, params=params, sensor=sensor)
    note = check_rate(item.path, src.rate, params.sample_rate, allow_upsampling=allow_upsampling)
    if note:
        log.warning("%s: %s", item.path, note)
    y = read_signal(item.path, params=params, channel=channel, sensor=sensor)
    if y.shape[0] < params.n_fft:  # tile very short clips up to one FFT frame
        y = np.tile(y, -(-params.n_fft // y.shape[0]))
    return logmel(y, params=params), src.channels  # thread-safe: each thread has its own FFT buffers


def load_windows(
    items: Iterable[Item],
    *,
    params: LogMelParams,
    window_seconds: float,
    hop_seconds: float | None = None,
    channel: int | None = None,
    jobs: int | None = None,
    progress: bool = True,
    sensor: bool = False,
    allow_upsampling: bool = False,
) -> WindowSet:
    """Load every file, compute its log-mel once and cut it into windows.

    ``hop_seconds`` defaults to half a window. Bad files (:class:`AudioFileError`) are logged and
    listed in ``failed``; they never stop the run.
    """
    items = list(items)
    frames = window_frames(params, window_seconds)
    if frames < 1:
        raise ValueError(f"window of {window_seconds} s is shorter than one FFT frame")
    hop_s = window_seconds / 2 if hop_seconds is None else hop_seconds
    hop_frames = params.hop_frames(hop_s)
    jobs = jobs or min(4, os.cpu_count() or 1)
    chunks: list[np.ndarray] = []
    index: list[np.ndarray] = []
    kept: list[Item] = []
    failed: dict[str, str] = {}
    chans: dict[str, int] = {}
    from tqdm import tqdm

    bar = tqdm(total=len(items), unit="file", desc="features", disable=not progress or None, leave=False)
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # soundfile/soxr/FFT release the GIL
        futures = [pool.submit(_load_one, it, params, channel, sensor, allow_upsampling) for it in items]
        for it, fut in zip(items, futures):
            try:
                s_db, n_ch = fut.result()
                w = file_windows(s_db, frames, hop_frames)
            except (AudioFileError, ValueError, OSError) as exc:
                reason = exc.reason if isinstance(exc, AudioFileError) else str(exc)
                failed[str(it.path)] = reason
                log.debug("skipped %s: %s", it.path, reason)  # the caller reports failed files once
            else:
                index.append(np.full(len(w), len(kept), dtype=np.int64))
                chunks.append(w)
                kept.append(it)
                chans[str(it.path)] = n_ch
            bar.update()
    bar.close()
    if chunks:
        x = np.concatenate(chunks)
        fi = np.concatenate(index)
    else:
        x = np.empty((0, params.n_mels, frames), dtype=np.float32)
        fi = np.empty(0, dtype=np.int64)
    return WindowSet(x, fi, kept, failed, chans)


def describe(ws: WindowSet) -> str:
    """One line: files, windows, and files per label."""
    from collections import Counter

    per = Counter(it.label for it in ws.items)
    groups = len({it.group for it in ws.items})
    per_text = ", ".join(f"{k} {v}" for k, v in sorted(per.items()))
    return f"{len(ws.items)} files ({per_text}), {groups} groups, {len(ws.x)} windows"

